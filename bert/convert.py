"""bert-convert: Hugging Face BERT directories to checkpoints in the reference's TF1 naming, and back.

    bert-convert --from=hf --input=all-MiniLM-L6-v2/ --output=minilm/      # -> bert_model.ckpt, bert_config.json, vocab.txt
    bert-convert --to=hf --input=minilm/ --output=minilm-hf/               # -> model.safetensors, config.json, vocab.txt

A Hugging Face directory holds `config.json` (keys it leaves out take transformers' defaults),
`model.safetensors` (read with the safetensors NumPy loader, no PyTorch needed) or `pytorch_model.bin`
(needs torch), or the shards their `*.index.json` names, and `vocab.txt` or, as transformers 5 saves a
tokenizer, `tokenizer.json` alone (its WordPiece vocabulary becomes vocab.txt). Weights map one to
one: `encoder.layer.3.attention.self.query.weight` [out, in] is `bert/encoder/layer_3/attention/self/
query/kernel` [in, out]; LayerNorm weight/bias are gamma/beta; the pre-training, sequence
classification and question answering heads map to `cls/...`, `output_weights`/`output_bias` and
`cls/squad/...`; a token classifier's or a multiple-choice model's `classifier` (by config.json's
`architectures`) is left out, and a causal decoder (`is_decoder`) is refused. Hugging Face's "gelu"
is the exact erf GELU, which this project calls "gelu_exact"; its "gelu_new" is the reference's tanh
"gelu". The output directory must be new, empty or hold only files the conversion writes: a loader
would read a stray tokenizer.json or shard beside them.
"""

import json
import os
import re
import sys

import numpy as np
from absl import flags

from bert import checkpoints, cli, config as bert_config, fileio, modeling, tokenization
from bert.errors import InputError

FLAGS = flags.FLAGS

# transformers' gelu_python is its erf GELU, and gelu_fast and gelu_accurate the reference's tanh one (constants
# written out or precomputed).
HF_TO_OURS_ACTIVATION = {"gelu": "gelu_exact", "gelu_python": "gelu_exact", "gelu_new": "gelu", "gelu_pytorch_tanh": "gelu",
                         "gelu_fast": "gelu", "gelu_accurate": "gelu", "relu": "relu", "tanh": "tanh", "linear": "linear"}
HF_DEFAULTS = {
    "vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
    "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 512, "type_vocab_size": 2,
    "initializer_range": 0.02,
}
OURS_TO_HF_ACTIVATION = {"gelu_exact": "gelu", "gelu": "gelu_new", "relu": "relu", "tanh": "tanh", "linear": "linear"}

