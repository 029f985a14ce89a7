"""The model against an independent NumPy forward pass; checkpoints in the reference's TF1 naming."""

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from bert import checkpoints, modeling
from bert.config import HIDDEN_ACTS, BertConfig
from bert.errors import InputError
from tests import numpy_bert

CONFIG = BertConfig(
    vocab_size=97, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=48,
    max_position_embeddings=40, type_vocab_size=2,
)


def reference_shapes(config, heads=True):
    """The variables of a reference checkpoint, listed from SPEC §6 (not from our model)."""
    h, i = config.hidden_size, config.intermediate_size
    shapes = {
        "bert/embeddings/word_embeddings": [config.vocab_size, h],
        "bert/embeddings/token_type_embeddings": [config.type_vocab_size, h],
        "bert/embeddings/position_embeddings": [config.max_position_embeddings, h],
        "bert/embeddings/LayerNorm/gamma": [h],
        "bert/embeddings/LayerNorm/beta": [h],
        "bert/pooler/dense/kernel": [h, h],
        "bert/pooler/dense/bias": [h],
    }
    for n in range(config.num_hidden_layers):
        p = f"bert/encoder/layer_{n}/"
        for name in ("query", "key", "value"):
            shapes[p + f"attention/self/{name}/kernel"] = [h, h]
            shapes[p + f"attention/self/{name}/bias"] = [h]
        shapes[p + "attention/output/dense/kernel"] = [h, h]
        shapes[p + "attention/output/dense/bias"] = [h]
        shapes[p + "intermediate/dense/kernel"] = [h, i]
        shapes[p + "intermediate/dense/bias"] = [i]
        shapes[p + "output/dense/kernel"] = [i, h]
        shapes[p + "output/dense/bias"] = [h]
        for norm in ("attention/output/LayerNorm", "output/LayerNorm"):
            shapes[p + norm + "/gamma"] = [h]
            shapes[p + norm + "/beta"] = [h]
    if heads:
        shapes.update({
            "cls/predictions/transform/dense/kernel": [h, h],
            "cls/predictions/transform/dense/bias": [h],
            "cls/predictions/transform/LayerNorm/gamma": [h],
            "cls/predictions/transform/LayerNorm/beta": [h],
            "cls/predictions/output_bias": [config.vocab_size],
            "cls/seq_relationship/output_weights": [2, h],
            "cls/seq_relationship/output_bias": [2],
        })
    return shapes


def random_weights(config, seed=0, heads=True):
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in reference_shapes(config, heads).items():
        scale = 0.3 if name.endswith(("bias", "beta")) else 0.5
        base = 1.0 if name.endswith("gamma") else 0.0
        weights[name] = (base + scale * rng.standard_normal(shape)).astype(np.float32)
    return weights


def write_tf1_checkpoint(prefix, tensors):
    """A name-based checkpoint, as TF1's tf.train.Saver writes and Google's releases are."""
    names = list(tensors)
    tf.raw_ops.SaveV2(
        prefix=str(prefix), tensor_names=names, shape_and_slices=[""] * len(names),
        tensors=[tf.constant(tensors[n]) for n in names],
    )
    return str(prefix)


