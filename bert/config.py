"""Model hyperparameters: the `BertConfig` dataclass and the loading and checking of its JSON files.

The files under configs/models use the format of the `bert_config.json` that ships with Google's
released checkpoints, so a checkpoint's own config file can be given in place of one of ours. A model
is named by a path to such a file, by a file stem under configs/models (`uncased_L-4_H-256_A-4`), or
by one of the short `ALIASES` (`mini`).

Every problem with a config file is reported as an `InputError` naming the file and the offending key:
the reference reads the file with no checks, so a typo in a key name is silently ignored and a wrong
value surfaces, if at all, as a shape error deep inside graph construction.
"""

import dataclasses
import difflib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from bert.errors import InputError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "models"

ALIASES = {
    "tiny": "uncased_L-2_H-128_A-2",
    "mini": "uncased_L-4_H-256_A-4",
    "small": "uncased_L-4_H-512_A-8",
    "medium": "uncased_L-8_H-512_A-8",
    "base": "uncased_L-12_H-768_A-12",
    "large": "uncased_L-24_H-1024_A-16",
}

# "gelu" is the reference's tanh approximation, which the released checkpoints were trained with;
# "gelu_exact" is the erf form, kept separate so that loading a checkpoint never changes its activation.
# "linear" (no activation) is the reference's fourth name.
HIDDEN_ACTS = ("gelu", "gelu_exact", "relu", "tanh", "linear")

_SIZE_KEYS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
    "type_vocab_size",
)
_PROBABILITY_KEYS = ("hidden_dropout_prob", "attention_probs_dropout_prob")

# Keys of some of Google's released bert_config.json files (the multilingual, Chinese and cased large
# models) that the reference's code never reads: its pooler is always the first token's dense + tanh.
# They are accepted and ignored so that those checkpoints' own config files load as they are.
RELEASED_UNUSED_KEYS = frozenset({
    "directionality",
    "pooler_fc_size",
    "pooler_num_attention_heads",
    "pooler_num_fc_layers",
    "pooler_size_per_head",
    "pooler_type",
})

# Keys that mark a Hugging Face config.json, whose model is not a TF1 checkpoint either (and whose "gelu"
# is the exact one): such a model goes through bert-convert.
HUGGING_FACE_KEYS = ("model_type", "architectures", "transformers_version")


@dataclass(frozen=True)
class BertConfig:
    """The hyperparameters of a BERT model, with the reference's defaults for the optional ones.

    Construct it with `from_dict` or `from_json_file`, which validate; the constructor itself trusts
    its arguments.
    """

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    # 16, not the 2 that BERT uses, because that is the reference's default; every file under
    # configs/models sets it explicitly.
    type_vocab_size: int = 16
    initializer_range: float = 0.02

    @classmethod
    def from_dict(cls, d, source="<dict>"):
        """A validated config from the parsed JSON `d`; `source` names it in error messages."""
        if not isinstance(d, dict):
            raise InputError(f"{source}: a model config must be a JSON object of keys, got {_json_type(d)}")
        known = [field.name for field in dataclasses.fields(cls)]
        d = {key: value for key, value in d.items() if key not in RELEASED_UNUSED_KEYS}
        hugging_face = [key for key in HUGGING_FACE_KEYS if key in d]
        if hugging_face:
            raise InputError(
                f"{source}: a Hugging Face config.json (it has key {hugging_face[0]!r}), not a bert_config.json; "
                f"convert the model with bert-convert --from=hf, which writes both the checkpoint and its bert_config.json"
            )
        for key in d:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (known keys: {', '.join(sorted(known))})"
                raise InputError(f"{source}: unknown key {key!r}{hint}")
        for field in dataclasses.fields(cls):
            if field.default is dataclasses.MISSING and field.name not in d:
                raise InputError(f"{source}: missing required key {field.name!r}")
        values = {key: _checked_value(source, key, value) for key, value in d.items()}
        config = cls(**values)
        if config.hidden_size % config.num_attention_heads:
            raise InputError(
                f"{source}: key 'hidden_size' ({config.hidden_size}) must be divisible by "
                f"key 'num_attention_heads' ({config.num_attention_heads})"
            )
        return config

    @classmethod
    def from_json_file(cls, path):
        """A validated config read from the JSON file at `path`."""
        source = os.fspath(path)
        try:
            # utf-8-sig: a byte-order mark, as some Windows editors write, is no error.
            text = Path(path).read_text(encoding="utf-8-sig")
        except OSError as e:
            raise InputError(f"{source}: cannot read model config: {e.strerror or e}") from None
        except UnicodeDecodeError as e:
            raise InputError(f"{source}: model config is not UTF-8 text: {e.reason} at byte {e.start}") from None
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"{source}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
        return cls.from_dict(d, source=source)

    def to_dict(self):
        # Sorted like the reference's to_json_string, so a loaded file is written back byte for byte.
        return dict(sorted(dataclasses.asdict(self).items()))

    def to_json_string(self):
        return json.dumps(self.to_dict(), indent=2) + "\n"


