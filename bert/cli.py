"""What every command shares: absl flag parsing and reporting of bad input as one clear line.

A command's `main(argv)` raises `InputError` (or lets an OSError through) for anything the user got
wrong; `run_command` prints `<command>: error: <message>` to stderr and exits 1, with no traceback.
Flag errors (unknown flag, bad value, unreadable --flagfile) exit 2 the same way. Training stopped by
SIGINT or SIGTERM (`StopRequested`) says where it saved its work and exits 128 + the signal's number;
running out of memory names the batch-size flags.
"""

import codecs
import contextlib
import math
import os
import re
import signal
import sys

from absl import app, flags, logging

from bert import fileio
from bert.errors import InputError, StopRequested, Terminated

FLAGS = flags.FLAGS

def _program():
    """The command's name, also when it runs as `python -m bert.<module>`."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "bert"
    if name.endswith(".py"):
        name = "bert-" + name[:-3].replace("_", "-")
    return name


def fail(message, status=1):
    print(f"{_program()}: error: {message}", file=sys.stderr)
    fileio.remove_empty_created_dirs()
    sys.exit(status)


def _parse_flags(argv):
    _check_flag_files(argv[1:])
    try:
        return FLAGS(argv)
    except SystemExit:
        # Only absl's help flags exit while parsing, and they exit 1 after printing the help that was asked for.
        sys.exit(0)
    except (flags.Error, ValueError) as e:
        # ValueError: absl's own for a value given to a negated boolean (--nodo_lower_case=true).
        message = str(e).splitlines()[0].removeprefix("ERROR:: ")
        unknown = re.match(r"Unknown command line flag '([^']+)'", message)
        counterpart = unknown and _counterpart(unknown.group(1))
        if counterpart:
            message = f"Unknown command line flag '{unknown.group(1)}': {counterpart}"
        source = unknown and _flagfile_defining(unknown.group(1), argv[1:])
        fail(message + (f" (in --flagfile {source})" if source else ""), status=2)


def _check_flag_files(arguments, seen=()):
    """Refuses, naming it, a flag file among `arguments` (or the files those include) that absl would misread: one
    not UTF-8 (absl's error names no file), or one starting with a byte-order mark, as Notepad saves UTF-8, which
    absl reads as part of the first flag (then "unexpected argument", the mark unseen)."""
    for argument in arguments:
        path = argument.removeprefix("--flagfile=") if argument.startswith("--flagfile=") else None
        if not path or path in seen:
            continue
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            continue  # absl names it
        if data.startswith(codecs.BOM_UTF8):
            fail(f"--flagfile {path}: starts with a byte-order mark, which would be read as part of its first flag; "
                 f"save it as UTF-8 without one", status=2)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            line = data.count(b"\n", 0, e.start) + 1
            fail(f"--flagfile {path}: not UTF-8 (byte {e.start}, line {line})", status=2)
        _check_flag_files([line.strip() for line in text.splitlines()], (*seen, path))


# Flags of NVIDIA's TensorFlow BERT scripts (DeepLearningExamples) spelt otherwise here or with no counterpart, by
# the flag of ours a command must define for the hint to apply to it: a launch script of theirs then stops on a line
# saying what to give instead, not on a bare unknown flag or absl's guess at a similar name.
_NVIDIA_FLAGS = {
    "horovod": ("use_horovod", "use --use_horovod"),
    "amp": ("auto_mixed_precision", "use --auto_mixed_precision (float16 with dynamic loss scaling; bfloat16 with "
                                    "--amp_dtype=bfloat16)"),
    "use_fp16": ("auto_mixed_precision", "use --auto_mixed_precision (float16 with dynamic loss scaling)"),
    "manual_fp16": ("auto_mixed_precision", "use --auto_mixed_precision (float16 with dynamic loss scaling)"),
    "init_loss_scale": ("auto_mixed_precision", "float16 loss scaling starts at 2^15 and adapts to the gradients; drop "
                                                "it"),
    "report_loss": ("num_report_steps", "the loss is reported every --num_report_steps steps; drop it"),
    "display_loss_steps": ("num_report_steps", "use --num_report_steps"),
    "dllog_path": ("num_report_steps", "metrics go to TensorBoard event files in --output_dir; drop it"),
    "allreduce_post_accumulation": ("num_accumulation_steps", "gradients are always summed across ranks once a step, "
                                                              "after accumulation; drop it"),
    "input_files_dir": ("max_eval_steps", "name the records with --input_file, a glob or comma list such as "
                                      "--input_file='DIR/*'"),
    "eval_files_dir": ("max_eval_steps", "evaluate in a run of its own: --do_eval with --input_file naming the "
                                     "evaluation records"),
}


# Those of them that are booleans, which absl also takes negated (--noamp).
_NVIDIA_BOOLEANS = ("horovod", "amp", "use_fp16", "manual_fp16", "report_loss", "allreduce_post_accumulation")


def _counterpart(name):
    """What to give instead of NVIDIA's flag `name` (negated or not), or None where it is not one or this command
    has no counterpart."""
    negated = name not in _NVIDIA_FLAGS and name.startswith("no") and name[2:] in _NVIDIA_BOOLEANS
    ours, hint = _NVIDIA_FLAGS.get(name[2:] if negated else name, (None, None))
    if ours not in FLAGS:
        return None
    if negated and FLAGS[ours].default is False:
        return f"NVIDIA's --{name[2:]} is off here unless --{ours} is given; drop it"
    return f"NVIDIA's flag; {hint}"


def _flagfile_defining(name, arguments, seen=()):
    """The flag file among `arguments` (or the files those include) with a line setting --`name`, or None."""
    for argument in arguments:
        path = argument.removeprefix("--flagfile=") if argument.startswith("--flagfile=") else None
        if not path or path in seen:
            continue
        try:
            with open(path, encoding="utf-8") as f:
                lines = [line.strip() for line in f]
        except (OSError, UnicodeDecodeError):
            continue
        if any(re.match(rf"--(no)?{re.escape(name)}(=|$)", line) for line in lines):
            return path
        nested = _flagfile_defining(name, lines, (*seen, path))
        if nested:
            return nested
    return None


# The flags that name files or directories, and what a remote one (gs://bucket/...) looks like. The
# reference reads and writes through tf.gfile, which also reaches Cloud Storage; here everything is a local
# path, and a remote one would otherwise name a local directory "gs:" for the files Python writes while
# TensorFlow's own writes went to the bucket.
PATH_FLAGS = ("bert_config_file", "data_dir", "init_checkpoint", "input", "input_file", "logdir", "output",
              "output_dir", "output_file", "predict_file", "spm_model_file", "train_file", "vocab_file")
_REMOTE_PATH = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def _check_paths():
    """Refuses remote paths, and expands a leading ~ as the shell does not in --flag=~/path (a directory
    named "~" in the working directory would get the output)."""
    for name in PATH_FLAGS:
        value = FLAGS[name].value if name in FLAGS else None
        if not isinstance(value, str):
            continue
        paths = value.split(",")
        remote = next((path.strip() for path in paths if _REMOTE_PATH.match(path.strip())), None)
        if remote:
            fail(f"--{name}: {remote} is a remote path; this tool reads and writes local paths only (copy to or "
                 f"from the bucket with gsutil cp or aws s3 cp, or mount it with gcsfuse)")
        if any(path.startswith("~") for path in paths):
            setattr(FLAGS, name, ",".join(os.path.expanduser(path) for path in paths))


def run_command(main, required=()):
    """Runs `main(argv)` as a command: parses flags, checks `required` ones, reports bad input."""

    def checked_main(argv):
        # First: a flag given without its dashes (input_file=x) is that flag missing too.
        if len(argv) > 1:
            fail(f"unexpected argument '{argv[1]}'", status=2)
        missing = [name for name in required if FLAGS[name].value in (None, "")]
        if missing:
            fail(f"--{missing[0]} is required")
        _check_paths()
        logging.set_verbosity(logging.WARNING)
        try:
            return main(argv)
        except InputError as e:
            fail(str(e))
        except OSError as e:
            where = f": {e.filename}" if e.filename else ""
            fail(f"{e.strerror or e}{where}")
        except StopRequested as e:
            print(f"{_program()}: {e}", file=sys.stderr)
            sys.exit(e.status)
        except Terminated as e:
            fail("terminated; no output was finalised", status=128 + e.signal_number)
        except KeyboardInterrupt:
            fail("interrupted; no output was finalised", status=130)
        except MemoryError:
            fail("out of memory: this machine cannot hold what the flags ask for; lower the sizes they give "
                 "(sequence length, batch size)")
        except Exception as e:
            if not _out_of_memory(e):
                fileio.remove_empty_created_dirs()
                raise
            allocation = next((line.strip() for line in str(e).splitlines() if "OOM when allocating" in line), None)
            detail = f" ({allocation[:200]})" if allocation else ""
            tensor_bytes, memory_bytes = _tensor_bytes(allocation or ""), _memory_bytes()
            if tensor_bytes and memory_bytes and tensor_bytes > memory_bytes:
                fail(f"out of memory{detail}: that one tensor ({tensor_bytes / 2**30:,.0f} GiB) is larger than this "
                     f"machine's whole memory ({memory_bytes / 2**30:,.0f} GiB); check the sizes in the model config "
                     f"(--bert_config_file) and the batch size")
            fail(f"out of memory{detail}; lower the batch size (--train_batch_size, raising --num_accumulation_steps "
                 f"to keep the update, or --eval_batch_size, --predict_batch_size, --batch_size)")

    _list_command_flags_in_help()
    app.run(checked_main, flags_parser=_parse_flags)


_DTYPE_BYTES = {"half": 2, "bfloat16": 2, "float": 4, "int32": 4, "double": 8, "int64": 8}


def _tensor_bytes(allocation):
    """The size of the tensor TensorFlow's "OOM when allocating tensor with shape[...] and type ..." names, or None."""
    found = re.search(r"shape\[([\d,]*)\] and type (\w+)", allocation)
    if not found or found.group(2) not in _DTYPE_BYTES:
        return None
    return math.prod(int(n) for n in found.group(1).split(",") if n) * _DTYPE_BYTES[found.group(2)]


def _memory_bytes(swap=False):
    """The machine's physical memory in bytes (with `swap`, its swap space too), or None if unknown."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return None
    return physical + (_swap_bytes() if swap else 0)


def _swap_bytes():
    """The machine's swap space in bytes (0 where /proc/meminfo does not say)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("SwapTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def check_batches_fit(config, last_layer_queries=None, head_values=0, training=(), inference=()):
    """Refuses, before anything is read or written, a batch flag (by name: `training` ones for a training step,
    `inference` ones for a forward pass) whose batch of --max_seq_length sequences needs more memory than this
    machine has (swap included), counting only what the model's shapes force to exist at once: the output head's
    `head_values` float32 values a sequence (the masked-LM softmax, kept for the backward pass), and every layer's
    attention probabilities and feed-forward values, kept for the backward pass, or one layer's for a forward pass
    (the last layer's at its `last_layer_queries` positions alone, where the model computes no more there), which
    a forward pass has freed before its head's are made.
    TensorFlow on a CPU does not always turn so large a request into its out-of-memory error: the process may be
    killed, or crash in native code. On a GPU its allocator reports it, and the batch lives in the GPU's memory, not
    here. For batches that are always full: training's, and bert-pretrain's evaluation (its records repeat to fill
    a batch), not those of a fixed set of examples, which are no larger than the set."""
    from bert.tf import tf

    memory_bytes = _memory_bytes(swap=True)
    if not memory_bytes or tf.config.list_physical_devices("GPU"):
        return
    value_bytes = 2 if getattr(FLAGS, "auto_mixed_precision", False) else 4
    seq, heads, inner = FLAGS.max_seq_length, config.num_attention_heads, config.intermediate_size
    queries = seq if last_layer_queries is None else min(last_layer_queries, seq)
    last_layer = heads * queries * seq + queries * inner
    kept = (config.num_hidden_layers - 1) * (heads * seq * seq + seq * inner) + last_layer
    layer_peak = max(heads * queries * seq, queries * inner)
    if config.num_hidden_layers > 1:
        layer_peak = max(heads * seq * seq, seq * inner)
    for name, per_sequence in [*((n, kept) for n in training), *((n, layer_peak) for n in inference)]:
        batch = FLAGS[name].value
        # A forward pass has freed the layers' values by the time the head's are made.
        activations, head = batch * per_sequence * value_bytes, batch * head_values * 4
        need = activations + head if name in training else max(activations, head)
        if need > memory_bytes:
            lower = " (raising --num_accumulation_steps keeps the update)" if name in training else ""
            swap = " with swap" if _swap_bytes() else ""
            raise InputError(f"--{name}={batch}: {batch:,} sequences of {seq} tokens need at least "
                             f"{need / 2**30:,.1f} GiB for their activations alone, more than this machine's memory "
                             f"({memory_bytes / 2**30:,.1f} GiB{swap}); lower it{lower}")


def _out_of_memory(error):
    """TensorFlow's failure to allocate a tensor (its ResourceExhaustedError also stands for other exhausted resources)."""
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(error, tf.errors.ResourceExhaustedError) and "OOM" in str(error)


def _list_command_flags_in_help():
    """Makes --help list the command's flags: absl lists the main module's only, and ours are defined in bert's."""
    for module, module_flags in FLAGS.flags_by_module_dict().items():
        if module.startswith("bert."):
            for flag in module_flags:
                FLAGS.register_key_flag_for_module(sys.argv[0], flag)


def define_tokenizer_flags(spm_model_help="A SentencePiece model to tokenize with instead of --vocab_file (e.g. from "
                                          "bert-vocab)."):
    """The flags that choose a tokenizer, shared by every command that reads text."""
    flags.DEFINE_string("vocab_file", None, "The vocab.txt the BERT model was trained on (WordPiece).")
    flags.DEFINE_bool(
        "do_lower_case",
        True,
        "Lower-case and strip accents. True for uncased models, False for cased ones. With --spm_model_file, "
        "left out: the model's normalizer decides, and text is lower-cased first for a model without upper-case "
        "pieces (as ALBERT's); True lower-cases first for a model that keeps case; False is refused for a model "
        "that folds case.",
    )
    flags.DEFINE_string("spm_model_file", None, spm_model_help)


def define_model_flags(init_checkpoint_help="A checkpoint to initialise from (a released bert_model.ckpt or ours)."):
    """The flags that name a model: its config and the checkpoint it starts from."""
    flags.DEFINE_string(
        "bert_config_file",
        None,
        "The model's bert_config.json: a path (or a model directory holding one), a config name under configs/models, "
        "or tiny/mini/small/medium/base/large.",
    )
    flags.DEFINE_string("init_checkpoint", None, init_checkpoint_help)


_TPU_FLAGS = {
    "use_tpu": False,
    "tpu_name": None,
    "tpu_zone": None,
    "gcp_project": None,
    "master": None,
    "num_tpu_cores": 8,
    "iterations_per_loop": 1000,
    "use_one_hot_embeddings": False,
}


def define_tpu_flags():
    """The reference's TPU flags, accepted so that its scripts run unchanged, and ignored."""
    for name, default in _TPU_FLAGS.items():
        if isinstance(default, bool):
            flags.DEFINE_bool(name, default, "Accepted for compatibility with the reference and ignored.")
        elif isinstance(default, int):
            flags.DEFINE_integer(name, default, "Accepted for compatibility with the reference and ignored.")
        else:
            flags.DEFINE_string(name, default, "Accepted for compatibility with the reference and ignored.")


def warn_ignored_tpu_flags():
    given = [name for name in _TPU_FLAGS if FLAGS[name].present]
    if given:
        print(f"{_program()}: warning: ignoring TPU flag(s) {', '.join('--' + n for n in given)}", file=sys.stderr)


def define_training_flags():
    """The flags of every stage that trains: batches, optimizer, precision, data parallelism, checkpoints."""
    from bert import distributed, optimization  # here, so that the commands that do not train never load TensorFlow

    flags.DEFINE_integer("train_batch_size", 32, "Examples per micro-batch on each rank.")
    flags.DEFINE_integer("eval_batch_size", 8, "Examples per evaluation batch (unused by bert-squad, which predicts "
                         "in --predict_batch_size batches).")
    flags.DEFINE_float("learning_rate", 5e-5, "Peak learning rate.")
    flags.DEFINE_integer("save_checkpoints_steps", 1000, "Save a checkpoint every this many steps (and at the end).")
    flags.DEFINE_enum("optimizer_type", "adam", optimization.OPTIMIZERS, "adam (the reference's AdamWeightDecay), lamb, nadam or nlamb.")
    flags.DEFINE_bool("use_horovod", False, "Data parallelism over Horovod (run under horovodrun).")
    flags.DEFINE_enum(
        "distribution_strategy", "none", distributed.STRATEGIES,
        "Data parallelism engine: none, horovod (same as --use_horovod), or multi_worker_mirrored (tf.distribute, "
        "cluster in TF_CONFIG).",
    )
    flags.DEFINE_bool("scale_lr_by_world_size", False, "Multiply --learning_rate by the number of ranks (those the run "
                      "started on, when it resumes on another number: its global batch stays theirs).")
    flags.DEFINE_bool("auto_mixed_precision", False, "Compute in --amp_dtype; weights and optimizer state stay float32.")
    flags.DEFINE_enum("amp_dtype", "float16", ["float16", "bfloat16"], "float16 (dynamic loss scaling) or bfloat16.")
    flags.DEFINE_bool(
        "use_xla", False,
        "Compile the forward and backward pass with XLA (GELU, LayerNorm, dropout masks, the masked-LM loss's "
        "elementwise work and the optimizer update always are).",
    )
    flags.DEFINE_bool(
        "allow_tf32", False,
        "On Ampere and later NVIDIA GPUs, run float32 matmuls in TF32 (faster, 10-bit mantissa inputs). Off by "
        "default: float32 is true float32, as in the reference.",
    )
    flags.DEFINE_integer("num_accumulation_steps", 1, "Micro-batches accumulated into one optimizer step.")
    flags.DEFINE_integer("num_report_steps", 10, "Log to TensorBoard and the progress bar every this many steps.")
    flags.DEFINE_integer("keep_checkpoints", 5, "How many recent checkpoints to keep.")
    flags.DEFINE_integer("seed", 12345, "Seed of the initial weights, the input order and dropout.")
    flags.DEFINE_bool("deterministic", False, "TensorFlow op determinism: with --seed, a run is reproducible bit for bit.")


def define_fine_tuning_flags():
    """The flags bert-classify and bert-squad add to the training flags: epochs, warmup, prediction batches."""
    flags.DEFINE_integer("predict_batch_size", 8, "Examples (SQuAD: windows) per prediction batch.")
    flags.DEFINE_float("num_train_epochs", 3.0, "Epochs of fine-tuning.")
    flags.DEFINE_float("warmup_proportion", 0.1, "Fraction of the training steps with linear learning-rate warmup.")


def check_training_flags():
    positive = ("train_batch_size", "eval_batch_size", "save_checkpoints_steps", "num_accumulation_steps",
                "num_report_steps", "keep_checkpoints")
    for name in positive:
        if FLAGS[name].value < 1:
            raise InputError(f"--{name} must be at least 1, got {FLAGS[name].value}")
    if not 0 < FLAGS.learning_rate < math.inf:
        raise InputError(f"--learning_rate must be positive and finite, got {FLAGS.learning_rate}")
    if FLAGS.use_horovod and FLAGS.distribution_strategy not in ("none", "horovod"):
        raise InputError(f"--use_horovod contradicts --distribution_strategy={FLAGS.distribution_strategy}")


def check_case_matches_checkpoint(use="fine-tune on"):
    """Refuses a --do_lower_case that contradicts the casing of the released model --init_checkpoint names; a
    SentencePiece model decides its casing itself."""
    from bert import tokenization

    if not FLAGS.spm_model_file:
        tokenization.validate_case_matches_checkpoint(FLAGS.do_lower_case, FLAGS.init_checkpoint, use)


def check_fine_tuning_flags():
    check_training_flags()
    check_case_matches_checkpoint()
    if FLAGS.predict_batch_size < 1:
        raise InputError(f"--predict_batch_size must be at least 1, got {FLAGS.predict_batch_size}")
    if not 0 < FLAGS.num_train_epochs < math.inf:
        raise InputError(f"--num_train_epochs must be positive and finite, got {FLAGS.num_train_epochs}")
    if not 0 <= FLAGS.warmup_proportion <= 1:
        raise InputError(f"--warmup_proportion must be in [0, 1], got {FLAGS.warmup_proportion}")


def print_summary(line, *outputs):
    """Prints a command's summary line to stdout, or to stderr where one of its outputs is stdout itself
    (--output_file=/dev/stdout), whose content the line would otherwise join."""
    from bert.fileio import is_stdout

    print(line, file=sys.stderr if any(is_stdout(path) for path in outputs) else sys.stdout)


def rank_log():
    """A function printing `<command>: message` to stderr on whichever rank calls it."""

    def log(message):
        print(f"{_program()}: {message}", file=sys.stderr)

    return log


@contextlib.contextmanager
def signals_deferred(what):
    """Within it Ctrl-C, SIGTERM and SIGHUP wait for its end, so that outputs put in place together (files renamed
    in, then the manifest naming them) are never left half replaced; one that came meanwhile is reported in a
    warning naming `what`, and the command goes on to its end, its outputs complete. From the main thread only."""
    arrived = []
    with fileio.handling_signals(fileio.unignored(signal.SIGINT, signal.SIGTERM, signal.SIGHUP),
                                 lambda received, frame: arrived.append(received)):
        yield
    if arrived:
        rank_log()(f"warning: {signal.Signals(arrived[0]).name} came while {what} were put in place; they are complete, "
                   f"and the command finished")


def chief_log(replicas):
    """A function printing `<command>: message` to stderr on rank 0 only."""
    return rank_log() if replicas.rank == 0 else (lambda message: None)


def start_training_run():
    """The data-parallel replicas the flags ask for, with TensorFlow seeded (deterministic, TF32 if asked).

    Warns when the flags ask for a half precision this machine can only emulate, or name one that is not used.
    """
    from bert import distributed, training
    from bert.tf import tf

    replicas = distributed.make_replicas("horovod" if FLAGS.use_horovod else FLAGS.distribution_strategy)
    if FLAGS.deterministic:
        tf.config.experimental.enable_op_determinism()
    tf.config.experimental.enable_tensor_float_32_execution(FLAGS.allow_tf32)
    tf.random.set_seed(FLAGS.seed)
    warning = training.emulated_precision_warning(compute_dtype(), training.cpu_flags(),
                                                  has_gpu=bool(tf.config.list_physical_devices("GPU")))
    if warning:
        chief_log(replicas)(warning)
    if FLAGS["amp_dtype"].present and not FLAGS.auto_mixed_precision:
        chief_log(replicas)(f"warning: --amp_dtype={FLAGS.amp_dtype} has no effect without --auto_mixed_precision; "
                            f"computing in float32")
    return replicas


def compute_dtype():
    return FLAGS.amp_dtype if FLAGS.auto_mixed_precision else "float32"


def training_options(output_dir, num_train_steps, num_warmup_steps):
    """The TrainOptions of the training flags for a run of `num_train_steps`."""
    from bert import training

    return training.TrainOptions(
        output_dir=output_dir,
        num_train_steps=num_train_steps,
        num_warmup_steps=num_warmup_steps,
        learning_rate=FLAGS.learning_rate,
        scale_learning_rate_by_ranks=FLAGS.scale_lr_by_world_size,
        optimizer_type=FLAGS.optimizer_type,
        micro_batch_size=FLAGS.train_batch_size,
        num_accumulation_steps=FLAGS.num_accumulation_steps,
        save_checkpoints_steps=FLAGS.save_checkpoints_steps,
        keep_checkpoints=FLAGS.keep_checkpoints,
        num_report_steps=FLAGS.num_report_steps,
        seed=FLAGS.seed,
        compute_dtype=compute_dtype(),
        use_xla=FLAGS.use_xla,
    )


def fine_tuning_options(output_dir, num_examples, replicas):
    """(TrainOptions, examples per rank per step, global batch) for --num_train_epochs over `num_examples`.

    As the reference counts them: int(examples / global batch x epochs) steps, --warmup_proportion of them warmup.
    """
    rank_batch = FLAGS.train_batch_size * FLAGS.num_accumulation_steps
    global_batch = rank_batch * replicas.size
    num_train_steps = max(1, int(num_examples / global_batch * FLAGS.num_train_epochs))
    num_warmup_steps = int(num_train_steps * FLAGS.warmup_proportion)
    return training_options(output_dir, num_train_steps, num_warmup_steps), rank_batch, global_batch


def make_tokenizer(required_tokens=("[CLS]", "[SEP]")):
    """The tokenizer of --spm_model_file, else of --vocab_file; its vocabulary must hold `required_tokens` and the
    token it gives to what it cannot match."""
    from bert import tokenization

    check_tokenizer_flags()
    tokenizer = tokenization.make_tokenizer(FLAGS.vocab_file, FLAGS.spm_model_file, tokenizer_lower_case())
    for token in (*required_tokens, tokenizer.unk_token):
        if token not in tokenizer.vocab:
            raise InputError(f"{vocabulary_source()}: the vocabulary has no {token} token")
    return tokenizer


def warn_if_casing_differs(tokenizer, log):
    """Warns through `log` where --do_lower_case does not suit the casing of --vocab_file's pieces."""
    from bert import tokenization

    warning = tokenization.casing_warning(tokenizer, FLAGS.vocab_file)
    if warning:
        log(warning)


def tokenizer_lower_case():
    """--do_lower_case as the tokenizer takes it: with a SentencePiece model, only where it is given (its model's
    normalizer cases text otherwise; see tokenization.SentencePieceTokenizer)."""
    if FLAGS.spm_model_file and not FLAGS["do_lower_case"].present:
        return None
    return FLAGS.do_lower_case


def check_tokenizer_flags():
    if not FLAGS.vocab_file and not FLAGS.spm_model_file:
        raise InputError("--vocab_file (or --spm_model_file) is required")
    if FLAGS.vocab_file and FLAGS.spm_model_file:
        raise InputError("--vocab_file and --spm_model_file both given: give one (a SentencePiece model holds its own vocabulary)")


def tokenizer_files():
    """The files the tokenizer is read from, which no output may replace."""
    return [path for path in (FLAGS.vocab_file, FLAGS.spm_model_file) if path]


def tokenizer_file():
    """(the tokenizer's file, its kind: "wordpiece" or "sentencepiece"), as an exported model carries it."""
    return (FLAGS.spm_model_file, "sentencepiece") if FLAGS.spm_model_file else (FLAGS.vocab_file, "wordpiece")


def vocabulary_source():
    """The file the tokenizer's vocabulary comes from, for messages."""
    return FLAGS.spm_model_file or FLAGS.vocab_file


def load_config_and_tokenizer(log):
    """The model config of --bert_config_file and the tokenizer of --spm_model_file or --vocab_file, checked
    against each other and (a warning to `log`) against the vocabulary beside --init_checkpoint."""
    from bert import checkpoints
    from bert import config as bert_config

    config = bert_config.load_config(FLAGS.bert_config_file)
    bert_config.check_seq_length(config, FLAGS.max_seq_length)
    tokenizer = make_tokenizer()
    bert_config.check_vocab(config, tokenizer.vocab_size, vocabulary_source())
    warn_if_casing_differs(tokenizer, log)
    checkpoints.warn_if_vocabulary_differs(FLAGS.init_checkpoint, tokenizer_file(), log)
    return config, tokenizer


def write_results(path, results):
    """`key = value` lines, sorted by key, as the reference's eval_results.txt."""
    from bert.fileio import AtomicFile

    with AtomicFile(path) as f:
        for key in sorted(results):
            # str(), not format(): numpy float32 then prints as the reference's results do.
            f.write(f"{key} = {results[key]!s}\n")
