"""Tests for bert.config: the bundled model configs, name resolution, and validation messages."""

import json
import os
import re
import threading
from pathlib import Path

import pytest

from bert.config import (
    ALIASES,
    CONFIG_DIR,
    BertConfig,
    check_seq_length,
    check_vocab,
    load_config,
    resolve_config_path,
)
from bert.errors import InputError
from tests.conftest import SHARED_DATA, unavailable

CONFIG_FILES = sorted(CONFIG_DIR.glob("*.json"))
NAME = re.compile(r"(?P<case>cased|uncased)_L-(?P<L>\d+)_H-(?P<H>\d+)_A-(?P<A>\d+)\.json")

VALID = {
    "attention_probs_dropout_prob": 0.1,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 128,
    "initializer_range": 0.02,
    "intermediate_size": 512,
    "max_position_embeddings": 512,
    "num_attention_heads": 2,
    "num_hidden_layers": 2,
    "type_vocab_size": 2,
    "vocab_size": 30522,
}


def test_all_bundled_sizes_are_present():
    names = {path.name for path in CONFIG_FILES}
    compact = {f"uncased_L-{L}_H-{H}_A-{H // 64}.json" for L in (2, 4, 6, 8, 10, 12) for H in (128, 256, 512, 768)}
    large = {"uncased_L-24_H-1024_A-16.json", "cased_L-12_H-768_A-12.json", "cased_L-24_H-1024_A-16.json"}
    assert names == compact | large


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.stem)
def test_bundled_config_matches_its_name(path):
    match = NAME.fullmatch(path.name)
    assert match, f"unexpected config file name {path.name}"
    config = load_config(path)
    hidden = int(match["H"])
    assert config.num_hidden_layers == int(match["L"])
    assert config.hidden_size == hidden
    assert config.num_attention_heads == int(match["A"])
    assert config.intermediate_size == 4 * hidden
    assert config.vocab_size == (28996 if match["case"] == "cased" else 30522)
    assert (config.hidden_act, config.hidden_dropout_prob, config.attention_probs_dropout_prob) == ("gelu", 0.1, 0.1)
    assert (config.max_position_embeddings, config.type_vocab_size, config.initializer_range) == (512, 2, 0.02)
    # The files are in the reference's format, so writing a loaded config back reproduces the file.
    assert config.to_json_string() == path.read_text(encoding="utf-8")
    assert list(json.loads(path.read_text(encoding="utf-8"))) == sorted(VALID)


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_alias_resolves_to_bundled_file(alias):
    path = resolve_config_path(alias)
    assert path == CONFIG_DIR / f"{ALIASES[alias]}.json"
    assert path.is_file()
    assert load_config(alias) == load_config(path)


def test_aliases_name_the_expected_sizes():
    sizes = {alias: (c.num_hidden_layers, c.hidden_size) for alias in ALIASES for c in [load_config(alias)]}
    assert sizes == {
        "tiny": (2, 128),
        "mini": (4, 256),
        "small": (4, 512),
        "medium": (8, 512),
        "base": (12, 768),
        "large": (24, 1024),
    }


def test_stem_and_path_resolve(tmp_path, monkeypatch):
    assert resolve_config_path("cased_L-12_H-768_A-12") == CONFIG_DIR / "cased_L-12_H-768_A-12.json"
    own = tmp_path / "my_config.json"
    own.write_text(json.dumps(VALID))
    assert resolve_config_path(own) == own
    assert load_config(str(own)) == BertConfig.from_dict(VALID)
    # A file in the working directory is found by its relative path.
    monkeypatch.chdir(tmp_path)
    assert resolve_config_path("my_config.json") == Path("my_config.json")


def test_a_config_given_through_a_pipe_is_read(tmp_path):
    # As bash's --bert_config_file=<(jq ... bert_config.json) gives it: a FIFO, neither a file nor missing.
    pipe = tmp_path / "config.pipe"
    os.mkfifo(pipe)
    writer = threading.Thread(target=lambda: pipe.write_text(json.dumps(VALID)))
    writer.start()
    try:
        assert load_config(str(pipe)) == BertConfig.from_dict(VALID)
    finally:
        if writer.is_alive():
            with open(pipe, encoding="utf-8"):
                pass
        writer.join()


@pytest.mark.parametrize("name", ["huge", "uncased_L-3_H-128_A-2", "nowhere/base", "missing.json"])
def test_unknown_name_is_refused(name):
    with pytest.raises(InputError, match=re.escape(name)):
        resolve_config_path(name)


