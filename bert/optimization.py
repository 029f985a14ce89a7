"""The learning-rate schedule and the four optimizers of SPEC §7: adam, lamb, nadam, nlamb.

`adam` is the reference's AdamWeightDecay: moving averages without bias correction and decoupled
weight decay, `w -= lr * (m / (sqrt(v) + eps) + wd * w)`. `lamb` scales that update per variable by
the trust ratio ||w|| / ||u||. `nadam` and `nlamb` use Nesterov momentum with bias correction (the ROCm
fork's formulas). Weight decay is never applied to LayerNorm parameters or biases.

Slots are float32 variables named as the reference names them, `<variable>/adam_m` and
`<variable>/adam_v`, whatever the optimizer.
"""

import re

from bert.tf import tf

OPTIMIZERS = ("adam", "lamb", "nadam", "nlamb")
WEIGHT_DECAY_EXCLUDED = ("LayerNorm", "layer_norm", "bias")


def learning_rate(step, base_rate, num_train_steps, num_warmup_steps):
    """Linear warmup to `base_rate`, then linear (power 1) decay to 0 at `num_train_steps`, from step 0."""
    step = tf.cast(step, tf.float32)
    decayed = base_rate * (1.0 - tf.minimum(step, float(num_train_steps)) / float(num_train_steps))
    if num_warmup_steps <= 0:
        return decayed
    # The reference's order: the share of warmup done, then the rate (rounded otherwise in float32).
    warmup = base_rate * (step / float(num_warmup_steps))
    return tf.where(step < float(num_warmup_steps), warmup, decayed)


def uses_weight_decay(name):
    return not any(re.search(pattern, name) for pattern in WEIGHT_DECAY_EXCLUDED)


class Optimizer(tf.Module):
    """One of `OPTIMIZERS` over a dict of named variables."""

    def __init__(self, kind, variables_by_name, weight_decay_rate=0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-6):
        super().__init__()
        if kind not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {kind!r}")
        self.kind = kind
        self.names = list(variables_by_name)
        self.variables_list = [variables_by_name[name] for name in self.names]
        self.weight_decay_rate = weight_decay_rate
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon
        self.slots = {}
        for name, variable in variables_by_name.items():
            for slot in ("adam_m", "adam_v"):
                self.slots[f"{name}/{slot}"] = tf.Variable(
                    tf.zeros_like(variable), trainable=False, name=f"{name}/{slot}".replace("/", "_")
                )

    def apply(self, gradients, rate, step, scale=None):
        """One update of every variable with `gradients` (aligned with `self.names`) at global `step`.

        `scale` (a scalar) multiplies every gradient first, as clipping does: inside the update, so that
        XLA makes one pass over each weight, its gradient and its slots.
        """
        b1, b2, eps = self.beta_1, self.beta_2, self.epsilon
        nesterov = self.kind in ("nadam", "nlamb")
        trust_ratio = self.kind in ("lamb", "nlamb")
        if nesterov:
            t = tf.cast(step, tf.float32) + 1.0
            m_correction = 1.0 - tf.pow(b1, t + 1.0)
            g_correction = 1.0 - tf.pow(b1, t)
            v_correction = 1.0 - tf.pow(b2, t)
        for name, variable, grad in zip(self.names, self.variables_list, gradients):
            m_slot, v_slot = self.slots[f"{name}/adam_m"], self.slots[f"{name}/adam_v"]
            if scale is not None:
                grad = grad * scale
            m = b1 * m_slot + (1.0 - b1) * grad
            v = b2 * v_slot + (1.0 - b2) * tf.square(grad)
            if nesterov:
                m_bar = b1 * (m / m_correction) + (1.0 - b1) * grad / g_correction
                update = m_bar / (tf.sqrt(v / v_correction) + eps)
            else:
                update = m / (tf.sqrt(v) + eps)
            if uses_weight_decay(name):
                update += self.weight_decay_rate * variable
            step_size = rate
            if trust_ratio:
                w_norm, u_norm = tf.norm(variable), tf.norm(update)
                # The fork's order, (ratio * rate) * update: scaling the update by the ratio first rounds otherwise.
                step_size = tf.where((w_norm > 0.0) & (u_norm > 0.0), w_norm / u_norm, 1.0) * rate
            m_slot.assign(m)
            v_slot.assign(v)
            variable.assign_sub(step_size * update)
