"""The README's runnable command blocks, run as written in a copy of the repository: the quick start first."""

import hashlib
import os
import re
import shutil
import subprocess

import pytest

from tests.conftest import ROOT, unavailable

RUNNABLE = re.compile(r"<!-- runnable -->\n```bash\n(.*?)```", re.S)


def runnable_blocks():
    return RUNNABLE.findall((ROOT / "README.md").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def repository_copy(tmp_path_factory):
    """The tracked files in a fresh directory, sharing this checkout's .venv (set-up is bin/test's job)."""
    if not (ROOT / ".git").exists():
        unavailable("not a git checkout")
    copy = tmp_path_factory.mktemp("clone") / "bert"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, files):
        source = ROOT / os.fsdecode(name)
        if source.is_file():
            (copy / os.fsdecode(name)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / os.fsdecode(name))
    # The copy's bin/setup would install the package from the copy into the shared .venv, should its set-up
    # files differ from those bin/setup last installed from (edited during the run).
    digest = hashlib.sha256(b"".join((copy / name).read_bytes() for name in ("setup.cfg", "pyproject.toml", "bin/setup")))
    if not list((ROOT / ".venv").glob(f".bert-setup-{digest.hexdigest()[:16]}-*")):
        pytest.fail("setup.cfg, pyproject.toml or bin/setup changed since bin/setup last ran: run bin/setup (or bin/test)")
    (copy / ".venv").symlink_to(ROOT / ".venv")
    return copy


def run_block(block, cwd):
    return subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=cwd, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(cwd)), timeout=1200)


def test_every_runnable_block_runs_and_the_quick_start_delivers(repository_copy):
    blocks = runnable_blocks()
    assert blocks and blocks[0].strip() == "bin/quickstart"
    for block in blocks:
        result = run_block(block, repository_copy)
        assert result.returncode == 0, f"{block}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"

    out = repository_copy / "quickstart_output"
    again = run_block("bin/quickstart", repository_copy)
    assert again.returncode == 0, again.stderr[-3000:]
    summary = again.stdout.split("== 7/7 summary", 1)[1]
    for path in ("vocab.txt", "records.tfrecord", "pretrain/", "mrpc/", "features.jsonl", "pretrain/loss_curve.png"):
        assert str(out / path) in summary, path
    losses = re.search(r"training loss ([\d.]+) at step \d+ -> ([\d.]+) at step 600", summary)
    assert losses and float(losses.group(2)) < float(losses.group(1)) - 0.5, summary
    assert (out / "pretrain" / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = dict(line.split(" = ") for line in (out / "pretrain" / "eval_results.txt").read_text().splitlines())
    assert {"masked_lm_accuracy", "next_sentence_accuracy", "loss", "global_step"} <= set(results)
    assert len((out / "mrpc" / "test_results.tsv").read_text().splitlines()) == 40
    # The second run reused everything: no new vocabulary or records, training resumed at its end.
    assert "reusing" in again.stdout and "(step 600)" in again.stderr
    assert (out / "hf" / "model.safetensors").exists() and (out / "again.jsonl").exists()