# Hugging Face sub-module path -> reference scope, for every dense and LayerNorm inside a layer.
_LAYER_PARTS = {
    "attention.self.query": "attention/self/query",
    "attention.self.key": "attention/self/key",
    "attention.self.value": "attention/self/value",
    "attention.output.dense": "attention/output/dense",
    "attention.output.LayerNorm": "attention/output/LayerNorm",
    "intermediate.dense": "intermediate/dense",
    "output.dense": "output/dense",
    "output.LayerNorm": "output/LayerNorm",
}
_OTHER_PARTS = {
    "embeddings.LayerNorm": "bert/embeddings/LayerNorm",
    "pooler.dense": "bert/pooler/dense",
    "cls.predictions.transform.dense": "cls/predictions/transform/dense",
    "cls.predictions.transform.LayerNorm": "cls/predictions/transform/LayerNorm",
}
# Tensors whose layout is the same in both ([rows, H] tables and [num_outputs, H] head weights).
_UNCHANGED = {
    "embeddings.word_embeddings.weight": "bert/embeddings/word_embeddings",
    "embeddings.position_embeddings.weight": "bert/embeddings/position_embeddings",
    "embeddings.token_type_embeddings.weight": "bert/embeddings/token_type_embeddings",
    "cls.predictions.bias": "cls/predictions/output_bias",
    "cls.seq_relationship.weight": "cls/seq_relationship/output_weights",
    "cls.seq_relationship.bias": "cls/seq_relationship/output_bias",
    "classifier.weight": "output_weights",
    "classifier.bias": "output_bias",
    "qa_outputs.weight": "cls/squad/output_weights",
    "qa_outputs.bias": "cls/squad/output_bias",
}
# The reference's name -> the Hugging Face name, "bert." prefixed where the full models prefix it.
_UNCHANGED_BY_OURS = {ours: ("bert." + hf if hf.startswith("embeddings.") else hf) for hf, ours in _UNCHANGED.items()}
# Present in Hugging Face files but not weights of the model: buffers, and the decoder tied to the embeddings.
_NOT_WEIGHTS = {"embeddings.position_ids", "cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}
_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.(.+)\.(weight|bias|gamma|beta)$")
_PART = re.compile(r"^(.+)\.(weight|bias|gamma|beta)$")


def define_flags():
    flags.DEFINE_enum("from", None, ["hf"], "Convert from this format to the reference's TF1 checkpoint.")
    flags.DEFINE_enum("to", None, ["hf"], "Convert a TF1-named checkpoint to this format.")
    flags.DEFINE_string("input", None, "--from=hf: a Hugging Face model directory; --to=hf: a checkpoint (prefix or directory).")
    flags.DEFINE_string("output", None, "The directory to write.")
    flags.DEFINE_string("bert_config_file", None, "--to=hf: the model's bert_config.json (default: beside the checkpoint).")
    flags.DEFINE_string("vocab_file", None, "The vocab.txt to copy (default: the one in or beside --input).")
    flags.DEFINE_bool("do_lower_case", None, "--to=hf: whether the tokenizer lower-cases (written to tokenizer_config.json; "
                      "default: false for a vocabulary holding capitalised words, else true).")


def _hf_weight_name(name):
    """The reference's name of a Hugging Face tensor, or None if it is not a weight this model has."""
    name = name.removeprefix("bert.")
    if name in _UNCHANGED:
        return _UNCHANGED[name], False
    scope, kind = None, None
    match = _LAYER.match(name)
    if match:
        layer, part, kind = match.groups()
        scope = _LAYER_PARTS.get(part) and f"bert/encoder/layer_{layer}/{_LAYER_PARTS[part]}"
    elif match := _PART.match(name):
        part, kind = match.groups()
        scope = _OTHER_PARTS.get(part)
    leaf = _leaf(scope, kind) if scope else None
    if leaf is None:
        return None, False
    return f"{scope}/{leaf}", leaf == "kernel"


def _leaf(scope, kind):
    """The reference's name of a tensor of `kind` in `scope`, or None where it has none (a gamma outside a LayerNorm)."""
    if scope.endswith("LayerNorm"):
        return {"weight": "gamma", "gamma": "gamma", "bias": "beta", "beta": "beta"}[kind]
    return {"weight": "kernel", "bias": "bias"}.get(kind)


def read_hf_config(path):
    """(A Hugging Face config.json as our BertConfig, the file's own JSON object); refuses what this model does
    not compute."""
    try:
        with open(path, encoding="utf-8") as f:
            hf = json.load(f)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read: {e}") from None
    if not isinstance(hf, dict):
        raise InputError(f"{path}: not a model config (a JSON object)")
    for key, kind, name in (("layer_norm_eps", (int, float), "a number"), ("hidden_act", str, "a string")):
        if key in hf and (not isinstance(hf[key], kind) or isinstance(hf[key], bool)):
            raise InputError(f"{path}: key '{key}' is {json.dumps(hf[key])}, not {name}")
    if hf.get("model_type", "bert") != "bert":
        raise InputError(f"{path}: key 'model_type' is '{hf['model_type']}', only 'bert' converts")
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise InputError(f"{path}: key 'position_embedding_type' is '{hf['position_embedding_type']}', only 'absolute' is BERT's")
    if hf.get("is_decoder"):
        raise InputError(f"{path}: key 'is_decoder' is true: a causal decoder, whose tokens see only those before them; "
                         f"BERT's encoder attends both ways")
    if abs(hf.get("layer_norm_eps", 1e-12) - modeling.LAYER_NORM_EPSILON) > 1e-15:
        raise InputError(f"{path}: key 'layer_norm_eps' is {hf['layer_norm_eps']}, BERT's LayerNorm epsilon is 1e-12")
    activation = hf.get("hidden_act", "gelu")
    if activation not in HF_TO_OURS_ACTIVATION:
        raise InputError(f"{path}: key 'hidden_act' is '{activation}' (supported: {', '.join(HF_TO_OURS_ACTIVATION)})")
    # A key left out takes transformers' BertConfig default, as transformers loads the file; the weights' shapes
    # are checked against the result.
    values = {key: hf.get(key, default) for key, default in HF_DEFAULTS.items()}
    values["hidden_act"] = HF_TO_OURS_ACTIVATION[activation]
    return bert_config.BertConfig.from_dict(values, source=path), hf


def read_hf_weights(directory):
    """name -> array from model.safetensors, or pytorch_model.bin (which needs torch), or the shards the index
    of either (`*.index.json`, as save_pretrained writes for a large model) names."""
    for name, load in (("model.safetensors", _load_safetensors), ("pytorch_model.bin", _load_pytorch)):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return load(path)
        index = f"{path}.index.json"
        if os.path.isfile(index):
            tensors = {}
            for shard in _shards(index):
                tensors.update(load(os.path.join(directory, shard)))
            return tensors
    raise InputError(f"--input: {directory} has no model.safetensors or pytorch_model.bin, nor an index of their "
                     f"shards (model.safetensors.index.json)")


def _shards(index):
    """The shard files a Hugging Face `*.index.json` maps the tensors to."""
    try:
        with open(index, encoding="utf-8") as f:
            weight_map = json.load(f)["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise InputError(f"{index}: not an index of shards (a JSON object whose 'weight_map' maps tensors to files): "
                         f"{e}") from None
    if not shards or not all(isinstance(shard, str) and os.path.basename(shard) == shard for shard in shards):
        raise InputError(f"{index}: its 'weight_map' names no shard files in its directory")
    return shards


def _load_safetensors(path):
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read: {e}") from None


def _load_pytorch(path):
    try:
        import torch
    except ImportError:
        raise InputError(f"{path}: reading PyTorch files needs torch (pip install torch), or give model.safetensors") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError... for a damaged file
        raise InputError(f"{path}: cannot read: {e}") from None
    return {name: tensor.float().numpy() for name, tensor in state.items()}


def hf_to_reference(hf_weights, config, config_path, architectures=()):
    """TF1-named float32 arrays from Hugging Face tensors; raises InputError naming a missing or misshaped one.

    A `classifier` head is the reference's sequence classifier only in a BertForSequenceClassification (or a
    model that names no class): a token classifier's or a multiple-choice model's is left out.
    Returns (weights, names of tensors that were not converted, names of the classifier head left out).
    """
    weights, unused, left_out = {}, [], []
    sequence_classifier = not architectures or "BertForSequenceClassification" in architectures
    for name, value in hf_weights.items():
        if name.removeprefix("bert.") in _NOT_WEIGHTS:
            continue
        ours, transpose = _hf_weight_name(name)
        if ours in ("output_weights", "output_bias") and not sequence_classifier:
            left_out.append(name)
            continue
        if ours is None:
            unused.append(name)
            continue
        value = np.asarray(value, np.float32)
        weights[ours] = value.T.copy() if transpose else value
    # BERT's masked-LM decoder is its word embeddings and the output bias: a model that trained them apart
    # (tie_word_embeddings false) would lose its own decoder here.
    for decoder, tied in (("cls.predictions.decoder.weight", "bert/embeddings/word_embeddings"),
                          ("cls.predictions.decoder.bias", "cls/predictions/output_bias")):
        value = hf_weights.get(decoder)
        if value is not None and tied in weights and not np.array_equal(np.asarray(value, np.float32), weights[tied]):
            raise InputError(f"--input: its masked-LM decoder ({decoder}) differs from {tied}; BERT ties the two, so "
                             f"this model cannot be converted as it was trained")
    # A masked-LM head saved with its decoder's bias alone (no cls.predictions.bias) keeps it.
    decoder_bias = hf_weights.get("cls.predictions.decoder.bias")
    if decoder_bias is not None and "cls/predictions/output_bias" not in weights:
        weights["cls/predictions/output_bias"] = np.asarray(decoder_bias, np.float32)
    expected = modeling.BertModel(config).weights
    # A model without a pooler converts (fine-tuning starts one); a pooler is whole or refused.
    pooled = any(name.startswith("bert/pooler/") for name in weights)
    for name, variable in expected.items():
        if name.startswith("bert/pooler/") and not pooled:
            continue
        if name not in weights:
            raise InputError(f"--input: its weights have no tensor '{_hf_name_of(name).removeprefix('bert.')}' (the "
                             f"reference's '{name}'); is it a BERT model of its config.json?")
        if list(weights[name].shape) != variable.shape.as_list():
            raise InputError(f"--input: tensor '{_hf_name_of(name).removeprefix('bert.')}' (the reference's '{name}') is "
                             f"{list(weights[name].shape)} where {config_path} implies {variable.shape.as_list()}")
    return weights, sorted(unused), sorted(left_out)


def _hf_name_of(name):
    """The Hugging Face name of the reference's variable `name`, with the "bert." prefix of the full models."""
    return _UNCHANGED_BY_OURS.get(name) or _reference_to_hf_name(name)[0] or name


def reference_to_hf(weights):
    """Hugging Face tensors (BertForPreTraining-style names) from TF1-named arrays."""
    out = {}
    for name, value in weights.items():
        if name in _UNCHANGED_BY_OURS:
            transpose = False
        else:
            hf_name, transpose = _reference_to_hf_name(name)
            if hf_name is None:
                continue
        out[_hf_name_of(name)] = np.ascontiguousarray(value.T if transpose else value, np.float32)
    if "cls.predictions.bias" in out:
        out["cls.predictions.decoder.weight"] = out["bert.embeddings.word_embeddings.weight"].copy()
        out["cls.predictions.decoder.bias"] = out["cls.predictions.bias"].copy()
    return out


def _reference_to_hf_name(name):
    match = re.match(r"^bert/encoder/layer_(\d+)/(.+)/(kernel|bias|gamma|beta)$", name)
    scopes = {v: k for k, v in _LAYER_PARTS.items()}
    others = {v: k for k, v in _OTHER_PARTS.items()}
    leaf = {"kernel": "weight", "gamma": "weight", "bias": "bias", "beta": "bias"}
    if match and match.group(2) in scopes:
        layer, scope, kind = match.groups()
        return f"bert.encoder.layer.{layer}.{scopes[scope]}.{leaf[kind]}", kind == "kernel"
    scope, _, kind = name.rpartition("/")
    if scope in others and kind in leaf:
        prefix = "bert." if scope.startswith("bert/") else ""
        return f"{prefix}{others[scope]}.{leaf[kind]}", kind == "kernel"
    return None, False


def _find_vocab(config, *directories):
    """(The vocabulary's file, its tokens in id order), or (None, None): --vocab_file, or else the vocab.txt, or
    failing that the tokenizer.json (as transformers 5 saves a tokenizer), of the first of `directories` holding
    one; checked against `config`."""
    if FLAGS.vocab_file:
        if not os.path.isfile(FLAGS.vocab_file):
            raise InputError(f"--vocab_file: file not found: {FLAGS.vocab_file}")
        if FLAGS.vocab_file.endswith(".model"):
            raise InputError(f"--vocab_file: {FLAGS.vocab_file} is a SentencePiece model; bert-convert carries only a "
                             f"WordPiece vocab.txt, the one Hugging Face's BertTokenizer reads")
        found = FLAGS.vocab_file
    else:
        candidates = [os.path.join(d, name) for name in ("vocab.txt", "tokenizer.json") for d in directories]
        found = next((path for path in candidates if os.path.isfile(path)), None)
    if not found:
        return None, None
    if found.endswith(".json"):
        tokens = _tokenizer_json_vocab(found)
        size = len(tokens)
    else:
        # Ids are line numbers: a repeated token keeps its last, and leaves fewer tokens than ids.
        ids = tokenization.load_vocab(found)
        tokens, size = sorted(ids, key=ids.get), max(ids.values()) + 1
    bert_config.check_vocab(config, size, found)
    return found, tokens


def _write_vocab(found, tokens, directory):
    """vocab.txt in `directory`: a copy of the vocab.txt found, byte for byte, or the tokens of a tokenizer.json."""
    target = os.path.join(directory, "vocab.txt")
    if not found.endswith(".json"):
        fileio.copy_file(found, target)
        return
    with fileio.AtomicFile(target) as f:
        f.write("".join(f"{token}\n" for token in tokens))


def _tokenizer_json_vocab(path):
    """The WordPiece tokens of a Hugging Face tokenizer.json, its added tokens included, in id order; raises
    InputError for another kind."""
    try:
        with open(path, encoding="utf-8") as f:
            tokenizer = json.load(f)
        model = tokenizer["model"]
        kind, vocab = model.get("type"), model["vocab"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise InputError(f"{path}: not a Hugging Face tokenizer.json (a JSON object with a 'model' and its 'vocab'): "
                         f"{e}") from None
    if kind != "WordPiece" or not isinstance(vocab, dict):
        raise InputError(f"{path}: its tokenizer is {kind}, not WordPiece: bert-convert carries only a WordPiece "
                         f"vocabulary, the one BERT's tokenizer reads")
    vocab = dict(vocab)
    try:
        # Tokens added after training ([E1], ...) take ids past the model's vocabulary.
        for added in tokenizer.get("added_tokens") or []:
            vocab.setdefault(added["content"], added["id"])
    except (KeyError, TypeError, AttributeError) as e:
        raise InputError(f"{path}: its 'added_tokens' are not a list of objects with a 'content' and an 'id': {e}") from None
    wrong = next((token for token, i in vocab.items() if type(i) is not int), None)
    if wrong is not None:
        raise InputError(f"{path}: the id of token {json.dumps(wrong)} is {json.dumps(vocab[wrong])}, not an integer")
    if sorted(vocab.values()) != list(range(len(vocab))):
        raise InputError(f"{path}: its WordPiece ids are not 0 to {len(vocab) - 1}, one a token")
    return sorted(vocab, key=vocab.get)


def _check_output_dir(output, writes):
    """Refuses an existing --output holding a file this conversion does not write (names in `writes`): beside the
    new files a loader would read it, a stale tokenizer.json or vocab.txt, another model's shards."""
    if not os.path.isdir(output):
        return
    stray = sorted(name for name in os.listdir(output) if not name.startswith(".") and name not in writes)
    if stray:
        raise InputError(f"--output: {output} holds {stray[0]}, which this conversion does not write and a loader could "
                         f"read beside the new files: use a new or empty directory")


def from_hf(directory, output):
    if not os.path.isdir(directory):
        raise InputError(f"--input: not a directory: {directory}")
    config_path = os.path.join(directory, "config.json")
    config, hf_config = read_hf_config(config_path)
    architectures = hf_config.get("architectures") if isinstance(hf_config.get("architectures"), list) else []
    vocab, tokens = _find_vocab(config, directory)
    weights, unused, heads = hf_to_reference(read_hf_weights(directory), config, config_path, architectures)
    _check_output_dir(output, {"bert_model.ckpt.index", "bert_model.ckpt.data-00000-of-00001", "bert_config.json",
                               *(["vocab.txt"] if vocab else [])})
    fileio.make_output_dir(output, "--output")
    checkpoints.export_checkpoint(weights, os.path.join(output, "bert_model.ckpt"), config=config)
    notes = []
    if vocab:
        _write_vocab(vocab, tokens, output)
    else:
        notes.append("no vocab.txt or tokenizer.json found (give --vocab_file)")
    if "bert/pooler/dense/kernel" not in weights:
        notes.append("no pooler weights (fine-tuning starts the pooler fresh)")
    if heads:
        notes.append(f"its {architectures[0]} head ({', '.join(heads)}) is not the reference's sentence classifier: "
                     f"left out")
    if unused:
        notes.append(f"{len(unused)} tensor(s) not converted: {', '.join(unused[:4])}{', ...' if len(unused) > 4 else ''}")
    if "output_weights" in weights:
        notes.extend(_classifier_notes(hf_config))
    if config.hidden_act == "gelu_exact":
        notes.append("Google's reference knows only its tanh \"gelu\", not gelu_exact: it cannot run this model as trained")
    if vocab and not vocab.endswith(".json"):
        notes.extend(_added_tokens_note(directory, len(tokens)))
    notes.extend(_tokenizer_notes(directory))
    return f"{len(weights)} weights ({config.num_hidden_layers} layers, H={config.hidden_size}, hidden_act {config.hidden_act}) -> {output}/bert_model.ckpt" + "".join(f"; {n}" for n in notes)


def _classifier_notes(hf_config):
    """What a sequence classifier's config.json says of its outputs that the checkpoint cannot: their labels, in the
    order a task must list them, and a problem type other than one label of several."""
    notes = []
    id2label = hf_config.get("id2label")
    if isinstance(id2label, dict):
        labels = [id2label.get(str(i)) for i in range(len(id2label))]
        if all(isinstance(label, str) for label in labels) and labels != [f"LABEL_{i}" for i in range(len(labels))]:
            notes.append(f"its classifier's outputs are the labels {', '.join(labels)}, in this order: the task it is "
                         f"fine-tuned or evaluated on must list its labels so")
    problem = hf_config.get("problem_type")
    if problem in ("regression", "multi_label_classification"):
        notes.append(f"its classifier was trained for {problem.replace('_', '-')} (config.json's problem_type)")
    return notes


def _added_tokens_note(directory, size):
    """A note of the tokens added_tokens.json adds past a vocab.txt of `size` tokens, which vocab.txt does not carry."""
    try:
        with open(os.path.join(directory, "added_tokens.json"), encoding="utf-8") as f:
            added = json.load(f)
    except (OSError, ValueError):
        return []
    added = sorted((i, token) for token, i in added.items() if type(i) is int and i >= size) if isinstance(added, dict) else []
    if not added:
        return []
    shown = ", ".join(token for _, token in added[:4]) + (", ..." if len(added) > 4 else "")
    return [f"{len(added)} token(s) added to its tokenizer ({shown}, added_tokens.json) are not in vocab.txt, which "
            f"holds the vocabulary the model was trained with: not carried"]


def _hf_tokenizer_setting(directory, config_key, normalizer_key):
    """A boolean setting of a Hugging Face directory's tokenizer: tokenizer_config.json's `config_key`, else
    tokenizer.json's BertNormalizer `normalizer_key`; None where neither says."""
    for name, read in (("tokenizer_config.json", lambda d: d.get(config_key)),
                       ("tokenizer.json", lambda d: (d.get("normalizer") or {}).get(normalizer_key))):
        try:
            with open(os.path.join(directory, name), encoding="utf-8") as f:
                value = read(json.load(f))
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(value, bool):
            return value
    return None


def _tokenizer_notes(directory):
    """The casing to give the commands, and the settings of a Hugging Face tokenizer that the reference's
    tokenizer has no flag for: it strips accents exactly when it lower-cases, and always splits CJK characters."""
    notes = []
    lower = _hf_tokenizer_setting(directory, "do_lower_case", "lowercase")
    if lower is not None:
        notes.append(f"its tokenizer {'lower-cases' if lower else 'keeps case'}: use --do_lower_case={str(lower).lower()}")
    strips = _hf_tokenizer_setting(directory, "strip_accents", "strip_accents")
    if strips is not None and lower is not None and strips != lower:
        notes.append(f"its tokenizer {'strips' if strips else 'keeps'} accents (strip_accents {str(strips).lower()}) "
                     f"while it {'lower-cases' if lower else 'keeps case'}; this project's tokenizer strips them exactly "
                     f"when it lower-cases: accented words tokenize otherwise")
    if _hf_tokenizer_setting(directory, "tokenize_chinese_chars", "handle_chinese_chars") is False:
        notes.append("its tokenizer does not split CJK characters apart (tokenize_chinese_chars false), which this "
                     "project's tokenizer always does: CJK text tokenizes otherwise")
    return notes


def to_hf(checkpoint, output):
    reader = checkpoints.CheckpointReader(checkpoint, "--input")
    checkpoint_dir = os.path.dirname(reader.prefix)
    config_path = FLAGS.bert_config_file or os.path.join(checkpoint_dir, "bert_config.json")
    config = bert_config.load_config(config_path)
    model_weights = modeling.BertModel(config).weights
    weights = {}
    for name in reader.names():
        if name.endswith(("/adam_m", "/adam_v")):
            continue
        if name in model_weights or name in _UNCHANGED.values() or _reference_to_hf_name(name)[0]:
            weights[name] = reader.tensor(name)
    missing = [name for name in model_weights if name not in weights and not name.startswith("bert/pooler/")]
    if missing:
        raise InputError(f"--input: checkpoint {reader.prefix} has no variable '{missing[0]}'")
    for name, variable in model_weights.items():
        if name in weights and list(weights[name].shape) != variable.shape.as_list():
            raise InputError(f"--input: '{name}' has shape {list(weights[name].shape)}, {config_path} implies "
                             f"{variable.shape.as_list()}")
    # Written out, they would sit in model.safetensors beside a config.json that has no place for them.
    extra_layers = [name for name in weights if name.startswith("bert/encoder/") and name not in model_weights]
    if extra_layers:
        raise InputError(f"--input: checkpoint {reader.prefix} has '{extra_layers[0]}', a layer past the "
                         f"{config.num_hidden_layers} of {config_path}")
    vocab, tokens = _find_vocab(config, checkpoint_dir)
    tensors = reference_to_hf(weights)
    _check_output_dir(output, {"model.safetensors", "config.json", *(["tokenizer_config.json", "vocab.txt"] if vocab else [])})
    fileio.make_output_dir(output, "--output")
    hf_config = {
        "architectures": [_architecture(weights)],
        "model_type": "bert",
        **{k: v for k, v in config.to_dict().items() if k != "hidden_act"},
        "hidden_act": OURS_TO_HF_ACTIVATION[config.hidden_act],
        "layer_norm_eps": modeling.LAYER_NORM_EPSILON,
        "position_embedding_type": "absolute",
        "pad_token_id": 0,
    }
    if "output_weights" in weights:
        hf_config["num_labels"] = int(weights["output_weights"].shape[0])
    from safetensors.numpy import save

    with fileio.AtomicFile(os.path.join(output, "model.safetensors"), "wb") as f:
        f.write(save(tensors, metadata={"format": "pt"}))
    with fileio.AtomicFile(os.path.join(output, "config.json")) as f:
        json.dump(hf_config, f, indent=2, sort_keys=True)
        f.write("\n")
    summary = f"{len(tensors)} tensors ({hf_config['architectures'][0]}) -> {output}/model.safetensors"
    sentencepiece_models = [path for path, kind in checkpoints.tokenizer_files_beside(checkpoint_dir)
                            if kind == "sentencepiece"]
    # Without a vocabulary a BertTokenizer config would load as a tokenizer that reads every word as [UNK].
    if not vocab and sentencepiece_models:
        return (f"{summary}; its tokenizer, the SentencePiece model {sentencepiece_models[0]}, is not converted: "
                f"Hugging Face's BertTokenizer reads only a WordPiece vocab.txt")
    if not vocab:
        return f"{summary}; no vocab.txt found (give --vocab_file), so no tokenizer is written"
    lower_case = FLAGS.do_lower_case
    if lower_case is None:
        lower_case = tokenization.vocabulary_casing(tokens) != "cased"
    with fileio.AtomicFile(os.path.join(output, "tokenizer_config.json")) as f:
        # Without model_max_length Hugging Face's tokenizer would not truncate to what the model's positions hold.
        json.dump({"do_lower_case": lower_case, "model_max_length": config.max_position_embeddings,
                   "tokenizer_class": "BertTokenizer"}, f, indent=2)
        f.write("\n")
    _write_vocab(vocab, tokens, output)
    return summary


def _architecture(weights):
    if "output_weights" in weights:
        return "BertForSequenceClassification"
    if "cls/squad/output_weights" in weights:
        return "BertForQuestionAnswering"
    masked_lm, next_sentence = "cls/predictions/output_bias" in weights, "cls/seq_relationship/output_weights" in weights
    if masked_lm and next_sentence:
        return "BertForPreTraining"
    if masked_lm:
        return "BertForMaskedLM"
    if next_sentence:
        return "BertForNextSentencePrediction"
    return "BertModel"


def main(argv):
    source, target = FLAGS["from"].value, FLAGS.to
    if bool(source) == bool(target):
        raise InputError("give exactly one of --from=hf or --to=hf")
    if source:
        for name in ("bert_config_file", "do_lower_case"):
            if FLAGS[name].present:
                raise InputError(f"--{name}: only --to=hf reads it; --from=hf reads config.json and the tokenizer's "
                                 f"files in --input")
    summary = from_hf(FLAGS.input, FLAGS.output) if source else to_hf(FLAGS.input, FLAGS.output)
    print(f"bert-convert: {summary}", file=sys.stdout)


def run():
    define_flags()
    cli.run_command(main, required=("input", "output"))


if __name__ == "__main__":
    run()
