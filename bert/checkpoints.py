"""Reading and writing checkpoints in the reference's TF1 variable names.

Two kinds of checkpoint are read by `--init_checkpoint`:
- name-based ones, as Google's released `bert_model.ckpt` and our own exports are: the keys are the
  TF1 names themselves (`bert/encoder/layer_0/attention/self/query/kernel`, [in, out] kernels);
- our training checkpoints (`OUTPUT_DIR/ckpt-N`, object-based, from `tf.train.Checkpoint`), whose keys
  hold the same names escaped inside an object path; they are mapped back to the TF1 names.

Loading checks every variable the model needs: a missing one or one of the wrong shape is an error that
names it; checkpoint variables the model does not use (optimizer slots, `global_step`, another head)
are returned for the caller to report.
"""

import contextlib
import filecmp
import glob
import os
import re
import shutil

import numpy as np
from google.protobuf import text_format

from bert.tf import error_text, tf
# The record behind tf.train.get_checkpoint_state, which TensorFlow exports under no public name.
from tensorflow.python.training.checkpoint_state_pb2 import CheckpointState

from bert.errors import InputError
from bert.fileio import AtomicFile, copy_file

_OBJECT_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


# The files of a checkpoint PREFIX: PREFIX.index, PREFIX.data-00000-of-00001, and a TF1 run's PREFIX.meta.
_FILE_SUFFIX = re.compile(r"\.(index|meta|data-\d{5}-of-\d{5})$")


def resolve_checkpoint(path, flag="--init_checkpoint"):
    """The checkpoint prefix named by `path`: a prefix, one of its files, a directory holding one, or the
    directory's `checkpoint` file (then its latest)."""
    text = os.fspath(path)
    if os.path.basename(text) == STATE_FILE and os.path.isfile(text) and not os.path.isfile(text + ".index"):
        text = os.path.dirname(text) or "."
    if os.path.isdir(text):
        # Only the `checkpoint` file says which of several checkpoints is meant: no guess from the others.
        state, _ = read_checkpoint_state(text)
        if state:
            latest = state.model_checkpoint_path
            if not os.path.isfile(latest + ".index"):
                present = _checkpoints_in(text)
                earlier = _newest_listed(state, text) or (os.path.join(text, present[-1]) if present else None)
                raise InputError(f"{flag}: {os.path.join(text, STATE_FILE)} names {latest} as the latest checkpoint, "
                                 f"which is missing; name the one to start from" + (f", e.g. {earlier}" if earlier else ""))
            return latest
        candidates = _checkpoints_in(text)
        if not candidates:
            raise InputError(f"{flag}: no checkpoint found in directory {text}{_other_format(text)}")
        if len(candidates) > 1:
            raise InputError(f"{flag}: directory {text} holds {len(candidates)} checkpoints "
                             f"({', '.join(candidates)}) and no usable 'checkpoint' file saying which is latest; "
                             f"name one, e.g. {os.path.join(text, candidates[-1])}")
        return os.path.join(text, candidates[0])
    if not os.path.isfile(text + ".index"):
        text = _FILE_SUFFIX.sub("", text)
    if not os.path.isfile(text + ".index"):
        if os.path.isfile(text):
            raise InputError(f"{flag}: {text} is a file, not a checkpoint (a checkpoint is a prefix such as "
                             f"bert_model.ckpt, naming its .index and data files){_other_format(os.path.dirname(text) or '.')}")
        raise InputError(f"{flag}: checkpoint not found: {text} (expected {text}.index and its data files)")
    return text


def _checkpoints_in(directory):
    """The prefixes of the checkpoints in `directory`, in step order; not the hidden staging of an export."""
    return sorted((name[: -len(".index")] for name in os.listdir(directory)
                   if name.endswith(".index") and not name.startswith(".")), key=_natural_order)