def test_defaults_are_the_references():
    config = BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16)
    assert config.hidden_act == "gelu"
    assert (config.hidden_dropout_prob, config.attention_probs_dropout_prob) == (0.1, 0.1)
    assert (config.max_position_embeddings, config.type_vocab_size, config.initializer_range) == (512, 16, 0.02)


def test_round_trip_through_json_string():
    config = load_config("mini")
    again = BertConfig.from_dict(json.loads(config.to_json_string()))
    assert again == config
    assert again.to_dict() == config.to_dict()


def test_integer_probability_is_accepted_as_float():
    config = BertConfig.from_dict({**VALID, "hidden_dropout_prob": 0, "initializer_range": 1})
    assert config.hidden_dropout_prob == 0.0 and isinstance(config.hidden_dropout_prob, float)
    assert isinstance(config.initializer_range, float)


def write(tmp_path, content):
    path = tmp_path / "bad_config.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content, indent=2), encoding="utf-8")
    return path


def assert_refused(path, *fragments):
    with pytest.raises(InputError) as raised:
        BertConfig.from_json_file(path)
    message = str(raised.value)
    assert "\n" not in message
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def without(key):
    return {k: v for k, v in VALID.items() if k != key}


BAD_VALUES = [
    ("hidden_size", 128.0, "integer"),
    ("hidden_size", True, "integer"),
    ("hidden_size", "128", "integer"),
    ("num_hidden_layers", None, "integer"),
    ("num_hidden_layers", 0, "at least 1"),
    ("vocab_size", -5, "at least 1"),
    ("max_position_embeddings", 0, "at least 1"),
    ("type_vocab_size", 1.5, "integer"),
    ("intermediate_size", 0, "at least 1"),
    ("hidden_dropout_prob", 1.0, "[0, 1)"),
    ("hidden_dropout_prob", -0.1, "[0, 1)"),
    ("attention_probs_dropout_prob", "0.1", "number"),
    ("attention_probs_dropout_prob", False, "number"),
    ("initializer_range", 0, "positive"),
    ("initializer_range", "0.02", "number"),
    ("hidden_act", "swish", "gelu_exact"),
    ("hidden_act", 1, "gelu"),
]


@pytest.mark.parametrize("key,value,expected", BAD_VALUES, ids=repr)
def test_bad_value_is_refused(tmp_path, key, value, expected):
    assert_refused(write(tmp_path, {**VALID, key: value}), f"'{key}'", expected)


@pytest.mark.parametrize("written,read", [("GELU", "gelu"), ("Linear", "linear"), ("tanh", "tanh"), ("", "linear"),
                                          (None, "linear")])
def test_activation_name_is_read_in_any_case_as_the_reference_reads_it(tmp_path, written, read):
    assert BertConfig.from_json_file(write(tmp_path, {**VALID, "hidden_act": written})).hidden_act == read


def test_nan_probability_is_refused(tmp_path):
    text = json.dumps(VALID).replace('"hidden_dropout_prob": 0.1', '"hidden_dropout_prob": NaN')
    assert_refused(write(tmp_path, text), "'hidden_dropout_prob'")


REQUIRED = ["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"]


@pytest.mark.parametrize("key", REQUIRED)
def test_missing_required_key_is_refused(tmp_path, key):
    assert_refused(write(tmp_path, without(key)), "missing", f"'{key}'")


def test_missing_optional_key_takes_the_default(tmp_path):
    config = BertConfig.from_json_file(write(tmp_path, without("type_vocab_size")))
    assert config.type_vocab_size == 16


def test_unknown_key_is_refused_with_a_suggestion(tmp_path):
    path = write(tmp_path, {**without("hidden_size"), "hiden_size": 128})
    assert_refused(path, "unknown key 'hiden_size'", "'hidden_size'")


def test_unrelated_unknown_key_lists_the_known_keys(tmp_path):
    assert_refused(write(tmp_path, {**VALID, "output_past": True}), "'output_past'", "known keys")


def test_a_hugging_face_config_is_sent_to_bert_convert(tmp_path):
    hugging_face = {**VALID, "architectures": ["BertForMaskedLM"], "layer_norm_eps": 1e-12, "model_type": "bert",
                    "pad_token_id": 0, "position_embedding_type": "absolute", "transformers_version": "4.40.0"}
    assert_refused(write(tmp_path, hugging_face), "Hugging Face config.json", "'model_type'", "bert-convert --from=hf")