def _json_type(value):
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _checked_value(source, key, value):
    """`value` for `key`, normalised, or an InputError saying what is wrong with it."""
    prefix = f"{source}: key {key!r}"
    # bool is a subclass of int in Python, but `true` in a config file is a mistake, never a size.
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if key in _SIZE_KEYS:
        if type(value) is not int:
            raise InputError(f"{prefix} must be an integer, got {_json_type(value)} {json.dumps(value)}")
        if value < 1:
            raise InputError(f"{prefix} must be at least 1, got {value}")
        return value
    if key in _PROBABILITY_KEYS:
        if not is_number:
            raise InputError(f"{prefix} must be a number, got {_json_type(value)} {json.dumps(value)}")
        if not 0 <= value < 1:
            raise InputError(f"{prefix} must be a probability in [0, 1), got {value}")
        return float(value)
    if key == "initializer_range":
        if not is_number:
            raise InputError(f"{prefix} must be a number, got {_json_type(value)} {json.dumps(value)}")
        if not (math.isfinite(value) and value > 0):
            raise InputError(f"{prefix} must be a positive number, got {value}")
        return float(value)
    # The only key left is hidden_act, whose name the reference reads in any case ("GELU" is "gelu"), and
    # empty or null as no activation at all.
    if value is None or value == "":
        return "linear"
    if not isinstance(value, str) or value.lower() not in HIDDEN_ACTS:
        raise InputError(f"{prefix} must be one of {', '.join(HIDDEN_ACTS)}, got {json.dumps(value)}")
    return value.lower()


def resolve_config_path(name_or_path):
    """The config file named by a path, an alias from `ALIASES`, or a file stem under configs/models."""
    text = os.fspath(name_or_path)
    path = Path(text)
    # A pipe too (bash's <(...) names one as /dev/fd/N): it is read once, as a file is.
    if path.is_file() or path.is_fifo() or path.is_char_device():
        return path
    # A released model's directory, as --init_checkpoint may name its checkpoint.
    if path.is_dir():
        if (path / "bert_config.json").is_file():
            return path / "bert_config.json"
        raise InputError(f"{text}: a directory without a bert_config.json; name the model config file")
    if text in ALIASES and not CONFIG_DIR.is_dir():
        raise InputError(f"{text}: an alias of a config under configs/models, which comes with the source checkout "
                         f"(bin/setup installs from it) and this installation lacks; give a bert_config.json's path")
    if text in ALIASES:
        return CONFIG_DIR / f"{ALIASES[text]}.json"
    # Only a bare stem is looked up, so that a mistyped path is not answered with a bundled config.
    if path.name == text and (CONFIG_DIR / f"{text}.json").is_file():
        return CONFIG_DIR / f"{text}.json"
    raise InputError(
        f"{text}: no such model config file, and not an alias ({', '.join(ALIASES)}) "
        f"or a config name under {CONFIG_DIR}"
    )


def load_config(name_or_path):
    """The validated config named by a path, an alias, or a file stem under configs/models."""
    return BertConfig.from_json_file(resolve_config_path(name_or_path))


def check_vocab(config, vocab_size, source):
    """Refuse a vocabulary, read from `source`, with more token ids than the model's embedding table has rows."""
    if config.vocab_size < vocab_size:
        raise InputError(
            f"{source}: vocabulary has {vocab_size} token ids but the model config's key 'vocab_size' is "
            f"{config.vocab_size}; token ids from {config.vocab_size} up would fall outside the embedding "
            f"table, which the reference does not check and silently turns into NaN losses"
        )


def check_seq_length(config, max_seq_length):
    """Refuse sequences longer than the model has position embeddings for."""
    if max_seq_length > config.max_position_embeddings:
        raise InputError(
            f"--max_seq_length={max_seq_length} is longer than the model has positions for (--bert_config_file's "
            f"'max_position_embeddings' is {config.max_position_embeddings}); lower --max_seq_length"
        )
