"""What every command shares: absl flag parsing and reporting of bad input as one clear line.

A command's `main(argv)` raises `InputError` (or lets an OSError through) for anything the user got
wrong; `run_command` prints `<command>: error: <message>` to stderr and exits 1, with no traceback.
Flag errors (unknown flag, bad value, unreadable --flagfile) exit 2 the same way.
"""

import os
import sys

from absl import app, flags, logging

from bert.errors import InputError

FLAGS = flags.FLAGS

def _program():
    """The command's name, also when it runs as `python -m bert.<module>`."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "bert"
    if name.endswith(".py"):
        name = "bert-" + name[:-3].replace("_", "-")
    return name


def fail(message, status=1):
    print(f"{_program()}: error: {message}", file=sys.stderr)
    sys.exit(status)


def _parse_flags(argv):
    try:
        return FLAGS(argv)
    except flags.Error as e:
        fail(str(e).splitlines()[0], status=2)


def run_command(main, required=()):
    """Runs `main(argv)` as a command: parses flags, checks `required` ones, reports bad input."""

    def checked_main(argv):
        missing = [name for name in required if FLAGS[name].value in (None, "")]
        if missing:
            fail(f"--{missing[0]} is required")
        if len(argv) > 1:
            fail(f"unexpected argument '{argv[1]}'", status=2)
        logging.set_verbosity(logging.WARNING)
        try:
            return main(argv)
        except InputError as e:
            fail(str(e))
        except OSError as e:
            where = f": {e.filename}" if e.filename else ""
            fail(f"{e.strerror or e}{where}")
        except KeyboardInterrupt:
            fail("interrupted; no output was finalised", status=130)

    app.run(checked_main, flags_parser=_parse_flags)


def define_tokenizer_flags():
    """The flags that choose a tokenizer, shared by every command that reads text."""
    flags.DEFINE_string("vocab_file", None, "The vocab.txt the BERT model was trained on (WordPiece).")
    flags.DEFINE_bool(
        "do_lower_case",
        True,
        "Lower-case and strip accents. True for uncased models, False for cased ones.",
    )
    flags.DEFINE_string(
        "spm_model_file",
        None,
        "A SentencePiece model to tokenize with instead of --vocab_file (e.g. from bert-vocab).",
    )


def define_model_flags(init_checkpoint_help="A checkpoint to initialise from (a released bert_model.ckpt or ours)."):
    """The flags that name a model: its config and the checkpoint it starts from."""
    flags.DEFINE_string(
        "bert_config_file",
        None,
        "The model's bert_config.json: a path, a config name under configs/models, or tiny/mini/small/medium/base/large.",
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