def test_released_multilingual_config_loads_ignoring_the_keys_the_reference_never_reads(tmp_path):
    # multi_cased_L-12_H-768_A-12/bert_config.json as Google released it (the Chinese model's has the
    # same extra keys, vocab_size 21128).
    released = {
        "attention_probs_dropout_prob": 0.1, "directionality": "bidi", "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1, "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": 3072,
        "max_position_embeddings": 512, "num_attention_heads": 12, "num_hidden_layers": 12,
        "pooler_fc_size": 768, "pooler_num_attention_heads": 12, "pooler_num_fc_layers": 3,
        "pooler_size_per_head": 128, "pooler_type": "first_token_transform", "type_vocab_size": 2,
        "vocab_size": 119547,
    }
    config = BertConfig.from_json_file(write(tmp_path, released))
    plain = {key: value for key, value in released.items() if key in VALID}
    assert config == BertConfig.from_dict(plain)
    assert (config.vocab_size, config.hidden_size, config.num_hidden_layers) == (119547, 768, 12)


def test_indivisible_hidden_size_is_refused(tmp_path):
    path = write(tmp_path, {**VALID, "hidden_size": 130, "num_attention_heads": 4})
    assert_refused(path, "'hidden_size'", "'num_attention_heads'", "divisible")


def test_invalid_json_reports_the_line(tmp_path):
    # Line 3 loses its comma, so parsing fails on line 4.
    text = json.dumps(VALID, indent=2).replace('"gelu",', '"gelu"')
    assert_refused(write(tmp_path, text), "invalid JSON", "line 4")


@pytest.mark.parametrize("content,kind", [([1, 2], "array"), ("null", "null"), ('"base"', "string")])
def test_non_object_is_refused(tmp_path, content, kind):
    assert_refused(write(tmp_path, content), "JSON object", kind)


def test_missing_file_is_refused(tmp_path):
    assert_refused(tmp_path / "absent.json", "cannot read")


def test_directory_is_refused(tmp_path):
    directory = tmp_path / "dir.json"
    directory.mkdir()
    assert_refused(directory, "cannot read")


def test_a_models_directory_names_the_bert_config_json_in_it(tmp_path):
    model = tmp_path / "uncased_L-2_H-128_A-2"
    model.mkdir()
    with pytest.raises(InputError, match=f"^{re.escape(str(model))}: a directory without a bert_config.json; name the "
                                         "model config file$"):
        load_config(str(model))
    (model / "bert_config.json").write_text(json.dumps(VALID))
    assert resolve_config_path(str(model)) == model / "bert_config.json"
    assert load_config(str(model)) == BertConfig.from_dict(VALID)


def test_a_byte_order_mark_before_the_json_is_read_past(tmp_path):
    path = tmp_path / "bert_config.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(VALID).encode())
    assert BertConfig.from_json_file(path) == BertConfig.from_dict(VALID)


def test_non_utf8_file_is_refused(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes(b'{"hidden_act": "g\xe9lu"}')
    assert_refused(path, "UTF-8")


def vocab_lines(name):
    path = SHARED_DATA / "vocab" / name
    if not path.is_file():
        unavailable(f"shared vocabulary {path} is not present")
    with open(path, encoding="utf-8") as f:
        return path, sum(1 for _ in f)


@pytest.mark.parametrize("name,count", [("uncased_vocab.txt", 30522), ("cased_vocab.txt", 28996)])
def test_check_vocab_against_the_real_vocabularies(name, count):
    path, size = vocab_lines(name)
    assert size == count
    prefix = name.split("_")[0]
    check_vocab(load_config(f"{prefix}_L-12_H-768_A-12"), size, path)
    check_vocab(load_config(f"{prefix}_L-24_H-1024_A-16"), size, path)


def test_check_vocab_refuses_a_vocabulary_larger_than_the_model():
    path, size = vocab_lines("uncased_vocab.txt")
    with pytest.raises(InputError) as raised:
        check_vocab(load_config("cased_L-12_H-768_A-12"), size, path)
    message = str(raised.value)
    assert str(path) in message and "'vocab_size'" in message and "NaN" in message
    assert "30522" in message and "28996" in message


def test_check_vocab_allows_a_smaller_vocabulary():
    check_vocab(load_config("tiny"), 100, "small_vocab.txt")


def test_check_seq_length():
    config = load_config("tiny")
    check_seq_length(config, 512)
    with pytest.raises(InputError, match=r"--max_seq_length=513 .*'max_position_embeddings' is 512"):
        check_seq_length(config, 513)


def test_an_alias_without_the_bundled_configs_says_what_is_missing(tmp_path, monkeypatch):
    # A wheel installed without the source checkout has no configs/models.
    from bert import config as bert_config

    monkeypatch.setattr(bert_config, "CONFIG_DIR", tmp_path / "configs" / "models")
    with pytest.raises(InputError, match=r"^mini: an alias of a config under configs/models, which comes with the source "
                                         r"checkout"):
        bert_config.resolve_config_path("mini")
