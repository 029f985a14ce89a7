"""bert-convert: Hugging Face BERT directories to checkpoints in the reference's TF1 naming, and back.

    bert-convert --from=hf --input=all-MiniLM-L6-v2/ --output=minilm/      # -> bert_model.ckpt, bert_config.json, vocab.txt
    bert-convert --to=hf --input=minilm/ --output=minilm-hf/               # -> model.safetensors, config.json, vocab.txt

A Hugging Face directory holds `config.json`, `model.safetensors` (read with the safetensors NumPy
loader, no PyTorch needed) or `pytorch_model.bin` (needs torch), and `vocab.txt`. Weights map one to
one: `encoder.layer.3.attention.self.query.weight` [out, in] is `bert/encoder/layer_3/attention/self/
query/kernel` [in, out]; LayerNorm weight/bias are gamma/beta; the pre-training, sequence
classification and question answering heads map to `cls/...`, `output_weights`/`output_bias` and
`cls/squad/...`. Hugging Face's "gelu" is the exact erf GELU, which this project calls "gelu_exact";
its "gelu_new" is the reference's tanh "gelu".
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

HF_TO_OURS_ACTIVATION = {"gelu": "gelu_exact", "gelu_new": "gelu", "gelu_pytorch_tanh": "gelu", "relu": "relu", "tanh": "tanh", "linear": "linear"}
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
    match = _LAYER.match(name)
    if match:
        layer, part, kind = match.groups()
        scope = _LAYER_PARTS.get(part)
        if scope is None:
            return None, False
        return f"bert/encoder/layer_{layer}/{scope}/{_leaf(scope, kind)}", kind == "weight" and "LayerNorm" not in scope
    match = _PART.match(name)
    if match and match.group(1) in _OTHER_PARTS:
        scope = _OTHER_PARTS[match.group(1)]
        return f"{scope}/{_leaf(scope, match.group(2))}", match.group(2) == "weight" and "LayerNorm" not in scope
    return None, False


def _leaf(scope, kind):
    if scope.endswith("LayerNorm"):
        return {"weight": "gamma", "gamma": "gamma", "bias": "beta", "beta": "beta"}[kind]
    return {"weight": "kernel", "bias": "bias"}[kind]


def read_hf_config(path):
    """A Hugging Face config.json as our BertConfig; refuses what this model does not compute."""
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
    if abs(hf.get("layer_norm_eps", 1e-12) - modeling.LAYER_NORM_EPSILON) > 1e-15:
        raise InputError(f"{path}: key 'layer_norm_eps' is {hf['layer_norm_eps']}, BERT's LayerNorm epsilon is 1e-12")
    activation = hf.get("hidden_act", "gelu")
    if activation not in HF_TO_OURS_ACTIVATION:
        raise InputError(f"{path}: key 'hidden_act' is '{activation}' (supported: {', '.join(HF_TO_OURS_ACTIVATION)})")
    keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
            "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings", "type_vocab_size",
            "initializer_range")
    missing = [key for key in keys if key not in hf]
    if missing:
        raise InputError(f"{path}: no key '{missing[0]}'")
    values = {key: hf[key] for key in keys}
    values["hidden_act"] = HF_TO_OURS_ACTIVATION[activation]
    return bert_config.BertConfig.from_dict(values, source=path)


def read_hf_weights(directory):
    """name -> float32 array from model.safetensors, or pytorch_model.bin (which needs torch)."""
    safetensors_path = os.path.join(directory, "model.safetensors")
    if os.path.isfile(safetensors_path):
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            return load_file(safetensors_path)
        except (SafetensorError, OSError, ValueError) as e:
            raise InputError(f"{safetensors_path}: cannot read: {e}") from None
    bin_path = os.path.join(directory, "pytorch_model.bin")
    if os.path.isfile(bin_path):
        try:
            import torch
        except ImportError:
            raise InputError(f"{bin_path}: reading PyTorch files needs torch (pip install torch), or give model.safetensors") from None
        try:
            state = torch.load(bin_path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError... for a damaged file
            raise InputError(f"{bin_path}: cannot read: {e}") from None
        return {name: tensor.float().numpy() for name, tensor in state.items()}
    raise InputError(f"--input: {directory} has neither model.safetensors nor pytorch_model.bin")


def hf_to_reference(hf_weights, config):
    """TF1-named float32 arrays from Hugging Face tensors; raises InputError naming a missing or misshaped one.

    Returns (weights, names of tensors that were not converted).
    """
    weights, unused = {}, []
    for name, value in hf_weights.items():
        if name.removeprefix("bert.") in _NOT_WEIGHTS:
            continue
        ours, transpose = _hf_weight_name(name)
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
    expected = modeling.BertModel(config).weights
    for name, variable in expected.items():
        if name.startswith("bert/pooler/") and name not in weights:
            continue
        if name not in weights:
            raise InputError(f"--input: no tensor for '{name}' (is it a BERT model of its config.json?)")
        if list(weights[name].shape) != variable.shape.as_list():
            raise InputError(f"--input: '{name}' has shape {list(weights[name].shape)}, config.json implies {variable.shape.as_list()}")
    return weights, sorted(unused)


def reference_to_hf(weights):
    """Hugging Face tensors (BertForPreTraining-style names) from TF1-named arrays."""
    reverse = {}
    for hf_name, ours in _UNCHANGED.items():
        reverse[ours] = (hf_name if not hf_name.startswith("embeddings.") else "bert." + hf_name, False)
    out = {}
    for name, value in weights.items():
        if name in reverse:
            hf_name, transpose = reverse[name]
        else:
            hf_name, transpose = _reference_to_hf_name(name)
            if hf_name is None:
                continue
        out[hf_name] = np.ascontiguousarray(value.T if transpose else value, np.float32)
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
    """--vocab_file, or else the vocab.txt of the first of `directories` holding one; checked against `config`."""
    if FLAGS.vocab_file:
        if not os.path.isfile(FLAGS.vocab_file):
            raise InputError(f"--vocab_file: file not found: {FLAGS.vocab_file}")
        if FLAGS.vocab_file.endswith(".model"):
            raise InputError(f"--vocab_file: {FLAGS.vocab_file} is a SentencePiece model; bert-convert carries only a "
                             f"WordPiece vocab.txt, the one Hugging Face's BertTokenizer reads")
        found = FLAGS.vocab_file
    else:
        found = next((path for path in (os.path.join(d, "vocab.txt") for d in directories) if os.path.isfile(path)), None)
    if found:
        # Ids are line numbers: a repeated token leaves fewer tokens than ids.
        bert_config.check_vocab(config, max(tokenization.load_vocab(found).values()) + 1, found)
    return found


def from_hf(directory, output):
    if not os.path.isdir(directory):
        raise InputError(f"--input: not a directory: {directory}")
    config = read_hf_config(os.path.join(directory, "config.json"))
    vocab = _find_vocab(config, directory)
    weights, unused = hf_to_reference(read_hf_weights(directory), config)
    fileio.make_output_dir(output, "--output")
    checkpoints.export_checkpoint(weights, os.path.join(output, "bert_model.ckpt"), config=config)
    notes = []
    if vocab:
        fileio.copy_file(vocab, os.path.join(output, "vocab.txt"))
    else:
        notes.append("no vocab.txt found (give --vocab_file)")
    if "bert/pooler/dense/kernel" not in weights:
        notes.append("no pooler weights (fine-tuning starts the pooler fresh)")
    if unused:
        notes.append(f"{len(unused)} tensor(s) not converted: {', '.join(unused[:4])}{', ...' if len(unused) > 4 else ''}")
    if config.hidden_act == "gelu_exact":
        notes.append("Google's reference knows only its tanh \"gelu\", not gelu_exact: it cannot run this model as trained")
    lower = _hf_lower_case(directory)
    if lower is not None:
        notes.append(f"its tokenizer {'lower-cases' if lower else 'keeps case'}: use --do_lower_case={str(lower).lower()}")
    return f"{len(weights)} weights ({config.num_hidden_layers} layers, H={config.hidden_size}, hidden_act {config.hidden_act}) -> {output}/bert_model.ckpt" + "".join(f"; {n}" for n in notes)


def _hf_lower_case(directory):
    path = os.path.join(directory, "tokenizer_config.json")
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f).get("do_lower_case")
    except (OSError, ValueError):
        return None
    return value if isinstance(value, bool) else None


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
    vocab = _find_vocab(config, checkpoint_dir)
    tensors = reference_to_hf(weights)
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
    if not vocab and sentencepiece_models:
        # A BertTokenizer config here would describe a WordPiece tokenizer the model was not trained with.
        return (f"{summary}; its tokenizer, the SentencePiece model {sentencepiece_models[0]}, is not converted: "
                f"Hugging Face's BertTokenizer reads only a WordPiece vocab.txt")
    lower_case = FLAGS.do_lower_case if FLAGS.do_lower_case is not None else not (vocab and _is_cased(vocab))
    with fileio.AtomicFile(os.path.join(output, "tokenizer_config.json")) as f:
        # Without model_max_length Hugging Face's tokenizer would not truncate to what the model's positions hold.
        json.dump({"do_lower_case": lower_case, "model_max_length": config.max_position_embeddings,
                   "tokenizer_class": "BertTokenizer"}, f, indent=2)
        f.write("\n")
    if vocab:
        fileio.copy_file(vocab, os.path.join(output, "vocab.txt"))
    return summary + ("" if vocab else "; no vocab.txt found (give --vocab_file)")


def _is_cased(vocab_file):
    """Whether a vocab.txt holds capitalised words (over 1% of its tokens; an uncased one, learned from
    lower-cased text, holds none)."""
    tokens = [t for t in tokenization.load_vocab(vocab_file) if not t.startswith(("[", "##"))]
    return sum(t != t.lower() for t in tokens) > len(tokens) / 100


def _architecture(weights):
    if "output_weights" in weights:
        return "BertForSequenceClassification"
    if "cls/squad/output_weights" in weights:
        return "BertForQuestionAnswering"
    if "cls/predictions/output_bias" in weights:
        return "BertForPreTraining"
    return "BertModel"


def main(argv):
    source, target = FLAGS["from"].value, FLAGS.to
    if bool(source) == bool(target):
        raise InputError("give exactly one of --from=hf or --to=hf")
    summary = from_hf(FLAGS.input, FLAGS.output) if source else to_hf(FLAGS.input, FLAGS.output)
    print(f"bert-convert: {summary}", file=sys.stdout)


def run():
    define_flags()
    cli.run_command(main, required=("input", "output"))


if __name__ == "__main__":
    run()