def random_features(config, batch=3, seq=16, predictions=4, seed=1):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(5, seq + 1, batch)
    lengths[0] = seq
    mask = (np.arange(seq)[None] < lengths[:, None]).astype(np.int32)
    return {
        "input_ids": (rng.integers(0, config.vocab_size, (batch, seq)) * mask).astype(np.int32),
        "input_mask": mask,
        "segment_ids": ((np.arange(seq)[None] >= lengths[:, None] // 2) * mask).astype(np.int32),
        "masked_lm_positions": np.sort(rng.integers(1, 5, (batch, predictions)), -1).astype(np.int32),
        "masked_lm_ids": rng.integers(0, config.vocab_size, (batch, predictions)).astype(np.int32),
        "masked_lm_weights": (rng.random((batch, predictions)) < 0.7).astype(np.float32),
        "next_sentence_labels": rng.integers(0, 2, (batch, 1)).astype(np.int32),
    }


def test_variable_names_and_shapes_are_the_references():
    model = modeling.BertPretrainer(CONFIG)
    got = {name: v.shape.as_list() for name, v in model.variables_by_name.items()}
    assert got == reference_shapes(CONFIG)
    assert len(model.trainable_variables) == len(got)


def test_initialisation_is_truncated_normal_with_initializer_range():
    config = BertConfig(**{**CONFIG.__dict__, "initializer_range": 0.05, "vocab_size": 4000})
    model = modeling.BertPretrainer(config, seed=3)
    table = model.variables_by_name["bert/embeddings/word_embeddings"].numpy()
    assert np.abs(table).max() <= 2 * 0.05 + 1e-7
    # A normal truncated at 2 sigma has stddev 0.8796 sigma.
    assert table.std() == pytest.approx(0.05 * 0.8796, rel=0.02)
    assert not model.variables_by_name["cls/predictions/output_bias"].numpy().any()
    assert (model.variables_by_name["bert/embeddings/LayerNorm/gamma"].numpy() == 1).all()
    again = modeling.BertPretrainer(config, seed=3).variables_by_name["bert/embeddings/word_embeddings"].numpy()
    assert (again == table).all()
    other = modeling.BertPretrainer(config, seed=4).variables_by_name["bert/embeddings/word_embeddings"].numpy()
    assert not (other == table).all()


@pytest.fixture
def tf1_checkpoint(tmp_path):
    weights = random_weights(CONFIG)
    extra = {"bert/embeddings/word_embeddings/adam_m": np.zeros([97, 32], np.float32),
             "global_step": np.array(1000, np.int64)}
    return write_tf1_checkpoint(tmp_path / "bert_model.ckpt", {**weights, **extra}), weights


@pytest.mark.parametrize("hidden_act", HIDDEN_ACTS)
def test_loaded_reference_checkpoint_matches_numpy_forward_pass(tf1_checkpoint, hidden_act):
    prefix, weights = tf1_checkpoint
    model = modeling.BertPretrainer(BertConfig(**{**CONFIG.__dict__, "hidden_act": hidden_act}))
    unused, _ = checkpoints.load_weights(model.variables_by_name, prefix)
    assert unused == ["bert/embeddings/word_embeddings/adam_m", "global_step"]

    features = random_features(CONFIG)
    all_layers, pooled = model.bert(features["input_ids"], features["input_mask"], features["segment_ids"], modeling.Context())
    want_layers, want_pooled = numpy_bert.encoder(weights, 3, 4, features["input_ids"], features["input_mask"],
                                                  features["segment_ids"], hidden_act)
    # TensorFlow's float32 tanh is a rational approximation, a few ulps from the exact value.
    atol = 5e-5 if hidden_act == "tanh" else 2e-5
    for got, want in zip(all_layers, want_layers):
        np.testing.assert_allclose(got.numpy(), want, atol=atol)
    np.testing.assert_allclose(pooled.numpy(), want_pooled, atol=atol)

    outputs = model(features, modeling.Context())
    w = features["masked_lm_weights"]
    mlm = (outputs["mlm_loss"].numpy() * w).sum() / (w.sum() + 1e-5)
    nsp = outputs["nsp_loss"].numpy().mean()
    want_mlm, want_nsp = numpy_bert.pretraining_losses(weights, 3, 4, features, hidden_act)
    assert mlm == pytest.approx(want_mlm, rel=1e-5)
    assert nsp == pytest.approx(want_nsp, rel=1e-5)


@pytest.mark.parametrize("positions", [
    np.array([[3, 3, 0, 15], [1, 9, 2, 0], [14, 0, 0, 0]], np.int32),  # repeats and padding zeros
    np.zeros([3, 0], np.int32),  # a classifier: the pooled first token only
])
def test_last_layer_at_positions_equals_the_full_layer_there(tf1_checkpoint, positions):
    """Pre-training and classification compute the last layer only where it is read; values and gradients agree."""
    prefix, _ = tf1_checkpoint
    model = modeling.BertModel(CONFIG)
    checkpoints.load_weights(model.weights, prefix)
    features = random_features(CONFIG, seq=16)
    args = (features["input_ids"], features["input_mask"], features["segment_ids"], modeling.Context())

    def gathered_outputs(sparse):
        with tf.GradientTape() as tape:
            if sparse:
                layers, pooled = model(*args, last_layer_positions=positions)
                last = layers[-1]
            else:
                layers, pooled = model(*args)
                last = tf.gather(layers[-1], positions, batch_dims=1)
            objective = tf.reduce_sum(tf.sin(last)) + tf.reduce_sum(tf.sin(pooled))
        return [last, pooled, *layers[:-1]], tape.gradient(objective, list(model.weights.values()))

    (sparse_values, sparse_grads), (full_values, full_grads) = gathered_outputs(True), gathered_outputs(False)
    assert sparse_values[0].shape == (3, positions.shape[1], CONFIG.hidden_size)
    # The two compute the same sums in different orders (other matmul shapes, gathered gradients), so an
    # entry that nearly cancels may differ by float32 rounding of the tensor's largest terms.
    for got, want in zip(sparse_values + sparse_grads, full_values + full_grads):
        want = tf.convert_to_tensor(want).numpy()
        np.testing.assert_allclose(tf.convert_to_tensor(got).numpy(), want, rtol=1e-5,
                                   atol=1e-5 * max(1.0, float(np.abs(want).max(initial=0.0))))


def test_padding_does_not_change_real_positions(tf1_checkpoint):
    prefix, _ = tf1_checkpoint
    model = modeling.BertModel(CONFIG)
    checkpoints.load_weights(model.weights, prefix)
    features = random_features(CONFIG, batch=1, seq=10)
    ids = features["input_ids"].copy()
    garbage = ids.copy()
    garbage[:, 7:] = 5
    mask = np.array([[1] * 7 + [0] * 3], np.int32)
    seg = np.zeros_like(ids)
    a, _ = model(ids, mask, seg, modeling.Context())
    b, _ = model(garbage, mask, seg, modeling.Context())
    np.testing.assert_allclose(a[-1].numpy()[:, :7], b[-1].numpy()[:, :7], atol=1e-5)


def test_mixed_precision_forward_stays_close(tf1_checkpoint):
    prefix, _ = tf1_checkpoint
    model = modeling.BertPretrainer(CONFIG)
    checkpoints.load_weights(model.variables_by_name, prefix)
    features = random_features(CONFIG)
    full = model(features, modeling.Context())
    for dtype, tol in ((tf.bfloat16, 0.08), (tf.float16, 0.01)):
        half = model(features, modeling.Context(compute_dtype=dtype))
        for loss in ("mlm_loss", "nsp_loss"):
            assert half[loss].dtype == tf.float32
            # Computed in `dtype` (it rounds differently from float32), yet close to the float32 figures.
            assert not np.array_equal(half[loss].numpy(), full[loss].numpy()), (dtype, loss)
            np.testing.assert_allclose(half[loss].numpy(), full[loss].numpy(), rtol=tol, atol=tol, err_msg=f"{dtype} {loss}")


def test_dropout_is_a_function_of_the_seed(tf1_checkpoint):
    prefix, _ = tf1_checkpoint
    model = modeling.BertPretrainer(modeling_config := BertConfig(**{**CONFIG.__dict__, "hidden_dropout_prob": 0.3}))
    checkpoints.load_weights(model.variables_by_name, prefix)
    features = random_features(modeling_config)

    def loss(seed, training=True):
        ctx = modeling.Context(training=training, seed=tf.constant(seed, tf.int32))
        return model(features, ctx)["nsp_loss"].numpy()

    assert (loss([1, 2]) == loss([1, 2])).all()
    assert not (loss([1, 2]) == loss([1, 3])).all()
    assert (loss([1, 2], training=False) == loss([5, 5], training=False)).all()


def test_threefry2x32_gives_random123s_known_answers():
    # Random123's kat_vectors for threefry2x32 with 20 rounds: (counter, key) -> words.
    known = [((0, 0), (0, 0), (0x6B200159, 0x99BA4EFE)),
             ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
             ((0x243F6A88, 0x85A308D3), (0x13198A2E, 0x03707344), (0xC4923A9C, 0x483DF7A0))]
    compiled = tf.function(modeling.threefry2x32, jit_compile=True, autograph=False)  # as dropout draws it
    for threefry in (modeling.threefry2x32, compiled):
        for counter, key, words in known:
            got = threefry(tf.constant(key, tf.uint32), *(tf.constant([c], tf.uint32) for c in counter))
            assert tuple(int(w[0]) for w in got) == words


def test_an_examples_dropout_masks_follow_its_place_in_the_global_batch_not_the_split(tf1_checkpoint):
    prefix, _ = tf1_checkpoint
    config = BertConfig(**{**CONFIG.__dict__, "hidden_dropout_prob": 0.2, "attention_probs_dropout_prob": 0.2})
    model = modeling.BertPretrainer(config)
    checkpoints.load_weights(model.variables_by_name, prefix)
    features = random_features(config, batch=6)
    seed = tf.constant([3, 4], tf.int32)
    whole = model(features, modeling.Context(training=True, seed=seed))
    halves = [model({name: value[rows] for name, value in features.items()},
                    modeling.Context(training=True, seed=seed, first_example=rows.start))
              for rows in (slice(0, 2), slice(2, 6))]
    for loss in ("mlm_loss", "nsp_loss"):
        np.testing.assert_allclose(np.concatenate([half[loss].numpy() for half in halves]), whole[loss].numpy(),
                                   rtol=1e-5, atol=1e-6, err_msg=loss)
    # Drawn where the examples stand: the same examples elsewhere in the global batch get other masks.
    moved = model({name: value[2:6] for name, value in features.items()},
                  modeling.Context(training=True, seed=seed, first_example=0))
    assert not np.allclose(moved["nsp_loss"].numpy(), halves[1]["nsp_loss"].numpy())
    undropped = model(features, modeling.Context())
    assert not np.allclose(whole["nsp_loss"].numpy(), undropped["nsp_loss"].numpy())


def test_dropout_keeps_each_value_with_probability_one_minus_the_rate_and_scales_it():
    x = tf.ones([64, 32, 48])
    for rate in (0.1, 0.5):
        dropped = modeling.Context(training=True, seed=tf.constant([1, 2], tf.int32)).dropout(x, rate).numpy()
        kept = dropped != 0
        assert set(np.unique(dropped)) == {0.0, np.float32(1 / (1 - rate))}
        # 98304 draws: the kept share within 4 standard deviations of 1 - rate, in every example and every position.
        assert abs(kept.mean() - (1 - rate)) < 4 * np.sqrt(rate * (1 - rate) / kept.size)
        assert abs(kept.mean(axis=(1, 2)) - (1 - rate)).max() < 0.05 and abs(kept.mean(axis=(0, 2)) - (1 - rate)).max() < 0.1
        # Neighbours, in a row and across examples, are not tied.
        for a, b in ((kept[:, :, :-1], kept[:, :, 1:]), (kept[:-1], kept[1:])):
            assert abs((a == b).mean() - (rate**2 + (1 - rate) ** 2)) < 0.01


def test_embedding_tables_are_never_gathered_from_the_variables():
    """A gather on a variable (ResourceGather) switches it to copy-on-read for good: every later dense
    read, as the tied masked-LM projection makes each step, would then copy the whole table."""
    model = modeling.BertPretrainer(CONFIG)
    features = {name: tf.constant(value) for name, value in random_features(CONFIG).items()}

    @tf.function
    def gradients():
        with tf.GradientTape() as tape:
            outputs = model(features, modeling.Context(training=True, seed=tf.constant([1, 2])))
            loss = tf.reduce_sum(outputs["mlm_loss"]) + tf.reduce_sum(outputs["nsp_loss"])
        return tape.gradient(loss, model.trainable_variables)

    graph = gradients.get_concrete_function().graph.as_graph_def()
    op_types = {node.op for node in graph.node}
    op_types |= {node.op for function in graph.library.function for node in function.node_def}
    assert "GatherV2" in op_types
    assert "ResourceGather" not in op_types


def test_missing_variable_is_named_and_model_untouched(tmp_path):
    weights = random_weights(CONFIG)
    del weights["bert/encoder/layer_2/output/dense/bias"]
    prefix = write_tf1_checkpoint(tmp_path / "partial.ckpt", weights)
    model = modeling.BertPretrainer(CONFIG)
    before = model.variables_by_name["bert/embeddings/word_embeddings"].numpy()
    with pytest.raises(InputError, match="no variable 'bert/encoder/layer_2/output/dense/bias'"):
        checkpoints.load_weights(model.variables_by_name, prefix)
    assert (model.variables_by_name["bert/embeddings/word_embeddings"].numpy() == before).all()


def test_an_encoder_without_pre_training_heads_is_named_as_such(tmp_path):
    prefix = write_tf1_checkpoint(tmp_path / "encoder.ckpt", random_weights(CONFIG, heads=False))
    with pytest.raises(InputError, match=r"no variable 'cls/.*' \(it holds an encoder without the pre-training heads"):
        checkpoints.load_weights(modeling.BertPretrainer(CONFIG).variables_by_name, prefix)
    encoder = modeling.BertModel(CONFIG)
    checkpoints.load_weights(encoder.weights, prefix)


def test_a_tf2_object_based_checkpoint_of_another_program_is_named_as_such(tmp_path):
    # As TF Model Garden's BERT encoders: variables under object paths, several ending in the same attribute name.
    encoder = tf.Module()
    encoder.word_embeddings = tf.Module()
    encoder.word_embeddings.embeddings = tf.Variable(tf.zeros([CONFIG.vocab_size, CONFIG.hidden_size]))
    encoder.layers = [tf.Module() for _ in range(2)]
    for layer in encoder.layers:
        layer.kernel = tf.Variable(tf.zeros([CONFIG.hidden_size, CONFIG.hidden_size]))
    path = tf.train.Checkpoint(encoder=encoder).write(str(tmp_path / "bert_model.ckpt"))
    reader = checkpoints.CheckpointReader(path)
    assert len(reader.names()) == 3  # two `kernel`s, each under its own path
    with pytest.raises(InputError, match=r"no variable 'bert/embeddings/word_embeddings' \(it is a TF2 object-based "
                                         r"checkpoint, as TF Model Garden and TF Hub save"):
        checkpoints.load_weights(modeling.BertModel(CONFIG).weights, path)


def test_wrong_shape_is_named(tmp_path):
    weights = random_weights(CONFIG)
    weights["bert/encoder/layer_0/intermediate/dense/kernel"] = np.zeros([32, 64], np.float32)
    prefix = write_tf1_checkpoint(tmp_path / "bad.ckpt", weights)
    with pytest.raises(InputError, match=r"layer_0/intermediate/dense/kernel.*shape \[32, 64\].*needs \[32, 48\]"):
        checkpoints.load_weights(modeling.BertPretrainer(CONFIG).variables_by_name, prefix)


def test_unreadable_checkpoint_is_one_error(tmp_path):
    (tmp_path / "junk.ckpt.index").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot read checkpoint"):
        checkpoints.load_weights(modeling.BertModel(CONFIG).weights, tmp_path / "junk.ckpt")
    with pytest.raises(InputError, match="checkpoint not found"):
        checkpoints.load_weights(modeling.BertModel(CONFIG).weights, tmp_path / "absent.ckpt")


def test_checkpoint_is_named_by_its_prefix_any_of_its_files_or_its_directory(tmp_path):
    weights = random_weights(CONFIG)
    prefix = write_tf1_checkpoint(tmp_path / "released" / "bert_model.ckpt", weights)
    (tmp_path / "released" / "bert_model.ckpt.meta").write_bytes(b"")  # a TF1 Saver's graph, beside the weights
    for name in ("bert_model.ckpt", "bert_model.ckpt.index", "bert_model.ckpt.meta",
                 "bert_model.ckpt.data-00000-of-00001", ""):
        assert checkpoints.resolve_checkpoint(tmp_path / "released" / name) == prefix, name


def test_directory_of_several_checkpoints_without_a_state_file_names_them(tmp_path):
    for step in (9, 100, 200):
        write_tf1_checkpoint(tmp_path / f"model.ckpt-{step}", random_weights(CONFIG))
    with pytest.raises(InputError, match=r"holds 3 checkpoints \(model.ckpt-9, model.ckpt-100, model.ckpt-200\).*name "
                                         r"one, e.g. .*/model.ckpt-200$"):
        checkpoints.resolve_checkpoint(tmp_path)


def test_a_model_in_another_format_is_named_with_the_way_to_a_checkpoint(tmp_path):
    hugging_face = tmp_path / "hf"
    hugging_face.mkdir()
    for name in ("config.json", "model.safetensors", "vocab.txt"):
        (hugging_face / name).write_bytes(b"{}")
    for given in (hugging_face, hugging_face / "model.safetensors"):
        with pytest.raises(InputError, match=f"it is a Hugging Face model: convert it first \\(bert-convert --from=hf "
                                             f"--input={hugging_face} --output=DIR"):
            checkpoints.resolve_checkpoint(given)
    (hugging_face / "model.safetensors").unlink()
    (hugging_face / "tf_model.h5").write_bytes(b"")
    with pytest.raises(InputError, match=r"Hugging Face's TensorFlow weights \(tf_model.h5\), which are not read"):
        checkpoints.resolve_checkpoint(hugging_face)
    hub = tmp_path / "hub"
    (hub / "variables").mkdir(parents=True)
    (hub / "saved_model.pb").write_bytes(b"")
    with pytest.raises(InputError, match=f"^--init_checkpoint: no checkpoint found in directory {hub}; it is a SavedModel"):
        checkpoints.resolve_checkpoint(hub)
    # TF Hub's TF1 modules of BERT hold the reference's variables, which load from where the message says.
    weights = random_weights(CONFIG)
    write_tf1_checkpoint(hub / "variables" / "variables", weights)
    (hub / "assets").mkdir()
    (hub / "assets" / "vocab.txt").write_text("[PAD]\n")
    with pytest.raises(InputError, match=f"^--init_checkpoint: no checkpoint found in directory {hub}; it is a TF Hub "
                                         f"module whose variables are in the reference's names: give "
                                         f"{hub / 'variables' / 'variables'} \\(its vocabulary is "
                                         f"{hub / 'assets' / 'vocab.txt'}\\)$"):
        checkpoints.resolve_checkpoint(hub)
    model = modeling.BertPretrainer(CONFIG)
    checkpoints.load_weights(model.variables_by_name, hub / "variables" / "variables")
    assert np.array_equal(model.variables_by_name["bert/pooler/dense/kernel"].numpy(), weights["bert/pooler/dense/kernel"])
    # A config named where the checkpoint goes: a file, not "not found".
    config = tmp_path / "bert_config.json"
    config.write_text("{}")
    with pytest.raises(InputError, match=f"^--init_checkpoint: {config} is a file, not a checkpoint"):
        checkpoints.resolve_checkpoint(config)


def test_a_checkpoint_of_another_size_is_named_by_the_config_key_that_differs(tmp_path):
    for key, value, variable in (("max_position_embeddings", 64, "bert/embeddings/position_embeddings"),
                                 ("type_vocab_size", 16, "bert/embeddings/token_type_embeddings"),
                                 ("vocab_size", 120, "bert/embeddings/word_embeddings"),
                                 ("intermediate_size", 64, "bert/encoder/layer_0/intermediate/dense/kernel")):
        other = BertConfig.from_dict({**CONFIG.to_dict(), key: value})
        prefix = write_tf1_checkpoint(tmp_path / f"{key}.ckpt", random_weights(other))
        with pytest.raises(InputError, match=f"variable '{variable}' .* \\(the config's '{key}' is {getattr(CONFIG, key)}, "
                                             f"the checkpoint's model had {value}: does --bert_config_file match"):
            checkpoints.load_weights(modeling.BertPretrainer(CONFIG).variables_by_name, prefix)
    # Fewer layers in the checkpoint than the config asks for, and more.
    two_layers = BertConfig.from_dict({**CONFIG.to_dict(), "num_hidden_layers": 2})
    shallow = write_tf1_checkpoint(tmp_path / "shallow.ckpt", random_weights(two_layers))
    with pytest.raises(InputError, match=r"no variable 'bert/encoder/layer_2/.*' \(it has 2 encoder layers, the config's "
                                         r"'num_hidden_layers' asks for more"):
        checkpoints.load_weights(modeling.BertPretrainer(CONFIG).variables_by_name, shallow)
    deep = write_tf1_checkpoint(tmp_path / "deep.ckpt", random_weights(CONFIG))
    model = modeling.BertPretrainer(two_layers)
    unused, _ = checkpoints.load_weights(model.variables_by_name, deep)
    logged = []
    checkpoints.report_initialisation(deep, unused, logged.append, model.variables_by_name)
    assert logged[1] == ("warning: --init_checkpoint holds encoder layers 2 to 2, past the config's 'num_hidden_layers' "
                         "(2): they are left out")
    # A masked-LM model (transformers' BertForMaskedLM) has no next-sentence head to pre-train on.
    masked_lm = {name: value for name, value in random_weights(CONFIG).items() if not name.startswith("cls/seq_relationship")}
    prefix = write_tf1_checkpoint(tmp_path / "mlm.ckpt", masked_lm)
    with pytest.raises(InputError, match=r"no variable 'cls/seq_relationship/.*' \(it holds the masked-LM head but no "
                                         r"next-sentence head"):
        checkpoints.load_weights(modeling.BertPretrainer(CONFIG).variables_by_name, prefix)


def test_a_directory_is_its_checkpoint_files_latest_and_a_missing_latest_is_named(tmp_path):
    for step in (100, 200):
        write_tf1_checkpoint(tmp_path / f"model.ckpt-{step}", random_weights(CONFIG))
    state = tmp_path / "checkpoint"
    state.write_text('model_checkpoint_path: "model.ckpt-200"\n'
                     'all_model_checkpoint_paths: "model.ckpt-100"\nall_model_checkpoint_paths: "model.ckpt-200"\n')
    for name in (tmp_path, state):
        assert checkpoints.resolve_checkpoint(name) == str(tmp_path / "model.ckpt-200")
    # Moved from where it was written, with absolute paths in its file.
    moved = state.read_text()
    state.write_text('model_checkpoint_path: "gs://bucket/run/model.ckpt-200"\n')
    assert checkpoints.resolve_checkpoint(tmp_path) == str(tmp_path / "model.ckpt-200")
    state.write_text(moved)
    # A copy without the newest checkpoint's files: not silently another model.
    for path in tmp_path.glob("model.ckpt-200.*"):
        path.unlink()
    for name in (tmp_path, state):
        with pytest.raises(InputError, match=f"^--init_checkpoint: {state} names {tmp_path / 'model.ckpt-200'} as the "
                                             f"latest checkpoint, which is missing; name the one to start from, e.g. "
                                             f"{tmp_path / 'model.ckpt-100'}$"):
            checkpoints.resolve_checkpoint(name)


def test_export_is_a_reference_checkpoint_and_round_trips(tmp_path):
    model = modeling.BertPretrainer(CONFIG, seed=11)
    out = tmp_path / "export"
    out.mkdir()
    checkpoints.export_checkpoint(model.variables_by_name, str(out / "bert_model.ckpt"), config=CONFIG,
                                  extra={"global_step": np.int64(7)})
    listed = dict(tf.train.list_variables(str(out / "bert_model.ckpt")))
    assert listed == {**reference_shapes(CONFIG), "global_step": []}
    assert json.loads((out / "bert_config.json").read_text()) == CONFIG.to_dict()
    assert sorted(p.name for p in out.iterdir()) == [
        "bert_config.json", "bert_model.ckpt.data-00000-of-00001", "bert_model.ckpt.index"]
    other = modeling.BertPretrainer(CONFIG, seed=12)
    checkpoints.load_weights(other.variables_by_name, out)  # a directory holding one checkpoint
    for name, variable in model.variables_by_name.items():
        assert (other.variables_by_name[name].numpy() == variable.numpy()).all(), name


def test_an_export_cut_short_leaves_no_checkpoint_mixing_two_and_no_staging_behind(tmp_path, monkeypatch):
    first, second = modeling.BertPretrainer(CONFIG, seed=31), modeling.BertPretrainer(CONFIG, seed=32)
    out = tmp_path / "export"
    out.mkdir()
    prefix = str(out / "bert_model.ckpt")
    checkpoints.export_checkpoint(first.variables_by_name, prefix, config=CONFIG)
    exported = sorted(p.name for p in out.iterdir())

    # A Ctrl-C between the export's two renames (the data file's, then the index's).
    rename = os.replace

    def interrupted_at_the_index(source, destination):
        if str(destination).endswith(".index"):
            raise KeyboardInterrupt
        rename(source, destination)

    monkeypatch.setattr(os, "replace", interrupted_at_the_index)
    with pytest.raises(KeyboardInterrupt):
        checkpoints.export_checkpoint(second.variables_by_name, prefix, config=CONFIG)
    monkeypatch.setattr(os, "replace", rename)
    # Not the first export's index over the second's data (a checksum error at loading, or worse): no checkpoint.
    assert sorted(p.name for p in out.iterdir()) == ["bert_config.json", "bert_model.ckpt.data-00000-of-00001"]
    with pytest.raises(InputError, match=f"^--init_checkpoint: no checkpoint found in directory {out}"):
        checkpoints.load_weights(modeling.BertPretrainer(CONFIG).variables_by_name, out)
    checkpoints.export_checkpoint(second.variables_by_name, prefix, config=CONFIG)
    assert sorted(p.name for p in out.iterdir()) == exported

    # Staging a killed export left is not a second checkpoint of the directory, and the next export removes it;
    # that of a process still running is its own.
    ended = subprocess.Popen(["true"])
    ended.wait()
    for pid in (ended.pid, os.getppid()):
        for suffix in (".index", ".data-00000-of-00001"):
            shutil.copy(prefix + suffix, out / f".bert_model.ckpt.tmp-{pid}{suffix}")
    # Killed inside TensorFlow's save, which writes each file under a temporary name of its own first.
    shutil.copy(prefix + ".index", out / f".bert_model.ckpt.tmp-{ended.pid}.data-00000-of-00001.tempstate1234567")
    assert checkpoints.resolve_checkpoint(out) == prefix
    checkpoints.export_checkpoint(first.variables_by_name, prefix)
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [
        f".bert_model.ckpt.tmp-{os.getppid()}.data-00000-of-00001", f".bert_model.ckpt.tmp-{os.getppid()}.index"]
    loaded = modeling.BertPretrainer(CONFIG, seed=33)
    checkpoints.load_weights(loaded.variables_by_name, prefix)
    for name, variable in first.variables_by_name.items():
        assert np.array_equal(loaded.variables_by_name[name].numpy(), variable.numpy()), name


def test_a_checkpoint_copied_without_its_data_is_refused_before_any_work(tmp_path):
    model = modeling.BertPretrainer(CONFIG, seed=34)
    (tmp_path / "full").mkdir()
    checkpoints.export_checkpoint(model.variables_by_name, str(tmp_path / "full" / "bert_model.ckpt"))
    (tmp_path / "index_only").mkdir()
    shutil.copy(tmp_path / "full" / "bert_model.ckpt.index", tmp_path / "index_only")
    prefix = tmp_path / "index_only" / "bert_model.ckpt"
    message = (f"^--init_checkpoint: checkpoint {prefix} has its .index but no data file "
               f"\\(bert_model.ckpt.data-00000-of-00001\\): copy that too$")
    for check in (checkpoints.check_weights, checkpoints.load_weights):
        with pytest.raises(InputError, match=message):
            check(model.variables_by_name, prefix)


def test_a_released_model_directory_with_a_stale_checkpoint_file_suggests_its_own_checkpoint(tmp_path):
    model = modeling.BertPretrainer(CONFIG, seed=35)
    checkpoints.export_checkpoint(model.variables_by_name, str(tmp_path / "bert_model.ckpt"))
    # The state file of the machine the model was trained on, copied with it.
    (tmp_path / "checkpoint").write_text('model_checkpoint_path: "/home/someone/out/model.ckpt-1000000"\n'
                                         'all_model_checkpoint_paths: "/home/someone/out/model.ckpt-1000000"\n')
    with pytest.raises(InputError, match=f"which is missing; name the one to start from, e.g. {tmp_path / 'bert_model.ckpt'}$"):
        checkpoints.resolve_checkpoint(tmp_path)


def test_nvidia_and_tf1_adam_training_state_is_reported_as_training_state(tmp_path):
    model = modeling.BertModel(CONFIG, seed=36)
    tensors = {name: variable.numpy() for name, variable in model.weights.items()}
    # NVIDIA's gradient accumulation and loss scaling, TF1 Adam's powers, beside the weights.
    state = {"global_step": np.int64(9), "local_step": np.int64(1), "batch_finite": np.array(True),
             "beta1_power": np.float32(0.9), "beta2_power": np.float32(0.999), "current_loss_scale": np.float32(2.0),
             "bert/embeddings/word_embeddings/accum": tensors["bert/embeddings/word_embeddings"],
             "bert/embeddings/word_embeddings/adam_m": tensors["bert/embeddings/word_embeddings"]}
    prefix = write_tf1_checkpoint(tmp_path / "model.ckpt-9", {**tensors, **state})
    unused, _ = checkpoints.load_weights(modeling.BertModel(CONFIG, seed=37).weights, prefix)
    assert sorted(unused) == sorted(state)
    assert checkpoints.initialised_line(prefix, unused) == (
        f"initialised from {prefix}; {len(state)} training-state variable(s) (step, optimizer slots) not read")


def test_nvidia_float16_weights_load_from_their_float32_master_copies(tmp_path):
    # NVIDIA's --manual_fp16 runs keep each weight in float16 and its float32 master copy as NAME/shadow.
    weights = random_weights(CONFIG)
    tensors = {}
    for name, value in weights.items():
        tensors[name] = value.astype(np.float16)
        tensors[f"{name}/shadow"] = value
    prefix = write_tf1_checkpoint(tmp_path / "model.ckpt-5", tensors)
    model = modeling.BertPretrainer(CONFIG)
    unused, _ = checkpoints.load_weights(model.variables_by_name, prefix)
    assert unused == []
    for name, variable in model.variables_by_name.items():
        assert np.array_equal(variable.numpy(), weights[name]), name
    assert any(not np.array_equal(weights[name], tensors[name].astype(np.float32)) for name in weights)


def test_object_based_training_checkpoint_loads_by_reference_name(tmp_path):
    model = modeling.BertPretrainer(CONFIG, seed=5)
    path = tf.train.Checkpoint(weights=model.variables_by_name).write(str(tmp_path / "ckpt-1"))
    encoder = modeling.BertModel(CONFIG, seed=6)
    unused, _ = checkpoints.load_weights(encoder.weights, path)
    assert "cls/predictions/output_bias" in unused
    for name, variable in encoder.weights.items():
        assert (variable.numpy() == model.variables_by_name[name].numpy()).all()


def test_export_loads_in_the_reference_way(tmp_path):
    """The reference restores with tf.compat.v1.train.init_from_checkpoint into TF1 graph variables."""
    model = modeling.BertPretrainer(CONFIG, seed=21)
    prefix = str(tmp_path / "bert_model.ckpt")
    checkpoints.export_checkpoint(model.variables_by_name, prefix)
    graph = tf.Graph()
    with graph.as_default():
        tf1 = tf.compat.v1
        variables = {name: tf1.get_variable(name, shape=shape, initializer=tf1.zeros_initializer())
                     for name, shape in reference_shapes(CONFIG).items()}
        tf1.train.init_from_checkpoint(prefix, {name: name for name in variables})
        with tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            values = session.run(variables)
    for name, value in values.items():
        assert np.array_equal(value, model.variables_by_name[name].numpy()), name


def test_bfloat16_masked_lm_gradient_makes_no_float32_copy_of_the_logits():
    """The gradient kernel's top level writes the [rows, vocab] gradient once, in bfloat16."""
    rows, vocab = 40, 30522
    probabilities = tf.fill([rows, vocab], 1.0 / vocab)
    args = (tf.ones([rows]), probabilities, tf.zeros([rows], tf.int32), tf.bfloat16)
    hlo = modeling._logits_gradient.experimental_get_compiler_ir(*args)(stage="optimized_hlo")
    entry = hlo[hlo.index("ENTRY"):]
    entry = entry[: entry.index("\n}")]
    written = [line.split("=", 1)[1].split()[0] for line in entry.splitlines()[1:]
               if "=" in line and " parameter(" not in line]
    assert f"bf16[{rows},{vocab}]{{1,0}}" in written
    assert not any(shape.startswith(f"f32[{rows},{vocab}]") for shape in written), written


@pytest.mark.parametrize("dtype, tolerance", [(tf.float32, 1e-5), (tf.bfloat16, 1e-2)])
def test_masked_lm_cross_entropy_and_gradients_equal_tensorflows(dtype, tolerance):
    """The fused masked-LM softmax against TensorFlow's sparse cross-entropy and argmax, values and gradients."""
    rng = np.random.default_rng(3)
    rows, vocab = 37, 30522
    logits = tf.cast(tf.constant(rng.normal(0, 3, (rows, vocab)), tf.float32), dtype)
    bias = tf.constant(rng.normal(0, 1, vocab), tf.float32)
    with_bias = tf.cast(logits, tf.float32) + bias
    top = tf.argmax(with_bias, -1, output_type=tf.int32).numpy()
    # Every other row's label is its top logit, so the hits have both values.
    labels = tf.constant(np.where(np.arange(rows) % 2 == 0, top, rng.integers(0, vocab, rows)), tf.int32)
    upstream = tf.constant(rng.uniform(0.1, 2.0, rows), tf.float32)

    def loss_and_gradients(loss_function):
        with tf.GradientTape() as tape:
            tape.watch([logits, bias])
            loss = loss_function(logits, bias)
            weighted = tf.reduce_sum(loss * upstream)
        return loss, tape.gradient(weighted, [logits, bias])

    ours, (d_logits, d_bias) = loss_and_gradients(lambda l, b: modeling._cross_entropy_and_hits(l, b, labels)[0])
    want, (want_d_logits, want_d_bias) = loss_and_gradients(
        lambda l, b: tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=tf.cast(l, tf.float32) + b))

    assert d_logits.dtype == dtype and d_bias.dtype == tf.float32
    np.testing.assert_allclose(ours.numpy(), want.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tf.cast(d_logits, tf.float32).numpy(), tf.cast(want_d_logits, tf.float32).numpy(),
                               rtol=tolerance, atol=1e-6)
    np.testing.assert_allclose(d_bias.numpy(), want_d_bias.numpy(), rtol=1e-5, atol=1e-6)
    hits = modeling._cross_entropy_and_hits(logits, bias, labels)[1].numpy()
    np.testing.assert_array_equal(hits, (top == labels.numpy()).astype(np.float32))
    assert 0 < hits.sum() < rows


def test_masked_lm_hits_break_ties_as_argmax_does():
    """A label tied for the top logit with an earlier index is no hit, as in the reference's argmax accuracy."""
    logits = tf.constant([[1.0, 3.0, 3.0, 0.0], [5.0, 5.0, 1.0, 1.0], [0.0, 2.0, 2.0, 2.0]], tf.bfloat16)
    labels = tf.constant([2, 0, 1], tf.int32)
    hits = modeling._cross_entropy_and_hits(logits, tf.zeros([4]), labels)[1].numpy()
    assert tf.argmax(tf.cast(logits, tf.float32), -1).numpy().tolist() == [1, 0, 1]
    assert hits.tolist() == [0.0, 1.0, 1.0]


def test_a_classifier_head_of_another_number_of_labels_starts_afresh_in_training_and_is_refused_in_evaluation(tmp_path):
    from bert import classifier

    two_labels = classifier.BertClassifier(CONFIG, num_labels=2)
    prefix = str(tmp_path / "mrpc.ckpt")
    checkpoints.export_checkpoint(two_labels.variables_by_name, prefix)
    three_labels = classifier.BertClassifier(CONFIG, num_labels=3)
    initial = three_labels.variables_by_name["output_weights"].numpy()
    _, fresh = checkpoints.load_weights(three_labels.variables_by_name, prefix, optional=classifier.OPTIONAL_INIT)
    assert fresh == {"output_weights": [2, 32], "output_bias": [2]}
    assert (three_labels.variables_by_name["output_weights"].numpy() == initial).all()
    assert checkpoints.fresh_line(fresh, three_labels.variables_by_name) == (
        "newly initialised: output_weights (the checkpoint's [2, 32], this model's [3, 32]), output_bias (the "
        "checkpoint's [2], this model's [3])")
    with pytest.raises(InputError, match=r"variable 'output_weights' in .* has shape \[2, 32\], the model needs \[3, 32\] "
                                         r"\(is it a model of another task or number of labels\?\)"):
        checkpoints.load_weights(three_labels.variables_by_name, prefix, optional=classifier.OPTIONAL_INIT,
                                 restart_reshaped=False)