def _natural_order(name):
    """model.ckpt-9 before model.ckpt-10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _other_format(directory):
    """'; ' and what `directory` holds instead of a checkpoint in the reference's names, with the way to it; else ''."""
    names = set(os.listdir(directory)) if os.path.isdir(directory) else set()
    if "config.json" in names and names & {"model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                                          "pytorch_model.bin.index.json"}:
        return (f"; it is a Hugging Face model: convert it first (bert-convert --from=hf --input={directory} "
                f"--output=DIR, then DIR/bert_model.ckpt)")
    if "tf_model.h5" in names:
        return ("; it holds Hugging Face's TensorFlow weights (tf_model.h5), which are not read: save the model with "
                "safetensors (transformers' save_pretrained) and convert that with bert-convert --from=hf")
    if "saved_model.pb" in names:
        # TF Hub's TF1 modules of BERT keep the reference's variables, under variables/variables.
        variables = os.path.join(directory, "variables", "variables")
        try:
            reference_names = tf.train.load_checkpoint(variables).has_tensor("bert/embeddings/word_embeddings")
        except READ_ERRORS:
            reference_names = False
        if reference_names:
            vocab = os.path.join(directory, "assets", "vocab.txt")
            return (f"; it is a TF Hub module whose variables are in the reference's names: give {variables}"
                    + (f" (its vocabulary is {vocab})" if os.path.isfile(vocab) else ""))
        return ("; it is a SavedModel (as TF Hub serves), whose variables are not in the reference's names: take the "
                "model's TF1 release (bert_model.ckpt) or its Hugging Face form (bert-convert --from=hf)")
    return ""


STATE_FILE = "checkpoint"


def read_checkpoint_state(directory):
    """`directory`'s `checkpoint` file (TensorFlow's CheckpointState, paths made absolute) and, if it cannot
    be used, why not: (state, None), (None, None) when there is no such file, or (None, reason).

    A path that is not there but whose checkpoint is in `directory` is taken to be that one: the file of a run
    directory moved from another machine (or bucket) holds absolute paths if a TF1 Saver wrote it."""
    path = os.path.join(directory, STATE_FILE)
    state = CheckpointState()
    try:
        with open(path, encoding="utf-8") as f:
            text_format.Merge(f.read(), state)
    except FileNotFoundError:
        return None, None
    except OSError as e:
        return None, f"unreadable ({e.strerror or e})"
    except (UnicodeDecodeError, text_format.ParseError) as e:
        return None, f"damaged ({e})"
    if not state.model_checkpoint_path:
        return None, "damaged (it names no checkpoint)"
    state.model_checkpoint_path = _located(directory, state.model_checkpoint_path)
    state.all_model_checkpoint_paths[:] = [_located(directory, name) for name in state.all_model_checkpoint_paths]
    return state, None


def _located(directory, name):
    path = os.path.join(directory, name)
    moved = os.path.join(directory, os.path.basename(name))
    return moved if not os.path.exists(f"{path}.index") and os.path.exists(f"{moved}.index") else path


def _readable_checkpoints(directory, checkpoint_name):
    """The complete checkpoints `directory/checkpoint_name-N` (see is_complete), by step."""
    steps = []
    for entry in os.listdir(directory):
        match = re.fullmatch(rf"{re.escape(checkpoint_name)}-(\d+)\.index", entry)
        if match:
            steps.append(int(match.group(1)))
    prefixes = (os.path.join(directory, f"{checkpoint_name}-{step}") for step in sorted(steps))
    return [prefix for prefix in prefixes if is_complete(prefix)]


def is_complete(prefix):
    """Whether checkpoint `prefix` was written to the end: TensorFlow stages the data in PREFIX_temp and writes the
    index last, so a save cut short leaves that directory, or no index, or one it cannot read."""
    if os.path.isdir(f"{prefix}_temp"):
        return False
    try:
        tf.train.load_checkpoint(prefix)
    except READ_ERRORS:
        return False
    return bool(glob.glob(glob.escape(prefix) + ".data-*"))


def _checkpoint_state(directory, checkpoint_name):
    """The `checkpoint` file's state or, where that file is missing or damaged while checkpoints
    `checkpoint_name-N` are there, one listing those that are readable, newest last; and why the file was
    not used (None when it was, or when there is neither file nor checkpoint)."""
    state, problem = read_checkpoint_state(directory)
    if state is not None or not os.path.isdir(directory):
        return state, problem
    readable = _readable_checkpoints(directory, checkpoint_name)
    if not readable:
        return None, problem
    state = CheckpointState(model_checkpoint_path=readable[-1], all_model_checkpoint_paths=readable,
                            all_model_checkpoint_timestamps=[os.path.getmtime(f"{path}.index") for path in readable])
    return state, problem or "missing"


def _newest_listed(state, directory, log=None):
    """The newest checkpoint `directory`'s `state` lists whose index file is there: its latest or, if that one's
    files were deleted (to go back to an earlier step), the newest listed before it, which `log` reports."""
    latest = state.model_checkpoint_path
    listed = list(state.all_model_checkpoint_paths)
    earlier = listed[: listed.index(latest)] if latest in listed else listed
    state_file = os.path.join(directory, STATE_FILE)
    for path in [latest, *reversed(earlier)]:
        if os.path.exists(f"{path}.index"):
            if log and path != latest:
                log(f"warning: {latest}, the newest checkpoint in {state_file}, is missing; resuming from {path}")
            return path
    if log:
        log(f"warning: none of the checkpoints named in {state_file} is there; starting from step 0")
    return None


def newest_checkpoint(directory, log=None, checkpoint_name="ckpt"):
    """The newest checkpoint of a run `directory` whose index file is there, or None.

    That is the one its `checkpoint` file names as latest or, if that one's files were deleted, the newest
    listed before it that is still there (TensorFlow itself would fail to restore a deleted checkpoint the
    file still names). Where the file is missing or damaged (an interrupted copy, a full disk) it is the
    newest readable `checkpoint_name-N` there, so that the run resumes rather than starting again over its
    own checkpoints. `log` gets a warning for each of these.
    """
    state, problem = _checkpoint_state(directory, checkpoint_name)
    if state is None:
        return None
    if problem and log:
        log(f"warning: {os.path.join(directory, STATE_FILE)} is {problem}; taking {state.model_checkpoint_path}, "
            f"the newest readable checkpoint there")
    return _newest_listed(state, directory, log)


def forget_missing_checkpoints(directory, latest, checkpoint_name="ckpt"):
    """Rewrites `directory`'s `checkpoint` file to list only checkpoints up to `latest` that are still there.

    Otherwise TensorFlow's CheckpointManager would count deleted ones towards its number to keep, and
    delete the very checkpoint a run resumed from; a missing or damaged file is written again, or its
    manager would fail or forget the checkpoints it should delete.
    """
    state, problem = _checkpoint_state(directory, checkpoint_name)
    path = os.path.join(directory, STATE_FILE)
    if state is None and not problem:
        return
    if latest is None or state is None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    listed = list(zip(state.all_model_checkpoint_paths, state.all_model_checkpoint_timestamps))
    end = [prefix for prefix, _ in listed].index(latest) + 1 if latest in state.all_model_checkpoint_paths else 0
    kept = [(prefix, stamp) for prefix, stamp in listed[:end] if os.path.exists(f"{prefix}.index")]
    if not problem and latest == state.model_checkpoint_path and len(kept) == len(listed):
        return
    # Relative names, as the manager writes them, so that the run directory can still be moved; the
    # manager needs each checkpoint's timestamp to count it.
    state = CheckpointState(
        model_checkpoint_path=os.path.relpath(latest, directory),
        all_model_checkpoint_paths=[os.path.relpath(prefix, directory) for prefix, _ in kept],
        all_model_checkpoint_timestamps=[stamp for _, stamp in kept],
        last_preserved_timestamp=state.last_preserved_timestamp,
    )
    with AtomicFile(path) as f:
        f.write(text_format.MessageToString(state))


def _unescape(component):
    """Inverts tf.train.Checkpoint's escaping of a dictionary key ('/' -> '.S', '.' -> '..')."""
    out, i = [], 0
    while i < len(component):
        if component[i] == "." and i + 1 < len(component):
            out.append("/" if component[i + 1] == "S" else component[i + 1])
            i += 2
        else:
            out.append(component[i])
            i += 1
    return "".join(out)


# What TensorFlow raises on a checkpoint whose files are truncated, damaged or missing: a short data
# file is an IndexError, a bad checksum or a missing shard an OpError.
READ_ERRORS = (tf.errors.OpError, IndexError, ValueError, UnicodeDecodeError)


class CheckpointReader:
    """The tensors of a checkpoint under TF1 names, whichever kind of checkpoint it is."""

    def __init__(self, path, flag="--init_checkpoint"):
        self.prefix = resolve_checkpoint(path, flag)
        self.flag = flag
        try:
            self._reader = tf.train.load_checkpoint(self.prefix)
            shapes = self._reader.get_variable_to_shape_map()
            self._dtypes = self._reader.get_variable_to_dtype_map()
        except READ_ERRORS as e:
            raise InputError(f"{flag}: cannot read checkpoint {self.prefix}: {error_text(e)}") from None
        # The index alone reads: without this, a copy that left the data behind would fail only at loading.
        if not glob.glob(glob.escape(self.prefix) + ".data-*"):
            raise InputError(f"{flag}: checkpoint {self.prefix} has its .index but no data file "
                             f"({os.path.basename(self.prefix)}.data-00000-of-00001): copy that too")
        self._keys = {}
        for key, shape in shapes.items():
            if key == "_CHECKPOINTABLE_OBJECT_GRAPH":
                continue
            name = key
            if key.endswith(_OBJECT_SUFFIX):
                path = key[: -len(_OBJECT_SUFFIX)].split("/")
                # Ours keep the TF1 names as keys of `weights` and `slots`; other object paths stay as they are.
                name = _unescape(path[1]) if len(path) == 2 and path[0] in ("weights", "slots") else "/".join(path)
            self._keys[name] = (key, list(shape))
        # Object-based, from another program: TF Model Garden's and TF Hub's TF2 BERTs name their variables otherwise.
        self.other_object_graph = "_CHECKPOINTABLE_OBJECT_GRAPH" in shapes and not any(
            key.startswith("weights/") for key in shapes)

    def names(self):
        return sorted(self._keys)

    def shape(self, name):
        return self._keys[name][1]

    def __contains__(self, name):
        return name in self._keys

    def master_copy(self, name):
        """`name`, or NAME/shadow: NVIDIA's earlier float16 training (--use_fp16) keeps a weight in float16 and its
        float32 master copy, which its updates go to, under that name."""
        shadow = f"{name}/shadow"
        if shadow not in self._keys or self._keys[shadow][1] != self._keys[name][1]:
            return name
        wider = (self._dtypes[self._keys[shadow][0]] == tf.float32
                 and self._dtypes[self._keys[name][0]] in (tf.float16, tf.bfloat16))
        return shadow if wider else name

    def tensor(self, name):
        try:
            return self._reader.get_tensor(self._keys[self.master_copy(name)][0])
        except READ_ERRORS as e:
            raise InputError(f"{self.flag}: checkpoint {self.prefix} is damaged or incomplete: reading '{name}': "
                             f"{error_text(e)}") from None


def load_weights(variables_by_name, path, flag="--init_checkpoint", optional=(), restart_reshaped=True):
    """Assigns every variable in `variables_by_name` from the checkpoint at `path`.

    All variables are checked before any is assigned, so a bad checkpoint leaves the model as it was.
    Names in `optional` (a fine-tuning head) are loaded when the checkpoint has them with the model's
    shape and otherwise keep their initial values; with `restart_reshaped` False, one of another shape
    is an error (evaluating a head of another task's shape, initialised at random, would mean nothing).
    Returns (the sorted names of checkpoint variables that were not used, {optional name not loaded:
    its shape in the checkpoint, None where it has none}).
    """
    reader = CheckpointReader(path, flag)
    loaded, fresh = _matched(reader, variables_by_name, flag, optional, restart_reshaped)
    values = {name: reader.tensor(name) for name in loaded}
    for name, value in values.items():
        variables_by_name[name].assign(value.astype(np.float32))
    read = {reader.master_copy(name) for name in values}
    return sorted(set(reader.names()) - set(values) - read), fresh


def check_weights(variables_by_name, path, flag="--init_checkpoint", optional=()):
    """Raises load_weights' error, if it would raise one, from the checkpoint's index alone (its names and shapes):
    before minutes of encoding training features, not after."""
    _matched(CheckpointReader(path, flag), variables_by_name, flag, optional, restart_reshaped=True)


def _matched(reader, variables_by_name, flag, optional, restart_reshaped):
    """(the names of the model's variables to load from `reader`, the optional ones not loaded as in load_weights);
    raises InputError naming a variable the checkpoint lacks or holds in another shape."""
    loaded, fresh = [], {}
    for name, variable in variables_by_name.items():
        expected = variable.shape.as_list()
        if name in optional and name not in reader:
            fresh[name] = None
            continue
        if name in optional and restart_reshaped and reader.shape(name) != expected:
            fresh[name] = reader.shape(name)
            continue
        if name not in reader:
            raise InputError(f"{flag}: checkpoint {reader.prefix} has no variable '{name}' ({_missing_hint(reader, name)})")
        if reader.shape(name) != expected:
            raise InputError(
                f"{flag}: variable '{name}' in {reader.prefix} has shape {reader.shape(name)}, the model "
                f"needs {expected} ({_shape_hint(name, reader.shape(name), expected)})"
            )
        loaded.append(name)
    return loaded, fresh


# The config keys that size each dimension of a variable, by its name; any other variable is hidden_size wide.
_SHAPE_KEYS = (
    (re.compile(r"bert/embeddings/word_embeddings"), ("vocab_size", "hidden_size")),
    (re.compile(r"bert/embeddings/position_embeddings"), ("max_position_embeddings", "hidden_size")),
    (re.compile(r"bert/embeddings/token_type_embeddings"), ("type_vocab_size", "hidden_size")),
    (re.compile(r".*/intermediate/dense/kernel"), ("hidden_size", "intermediate_size")),
    (re.compile(r".*/intermediate/dense/bias"), ("intermediate_size",)),
    (re.compile(r"bert/encoder/layer_\d+/output/dense/kernel"), ("intermediate_size", "hidden_size")),
    (re.compile(r"cls/predictions/output_bias"), ("vocab_size",)),
    (re.compile(r"cls/seq_relationship/output_(weights|bias)"), (None, "hidden_size")),
)


def _shape_hint(name, found, expected):
    """Which config key a variable of another shape than the model's speaks of."""
    if not name.startswith(("bert/", "cls/")):
        return "is it a model of another task or number of labels?"
    keys = next((keys for pattern, keys in _SHAPE_KEYS if pattern.fullmatch(name)), ("hidden_size",) * len(expected))
    if len(found) == len(expected):
        differing = [(key, model, theirs) for key, model, theirs in zip(keys, expected, found) if key and model != theirs]
        if differing:
            key, model, theirs = differing[0]
            return (f"the config's '{key}' is {model}, the checkpoint's model had {theirs}: does --bert_config_file "
                    f"match the checkpoint?")
    return "does --bert_config_file match the checkpoint?"


_LAYER = re.compile(r"bert/encoder/layer_(\d+)/")


def _layers_of(names):
    """The number of encoder layers whose variables `names` hold (the highest layer index + 1)."""
    return max((int(m.group(1)) + 1 for m in map(_LAYER.match, names) if m), default=0)


def _missing_hint(reader, name):
    """Why a checkpoint may lack the variable `name`."""
    if reader.other_object_graph:
        return ("it is a TF2 object-based checkpoint, as TF Model Garden and TF Hub save, not one in the reference's "
                "TF1 variable names; transformers' convert_bert_original_tf2_checkpoint_to_pytorch makes it a Hugging "
                "Face model, which bert-convert --from=hf reads")
    layer = _LAYER.match(name)
    if layer and "bert/embeddings/word_embeddings" in reader and int(layer.group(1)) >= _layers_of(reader.names()):
        return (f"it has {_layers_of(reader.names())} encoder layers, the config's 'num_hidden_layers' asks for more: "
                f"does --bert_config_file match the checkpoint?")
    if name.startswith("cls/seq_relationship/") and "cls/predictions/output_bias" in reader:
        return "it holds the masked-LM head but no next-sentence head (cls/seq_relationship), as a BertForMaskedLM does"
    if name.startswith("cls/") and "bert/embeddings/word_embeddings" in reader:
        return "it holds an encoder without the pre-training heads (cls/...), as a fine-tuned or encoder-only model does"
    return f"it has {len(reader.names())} variables; is it a BERT checkpoint of this model?"


# The training state a fine-tuned or training checkpoint carries beside the weights, never read as weights: the
# reference's (global_step, AdamWeightDecay's slots), ours (Trainer.state(), CheckpointManager's save_counter),
# NVIDIA's (its loss scaling and gradient accumulation) and TF1 Adam's.
_TRAINING_STATE = re.compile(r"global_step|step|save_counter|loss_scale|current_loss_scale|good_steps|skipped_batches"
                             r"|starting_ranks|loss_scaling|local_step|batch_finite|beta[12]_power"
                             r"|.*/(adam_[mv]|Momentum|Adam(_1)?|accumulator|accum)")


def initialised_line(path, unused):
    """What a command that starts from checkpoint `path` reports: where from (the checkpoint a directory or
    `checkpoint` file resolves to, too), and which of its variables it left."""
    prefix = resolve_checkpoint(path)
    source = path if os.path.normpath(prefix) == os.path.normpath(os.fspath(path)) else f"{path} ({prefix})"
    state = [name for name in unused if _TRAINING_STATE.fullmatch(name)]
    other = [name for name in unused if not _TRAINING_STATE.fullmatch(name)]
    parts = []
    if other:
        parts.append(f"{len(other)} checkpoint variable(s) not used: " + ", ".join(other[:4]) + (", ..." if len(other) > 4 else ""))
    if state:
        parts.append(f"{len(state)} training-state variable(s) (step, optimizer slots) not read")
    return f"initialised from {source}" + "".join(f"; {part}" for part in parts)


def report_initialisation(path, unused, log, variables_by_name):
    """Logs where the model of `variables_by_name` was initialised from, and warns of encoder layers of the
    checkpoint past the model's, which it leaves out: a config of fewer layers than its checkpoint is a slip as easily
    as a choice (distilling from the first layers)."""
    log(initialised_line(path, unused))
    layers = _layers_of(variables_by_name)
    left_out = {int(m.group(1)) for m in map(_LAYER.match, unused) if m and not _TRAINING_STATE.fullmatch(m.string)}
    left_out = sorted(layer for layer in left_out if layer >= layers)
    if left_out:
        log(f"warning: --init_checkpoint holds encoder layers {left_out[0]} to {left_out[-1]}, past the config's "
            f"'num_hidden_layers' ({layers}): they are left out")


def fresh_line(fresh, variables_by_name):
    """What a command that starts the optional weights `fresh` (load_weights' second result) afresh says of them."""
    missing = [name for name, shape in fresh.items() if shape is None]
    reshaped = [f"{name} (the checkpoint's {shape}, this model's {variables_by_name[name].shape.as_list()})"
                for name, shape in fresh.items() if shape is not None]
    parts = ([f"{', '.join(missing)} (not in the checkpoint)"] if missing else []) + reshaped
    return f"newly initialised: {', '.join(parts)}"


VOCAB_NAME = "vocab.txt"


def export_checkpoint(variables_by_name, prefix, config=None, extra=None):
    """Writes a name-based checkpoint at `prefix` (`.index` + `.data-00000-of-00001`), as released ones are.

    `extra` maps more names to tensors (e.g. `global_step`). With `config`, `bert_config.json` is
    written beside it. The files appear under their final names only when complete; an export that fails once
    they are being put in place leaves no checkpoint at `prefix`, the earlier one's index being gone.
    """
    directory = os.path.dirname(os.path.abspath(prefix))
    base = os.path.basename(prefix)
    _remove_abandoned_staging(directory, base)
    staging = os.path.join(directory, f".{base}.tmp-{os.getpid()}")
    names = list(variables_by_name)
    tensors = [tf.convert_to_tensor(variables_by_name[name]) for name in names]
    for name, value in (extra or {}).items():
        names.append(name)
        tensors.append(tf.convert_to_tensor(value))
    try:
        tf.raw_ops.SaveV2(prefix=staging, tensor_names=names, shape_and_slices=[""] * len(names), tensors=tensors)
        for suffix in (".data-00000-of-00001", ".index"):
            _sync_file(staging + suffix)
        # The two renames cannot be one: the old index goes first, so that an export cut between them leaves no
        # checkpoint at `prefix` (an error naming it) rather than the old index over the new data.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{prefix}.index")
        os.replace(f"{staging}.data-00000-of-00001", f"{prefix}.data-00000-of-00001")
        os.replace(f"{staging}.index", f"{prefix}.index")
    except tf.errors.OpError as e:
        raise InputError(f"cannot write {prefix}: {write_error_reason(e)}") from None
    except OSError as e:
        raise InputError(f"cannot write {prefix}: {e.strerror or e}") from None
    finally:
        remove_partial(staging)
    if config is not None:
        with AtomicFile(os.path.join(directory, "bert_config.json")) as f:
            f.write(config.to_json_string())


def _sync_file(path):
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _remove_abandoned_staging(directory, base):
    """Removes the staging files of exports to `directory/base` that a killed process left. A process is known by
    its id on this machine: an export to a shared directory from another machine at the same moment is not told
    apart (two exports of one model there would race anyway)."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        # TensorFlow writes each file under a .tempstate name first: a save killed midway leaves those.
        match = re.fullmatch(rf"\.{re.escape(base)}\.tmp-(\d{{1,10}})\.(index|data-\d{{5}}-of-\d{{5}})(\.tempstate\d+)?",
                             name)
        if match and not _process_running(int(match.group(1))):
            with contextlib.suppress(OSError):
                os.remove(os.path.join(directory, name))


def _process_running(pid):
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # another user's
        pass
    return True


def _tokenizer_file_beside(directory, source, kind):
    """Where a model in `directory` carries its tokenizer's file: a WordPiece vocabulary as vocab.txt, a
    SentencePiece model (`kind` "sentencepiece") under its own name."""
    return os.path.join(directory, os.path.basename(source) if kind == "sentencepiece" else VOCAB_NAME)


def export_tokenizer_file(source, kind, directory):
    """Copies the tokenizer's file beside a model exported to `directory`, as released models carry theirs."""
    target = _tokenizer_file_beside(directory, source, kind)
    if os.path.exists(target) and os.path.samefile(source, target):
        return
    # The export is the directory's own file: a link there to some other vocabulary is replaced, not written through.
    if os.path.islink(target):
        os.unlink(target)
    copy_file(source, target)


def warn_if_vocabulary_differs(init_checkpoint, tokenizer_file, log, flag="--init_checkpoint"):
    """Warns (to `log`) when the model at `init_checkpoint` (given as `flag`) has its vocabulary beside it (as
    a release has, and our exports) and `tokenizer_file` ((path, kind), as export_tokenizer_file takes) holds
    another, or is of the other kind (a WordPiece vocabulary for a model that carries a SentencePiece one).

    Only a warning: a vocabulary whose [unused] tokens were given domain words on purpose differs too. By
    mistake (a cased vocabulary with an uncased model) every id means another word than the model learned,
    and nothing else would say so.
    """
    if not (init_checkpoint and tokenizer_file and tokenizer_file[0]):
        return
    source, kind = tokenizer_file
    try:
        directory = os.path.dirname(resolve_checkpoint(init_checkpoint))
    except InputError:
        return  # loading it says what is wrong
    beside = tokenizer_files_beside(directory)
    if not beside or not os.path.isfile(source) or any(filecmp.cmp(path, source, shallow=False) for path, _ in beside):
        return
    same_kind = [path for path, other_kind in beside if other_kind == kind]
    if same_kind:
        log(f"warning: the vocabulary {source} is not the one beside {flag} ({same_kind[0]}): its token ids "
            f"mean other words than the model learned")
    else:
        path, other_kind = beside[0]
        log(f"warning: {source} is a {_KIND_NAMES[kind]}, but the model at {flag} carries a {_KIND_NAMES[other_kind]} "
            f"({path}): its token ids mean other words than the model learned")


_KIND_NAMES = {"wordpiece": "WordPiece vocabulary", "sentencepiece": "SentencePiece model"}


def tokenizer_files_beside(directory):
    """(path, kind) of each tokenizer file a model in `directory` may carry: its vocab.txt and any *.model
    (SentencePiece, under whatever name the release gave it)."""
    found = [(os.path.join(directory, VOCAB_NAME), "wordpiece")]
    found += [(path, "sentencepiece") for path in sorted(glob.glob(os.path.join(glob.escape(directory), "*.model")))]
    return [(path, kind) for path, kind in found if os.path.isfile(path)]


def write_error_reason(error):
    """Why TensorFlow could not write a file ("No space left on device"), without the file's temporary name."""
    return error_text(error).rsplit("; ", 1)[-1]


def remove_partial(prefix):
    """Removes what a failed save left of checkpoint `prefix`: its files and TensorFlow's PREFIX_temp directory.

    A later save under the same name then starts clean, and no half-written file looks like a checkpoint.
    """
    for path in glob.glob(glob.escape(prefix) + ".*"):
        with contextlib.suppress(OSError):
            os.remove(path)
    shutil.rmtree(f"{prefix}_temp", ignore_errors=True)
