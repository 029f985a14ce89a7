"""The optimizers and the schedule against a NumPy statement of SPEC §7's formulas."""

import numpy as np
import pytest
import tensorflow as tf

from bert import optimization

NAMES = {
    "bert/encoder/layer_0/attention/self/query/kernel": (6, 4),
    "bert/encoder/layer_0/attention/self/query/bias": (4,),
    "bert/embeddings/LayerNorm/gamma": (4,),
    "cls/predictions/output_bias": (5,),
    "cls/seq_relationship/output_weights": (2, 4),
    "some/layer_norm/scale": (3,),
    "zero/kernel": (3,),
}


def numpy_steps(kind, weights, grads_per_step, rates, first_step=0):
    b1, b2, eps, wd = 0.9, 0.999, 1e-6, 0.01
    w = {k: v.astype(np.float64) for k, v in weights.items()}
    m = {k: np.zeros_like(v) for k, v in w.items()}
    v = {k: np.zeros_like(x) for k, x in w.items()}
    for step, (grads, lr) in enumerate(zip(grads_per_step, rates), start=first_step):
        for name in w:
            g = grads[name].astype(np.float64)
            m[name] = b1 * m[name] + (1 - b1) * g
            v[name] = b2 * v[name] + (1 - b2) * g * g
            if kind in ("nadam", "nlamb"):
                t = step + 1
                m_hat = m[name] / (1 - b1 ** (t + 1))
                v_hat = v[name] / (1 - b2**t)
                m_bar = b1 * m_hat + (1 - b1) * g / (1 - b1**t)
                u = m_bar / (np.sqrt(v_hat) + eps)
            else:
                u = m[name] / (np.sqrt(v[name]) + eps)
            decays = not any(s in name for s in ("LayerNorm", "layer_norm", "bias"))
            if decays:
                u = u + wd * w[name]
            if kind in ("lamb", "nlamb"):
                wn, un = np.linalg.norm(w[name]), np.linalg.norm(u)
                u = u * (wn / un if wn > 0 and un > 0 else 1.0)
            w[name] = w[name] - lr * u
    return w, m, v


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "xla"])
@pytest.mark.parametrize("kind", optimization.OPTIMIZERS)
def test_optimizer_matches_formulas(kind, compiled):
    rng = np.random.default_rng(0)
    weights = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in NAMES.items()}
    weights["zero/kernel"][:] = 0.0
    variables = {name: tf.Variable(value) for name, value in weights.items()}
    optimizer = optimization.Optimizer(kind, variables)
    steps = [{name: rng.standard_normal(shape).astype(np.float32) for name, shape in NAMES.items()} for _ in range(5)]
    rates = [0.0, 0.01, 0.02, 0.015, 0.01]
    # Training compiles the update with XLA (bert/training.py); both ways must follow the formulas.
    apply = tf.function(optimizer.apply, jit_compile=True) if compiled else optimizer.apply
    for step, (grads, rate) in enumerate(zip(steps, rates), start=3):
        apply([tf.constant(grads[name]) for name in optimizer.names], tf.constant(rate), tf.constant(step, tf.int64))
    want_w, want_m, want_v = numpy_steps(kind, weights, steps, rates, first_step=3)
    for name in NAMES:
        np.testing.assert_allclose(variables[name].numpy(), want_w[name], rtol=2e-5, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(optimizer.slots[f"{name}/adam_m"].numpy(), want_m[name], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(optimizer.slots[f"{name}/adam_v"].numpy(), want_v[name], rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("kind", ["adam", "lamb"])
def test_adam_and_lamb_are_the_reference_s_to_the_last_bit(kind):
    # The reference's AdamWeightDecayOptimizer and the fork's LAMB, op for op in float32 TensorFlow.
    rng = np.random.default_rng(1)
    shapes = {"layer/dense/kernel": (64, 48), "layer/dense/bias": (48,)}
    weights = {name: tf.Variable(rng.standard_normal(shape).astype(np.float32)) for name, shape in shapes.items()}
    ours = {name: tf.Variable(w) for name, w in weights.items()}
    optimizer = optimization.Optimizer(kind, ours)
    slots = {name: [tf.zeros(shape), tf.zeros(shape)] for name, shape in shapes.items()}
    for step, rate in enumerate([1e-3, 7e-4, 3.3e-4]):
        grads = {name: tf.constant(rng.standard_normal(shape).astype(np.float32)) for name, shape in shapes.items()}
        optimizer.apply([grads[name] for name in optimizer.names], tf.constant(rate), tf.constant(step, tf.int64))
        learning_rate = tf.constant(rate)
        for name, param in weights.items():
            m, v = slots[name]
            next_m = tf.multiply(0.9, m) + tf.multiply(1.0 - 0.9, grads[name])
            next_v = tf.multiply(0.999, v) + tf.multiply(1.0 - 0.999, tf.square(grads[name]))
            update = next_m / (tf.sqrt(next_v) + 1e-6)
            if "bias" not in name:
                update += 0.01 * param
            if kind == "lamb":
                w_norm, g_norm = tf.norm(param, ord=2), tf.norm(update, ord=2)
                ratio = tf.where(w_norm > 0, tf.where(g_norm > 0, w_norm / g_norm, 1.0), 1.0)
                update_with_lr = ratio * learning_rate * update
            else:
                update_with_lr = learning_rate * update
            param.assign(param - update_with_lr)
            slots[name] = [next_m, next_v]
    for name in shapes:
        np.testing.assert_array_equal(ours[name].numpy(), weights[name].numpy(), err_msg=name)


def test_weight_decay_exclusions():
    assert optimization.uses_weight_decay("bert/encoder/layer_0/output/dense/kernel")
    assert optimization.uses_weight_decay("bert/embeddings/word_embeddings")
    for name in ("bert/encoder/layer_0/output/LayerNorm/gamma", "bert/pooler/dense/bias",
                 "cls/predictions/output_bias", "x/layer_norm/w"):
        assert not optimization.uses_weight_decay(name)


def test_zero_gradient_adam_still_decays_weights():
    variable = tf.Variable([2.0, -4.0])
    optimizer = optimization.Optimizer("adam", {"dense/kernel": variable})
    optimizer.apply([tf.zeros(2)], tf.constant(0.5), tf.constant(0, tf.int64))
    np.testing.assert_allclose(variable.numpy(), [2.0 - 0.5 * 0.01 * 2.0, -4.0 + 0.5 * 0.01 * 4.0], rtol=1e-6)


def test_schedule_warmup_then_linear_decay():
    def rate(step):
        return float(optimization.learning_rate(step, 1e-4, 1000, 100))

    assert rate(0) == 0.0
    assert rate(50) == pytest.approx(5e-5)
    assert rate(99) == pytest.approx(9.9e-5)
    assert rate(100) == pytest.approx(1e-4 * 0.9)
    assert rate(500) == pytest.approx(5e-5)
    assert rate(1000) == 0.0
    assert rate(2000) == 0.0
    assert float(optimization.learning_rate(0, 1e-4, 1000, 0)) == pytest.approx(1e-4)


@pytest.mark.parametrize("base_rate, num_train_steps, num_warmup_steps", [(1e-4, 1_000_000, 10_000), (0.00176, 7038, 2000)])
def test_schedule_is_the_reference_s_to_the_last_bit(base_rate, num_train_steps, num_warmup_steps):
    # run_pretraining.py's graph in float32: polynomial_decay (power 1, to 0), then during warmup
    # init_lr * (global_step / num_warmup_steps), blended as (1 - is_warmup) * decayed + is_warmup * warmup.
    steps = np.arange(0, min(num_train_steps, 3 * num_warmup_steps), dtype=np.int64)
    step = steps.astype(np.float32)
    decayed = (np.float32(base_rate) * (np.float32(1) - np.minimum(step, np.float32(num_train_steps))
                                        / np.float32(num_train_steps))).astype(np.float32)
    warmup = (np.float32(base_rate) * (step / np.float32(num_warmup_steps))).astype(np.float32)
    is_warmup = (step < np.float32(num_warmup_steps)).astype(np.float32)
    expected = (np.float32(1) - is_warmup) * decayed + is_warmup * warmup
    ours = optimization.learning_rate(tf.constant(steps), base_rate, num_train_steps, num_warmup_steps).numpy()
    np.testing.assert_array_equal(ours, expected)
