"""bert.progress: a tqdm bar on a terminal, plain lines in a log, and the commands' lines without a terminal."""

import contextlib
import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios

from tqdm import tqdm

from bert import progress
from conftest import PROGRESS_LINE, ROOT, run_cli


@contextlib.contextmanager
def stderr_to_file(path, monkeypatch):
    """stderr redirected to a file, as under horovodrun, Docker or Slurm, in a command named bert-test.

    In the test's body: pytest sets its own sys.stderr again between a fixture and the test.
    """
    monkeypatch.setattr(sys, "argv", ["bert-test"])
    with open(path, "w") as stderr:
        monkeypatch.setattr(sys, "stderr", stderr)
        try:
            yield
        finally:
            monkeypatch.setattr(sys, "stderr", sys.__stderr__)


def test_without_a_terminal_lines_say_how_far_and_then_the_time_left(tmp_path, monkeypatch):
    monkeypatch.setattr(progress, "PLAIN_SECONDS", 0)  # a line at every update
    with stderr_to_file(tmp_path / "stderr.log", monkeypatch):
        seen = list(progress.bar(range(0, 10, 4), desc="extract", unit="batch"))
        with progress.bar(total=3_000_000, desc="reading", unit="B", unit_scale=True) as read:
            read.update(1_500_000)
            read.set_postfix(instances=12, refresh=False)
            read.update(1_500_000)
    assert seen == [0, 4, 8]
    lines = (tmp_path / "stderr.log").read_text().splitlines()
    assert lines[0] == "bert-test: extract: batch 1 of 3 (33%)"  # nothing to reckon the time left from yet
    assert re.fullmatch(r"bert-test: extract: batch 2 of 3 \(66%\), \d+:\d\d:\d\d left", lines[1]), lines
    assert re.fullmatch(r"bert-test: extract: batch 3 of 3 \(100%\), 0:00:00 left", lines[2]), lines
    assert lines[3] == "bert-test: reading: 1.50MB of 3.00MB (50%)"
    assert re.fullmatch(r"bert-test: reading: 3.00MB of 3.00MB \(100%\), instances=12, 0:00:00 left", lines[4]), lines
    assert len(lines) == 5 and all(PROGRESS_LINE.match(line) for line in lines)


def test_without_a_terminal_short_work_stays_quiet_and_a_disabled_bar_says_nothing(tmp_path, monkeypatch):
    with stderr_to_file(tmp_path / "stderr.log", monkeypatch):
        for _ in progress.bar(range(100), desc="extract", unit="batch"):
            pass
        monkeypatch.setattr(progress, "PLAIN_SECONDS", 0)
        with progress.bar(total=4, desc="train", unit="step", disable=True) as hidden:
            hidden.update(4)
    assert (tmp_path / "stderr.log").read_text() == ""


def test_on_a_terminal_the_bar_is_tqdm(monkeypatch):
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # a bar needs columns to draw in
    with os.fdopen(follower, "w") as terminal:
        monkeypatch.setattr(sys, "stderr", terminal)
        shown = progress.bar(total=2, desc="train", unit="step")
        assert isinstance(shown, tqdm) and not shown.disable
        shown.update(2)
        shown.close()
    drawn = b""
    with contextlib.suppress(OSError):  # EIO once everything written before the terminal closed is read
        while chunk := os.read(leader, 4096):
            drawn += chunk
    os.close(leader)
    drawn = drawn.decode()
    assert "train: 100%" in drawn and "2/2" in drawn


def test_bert_create_data_logs_progress_lines_without_a_terminal(tmp_path, wikitext_docs, wikitext_test_docs,
                                                                 uncased_vocab):
    flags = [f"--input_file={wikitext_docs},{wikitext_test_docs}", f"--vocab_file={uncased_vocab}", "--dupe_factor=1"]
    quiet = run_cli("create_data", *flags, f"--output_file={tmp_path / 'quiet.tfrecord'}")
    assert quiet.returncode == 0, quiet.stderr
    # The same command, its lines due at every update.
    command = ("import sys; from bert import create_data, progress; progress.PLAIN_SECONDS = 0; "
               "sys.argv[0] = 'bert-create-data'; create_data.run()")
    logged = subprocess.run([sys.executable, "-c", command, *flags, f"--output_file={tmp_path / 'logged.tfrecord'}"],
                            capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            timeout=600)
    assert logged.returncode == 0, logged.stderr
    lines = logged.stderr.splitlines()
    reading = [line for line in lines if line.startswith("bert-create-data: reading: ")]
    instances = [line for line in lines if line.startswith("bert-create-data: instances: doc ")]
    # Reading is counted each MiB, not only at the end of a file: 1 MiB into the first, at its end, and so on.
    assert re.fullmatch(r"bert-create-data: reading: 1.0\dMB of 2.\d\dMB \((4\d)%\)", reading[0]), lines
    assert re.fullmatch(r"bert-create-data: reading: 2.\d\dMB of 2.\d\dMB \(100%\), 0:00:00 left", reading[-1]), lines
    assert len(reading) >= 4, lines
    assert instances and re.fullmatch(r"bert-create-data: instances: doc (\d+) of \1 \(100%\), 0:00:00 left",
                                      instances[-1]), lines
    assert all(PROGRESS_LINE.match(line) for line in reading + instances)
    assert "\r" not in logged.stderr  # no bar drawn into the log
    assert (tmp_path / "logged.tfrecord").read_bytes() == (tmp_path / "quiet.tfrecord").read_bytes()
