"""bert-pretrain end to end: outputs, exact resume after SIGKILL or SIGTERM, refusals, NaN stop, AMP, accumulation."""

import fcntl
import gzip
import io
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from bert import checkpoints, distributed, modeling, pretraining, progress, records, training
from bert.config import BertConfig
from bert.errors import DamagedRecordError, InputError, StopRequested
from tests import numpy_bert
from tests.conftest import (PROGRESS_LINE, ROOT, assert_clean_failure, file_size_limit, message_lines, run_cli,
                            run_with_random_kills, shared_file, wait_for)
from tests.pretrain_fixtures import PREDICTIONS, SEQ, SMALL_MODEL, pretrain_args
from tests.test_modeling import random_weights, reference_shapes, write_tf1_checkpoint


def tensors(prefix):
    reader = tf.train.load_checkpoint(str(prefix))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def snapshot(directory):
    return {p.relative_to(directory): (p.stat().st_mtime_ns, p.stat().st_size) for p in directory.rglob("*") if p.is_file()}


def test_train_eval_export(records_dir, small_config, tmp_path):
    out = tmp_path / "runs" / "wiki" / "phase1"  # missing parents are made, as the reference's MakeDirs does
    # The glob matches bert-create-data's manifest.json beside the records too: it is passed over.
    result = run_cli("pretrain", *pretrain_args(records_dir, small_config, out, "--do_train", "--do_eval",
                                                "--num_train_steps=12", "--save_checkpoints_steps=5",
                                                "--keep_checkpoints=2", "--max_eval_steps=5", inputs="*"))
    assert result.returncode == 0, result.stderr
    assert "trained to step 12" in result.stdout and "eval masked_lm_accuracy" in result.stdout
    assert "\r" not in result.stderr  # its stderr is no terminal: no progress bar drawn into it

    exported = tensors(out / "bert_model.ckpt")
    assert int(exported.pop("global_step")) == 12
    config = BertConfig.from_dict(SMALL_MODEL)
    assert {k: list(v.shape) for k, v in exported.items()} == reference_shapes(config)
    assert json.loads((out / "bert_config.json").read_text()) == config.to_dict()
    # The vocabulary the records' manifest names goes beside them, as in a released model's directory.
    assert (out / "vocab.txt").read_bytes() == shared_file("vocab", "uncased_vocab.txt").read_bytes()
    # Kept: the last two training checkpoints (12 is the final one), their input positions and one before: a
    # position is saved before its checkpoint, and a run killed in between resumes from the one before.
    assert sorted(p.name for p in out.glob("ckpt-*.index")) == ["ckpt-10.index", "ckpt-12.index"]
    assert sorted(p.name for p in (out / "data" / "rank-0").glob("*.index")) == ["data-10.index", "data-12.index",
                                                                                  "data-5.index"]

    lines = (out / "eval_results.txt").read_text().splitlines()
    keys = [line.split(" = ")[0] for line in lines]
    assert keys == sorted(["masked_lm_accuracy", "masked_lm_loss", "next_sentence_accuracy",
                           "next_sentence_loss", "global_step", "loss"])
    values = dict(line.split(" = ") for line in lines)
    assert values["global_step"] == "12"
    assert float(values["masked_lm_loss"]) < np.log(30522)  # better than uniform after 12 steps
    # The reference's metrics over the 5 batches of 8 records evaluated (the first 40, in order), recomputed by the
    # NumPy forward pass of the exported weights: weighted means over all masked positions, means over all examples,
    # and "loss" the mean of the batches' losses.
    batch = {key: value.numpy() for key, value in _batch(records_dir, 40).items()}
    layers, heads = SMALL_MODEL["num_hidden_layers"], SMALL_MODEL["num_attention_heads"]
    mlm_logp, nsp_logp = numpy_bert.pretraining_log_probs(exported, layers, heads, batch)
    ids, weights = batch["masked_lm_ids"].reshape(-1), batch["masked_lm_weights"].reshape(-1)
    nsp_labels = batch["next_sentence_labels"].reshape(-1)
    want = {
        "masked_lm_loss": -(weights * mlm_logp[np.arange(len(ids)), ids]).sum() / weights.sum(),
        "masked_lm_accuracy": (weights * (mlm_logp.argmax(-1) == ids)).sum() / weights.sum(),
        "next_sentence_loss": -nsp_logp[np.arange(len(nsp_labels)), nsp_labels].mean(),
        "next_sentence_accuracy": (nsp_logp.argmax(-1) == nsp_labels).mean(),
        "loss": np.mean([sum(numpy_bert.pretraining_losses(
            exported, layers, heads, {key: value[i : i + 8] for key, value in batch.items()})) for i in range(0, 40, 8)]),
    }
    for key, value in want.items():
        assert float(values[key]) == pytest.approx(value, rel=1e-4, abs=1e-6), key

    tags, starts = set(), []
    for event_file in out.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            tags.update(v.tag for v in event.summary.value)
            if event.HasField("session_log"):
                starts.append((event.step, event.session_log.status))
    assert {"loss", "masked_lm_accuracy", "learning_rate", "sequences_per_second", "loss_scale"} <= tags
    assert starts == [(1, tf.compat.v1.SessionLog.START)]  # TensorBoard's mark of a run's start, after step 0

    curve = run_cli("loss_curve", f"--logdir={out}", f"--output={tmp_path / 'curve.png'}")
    assert curve.returncode == 0, curve.stderr
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Written to stdout (a pipe here), the image alone goes there, byte for byte, and the summary to stderr.
    piped = subprocess.run([sys.executable, "-m", "bert.loss_curve", f"--logdir={out}", "--output=/proc/self/fd/1"],
                           capture_output=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=600)
    assert piped.returncode == 0 and piped.stdout == (tmp_path / "curve.png").read_bytes(), piped.stderr
    assert b"bert-loss-curve: loss" in piped.stderr
    assert_clean_failure(run_cli("loss_curve", f"--logdir={out}", f"--output={tmp_path / 'nowhere' / 'curve.png'}"),
                         "--output", "directory does not exist")
    assert_clean_failure(run_cli("loss_curve", f"--logdir={records_dir}"), "--logdir", "no TensorBoard event files")

    # Evaluating the exported model from another directory gives the same figures; as in the reference,
    # whose global_step is its own run's, an --init_checkpoint alone is evaluated at step 0.
    elsewhere = tmp_path / "eval_only"
    evaluated = run_cli("pretrain", *pretrain_args(records_dir, small_config, elsewhere, "--do_eval",
                                                   f"--init_checkpoint={out / 'bert_model.ckpt'}", "--max_eval_steps=5"))
    assert evaluated.returncode == 0, evaluated.stderr
    assert "vocabulary" not in evaluated.stderr  # the records' vocabulary is the one exported beside the model
    elsewhere_values = dict(line.split(" = ") for line in (elsewhere / "eval_results.txt").read_text().splitlines())
    assert elsewhere_values == {**values, "global_step": "0"}
    # Where the run has checkpoints, its newest is evaluated, and an --init_checkpoint (a typo here) is said to be unread.
    unread = tmp_path / "no_such_model" / "bert_model.ckpt"
    evaluated = run_cli("pretrain", *pretrain_args(records_dir, small_config, out, "--do_eval", f"--init_checkpoint={unread}",
                                                   "--max_eval_steps=5"))
    assert evaluated.returncode == 0, evaluated.stderr
    assert (f"evaluating {out / 'ckpt-12'}, the run's newest checkpoint; --init_checkpoint {unread} is not read"
            in evaluated.stderr)
    assert dict(line.split(" = ") for line in (out / "eval_results.txt").read_text().splitlines()) == values

    # Running the finished command again does no more steps and changes no checkpoint.
    final = out / "ckpt-12.index"
    before = final.stat().st_mtime_ns, final.stat().st_size
    again = run_cli("pretrain", *pretrain_args(records_dir, small_config, out, "--do_train", f"--init_checkpoint={unread}",
                                               "--num_train_steps=12", "--save_checkpoints_steps=5"))
    assert again.returncode == 0, again.stderr
    assert f"resuming from {out / 'ckpt-12'} (step 12); --init_checkpoint {unread} is not read" in again.stderr
    assert (final.stat().st_mtime_ns, final.stat().st_size) == before


def _command(records_dir, config, out, save_every=4):
    return [sys.executable, "-m", "bert.pretrain", *pretrain_args(
        records_dir, config, out, "--do_train", "--num_train_steps=30", f"--save_checkpoints_steps={save_every}",
        "--deterministic", "--seed=7", "--keep_checkpoints=3")]


@pytest.fixture(scope="module")
def uninterrupted(records_dir, small_config, tmp_path_factory):
    """The exported weights of _command run start to finish."""
    out = tmp_path_factory.mktemp("uninterrupted")
    subprocess.run(_command(records_dir, small_config, out), check=True, capture_output=True, env=_env(), cwd=ROOT)
    return tensors(out / "bert_model.ckpt")


def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT))


def _assert_same_weights(want, got):
    assert sorted(want) == sorted(got)
    for name in want:
        assert np.array_equal(want[name], got[name]), name


def test_sigkill_at_any_point_then_resume_is_bit_identical(records_dir, small_config, tmp_path, uninterrupted):
    interrupted = tmp_path / "interrupted"
    # Kill while it trains: after each attempt's first checkpoint appears, at a random moment.
    kills = run_with_random_kills(_command(records_dir, small_config, interrupted), interrupted, attempts=3, seed=0, max_delay=1.5)
    assert kills >= 1
    finish = subprocess.run(_command(records_dir, small_config, interrupted), capture_output=True, text=True, env=_env(), cwd=ROOT)
    assert finish.returncode == 0, finish.stderr
    _assert_same_weights(uninterrupted, tensors(interrupted / "bert_model.ckpt"))


KILLING_PRETRAIN = """\
import os, runpy, signal, sys

import tensorflow as tf

# Kills this process with SIGKILL at a save of checkpoint number STEP: of the input position (a manager
# under data/rank-N) or of the model, before it is written or after.
what, when, step = sys.argv.pop(1), sys.argv.pop(1), int(sys.argv.pop(1))
save = tf.train.CheckpointManager.save


def killing_save(self, checkpoint_number=None, **kwargs):
    here = checkpoint_number == step and (what == "position") == os.path.basename(self.directory).startswith("rank-")
    if here and when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    path = save(self, checkpoint_number=checkpoint_number, **kwargs)
    if here and when == "after":
        os.kill(os.getpid(), signal.SIGKILL)
    return path


tf.train.CheckpointManager.save = killing_save
runpy.run_module("bert.pretrain", run_name="__main__", alter_sys=True)
"""


def test_sigkill_at_each_point_of_a_checkpoint_save_then_resume_is_bit_identical(records_dir, small_config, tmp_path,
                                                                                uninterrupted):
    script = tmp_path / "killing_pretrain.py"
    script.write_text(KILLING_PRETRAIN)
    out = tmp_path / "run"
    command = _command(records_dir, small_config, out)
    # Each resumed run is killed at the next point: before the input position is saved, between it and the model,
    # after the model; checkpoints every 4 steps.
    for what, when, step in (("position", "before", 8), ("model", "before", 12), ("model", "after", 16)):
        killed = subprocess.run([sys.executable, str(script), what, when, str(step), *command[3:]], capture_output=True,
                                text=True, env=_env(), cwd=ROOT, timeout=600)
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
        assert (out / f"ckpt-{step}.index").exists() == (when == "after"), (what, when)
    finish = subprocess.run(command, capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=600)
    assert finish.returncode == 0, finish.stderr
    _assert_same_weights(uninterrupted, tensors(out / "bert_model.ckpt"))


def test_sigterm_saves_the_step_it_stops_after_and_the_resumed_run_is_bit_identical(records_dir, small_config, tmp_path,
                                                                                    uninterrupted):
    out = tmp_path / "stopped"
    command = _command(records_dir, small_config, out, save_every=10)
    process = subprocess.Popen(command, env=_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(out / "ckpt-10.index", process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    lines = message_lines(stderr)
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    stopped = re.fullmatch(rf"bert-pretrain: stopped by SIGTERM after step (\d+) of 30; saved {re.escape(str(out))}/ckpt-(\d+); "
                           "run the same command again to resume", lines[0])
    assert stopped and stopped[1] == stopped[2], lines[0]
    step = int(stopped[1])
    assert 10 < step < 30
    # The stop's own checkpoint and input position, off the schedule (unless it fell on step 20).
    assert (out / f"ckpt-{step}.index").exists() and (out / "data" / "rank-0" / f"data-{step}.index").exists()
    assert not (out / "bert_model.ckpt.index").exists()

    # Resumed on a full disk: the first thing it writes is its TensorBoard events file, which it names. (AutoGraph
    # warns first that it cannot write its own temporary files.)
    saved = {path: data for path, data in snapshot(out).items() if not path.name.startswith("events.")}
    full = subprocess.run(command, capture_output=True, text=True, env=_env(), cwd=ROOT, preexec_fn=file_size_limit(16))
    assert full.returncode == 1 and "Traceback" not in full.stderr, full.stderr
    assert full.stderr.splitlines()[-1] == (
        f"bert-pretrain: error: cannot write TensorBoard events to {out} after step {step}: File too large; the newest "
        f"checkpoint is {out}/ckpt-{step}: run the same command again to resume from it")
    assert {path: data for path, data in snapshot(out).items() if not path.name.startswith("events.")} == saved

    finish = subprocess.run(command, capture_output=True, text=True, env=_env(), cwd=ROOT)
    assert finish.returncode == 0, finish.stderr
    assert f"resuming from {out}/ckpt-{step} (step {step})" in finish.stderr
    _assert_same_weights(uninterrupted, tensors(out / "bert_model.ckpt"))


def test_a_missing_or_damaged_checkpoint_file_is_rebuilt_and_the_run_resumes_bit_identical(records_dir, small_config,
                                                                                            tmp_path, uninterrupted):
    out = tmp_path / "run"
    command = _command(records_dir, small_config, out)
    process = subprocess.Popen(command, env=_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(out / "ckpt-8.index", process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    step = int(re.search(r"after step (\d+) of 30", stderr)[1])
    assert step < 24  # so that the run's own saves from here replace every checkpoint it had
    state_file, newest = out / "checkpoint", str(out / f"ckpt-{step}")
    # A newer index cut short, as a kill while TensorFlow wrote it would leave: unreadable, so passed over.
    (out / "ckpt-31.index").write_bytes((out / f"ckpt-{step}.index").read_bytes()[:100])

    # Without the file TensorFlow sees no checkpoint, and the run would start again over its own checkpoints.
    for damage, problem in [(None, "missing"), (b"", "damaged (it names no checkpoint)"),
                            (state_file.read_bytes()[:40], "damaged ("), (b"\xff\xfe\x00", "damaged ('utf-8' codec")]:
        if damage is None:
            state_file.unlink()
        else:
            state_file.write_bytes(damage)
        said = []
        assert checkpoints.newest_checkpoint(str(out), said.append) == newest
        assert len(said) == 1 and said[0].startswith(f"warning: {state_file} is {problem}"), said
        assert said[0].endswith(f"; taking {newest}, the newest readable checkpoint there"), said
        # --init_checkpoint does not guess which of a directory's checkpoints is meant.
        with pytest.raises(InputError, match="no usable 'checkpoint' file saying which is latest"):
            checkpoints.resolve_checkpoint(out)
    state_file.write_bytes(b"")
    (out / "data" / "rank-0" / "checkpoint").write_bytes(b"")

    finish = subprocess.run(command, capture_output=True, text=True, env=_env(), cwd=ROOT)
    assert finish.returncode == 0, finish.stderr
    assert f"{state_file} is damaged (it names no checkpoint); taking {newest}" in finish.stderr
    assert f"resuming from {newest} (step {step})" in finish.stderr
    _assert_same_weights(uninterrupted, tensors(out / "bert_model.ckpt"))
    # Both files were written again in full, so --keep_checkpoints=3 still counted and deleted the older checkpoints.
    assert sorted(p.name for p in out.glob("ckpt-*.index")) == ["ckpt-24.index", "ckpt-28.index", "ckpt-30.index",
                                                                 "ckpt-31.index"]
    # The input positions of those, and the one saved before them: the stop's, or that of step 20.
    positions = sorted(int(p.name[len("data-"):-len(".index")]) for p in (out / "data" / "rank-0").glob("data-*.index"))
    assert positions == [max(step, 20), 24, 28, 30]


def test_an_unreadable_input_position_is_reported_and_its_input_restarts(tmp_path):
    ranks = tmp_path / "data" / "rank-0"
    ranks.mkdir(parents=True)
    (ranks / "checkpoint").write_bytes(b"")
    (ranks / "data-4.index").write_bytes(bytes(100))
    position = training.DataPosition(str(tmp_path), 0, 3, {"files": [], "ranks": 1}, resume_step=4)
    assert not (ranks / "checkpoint").exists()  # nothing readable to list, so the manager starts a new list
    iterator, unrestored = position.open(lambda start: tf.data.Dataset.range(start, 10), 4)
    assert unrestored.startswith(f"{ranks / 'data-4'} is damaged: ")
    assert int(next(iterator)) == 4  # a stream started at the step resumed


def test_a_second_training_process_on_a_run_in_progress_is_refused(records_dir, small_config, tmp_path):
    out = tmp_path / "busy"
    endless = [sys.executable, "-m", "bert.pretrain", *pretrain_args(
        records_dir, small_config, out, "--do_train", "--num_train_steps=1000000", "--save_checkpoints_steps=1000000")]
    process = subprocess.Popen(endless, env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(out / "run.json", process)
        before = (out / "run.json").read_bytes()
        second = run_cli("pretrain", *pretrain_args(records_dir, small_config, out, "--do_train", "--num_train_steps=2"))
        assert_clean_failure(second, f"--output_dir: {out} is in use by another training process (it holds {out / '.lock'})")
        assert (out / "run.json").read_bytes() == before and not list(out.glob("ckpt-*"))
        assert process.poll() is None
    finally:
        process.kill()
        process.wait()
    # However its holder ended, the lock ends with it.
    after = run_cli("pretrain", *pretrain_args(records_dir, small_config, out, "--do_train", "--num_train_steps=2"))
    assert after.returncode == 0, after.stderr
    assert (out / "ckpt-2.index").exists()


def test_a_first_signal_asks_for_a_stop_and_a_second_acts_as_without_it():
    # SIGINT as in a terminal, whatever started pytest (a background job starts with it ignored).
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
        with training.StopSignals() as signals:
            assert signal.getsignal(signal.SIGTERM) == signals._receive  # else SIGTERM would end pytest
            signal.raise_signal(signal.SIGTERM)
            assert signals.received == signal.SIGTERM
            assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
            with pytest.raises(KeyboardInterrupt):
                signal.raise_signal(signal.SIGINT)
        assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    finally:
        signal.signal(signal.SIGINT, inherited)


# A signal at step 4 stops after step 5, saved off the schedule; one in the last step stops there, before the export.
@pytest.mark.parametrize("signal_at, stopped_at, saved, on_saves", [
    (4, 5, ["ckpt-4", "ckpt-5"], [4]),
    (8, 8, ["ckpt-4", "ckpt-8"], [4, 8]),
])
def test_fit_stops_at_the_end_of_the_step_after_a_signal_and_saves_it(records_dir, tmp_path, signal_at, stopped_at, saved,
                                                                      on_saves):
    config = BertConfig.from_dict(SMALL_MODEL)
    trainer = _trainer(config, output_dir=str(tmp_path), num_train_steps=8, save_checkpoints_steps=4, micro_batch_size=4)
    files = sorted(str(p) for p in records_dir.glob("*.tfrecord"))
    dataset = pretraining.training_dataset(files, 4, SEQ, PREDICTIONS, seed=1)
    seen = []
    handler = signal.getsignal(signal.SIGTERM)

    def on_save(step):
        seen.append(step)
        if step == signal_at:  # as if SIGTERM came while this checkpoint was written
            signal.raise_signal(signal.SIGTERM)

    with pytest.raises(StopRequested) as stopped:
        training.fit(trainer, lambda _: dataset, trainer.options, distributed.Single(), log=lambda _: None,
                     on_save=on_save, input_files=files)
    assert stopped.value.status == 128 + signal.SIGTERM
    assert str(stopped.value) == (f"stopped by SIGTERM after step {stopped_at} of 8; saved {tmp_path / f'ckpt-{stopped_at}'}; "
                                  "run the same command again to resume")
    assert int(trainer.step.numpy()) == stopped_at
    assert sorted(p.stem for p in tmp_path.glob("ckpt-*.index")) == saved
    assert seen == on_saves  # only the scheduled checkpoints reach on_save (classify's --keep_best)
    assert signal.getsignal(signal.SIGTERM) == handler


def test_a_checkpoint_written_whole_is_kept_when_recording_it_fails(records_dir, tmp_path):
    # TensorFlow writes the `checkpoint` file, removes checkpoints past --keep_checkpoints and writes the file again
    # after the checkpoint itself: a failure there must not take the complete checkpoint with it, the only one with
    # --keep_checkpoints=1 once the others are removed. Here the first write of the file fails.
    config = BertConfig.from_dict(SMALL_MODEL)
    files = sorted(str(p) for p in records_dir.glob("*.tfrecord"))
    dataset = pretraining.training_dataset(files, 4, SEQ, PREDICTIONS, seed=1)
    state_file = tmp_path / "checkpoint"
    # What an earlier save of ckpt-4, killed, left in its staging directory: no sign that this one is unfinished.
    stale = tmp_path / "ckpt-4_temp" / "part-00000-of-00001.data-00000-of-00001.tempstate123"
    stale.parent.mkdir()
    stale.write_bytes(b"\0" * 64)

    def unrecordable(step):  # a directory in the `checkpoint` file's place: TensorFlow's rename onto it fails
        if step == 2:
            state_file.unlink()
            (state_file / "in-the-way").mkdir(parents=True)

    trainer = _trainer(config, output_dir=str(tmp_path), num_train_steps=6, save_checkpoints_steps=2, micro_batch_size=4,
                       keep_checkpoints=1)
    with pytest.raises(InputError) as failed:
        training.fit(trainer, lambda _: dataset, trainer.options, distributed.Single(), log=lambda _: None,
                     on_save=unrecordable, input_files=files)
    assert str(failed.value).startswith(f"cannot write checkpoint {tmp_path / 'ckpt-4'} after step 4: ")
    assert str(failed.value).endswith(f"; the newest checkpoint is {tmp_path / 'ckpt-4'}: run the same command again to "
                                      "resume from it")
    assert (tmp_path / "ckpt-4.index").exists() and not stale.parent.exists()

    shutil.rmtree(state_file)
    lines = []
    resumed = _trainer(config, output_dir=str(tmp_path), num_train_steps=6, save_checkpoints_steps=2, micro_batch_size=4,
                       keep_checkpoints=1)
    training.fit(resumed, lambda _: dataset, resumed.options, distributed.Single(), log=lines.append, input_files=files)
    assert f"resuming from {tmp_path / 'ckpt-4'} (step 4)" in lines
    assert sorted(p.name for p in tmp_path.glob("ckpt-*.index")) == ["ckpt-6.index"]


def test_a_rank_signalled_in_the_last_step_waits_for_the_chief_s_last_checkpoint(records_dir, tmp_path):
    # Launchers end every rank once one has exited: leaving at once could kill the chief while it saves. Under
    # horovodrun --gloo here the ranks' shutdown waits anyway (test_distributed runs it); this checks the order of
    # the collectives that keeps it so under any launcher.
    collectives = []

    class ChiefOfTwo(distributed.Single):  # the order of the barriers and the chief's saves is what is checked
        size = 2

        def barrier(self):
            collectives.append("barrier")

    config = BertConfig.from_dict(SMALL_MODEL)
    trainer = _trainer(config, output_dir=str(tmp_path), num_train_steps=2, save_checkpoints_steps=2, micro_batch_size=4)
    files = sorted(str(p) for p in records_dir.glob("*.tfrecord"))
    dataset = pretraining.training_dataset(files, 4, SEQ, PREDICTIONS, seed=1)
    train_step = trainer.train_step

    def signalled_during_the_last_step(features, requests):
        report = train_step(features, requests)
        if int(trainer.step.numpy()) == 2:
            signal.raise_signal(signal.SIGTERM)
        return report

    trainer.train_step = signalled_during_the_last_step
    with pytest.raises(StopRequested, match="stopped by SIGTERM after step 2 of 2"):
        training.fit(trainer, lambda _: dataset, trainer.options, ChiefOfTwo(), log=lambda _: None,
                     on_save=lambda step: collectives.append(f"saved ckpt-{step}"), input_files=files)
    assert collectives == ["barrier", "saved ckpt-2", "barrier"]


def test_without_a_terminal_fit_and_evaluate_log_progress_lines_and_then_the_time_left(records_dir, tmp_path,
                                                                                     monkeypatch):
    monkeypatch.setattr(progress, "PLAIN_SECONDS", 0)  # a line at every step
    monkeypatch.setattr(sys, "argv", ["bert-pretrain"])
    config = BertConfig.from_dict(SMALL_MODEL)
    trainer = _trainer(config, output_dir=str(tmp_path), num_train_steps=6, save_checkpoints_steps=6, micro_batch_size=4,
                       num_report_steps=2)
    files = sorted(str(p) for p in records_dir.glob("*.tfrecord"))
    log = tmp_path / "stderr.log"
    with open(log, "w") as no_terminal:  # whatever runs pytest
        monkeypatch.setattr(sys, "stderr", no_terminal)
        training.fit(trainer, lambda _: pretraining.training_dataset(files, 4, SEQ, PREDICTIONS, seed=1), trainer.options,
                     distributed.Single(), global_batch_size=4, input_files=files)
        training.evaluate(trainer.task, pretraining.evaluation_dataset(files, 4, SEQ, PREDICTIONS), 3)
        monkeypatch.undo()
    said = [line for line in log.read_text().splitlines() if PROGRESS_LINE.match(line)]  # not TensorFlow's warnings
    # The first line, after the first step (and its compiling), has no time left yet; the loss comes at each report.
    assert said[0] == "bert-pretrain: train: step 1 of 6 (16%)", said
    report, left = r", loss=\d+\.\d{4}, seq_s=\d+\.\d", r", \d+:\d\d:\d\d left"
    for step, line in enumerate(said[1:6], start=2):
        percent = 100 * step // 6
        assert re.fullmatch(rf"bert-pretrain: train: step {step} of 6 \({percent}%\){report}{left}", line), line
    assert len(said) == 9
    assert said[6] == "bert-pretrain: eval: batch 1 of 3 (33%)"
    assert re.fullmatch(r"bert-pretrain: eval: batch 3 of 3 \(100%\), 0:00:00 left", said[8]), said


def test_a_hangup_asks_training_to_stop_as_sigterm_does():
    # A closed terminal or ssh session: the run stops at the end of its step and saves, as for SIGTERM.
    outside = []  # where StopSignals took no hold of SIGHUP: rather than pytest's end
    before = signal.signal(signal.SIGHUP, lambda number, frame: outside.append(number))
    try:
        with training.StopSignals() as signals:
            signal.raise_signal(signal.SIGHUP)
    finally:
        signal.signal(signal.SIGHUP, before)
    assert signals.received == signal.SIGHUP and not outside
    assert training._stop_requested(signals.received, 7, 10, "run").status == 128 + signal.SIGHUP


def test_an_ignored_signal_stays_ignored():
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with training.StopSignals() as signals:
            signal.raise_signal(signal.SIGINT)
            assert signals.received is None
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_refuses_output_dir_of_another_run_and_leaves_it(records_dir, small_config, tmp_path):
    out = tmp_path / "run"
    first = run_cli("pretrain", *pretrain_args(records_dir, small_config, out, "--do_train", "--num_train_steps=2"))
    assert first.returncode == 0, first.stderr
    # Nor is what a killed writer left there swept by a command refused.
    (out / ".eval_results.txt.tmp-k3x9q1").write_bytes(b"partial")
    before = snapshot(out)
    bigger = tmp_path / "bigger.json"
    bigger.write_text(json.dumps({**SMALL_MODEL, "num_hidden_layers": 3}))
    result = run_cli("pretrain", *pretrain_args(records_dir, bigger, out, "--do_train", "--num_train_steps=4"))
    assert_clean_failure(result, "--output_dir", "a different 'num_hidden_layers' in --bert_config_file (2, now 3)")
    lamb = run_cli("pretrain", *pretrain_args(records_dir, small_config, out, "--do_train", "--num_train_steps=4",
                                              "--optimizer_type=lamb"))
    assert_clean_failure(lamb, "optimizer_type")
    smaller = run_cli("pretrain", *pretrain_args(records_dir, small_config, out, "--do_train", "--num_train_steps=4",
                                                 "--train_batch_size=4"))
    assert_clean_failure(smaller, "a different global_batch_size (--train_batch_size times --num_accumulation_steps times "
                                  "the number of ranks) (8, now 4)")
    # Every difference at once, not one per attempt.
    both = run_cli("pretrain", *pretrain_args(records_dir, small_config, out, "--do_train", "--num_train_steps=4",
                                              "--train_batch_size=4", "--optimizer_type=lamb"))
    assert_clean_failure(both, "(8, now 4); a different optimizer_type (\"adam\", now \"lamb\")")
    # A fine-tuning command given the pre-training run's directory is told what it holds.
    classify = run_cli("classify", "--task_name=MRPC", f"--data_dir={ROOT / 'data' / 'mrpc_sample'}", "--do_train",
                       f"--vocab_file={shared_file('vocab', 'uncased_vocab.txt')}", f"--bert_config_file={small_config}",
                       f"--output_dir={out}", "--max_seq_length=32")
    assert_clean_failure(classify, f"--output_dir: {out} holds a bert-pretrain run, not a bert-classify one",
                         f"--init_checkpoint={out}")
    # Evaluation reads the run's weights into the config's model: one that is not the run's is refused, not scored.
    heads = tmp_path / "heads.json"
    heads.write_text(json.dumps({**SMALL_MODEL, "num_attention_heads": 4}))  # the same shapes, another function
    for config, key in ((bigger, "'num_hidden_layers' is 3"), (heads, "'num_attention_heads' is 4")):
        evaluated = run_cli("pretrain", *pretrain_args(records_dir, config, out, "--do_eval"))
        assert_clean_failure(evaluated, f"--bert_config_file: its {key}, but the model trained in --output_dir {out}",
                             f"give the run's own, {out / 'bert_config.json'}")
    assert snapshot(out) == before
    undropped = tmp_path / "undropped.json"
    undropped.write_text(json.dumps({**SMALL_MODEL, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}))
    # With --num_train_steps=0, as the reference's evaluation-only runs are given.
    evaluated = run_cli("pretrain", *pretrain_args(records_dir, undropped, out, "--do_eval", "--num_train_steps=0"))
    assert evaluated.returncode == 0, evaluated.stderr


def test_a_run_run_again_says_it_has_nothing_to_train_or_what_its_resumption_changes(records_dir, small_config, tmp_path):
    out = tmp_path / "run"
    first = run_cli("pretrain", *pretrain_args(records_dir, small_config, out, "--do_train", "--num_train_steps=2"))
    assert first.returncode == 0, first.stderr
    events = sorted(out.glob("events.out.tfevents.*"))
    assert events
    # What a run killed as it wrote its results or its export left; not what a process writing there holds.
    leftovers = [out / ".eval_results.txt.tmp-k3x9q1", out / ".bert_model.ckpt.tmp-4194000.index"]
    for leftover in leftovers:
        leftover.write_bytes(b"partial")
    with open(out / ".other.txt.tmp-a1b2c3", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        for steps, where in ((2, "has reached the flags' last step (2)"), (1, "is at step 2, past the flags' last step (1)")):
            again = run_cli("pretrain", *pretrain_args(records_dir, small_config, out, "--do_train", f"--num_train_steps={steps}"))
            assert again.returncode == 0, again.stderr
            assert f"note: the run in {out} {where}: nothing to train" in again.stderr
            assert "trained to step 2" in again.stdout
            assert "note: resuming" not in again.stderr  # nor another --num_train_steps, which takes no step
            assert not any(leftover.exists() for leftover in leftovers)
            assert (out / ".other.txt.tmp-a1b2c3").exists()
    # Nor an empty events file, which TensorBoard would list as a run.
    assert sorted(out.glob("events.out.tfevents.*")) == events

    # Resumed with another learning rate or seed, it trains on with them, and says so once.
    changed = ("--learning_rate=5e-4", "--seed=7")
    resumed = run_cli("pretrain", *pretrain_args(records_dir, small_config, out, "--do_train", "--num_train_steps=3", *changed))
    assert resumed.returncode == 0, resumed.stderr
    assert (f"note: resuming the run in {out} with another learning_rate (0.001, now 0.0005), num_train_steps (2, now 3), "
            f"seed (12345, now 7): its further steps take the new values") in resumed.stderr
    again = run_cli("pretrain", *pretrain_args(records_dir, small_config, out, "--do_train", "--num_train_steps=4", *changed,
                                               "--scale_lr_by_world_size"))
    assert again.returncode == 0, again.stderr
    assert f"note: resuming the run in {out} with another num_train_steps (3, now 4), scale_lr_by_world_size (false, " \
           f"now true): its further steps take the new values" in again.stderr
    assert "trained to step 4" in again.stdout

    # A run record of a version that recorded fewer settings: the missing one is recorded, not noted as changed.
    record_file = out / training.RUN_FILE
    record = json.loads(record_file.read_text())
    del record[training.CHANGEABLE]["scale_lr_by_world_size"]
    record_file.write_text(json.dumps(record))
    older = run_cli("pretrain", *pretrain_args(records_dir, small_config, out, "--do_train", "--num_train_steps=5", *changed,
                                               "--scale_lr_by_world_size"))
    assert older.returncode == 0, older.stderr
    assert f"note: resuming the run in {out} with another num_train_steps (4, now 5): its further steps take the new " \
           f"value\n" in older.stderr
    assert json.loads(record_file.read_text())[training.CHANGEABLE]["scale_lr_by_world_size"] is True


def test_a_run_resumes_with_its_batch_split_into_more_micro_batches(records_dir, small_config, tmp_path):
    # As the out-of-memory message advises: the same batch per step in smaller pieces.
    out = tmp_path / "run"
    first = run_cli("pretrain", *pretrain_args(records_dir, small_config, out, "--do_train", "--num_train_steps=2"))
    assert first.returncode == 0, first.stderr
    split = run_cli("pretrain", *pretrain_args(records_dir, small_config, out, "--do_train", "--num_train_steps=4",
                                               "--train_batch_size=4", "--num_accumulation_steps=2"))
    assert split.returncode == 0, split.stderr
    assert "resuming from" in split.stderr and "trained to step 4" in split.stdout
    # Runs recorded by earlier versions, with each rank's batch or its split, resume too.
    record = json.loads((out / "run.json").read_text())
    del record["global_batch_size"]
    (out / "run.json").write_text(json.dumps({**record, "micro_batch_size": 8, "num_accumulation_steps": 1}))
    again = run_cli("pretrain", *pretrain_args(records_dir, small_config, out, "--do_train", "--num_train_steps=6",
                                               "--train_batch_size=2", "--num_accumulation_steps=4"))
    assert again.returncode == 0, again.stderr
    assert "trained to step 6" in again.stdout
    (out / "run.json").write_text(json.dumps({**record, "rank_batch_size": 8}))
    refused = run_cli("pretrain", *pretrain_args(records_dir, small_config, out, "--do_train", "--num_train_steps=8",
                                                 "--train_batch_size=4"))
    assert_clean_failure(refused, "a different global_batch_size (--train_batch_size times --num_accumulation_steps times "
                                  "the number of ranks) (8, now 4)")


def test_an_init_checkpoint_that_the_export_would_replace_is_refused_and_left(records_dir, small_config, tmp_path):
    first = run_cli("pretrain", *pretrain_args(records_dir, small_config, tmp_path / "run", "--do_train", "--num_train_steps=2"))
    assert first.returncode == 0, first.stderr
    released = tmp_path / "released"  # as a released model's directory: bert_model.ckpt and bert_config.json
    released.mkdir()
    for path in [*(tmp_path / "run").glob("bert_model.ckpt.*"), tmp_path / "run" / "bert_config.json"]:
        shutil.copy(path, released)
    before = snapshot(released)
    for init in (released, released / "bert_model.ckpt", released / "bert_model.ckpt.index"):
        result = run_cli("pretrain", *pretrain_args(records_dir, small_config, released, "--do_train", "--num_train_steps=2",
                                                    f"--init_checkpoint={init}"))
        assert_clean_failure(result, f"--init_checkpoint: {released / 'bert_model.ckpt'} is where this run exports its "
                                     "model, which would replace it; use another --output_dir")
    # Starting afresh there, or from another checkpoint, would replace it all the same.
    for init in ((), (f"--init_checkpoint={tmp_path / 'run' / 'ckpt-2'}",)):
        result = run_cli("pretrain", *pretrain_args(records_dir, small_config, released, "--do_train", "--num_train_steps=2",
                                                    *init))
        assert_clean_failure(result, f"--output_dir: {released} holds a model (bert_model.ckpt) of another run (no run.json), "
                                     "which this run's export would replace; use another --output_dir")
    assert snapshot(released) == before


def test_an_output_dir_of_the_reference_s_training_is_refused_and_left(records_dir, small_config, tmp_path):
    # As run_pretraining.py leaves it: model.ckpt-N with global_step and Adam slots, named by `checkpoint`.
    reference_run = tmp_path / "pretraining_output"
    reference_run.mkdir()
    weights = random_weights(BertConfig.from_json_file(small_config))
    slots = {f"{name}/adam_{slot}": np.zeros_like(value) for name, value in weights.items() for slot in "mv"}
    for named in ("model.ckpt-1000", "model.ckpt"):
        write_tf1_checkpoint(reference_run / named, {**weights, **slots, "global_step": np.int64(1000)})
    # A TF1 Saver writes absolute paths: those of the machine the run was made on, where it was moved from.
    for named, found in (("model.ckpt-1000", "model.ckpt-1000"), ("model.ckpt", "model.ckpt"),
                         ("/elsewhere/pretraining_output/model.ckpt-1000", "model.ckpt-1000")):
        (reference_run / "checkpoint").write_text(f'model_checkpoint_path: "{named}"\n'
                                                  f'all_model_checkpoint_paths: "{named}"\n')
        before = snapshot(reference_run)
        result = run_cli("pretrain", *pretrain_args(records_dir, small_config, reference_run, "--do_train",
                                                    "--num_train_steps=2",
                                                    f"--init_checkpoint={reference_run / 'model.ckpt-1000'}"))
        assert_clean_failure(result, f"--output_dir: {reference_run} holds another program's training run: its checkpoint "
                                     f"file names {reference_run / found}; to start from that checkpoint give it as "
                                     "--init_checkpoint, with another --output_dir")
        assert snapshot(reference_run) == before


def test_an_output_dir_of_another_tf2_program_s_checkpoints_is_refused_and_left(records_dir, small_config, tmp_path):
    # As a tf.train.CheckpointManager, whose checkpoints are named ckpt-N too, leaves its directory: no run.json.
    other = tmp_path / "model_garden_run"
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(step=tf.Variable(7)), str(other), max_to_keep=1)
    manager.save(checkpoint_number=7)
    before = snapshot(other)
    result = run_cli("pretrain", *pretrain_args(records_dir, small_config, other, "--do_train", "--num_train_steps=2"))
    assert_clean_failure(result, f"--output_dir: {other} holds checkpoints of another run (no run.json); use another "
                                 "--output_dir")
    assert snapshot(other) == before


def test_damaged_or_deleted_checkpoints_are_named_or_passed_over(records_dir, small_config, tmp_path):
    run = tmp_path / "run"
    first = run_cli("pretrain", *pretrain_args(records_dir, small_config, run, "--do_train", "--num_train_steps=4",
                                               "--save_checkpoints_steps=2"))
    assert first.returncode == 0, first.stderr
    data = "ckpt-4.data-00000-of-00001"

    truncated = tmp_path / "truncated"
    shutil.copytree(run, truncated)
    (truncated / data).write_bytes((run / data).read_bytes()[:1000])
    before = snapshot(truncated)
    resumed = run_cli("pretrain", *pretrain_args(records_dir, small_config, truncated, "--do_train", "--num_train_steps=6"))
    assert_clean_failure(resumed, "--output_dir", "ckpt-4 is damaged or incomplete", "delete its files (ckpt-4.*)")
    fresh = tmp_path / "fresh"
    from_damaged = run_cli("pretrain", *pretrain_args(records_dir, small_config, fresh, "--do_train", "--num_train_steps=2",
                                                      f"--init_checkpoint={truncated / 'ckpt-4'}"))
    assert_clean_failure(from_damaged, "--init_checkpoint", "ckpt-4 is damaged or incomplete")
    assert snapshot(truncated) == before

    # The refused run saved no checkpoint, so it does not bind its --output_dir to its flags.
    fresh_again = run_cli("pretrain", *pretrain_args(records_dir, small_config, fresh, "--do_train", "--num_train_steps=2",
                                                     "--train_batch_size=4", f"--init_checkpoint={run / 'ckpt-4'}"))
    assert fresh_again.returncode == 0, fresh_again.stderr
    assert json.loads((fresh / "run.json").read_text())["global_batch_size"] == 4

    # Deleting the newest checkpoint goes back to the one before it.
    for path in truncated.glob("ckpt-4.*"):
        path.unlink()
    back = run_cli("pretrain", *pretrain_args(records_dir, small_config, truncated, "--do_train", "--num_train_steps=6"))
    assert back.returncode == 0, back.stderr
    assert f"{truncated / 'ckpt-4'}, the newest checkpoint in {truncated / 'checkpoint'}, is missing" in back.stderr
    assert f"resuming from {truncated / 'ckpt-2'} (step 2)" in back.stderr
    assert tf.train.latest_checkpoint(str(truncated)) == str(truncated / "ckpt-6")
    # ckpt-4 is forgotten, so that it does not count towards --keep_checkpoints.
    state = tf.train.get_checkpoint_state(str(truncated))
    assert list(state.all_model_checkpoint_paths) == [str(truncated / "ckpt-2"), str(truncated / "ckpt-6")]


def test_a_failed_write_stops_naming_the_file_and_keeps_every_checkpoint_before_it(records_dir, small_config, tmp_path):
    run = tmp_path / "run"
    first = run_cli("pretrain", *pretrain_args(records_dir, small_config, run, "--do_train", "--num_train_steps=2",
                                               "--save_checkpoints_steps=2"))
    assert first.returncode == 0, first.stderr
    export_size = (run / "bert_model.ckpt.data-00000-of-00001").stat().st_size
    # Below the model's size, above everything else a run writes (run.json, TensorBoard events, input positions).
    limit = export_size // 2
    assert max(p.stat().st_size for p in run.rglob("*") if not p.name.startswith(("ckpt-", "bert_model"))) < limit
    kept = {p: p.read_bytes() for p in [run / "checkpoint", *run.glob("ckpt-2.*")]}

    # Keeping one checkpoint, the input position saved with ckpt-2 outlives the failed ckpt-4, and the run resumes
    # from both.
    full = run_cli("pretrain", *pretrain_args(records_dir, small_config, run, "--do_train", "--num_train_steps=4",
                                              "--save_checkpoints_steps=2", "--keep_checkpoints=1"), max_file_size=limit)
    assert full.returncode == 1 and "Traceback" not in full.stderr, full.stderr
    assert full.stderr.splitlines()[-1] == (
        f"bert-pretrain: error: cannot write checkpoint {run / 'ckpt-4'} after step 4: File too large; the newest "
        f"checkpoint is {run / 'ckpt-2'}: run the same command again to resume from it")
    assert not list(run.glob("ckpt-4*")) and not list(run.glob(".*tmp*"))
    assert {p: p.read_bytes() for p in kept} == kept

    # Trained, but the export fails: it leaves no staged file and names the checkpoint holding the model.
    for path in run.glob("bert_model.ckpt.*"):
        path.unlink()
    unexported = run_cli("pretrain", *pretrain_args(records_dir, small_config, run, "--do_train", "--num_train_steps=2"),
                         max_file_size=limit)
    assert unexported.returncode == 1 and "Traceback" not in unexported.stderr, unexported.stderr
    assert unexported.stderr.splitlines()[-1] == (
        f"bert-pretrain: error: cannot write {run / 'bert_model.ckpt'}: File too large; the trained model is saved as "
        f"{run / 'ckpt-2'}: run the same command again to export it")
    assert sorted(p.name for p in run.glob("*bert_model*")) == []

    resumed = run_cli("pretrain", *pretrain_args(records_dir, small_config, run, "--do_train", "--num_train_steps=4",
                                                 "--save_checkpoints_steps=2"))
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from {run / 'ckpt-2'} (step 2)" in resumed.stderr
    assert "input position" not in resumed.stderr
    assert tensors(run / "bert_model.ckpt")["global_step"] == 4

    # TensorBoard's events file grows every --num_report_steps; a failure there stops the run the same way. (Below
    # 8 KiB AutoGraph could not write its own temporary files, and would warn.)
    logs = tmp_path / "logs"
    no_room = run_cli("pretrain", *pretrain_args(records_dir, small_config, logs, "--do_train", "--num_train_steps=500",
                                                 "--num_report_steps=1"), max_file_size=16384)
    assert_clean_failure(no_room, f"cannot write TensorBoard events to {logs} after step", "File too large",
                         "no checkpoint was saved: run the same command again to start over")
    assert not list(logs.glob("ckpt-*"))


def test_a_record_that_is_not_an_example_nor_text_is_named(records_dir, tmp_path):
    path = tmp_path / "junk.tfrecord"
    with open(records_dir / "part-00000-of-00002.tfrecord", "rb") as stream:
        good = list(records.read_records(stream))
    path.write_bytes(b"".join(records.frame_record(data) for data in [b"\xff\xff\xffjunk", *good]))
    for every_record in (False, True):
        with pytest.raises(InputError, match=f"^{re.escape(str(path))}: record 0 is not a tf.train.Example"):
            pretraining.check_records([str(path)], SEQ, PREDICTIONS, BertConfig.from_dict(SMALL_MODEL), every_record)


def test_the_vocabulary_exported_is_the_one_every_manifest_names_as_it_was(records_dir, tmp_path):
    shards = [str(p) for p in sorted(records_dir.glob("part-*.tfrecord"))]
    assert pretraining.records_vocabulary(shards) == (str(shared_file("vocab", "uncased_vocab.txt")), "wordpiece")
    # Records of the reference's script (no manifest) beside ours: no one vocabulary is named.
    bare = tmp_path / "bare.tfrecord"
    shutil.copyfile(shards[0], bare)
    assert pretraining.records_vocabulary([*shards, str(bare)]) is None
    # A vocabulary file changed since the records were made is not theirs.
    made = tmp_path / "made"
    made.mkdir()
    vocab = made / "vocab.txt"
    vocab.write_bytes(shared_file("vocab", "uncased_vocab.txt").read_bytes())
    manifest = json.loads((records_dir / records.MANIFEST_NAME).read_text())
    shutil.copyfile(shards[0], made / "records.tfrecord")
    (made / "records.tfrecord.manifest.json").write_text(json.dumps(
        {**manifest, "files": [{"path": "records.tfrecord"}], "vocab": {**manifest["vocab"], "file": str(vocab)}}))
    assert pretraining.records_vocabulary([str(made / "records.tfrecord")]) == (str(vocab), "wordpiece")
    vocab.write_text("[PAD]\n", encoding="utf-8")
    assert pretraining.records_vocabulary([str(made / "records.tfrecord")]) is None
    # One that cannot be read (another user's, private; here a file every read of fails) is not theirs either.
    private = tmp_path / "private"
    private.mkdir()
    shutil.copyfile(shards[0], private / "records.tfrecord")
    (private / "records.tfrecord.manifest.json").write_text(json.dumps(
        {**manifest, "files": [{"path": "records.tfrecord"}], "vocab": {**manifest["vocab"], "file": "/proc/self/mem"}}))
    assert pretraining.records_vocabulary([str(private / "records.tfrecord")]) is None
    (made / "records.tfrecord").unlink()  # deleted since training read it
    assert pretraining.records_vocabulary([str(made / "records.tfrecord")]) is None


def test_the_exported_vocabulary_replaces_a_link_to_another_rather_than_writing_through_it(tmp_path):
    other = tmp_path / "someone-elses-vocab.txt"
    other.write_text("[PAD]\n", encoding="utf-8")
    run = tmp_path / "run"
    run.mkdir()
    (run / "vocab.txt").symlink_to(other)
    source = shared_file("vocab", "uncased_vocab.txt")
    checkpoints.export_tokenizer_file(str(source), "wordpiece", str(run))
    assert not (run / "vocab.txt").is_symlink() and (run / "vocab.txt").read_bytes() == source.read_bytes()
    assert other.read_text(encoding="utf-8") == "[PAD]\n"
    # A link to the vocabulary itself is left as it is.
    (run / "vocab.txt").unlink()
    (run / "vocab.txt").symlink_to(source)
    checkpoints.export_tokenizer_file(str(source), "wordpiece", str(run))
    assert (run / "vocab.txt").is_symlink()


def test_a_vocabulary_other_than_the_one_beside_the_initial_model_is_warned_of(tmp_path):
    model = tmp_path / "uncased_L-2_H-128_A-2"
    model.mkdir()
    (model / "bert_model.ckpt.index").write_bytes(b"")  # where the checkpoint is, all resolve_checkpoint reads
    uncased, cased = shared_file("vocab", "uncased_vocab.txt"), shared_file("vocab", "cased_vocab.txt")
    warnings = []
    checkpoints.warn_if_vocabulary_differs(str(model / "bert_model.ckpt"), (str(uncased), "wordpiece"), warnings.append)
    assert warnings == []  # no vocabulary beside it: nothing to compare
    shutil.copyfile(uncased, model / "vocab.txt")
    for vocab in (uncased, model / "vocab.txt"):
        checkpoints.warn_if_vocabulary_differs(str(model), (str(vocab), "wordpiece"), warnings.append)
    assert warnings == []
    checkpoints.warn_if_vocabulary_differs(str(model / "bert_model.ckpt"), (str(cased), "wordpiece"), warnings.append)
    assert warnings == [f"warning: the vocabulary {cased} is not the one beside --init_checkpoint ({model / 'vocab.txt'}): "
                        f"its token ids mean other words than the model learned"]


def test_a_tokenizer_of_another_kind_or_name_than_the_one_beside_the_model_is_warned_of(tmp_path, sentencepiece_model):
    model = tmp_path / "albert_like"
    model.mkdir()
    (model / "bert_model.ckpt.index").write_bytes(b"")
    # Releases name their SentencePiece model as they like (ALBERT's is 30k-clean.model).
    shutil.copyfile(sentencepiece_model, model / "30k-clean.model")
    uncased = shared_file("vocab", "uncased_vocab.txt")
    other = tmp_path / "other.model"
    other.write_bytes(b"not the same model")
    warnings = []
    checkpoints.warn_if_vocabulary_differs(str(model), (str(sentencepiece_model), "sentencepiece"), warnings.append)
    assert warnings == []
    checkpoints.warn_if_vocabulary_differs(str(model), (str(other), "sentencepiece"), warnings.append)
    checkpoints.warn_if_vocabulary_differs(str(model), (str(uncased), "wordpiece"), warnings.append)
    assert warnings == [
        f"warning: the vocabulary {other} is not the one beside --init_checkpoint ({model / '30k-clean.model'}): its "
        f"token ids mean other words than the model learned",
        f"warning: {uncased} is a WordPiece vocabulary, but the model at --init_checkpoint carries a SentencePiece model "
        f"({model / '30k-clean.model'}): its token ids mean other words than the model learned",
    ]


def test_records_of_another_vocabulary_than_the_runs_export_or_each_other_are_warned_of(records_dir, small_config, tmp_path):
    # Records whose manifest names the cased vocabulary (as bert-create-data writes it), beside the uncased ones.
    cased = shared_file("vocab", "cased_vocab.txt")
    other = tmp_path / "cased_records"
    other.mkdir()
    shutil.copyfile(records_dir / "part-00000-of-00002.tfrecord", other / "part-00000-of-00001.tfrecord")
    manifest = json.loads((records_dir / records.MANIFEST_NAME).read_text())
    uncased = manifest["vocab"]["file"]
    manifest["files"] = [{"path": "part-00000-of-00001.tfrecord", "num_instances": manifest["files"][0]["num_instances"]}]
    manifest["vocab"] = {**manifest["vocab"], "file": str(cased), "sha256": records.file_sha256(str(cased)), "size": 28996}
    (other / records.MANIFEST_NAME).write_text(json.dumps(manifest))
    run = tmp_path / "run"

    def pretrain(steps, *inputs):
        result = run_cli("pretrain", *pretrain_args(records_dir, small_config, run, "--do_train", f"--num_train_steps={steps}"),
                         f"--input_file={','.join(map(str, inputs))}")
        assert result.returncode == 0, result.stderr
        return result.stderr

    uncased_records = records_dir / "part-00000-of-00002.tfrecord"
    assert "warning" not in pretrain(1, uncased_records)
    assert (run / "vocab.txt").read_bytes() == Path(uncased).read_bytes()
    mixed = other / "part-00000-of-00001.tfrecord"
    assert (f"warning: --input_file: {uncased_records} and {mixed} were made with vocabularies of different contents "
            f"({uncased} and {cased}, as their manifests say): a token id means other words in each, unless only "
            f"[unused] tokens changed") in pretrain(2, uncased_records, mixed)
    assert (f"warning: the vocabulary {cased} is not the one beside --output_dir ({run / 'vocab.txt'}): its token ids "
            f"mean other words than the model learned") in pretrain(3, mixed)
    # The run exported its model with the cased vocabulary it last trained on; evaluated alone on the uncased records,
    # it is as mismatched.
    assert (run / "vocab.txt").read_bytes() == cased.read_bytes()
    evaluated = run_cli("pretrain", *pretrain_args(records_dir, small_config, run, "--do_eval", "--max_eval_steps=1"),
                        f"--input_file={uncased_records}")
    assert evaluated.returncode == 0, evaluated.stderr
    assert (f"warning: the vocabulary {uncased} is not the one beside --output_dir ({run / 'vocab.txt'}): its token ids "
            f"mean other words than the model learned") in evaluated.stderr


def test_features_of_a_model_read_with_another_vocabulary_than_its_own_are_warned_of(records_dir, small_config, tmp_path):
    run = tmp_path / "run"
    assert run_cli("pretrain", *pretrain_args(records_dir, small_config, run, "--do_train", "--num_train_steps=1")).returncode == 0
    cased = shared_file("vocab", "cased_vocab.txt")
    lines = tmp_path / "lines.txt"
    lines.write_text("The cat sat on the mat.\n", encoding="utf-8")
    result = run_cli("extract_features", f"--input_file={lines}", f"--output_file={tmp_path / 'features.jsonl'}",
                     f"--vocab_file={cased}", "--nodo_lower_case", f"--bert_config_file={run / 'bert_config.json'}",
                     f"--init_checkpoint={run / 'bert_model.ckpt'}", "--max_seq_length=16", "--layers=-1")
    assert result.returncode == 0, result.stderr
    assert f"warning: the vocabulary {cased} is not the one beside --init_checkpoint ({run / 'vocab.txt'})" in result.stderr


def test_the_manifests_of_a_directory_of_shards_are_listed_once(records_dir, tmp_path, monkeypatch):
    shards = []
    for i in range(20):
        shards.append(tmp_path / f"part-{i:05d}.tfrecord")
        shutil.copyfile(next(records_dir.glob("part-*.tfrecord")), shards[-1])
    listings = []
    real_glob = pretraining.glob.glob
    monkeypatch.setattr(pretraining.glob, "glob", lambda pattern, **kw: listings.append(pattern) or real_glob(pattern, **kw))
    config = BertConfig.from_dict(SMALL_MODEL)
    assert pretraining.check_records([str(p) for p in shards], SEQ, PREDICTIONS, config) == [str(p) for p in shards]
    assert listings == [os.path.join(str(tmp_path), "*.manifest.json")]


def test_a_manifest_of_another_shape_is_not_taken_for_ours(records_dir, tmp_path):
    copy = tmp_path / "records.tfrecord"
    copy.write_bytes((records_dir / "part-00000-of-00002.tfrecord").read_bytes())
    manifest = json.loads((records_dir / records.MANIFEST_NAME).read_text())
    for broken in ({**manifest, "files": ["records.tfrecord"]}, {**manifest, "files": [{"path": "records.tfrecord"}], "vocab": "x"}):
        (tmp_path / "records.tfrecord.manifest.json").write_text(json.dumps(broken))
        checked = pretraining.check_records([str(copy)], SEQ, PREDICTIONS, BertConfig.from_dict(SMALL_MODEL))
        assert checked == [str(copy)]


def test_record_reader_agrees_with_tensorflow_and_names_the_damaged_record(records_dir, tmp_path):
    path = records_dir / "part-00000-of-00002.tfrecord"
    data = path.read_bytes()
    with open(path, "rb") as stream:
        ours = list(records.read_records(stream))
    assert ours == [r.numpy() for r in tf.data.TFRecordDataset(str(path))] and len(ours) > 2
    second = 12 + len(ours[0]) + 4
    damaged = {
        "truncated": (data[:second + 20], f"record 1 at byte {second}: the file ends inside its {len(ours[1])} bytes"),
        "flipped_data": (data[:second + 40] + bytes([data[second + 40] ^ 1]) + data[second + 41:],
                         f"record 1 at byte {second}: the checksum of its data does not match"),
        "flipped_length": (data[:second] + bytes([data[second] ^ 1]) + data[second + 1:],
                           f"record 1 at byte {second}: the checksum of its length does not match"),
    }
    for name, (content, message) in damaged.items():
        broken = tmp_path / f"{name}.tfrecord"
        broken.write_bytes(content)
        with open(broken, "rb") as stream, pytest.raises(records.CorruptRecordError) as error:
            list(records.read_records(stream))
        assert str(error.value) == message
        with pytest.raises(tf.errors.DataLossError):
            list(tf.data.TFRecordDataset(str(broken)))
    # A file cut inside a length field TensorFlow reads as ending after the last whole record; ours says so.
    cut = tmp_path / "cut_in_length.tfrecord"
    cut.write_bytes(data[:second + 5])
    with open(cut, "rb") as stream, pytest.raises(records.CorruptRecordError, match="the file ends inside its length"):
        list(records.read_records(stream))


def test_bad_inputs_fail_before_training(records_dir, small_config, tmp_path):
    out = tmp_path / "run"
    small_vocab = tmp_path / "small_vocab.json"
    small_vocab.write_text(json.dumps({**SMALL_MODEL, "vocab_size": 1000}))
    assert_clean_failure(run_cli("pretrain", *pretrain_args(records_dir, small_vocab, out, "--do_train")),
                         "vocab_size", "1000")
    # Without a manifest (records from the reference's script), the ids themselves are checked.
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "records.tfrecord").write_bytes((records_dir / "part-00000-of-00002.tfrecord").read_bytes())
    no_manifest = run_cli("pretrain", f"--input_file={bare / 'records.tfrecord'}", f"--output_dir={out}",
                          f"--bert_config_file={small_vocab}", f"--max_seq_length={SEQ}",
                          f"--max_predictions_per_seq={PREDICTIONS}", "--do_train")
    assert_clean_failure(no_manifest, "records.tfrecord", "token id", "'vocab_size' is 1000")
    wrong_length = run_cli("pretrain", *pretrain_args(records_dir, small_config, out, "--do_train", "--max_seq_length=48"))
    assert_clean_failure(wrong_length, "max_seq_length")
    truncated = tmp_path / "truncated.tfrecord"
    truncated.write_bytes((records_dir / "part-00000-of-00002.tfrecord").read_bytes()[:5000])
    bad = run_cli("pretrain", f"--input_file={truncated}", f"--output_dir={out}", f"--bert_config_file={small_config}",
                  f"--max_seq_length={SEQ}", f"--max_predictions_per_seq={PREDICTIONS}", "--do_train")
    assert_clean_failure(bad, "truncated.tfrecord", "corrupt or truncated TFRecord file", "the file ends inside")
    compressed = tmp_path / "records.tfrecord.gz"
    compressed.write_bytes(gzip.compress((records_dir / "part-00000-of-00002.tfrecord").read_bytes()))
    gzipped = run_cli("pretrain", f"--input_file={compressed}", f"--output_dir={out}", f"--bert_config_file={small_config}",
                      f"--max_seq_length={SEQ}", f"--max_predictions_per_seq={PREDICTIONS}", "--do_train")
    assert_clean_failure(gzipped, f"{compressed}: gzip-compressed", "decompress it")
    assert_clean_failure(run_cli("pretrain", *pretrain_args(records_dir, small_config, out, "--do_train",
                                                            "--train_batch_size=0")), "--train_batch_size")
    # A step count is refused where it is used: zero training steps to train, zero evaluation batches to evaluate.
    assert_clean_failure(run_cli("pretrain", *pretrain_args(records_dir, small_config, out, "--do_train",
                                                            "--num_train_steps=0")), "--num_train_steps must be at least 1")
    assert_clean_failure(run_cli("pretrain", *pretrain_args(records_dir, small_config, out, "--do_eval",
                                                            "--max_eval_steps=0")), "--max_eval_steps must be at least 1")
    assert not list(out.glob("ckpt-*")) if out.exists() else True


def _rewritten(source, target, index, edit=None, flip_data_byte=False):
    """`source`'s records into `target`, record `index` edited (its tf.train.Example) or its data damaged."""
    with open(source, "rb") as stream:
        serialized = list(records.read_records(stream))
    frames, offset = [], 0
    for i, data in enumerate(serialized):
        if i == index and edit:
            example = tf.train.Example.FromString(data)
            edit(example.features.feature)
            data = example.SerializeToString()
        frame = bytearray(records.frame_record(data))
        if i == index and flip_data_byte:
            frame[12 + 5] ^= 0xFF
            damaged_at = offset
        frames.append(bytes(frame))
        offset += len(frame)
    target.write_bytes(b"".join(frames))
    return damaged_at if flip_data_byte else None


def _set_label(feature, value=2):
    feature["next_sentence_labels"].int64_list.value[:] = [value]


def test_a_bad_record_past_the_checked_ones_is_named_mid_run_and_checkpoints_are_kept(records_dir, small_config,
                                                                                        tmp_path):
    source = records_dir / "part-00000-of-00002.tfrecord"
    late = pretraining.CHECKED_RECORDS_FIRST_FILES + 44
    damaged, mislabelled = tmp_path / "damaged.tfrecord", tmp_path / "mislabelled.tfrecord"
    offset = _rewritten(source, damaged, late, flip_data_byte=True)
    _rewritten(source, mislabelled, late, edit=_set_label)
    shape = (f"--bert_config_file={small_config}", f"--max_seq_length={SEQ}", f"--max_predictions_per_seq={PREDICTIONS}",
             "--train_batch_size=8", "--shuffle_buffer_size=8", "--save_checkpoints_steps=10", "--num_train_steps=100")

    # A damaged frame stops tf.data, whose error names no file; a label the loss cannot take stops the step.
    for path, message in ((damaged, f"record {late} at byte {offset}: the checksum of its data does not match"),
                          (mislabelled, f"record {late}: next-sentence label 2 is neither 0 nor 1")):
        out = tmp_path / path.stem
        result = run_cli("pretrain", f"--input_file={path}", f"--output_dir={out}", "--do_train", *shape)
        assert_clean_failure(result, str(path), message)
        latest = tf.train.latest_checkpoint(str(out))  # saved before the bad record came up, and whole
        assert latest and all(np.isfinite(v).all() for v in tensors(latest).values() if getattr(v, "dtype", None) == np.float32)

    # Evaluation reads the records in order and meets the damaged one; nothing of the run is touched.
    out = tmp_path / "damaged"
    before = snapshot(out)
    result = run_cli("pretrain", f"--input_file={damaged}", f"--output_dir={out}", "--do_eval", "--max_eval_steps=100",
                     *shape)
    assert_clean_failure(result, str(damaged), f"record {late} at byte {offset}")
    assert snapshot(out) == before and not (out / "eval_results.txt").exists()


def test_a_stop_mid_run_names_the_first_bad_record_or_says_every_record_checks_out(records_dir, tmp_path,
                                                                                  monkeypatch):
    config = BertConfig.from_dict(SMALL_MODEL)
    good = sorted(str(p) for p in records_dir.glob("*.tfrecord"))
    stopped = DamagedRecordError("--input_file: corrupt or mismatched record: corrupted record at 12")
    notices = []
    with pytest.raises(InputError, match="checks out now") as error:
        with pretraining.damage_located(good, SEQ, PREDICTIONS, config, notices.append):
            raise stopped
    assert str(error.value).startswith(str(stopped)) and not notices
    damaged = tmp_path / "damaged.tfrecord"
    offset = _rewritten(records_dir / "part-00000-of-00002.tfrecord", damaged, 1500, flip_data_byte=True)
    monkeypatch.setattr(pretraining, "LONG_CHECK_BYTES", 0)  # every check counts as long: it is announced
    with pytest.raises(InputError) as error:
        with pretraining.damage_located([*good, str(damaged)], SEQ, PREDICTIONS, config, notices.append):
            raise stopped
    assert str(error.value) == (f"{damaged}: corrupt or truncated TFRecord file: record 1500 at byte {offset}: "
                                "the checksum of its data does not match")
    assert len(notices) == 1 and notices[0].startswith(f"{stopped}; checking every record of 3 file(s)")
    # A rank's own share of the files is checked first: the fault that stopped it is there.
    mislabelled = tmp_path / "mislabelled.tfrecord"
    _rewritten(records_dir / "part-00001-of-00002.tfrecord", mislabelled, 7, edit=_set_label)
    with pytest.raises(InputError) as error:
        with pretraining.damage_located([*good, str(damaged), str(mislabelled)], SEQ, PREDICTIONS, config, notices.append,
                                        read=[str(mislabelled)]):
            raise stopped
    assert str(error.value) == f"{mislabelled}: record 7: next-sentence label 2 is neither 0 nor 1"
    assert notices[-1].startswith(f"{stopped}; checking every record of 1 file(s)")


OUTSIDE_VOCABULARY = "is outside the model's vocabulary: the config's key 'vocab_size' is 30522 (the reference would train into NaN)"


@pytest.mark.parametrize("edit, message", [
    (lambda f: f["input_ids"].int64_list.value.__setitem__(3, 30522), f"record 3: token id 30522 {OUTSIDE_VOCABULARY}"),
    (lambda f: f["masked_lm_ids"].int64_list.value.__setitem__(0, -1), f"record 3: token id -1 {OUTSIDE_VOCABULARY}"),
    (lambda f: f["segment_ids"].int64_list.value.__setitem__(5, 2), "record 3: segment id 2 is outside the config's key 'type_vocab_size' (2); such tokens would get no "
                                                                  "token-type embedding (the reference trains on regardless)"),
    (lambda f: f["masked_lm_positions"].int64_list.value.__setitem__(1, SEQ), f"record 3: masked position {SEQ} is outside --max_seq_length={SEQ}"),
    (_set_label, "record 3: next-sentence label 2 is neither 0 nor 1"),
    (lambda f: f["masked_lm_weights"].CopyFrom(tf.train.Feature(int64_list=tf.train.Int64List(value=[1] * PREDICTIONS))),
     "record 3: feature 'masked_lm_weights' holds int64 values, expected float"),
    (lambda f: f["input_mask"].int64_list.value.__setitem__(0, 7),
     "record 3: input mask value 7 is neither 0 nor 1 (the attention mask would add to the scores)"),
    (lambda f: f["masked_lm_weights"].float_list.value.__setitem__(0, -1.0),
     "record 3: masked-LM weight -1.0 is not a finite, non-negative number (it would make the loss NaN or reward wrong "
     "predictions)"),
    (lambda f: f["masked_lm_weights"].float_list.value.__setitem__(2, float("nan")),
     "record 3: masked-LM weight nan is not a finite, non-negative number (it would make the loss NaN or reward wrong "
     "predictions)"),
], ids=["input_id", "masked_lm_id", "segment_id", "position", "label", "value_type", "input_mask", "negative_weight",
        "nan_weight"])
def test_record_values_the_model_cannot_take_are_refused_naming_the_record(records_dir, tmp_path, edit, message):
    path = tmp_path / "edited.tfrecord"
    _rewritten(records_dir / "part-00000-of-00002.tfrecord", path, 3, edit=edit)
    config = BertConfig.from_dict(SMALL_MODEL)
    for every_record in (False, True):
        with pytest.raises(InputError) as error:
            pretraining.check_records([str(path)], SEQ, PREDICTIONS, config, every_record=every_record)
        assert str(error.value) == f"{path}: {message}"
    # The training input's own parser stops at such a record too (past the records checked before training).
    batches = pretraining.training_dataset([str(path)], 8, SEQ, PREDICTIONS, seed=1, shuffle_buffer_size=1, config=config)
    with pytest.raises(tf.errors.InvalidArgumentError):
        next(iter(batches))


def test_a_manifest_that_cannot_be_read_is_refused_not_passed_over(records_dir, tmp_path):
    shutil.copyfile(records_dir / "part-00000-of-00002.tfrecord", tmp_path / "part-00000-of-00002.tfrecord")
    manifest = tmp_path / records.MANIFEST_NAME
    if os.geteuid() == 0:
        manifest.symlink_to("/proc/self/mem")  # a file even root cannot read from its start
    else:
        shutil.copyfile(records_dir / records.MANIFEST_NAME, manifest)
        manifest.chmod(0)
    with pytest.raises(InputError) as error:
        pretraining.check_records([str(tmp_path / "part-00000-of-00002.tfrecord")], SEQ, PREDICTIONS,
                                  BertConfig.from_dict(SMALL_MODEL))
    assert str(error.value).startswith(f"{manifest}: cannot read this manifest of records: ")


def test_the_newest_manifest_listing_records_speaks_for_them_unless_they_were_made_again(records_dir, tmp_path):
    config = BertConfig.from_dict(SMALL_MODEL)
    remade = tmp_path / "b.tfrecord"
    remade.write_bytes((records_dir / "part-00000-of-00002.tfrecord").read_bytes())
    made = remade.stat().st_mtime_ns
    manifest = json.loads((records_dir / records.MANIFEST_NAME).read_text())

    def write_manifest(name, max_seq_length, written):
        path = tmp_path / name
        path.write_text(json.dumps({**manifest, "files": [{"path": remade.name}], "max_seq_length": max_seq_length}))
        os.utime(path, ns=(written, written))
        return path

    # An earlier bert-create-data run wrote a.tfrecord and b.tfrecord at another length; the last one made b alone.
    earlier = write_manifest("a.tfrecord.manifest.json", 2 * SEQ, made + 10**9)
    write_manifest("b.tfrecord.manifest.json", SEQ, made + 2 * 10**9)
    assert pretraining.check_records([str(remade)], SEQ, PREDICTIONS, config) == [str(remade)]
    os.utime(earlier, ns=(made + 3 * 10**9,) * 2)
    with pytest.raises(InputError, match=f"^{re.escape(str(remade))}: records were made with max_seq_length={2 * SEQ} "
                                         f"\\({re.escape(str(earlier))}\\), but --max_seq_length={SEQ}$"):
        pretraining.check_records([str(remade)], SEQ, PREDICTIONS, config)
    # Made again since by the reference's script, which writes no manifest: the records alone are checked.
    os.utime(remade, ns=(made + 4 * 10**9,) * 2)
    assert pretraining.check_records([str(remade)], SEQ, PREDICTIONS, config) == [str(remade)]


def test_a_manifest_giving_sizes_speaks_for_records_of_that_size_however_old(records_dir, tmp_path):
    config = BertConfig.from_dict(SMALL_MODEL)
    source = records_dir / "part-00000-of-00002.tfrecord"
    manifest = json.loads((records_dir / records.MANIFEST_NAME).read_text())
    listed = tmp_path / "part-00000-of-00001.tfrecord"
    (tmp_path / records.MANIFEST_NAME).write_text(json.dumps(
        {**manifest, "files": [{"path": listed.name, "num_instances": 1, "bytes": source.stat().st_size}],
         "max_seq_length": 2 * SEQ}))
    # Copied after its manifest (cp -r, in whatever order): its size says it is the file listed, and the manifest's
    # length is held against the flags.
    shutil.copyfile(source, listed)
    with pytest.raises(InputError, match=f"^{re.escape(str(listed))}: records were made with max_seq_length={2 * SEQ}"):
        pretraining.check_records([str(listed)], SEQ, PREDICTIONS, config)
    # Made again since (here, fewer of them), however old: the manifest no longer speaks for them.
    with open(source, "rb") as stream:
        first = list(itertools.islice(records.read_records(stream), 10))
    listed.write_bytes(b"".join(records.frame_record(r) for r in first))
    os.utime(listed, ns=(1, 1))
    assert pretraining.check_records([str(listed)], SEQ, PREDICTIONS, config) == [str(listed)]


def _a_cut_past_the_checked_records(path):
    """(each record's framed size, the index of a record past those sampled, its byte offset, the file's bytes)."""
    with open(path, "rb") as stream:
        sizes = [12 + len(data) + 4 for data in records.read_records(stream)]
    late = pretraining.CHECKED_RECORDS_FIRST_FILES + 700
    return sizes, late, sum(sizes[:late]), path.read_bytes()


def test_records_cut_short_inside_a_length_past_the_checked_ones_are_refused_before_training(records_dir, small_config,
                                                                                              tmp_path):
    copied = tmp_path / "records"
    shutil.copytree(records_dir, copied)
    cut = copied / "part-00001-of-00002.tfrecord"
    sizes, late, offset, whole = _a_cut_past_the_checked_records(cut)
    cut.write_bytes(whole[:offset + 5])  # as an interrupted copy leaves it
    # TensorFlow's reader takes it for the end of the file: the records the copy lost would go unnoticed.
    assert sum(1 for _ in tf.data.TFRecordDataset(str(cut))) == late
    result = run_cli("pretrain", *pretrain_args(copied, small_config, tmp_path / "out", "--do_train",
                                                "--num_train_steps=2"))
    assert_clean_failure(result, f"{cut}: corrupt or truncated TFRecord file: record {late} at byte {offset}: the file "
                                 "ends inside its length")
    assert not (tmp_path / "out").exists()
    # Cut between two records, the file is whole records, fewer of them: used, and warned of.
    cut.write_bytes(whole[:offset])
    result = run_cli("pretrain", *pretrain_args(copied, small_config, tmp_path / "out", "--do_train",
                                                "--num_train_steps=2"))
    assert result.returncode == 0, result.stderr
    assert (f"bert-pretrain: warning: {cut} holds {late} records in {offset} bytes, where {copied / records.MANIFEST_NAME} "
            f"lists {len(sizes)} in {len(whole)}: cut short (an interrupted copy), or made again since? its records check "
            "out and are used") in result.stderr.splitlines()


def test_a_record_file_is_judged_whole_from_its_end(records_dir):
    data = (records_dir / "part-00000-of-00002.tfrecord").read_bytes()
    with open(records_dir / "part-00000-of-00002.tfrecord", "rb") as stream:
        ends = list(itertools.accumulate(12 + len(record) + 4 for record in records.read_records(stream)))
    assert ends[-1] == len(data) and len(ends) > 100
    cuts = {cut for end in [0] + ends[:40] + ends[-40:] for cut in range(end - 17, end + 18) if 0 <= cut <= len(data)}
    for cut in sorted(cuts):
        assert records.ends_on_record(io.BytesIO(data[:cut]), cut) == (cut in {0, *ends}), cut
    # A length that fits is not enough: the checksums must match too.
    flipped = data[:-5] + bytes([data[-5] ^ 1]) + data[-4:]
    assert not records.ends_on_record(io.BytesIO(flipped), len(flipped))
    # A record past the first span searched is found in the second; one past both is not.
    large = records.frame_record(bytes(records.TAIL_SPANS[0]))
    assert records.ends_on_record(io.BytesIO(data + large), len(data) + len(large))
    huge = records.frame_record(bytes(records.TAIL_SPANS[1]))
    assert not records.ends_on_record(io.BytesIO(huge), len(huge))


def test_records_without_a_manifest_cut_past_the_checked_ones_are_refused_before_training(records_dir, small_config,
                                                                                          tmp_path):
    sizes, late, offset, whole = _a_cut_past_the_checked_records(records_dir / "part-00001-of-00002.tfrecord")
    cut = tmp_path / "reference.tfrecord"  # as the reference's script writes them: no manifest
    cut.write_bytes(whole[:offset + 5])
    assert sum(1 for _ in tf.data.TFRecordDataset(str(cut))) == late
    out = tmp_path / "out"
    result = run_cli("pretrain", f"--input_file={cut}", f"--output_dir={out}", f"--bert_config_file={small_config}",
                     f"--max_seq_length={SEQ}", f"--max_predictions_per_seq={PREDICTIONS}", "--do_train",
                     "--num_train_steps=2")
    assert_clean_failure(result, f"{cut}: corrupt or truncated TFRecord file: record {late} at byte {offset}: the file "
                                 "ends inside its length")
    assert not out.exists()
    config = BertConfig.from_dict(SMALL_MODEL)
    cut.write_bytes(whole[:offset + 100])
    with pytest.raises(InputError, match=f"^{re.escape(str(cut))}: corrupt or truncated TFRecord file: record {late} at "
                                         f"byte {offset}: the file ends inside its {sizes[late] - 16} bytes$"):
        pretraining.check_records([str(cut)], SEQ, PREDICTIONS, config)
    # Cut between two records: whole records, fewer of them, with nothing to tell them from a shorter file.
    cut.write_bytes(whole[:offset])
    assert pretraining.check_records([str(cut)], SEQ, PREDICTIONS, config) == [str(cut)]


def test_a_record_file_gone_while_training_reads_is_one_line_naming_it(records_dir, tmp_path):
    first, second = tmp_path / "a.tfrecord", tmp_path / "b.tfrecord"
    for path in (first, second):
        shutil.copyfile(records_dir / "part-00000-of-00002.tfrecord", path)
    batches = iter(tf.data.TFRecordDataset([str(first), str(second)]).batch(8))
    training._next_batch(batches)
    second.unlink()  # as a re-run of bert-create-data --overwrite removes stale shards
    with pytest.raises(InputError) as error:
        while True:
            training._next_batch(batches)
    assert not isinstance(error.value, DamagedRecordError)
    assert str(error.value).startswith(f"--input_file: a record file can no longer be read: {second}")


def _record_key(input_ids, masked_lm_positions):
    return np.asarray(input_ids, np.int32).tobytes() + np.asarray(masked_lm_positions, np.int32).tobytes()


def test_each_rank_reads_its_own_share_and_together_the_ranks_read_what_one_process_would(records_dir):
    files = sorted(str(p) for p in records_dir.glob("*.tfrecord"))
    spec = pretraining.feature_spec(SEQ, PREDICTIONS)

    def file_records(path):
        parsed = (tf.io.parse_single_example(r, spec) for r in tf.data.TFRecordDataset(path))
        return Counter(_record_key(p["input_ids"], p["masked_lm_positions"]) for p in parsed)

    def share(rank, size, count):
        # Unshuffled batches of one record: the order of the files and of the records in them alone.
        batches = pretraining.training_dataset(files, 1, SEQ, PREDICTIONS, seed=3, rank=rank, size=size,
                                               shuffle_buffer_size=1).take(count)
        return Counter(_record_key(b["input_ids"][0], b["masked_lm_positions"][0]) for b in batches)

    in_files = [file_records(path) for path in files]
    sizes = [in_file.total() for in_file in in_files]
    assert len(files) == 2 and min(sizes) > 10
    # As many ranks as files: each rank its own file, all of it.
    assert [share(rank, 2, sizes[rank]) for rank in range(2)] == in_files
    # More ranks than files: each rank every third record of the one process's stream, none twice.
    total = sum(sizes)
    shares = [share(rank, 3, len(range(rank, total, 3))) for rank in range(3)]
    assert sum(shares, Counter()) == share(0, 1, total)
    assert sum(shares, Counter()).total() == total


@pytest.mark.parametrize("num_files, size, uneven", [(5, 4, True), (8, 4, False), (3, 4, False), (2, 1, False)])
def test_files_that_do_not_divide_among_the_ranks_are_warned_of(num_files, size, uneven, tmp_path):
    files = []
    for number in range(num_files):
        files.append(str(tmp_path / f"part-{number}"))
        Path(files[-1]).write_bytes(b"r" * 1000)
    warning = pretraining.uneven_files_warning(files, size)
    assert (warning == f"warning: --input_file: {num_files} files do not divide among {size} ranks; the records of the "
                       f"ranks with fewer files are seen more often (a multiple of {size} files evens it)") if uneven \
        else warning is None


@pytest.mark.parametrize("sizes, warned", [([2_000_000, 300_000], True), ([1_000_000, 1_200_000], False),
                                           ([500_000, 400_000, 200_000, 500_000], True)])
def test_files_of_uneven_sizes_among_the_ranks_are_warned_of(sizes, warned, tmp_path):
    files = []
    for number, size in enumerate(sizes):
        files.append(str(tmp_path / f"part-{number}"))
        Path(files[-1]).write_bytes(b"r" * size)
    warning = pretraining.uneven_files_warning(files, 2)
    if not warned:
        assert warning is None
        return
    # Rank 0 reads files 0 and 2, rank 1 files 1 and 3.
    shares = {2: "rank 1: 0.3 MB, rank 0: 2.0 MB", 4: "rank 0: 0.7 MB, rank 1: 0.9 MB"}[len(sizes)]
    assert warning == (f"warning: --input_file: the ranks' files differ in size ({shares}); the records of the ranks "
                       f"with less are seen more often (files of one size, as bert-create-data's shards, even it)")


def test_manifests_among_the_inputs_are_passed_over_and_a_manifest_alone_is_refused(records_dir, tmp_path):
    config = BertConfig.from_dict(SMALL_MODEL)
    good = sorted(str(p) for p in records_dir.glob("*.tfrecord"))
    manifest = str(records_dir / records.MANIFEST_NAME)
    single = tmp_path / "records.tfrecord"
    single.write_bytes(Path(good[0]).read_bytes())
    beside = tmp_path / "records.tfrecord.manifest.json"
    beside.write_text((records_dir / records.MANIFEST_NAME).read_text())
    assert pretraining.check_records([manifest, *good], SEQ, PREDICTIONS, config) == good
    assert pretraining.check_records([str(beside), str(single)], SEQ, PREDICTIONS, config) == [str(single)]
    with pytest.raises(InputError, match=f"^{manifest}: a bert-create-data manifest, not records; name the records it lists$"):
        pretraining.check_records([manifest], SEQ, PREDICTIONS, config)
    # A JSON file that is not one of ours is read as records, and named as not being any.
    other = tmp_path / "notes.manifest.json"
    other.write_text('{"files": []}')
    with pytest.raises(InputError, match=f"^{other}: not a TFRecord file \\(or its first record is damaged\\): its first "
                                         f"bytes are not a record's length"):
        pretraining.check_records([str(other), *good], SEQ, PREDICTIONS, config)
    # Records TensorFlow wrote with compression_type="ZLIB", named as such rather than as damaged.
    zlib_records = tmp_path / "zlib.tfrecord"
    with tf.io.TFRecordWriter(str(zlib_records), options="ZLIB") as writer:
        for serialized in tf.data.TFRecordDataset(good[0]).take(3):
            writer.write(serialized.numpy())
    with pytest.raises(InputError, match=f"^{zlib_records}: zlib-compressed; TFRecords are read uncompressed"):
        pretraining.check_records([str(zlib_records)], SEQ, PREDICTIONS, config)


def test_empty_record_files_are_passed_over_but_no_records_at_all_is_refused(records_dir, tmp_path):
    config = BertConfig.from_dict(SMALL_MODEL)
    good = sorted(str(p) for p in records_dir.glob("*.tfrecord"))
    empty = [str(tmp_path / name) for name in ("a.tfrecord", "b.tfrecord")]
    for path in empty:
        Path(path).write_bytes(b"")
    assert pretraining.check_records([empty[0], *good, empty[1]], SEQ, PREDICTIONS, config) == good
    with pytest.raises(InputError, match="^--input_file: none of its 2 files holds a record$"):
        pretraining.check_records(empty, SEQ, PREDICTIONS, config)
    with pytest.raises(InputError, match=f"^{empty[0]}: no records$"):
        pretraining.check_records(empty[:1], SEQ, PREDICTIONS, config)


def test_an_input_that_restarts_on_resuming_is_not_the_one_the_run_began_with_and_resumes_as_itself(records_dir, tmp_path):
    config = BertConfig.from_dict(SMALL_MODEL)
    files = sorted(str(p) for p in records_dir.glob("*.tfrecord"))
    starts, batches = [], {}

    def dataset(start_step):
        starts.append(start_step)
        return pretraining.training_dataset(files, 4, SEQ, PREDICTIONS, seed=1 + start_step)

    def fit_to(steps):
        trainer = _trainer(config, output_dir=str(tmp_path), num_train_steps=steps, save_checkpoints_steps=2,
                           micro_batch_size=4)
        train_step = trainer.train_step

        def recorded(features, requests):
            batches[int(trainer.step.numpy()) + 1] = features["input_ids"].numpy()
            return train_step(features, requests)

        trainer.train_step = recorded
        lines = []
        training.fit(trainer, dataset, trainer.options, distributed.Single(), log=lines.append, input_files=files)
        return lines

    fit_to(2)
    for path in (tmp_path / "data" / "rank-0").glob("data-2.*"):
        path.unlink()
    lines = fit_to(4)
    assert ("warning: the input position of rank 0 at step 2 is not restored (none was saved); its input restarts, "
            "shuffled anew") in lines
    # Not the batches of steps 1 and 2 again, which a restart from the run's own start would repeat.
    assert not np.array_equal(batches[3], batches[1]) and not np.array_equal(batches[4], batches[2])
    # Resumed again, the restarted stream goes on where it was, as if never stopped.
    lines = fit_to(6)
    assert not [line for line in lines if "not restored" in line]
    assert starts == [0, 2, 2]
    restarted = pretraining.training_dataset(files, 4, SEQ, PREDICTIONS, seed=1 + 2).take(4)
    for step, batch in zip(range(3, 7), restarted):
        assert np.array_equal(batches[step], batch["input_ids"].numpy()), step


def test_input_files_named_relative_to_another_directory_resume_as_the_same_input(records_dir, small_config, tmp_path):
    # More files than are read at once: the names of those waiting their turn are part of the saved position.
    shards = tmp_path / "shards"
    shards.mkdir()
    for i in range(6):
        shutil.copy(records_dir / f"part-0000{i % 2}-of-00002.tfrecord", shards / f"part-{i}.tfrecord")
    out = tmp_path / "run"
    common = (f"--output_dir={out}", f"--bert_config_file={small_config}", f"--max_seq_length={SEQ}",
              f"--max_predictions_per_seq={PREDICTIONS}", "--train_batch_size=8", "--do_train",
              "--save_checkpoints_steps=2")
    first = run_cli("pretrain", "--input_file=part-*.tfrecord", *common, "--num_train_steps=2", cwd=shards)
    assert first.returncode == 0, first.stderr
    resumed = run_cli("pretrain", f"--input_file={shards}/part-*.tfrecord", *common, "--num_train_steps=4")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr and "not restored" not in resumed.stderr, resumed.stderr


def test_resuming_on_other_input_files_restarts_the_input_instead_of_failing(records_dir, small_config, tmp_path):
    out = tmp_path / "run"
    common = (f"--output_dir={out}", f"--bert_config_file={small_config}", f"--max_seq_length={SEQ}",
              f"--max_predictions_per_seq={PREDICTIONS}", "--train_batch_size=8", "--do_train",
              "--save_checkpoints_steps=2")
    first = run_cli("pretrain", f"--input_file={records_dir / 'part-00000-of-00002.tfrecord'}", *common,
                    "--num_train_steps=2")
    assert first.returncode == 0, first.stderr
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "empty.tfrecord").write_bytes(b"")
    # The saved input position was taken on one file; with both shards (and an empty one, passed over) the
    # pipeline has another shape, so the model resumes and the input starts afresh.
    more = run_cli("pretrain", f"--input_file={records_dir}/part-*.tfrecord,{tmp_path}/more/*.tfrecord", *common,
                   "--num_train_steps=4")
    assert more.returncode == 0, more.stderr
    assert ("input position of rank 0 at step 2 is not restored (it was taken on other input files or another "
            "number of ranks); its input restarts, shuffled anew") in more.stderr
    assert "resuming from" in more.stderr and "trained to step 4" in more.stdout
    position = tf.train.load_checkpoint(str(out / "data" / "rank-0" / "data-4"))
    recorded = json.loads(position.get_tensor(training.DataPosition.INPUTS_KEY).decode())
    shards = sorted(records_dir.glob("part-*.tfrecord"))
    assert recorded == {"files": [[str(p), p.stat().st_size] for p in shards], "ranks": 1, "start_step": 2}
    again = run_cli("pretrain", f"--input_file={records_dir}/part-*.tfrecord", *common, "--num_train_steps=6")
    assert again.returncode == 0 and "not restored" not in again.stderr, again.stderr
    # A damaged position is a warning too, not a failure.
    data = out / "data" / "rank-0" / "data-6.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    damaged = run_cli("pretrain", f"--input_file={records_dir}/part-*.tfrecord", *common, "--num_train_steps=8")
    assert damaged.returncode == 0, damaged.stderr
    assert "input position of rank 0 at step 6 is not restored" in damaged.stderr and "is damaged" in damaged.stderr


@pytest.mark.parametrize("precision", [(), ("--auto_mixed_precision", "--amp_dtype=float16")], ids=["float32", "float16"])
def test_nan_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(records_dir, small_config, tmp_path, precision):
    out = tmp_path / "run"
    result = run_cli("pretrain", *pretrain_args(records_dir, small_config, out, "--do_train", "--num_train_steps=40",
                                                "--save_checkpoints_steps=1", "--num_warmup_steps=0",
                                                "--learning_rate=1e30", *precision))
    if precision:
        # float16 skips the step and halves the loss scale; once at 1 it stops rather than loop forever.
        # (A CPU without float16 instructions also gets the emulation warning, tested elsewhere.)
        result.stderr = "".join(line for line in result.stderr.splitlines(True) if "is emulated" not in line)
        assert_clean_failure(result, "at loss scale 1", "at step 2", "last good checkpoint")
    assert_clean_failure(result, "at step", "last good checkpoint")
    step = int(result.stderr.split("at step ")[1].split(";")[0])
    latest = tf.train.latest_checkpoint(str(out))
    assert latest.endswith(f"ckpt-{step - 1}")
    weights = tensors(latest)
    assert all(np.isfinite(v).all() for v in weights.values() if getattr(v, "dtype", None) == np.float32)


def test_a_precision_named_without_mixed_precision_is_said_to_be_unused(records_dir, small_config, tmp_path):
    result = run_cli("pretrain", *pretrain_args(records_dir, small_config, tmp_path / "run", "--do_train",
                                                "--num_train_steps=1", "--amp_dtype=bfloat16"))
    assert result.returncode == 0, result.stderr
    assert ("bert-pretrain: warning: --amp_dtype=bfloat16 has no effect without --auto_mixed_precision; computing "
            "in float32") in result.stderr.splitlines()


def test_weights_that_overflow_are_never_saved_as_a_good_checkpoint(records_dir, small_config, tmp_path):
    # A learning rate so high that the first update overflows the weights, though its gradients were finite.
    out = tmp_path / "run"
    result = run_cli("pretrain", *pretrain_args(records_dir, small_config, out, "--do_train", "--num_train_steps=4",
                                                "--save_checkpoints_steps=1", "--num_warmup_steps=0",
                                                "--learning_rate=3e38"))
    assert_clean_failure(result, "the weights are not finite after step 1", "--learning_rate 3e+38",
                         "the last good checkpoint is none")
    assert tf.train.latest_checkpoint(str(out)) is None
    assert not (out / "bert_model.ckpt.index").exists()


def test_running_out_of_memory_names_the_batch_size(records_dir, tmp_path):
    import resource

    from tensorflow.python.util import _pywrap_util_port

    if not _pywrap_util_port.IsMklEnabled():
        pytest.skip("this TensorFlow has no oneDNN allocator, whose cap (TF_MKL_ALLOC_MAX_BYTES) the test sets")

    def limited_memory():
        # A guard only: should TensorFlow ignore its allocator cap below, the run fails here rather than swapping.
        resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))

    # One-wide attention heads, so that the first attention scores (2 GiB) are far over the cap below while the input
    # batches (2 MiB a feature), the weights and every other activation fit well within it. TensorFlow's CPU kernels
    # do not all survive a failed allocation (the input parser writes through it, the allocator's own bookkeeping
    # throws), and each failed allocation waits 10 s for memory to be freed, so one op alone must fail.
    narrow_heads = tmp_path / "narrow_heads.json"
    narrow_heads.write_text(json.dumps({**SMALL_MODEL, "num_hidden_layers": 1, "num_attention_heads": 32}))
    command = [sys.executable, "-m", "bert.pretrain", *pretrain_args(records_dir, narrow_heads, tmp_path / "run",
                                                                   "--do_train", "--num_train_steps=2",
                                                                   "--train_batch_size=4000")]
    # The cap is oneDNN's allocator's; few threads, few malloc arenas and no GPU runtime keep the address space
    # that is not TensorFlow's tensors small on a machine of many cores.
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_ENABLE_ONEDNN_OPTS="1", TF_MKL_ALLOC_MAX_BYTES=str(1 << 30),
               TF_NUM_INTRAOP_THREADS="2", TF_NUM_INTEROP_THREADS="2", MALLOC_ARENA_MAX="2", CUDA_VISIBLE_DEVICES="")
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, preexec_fn=limited_memory,
                            timeout=600)
    assert_clean_failure(result, "out of memory", "lower the batch size (--train_batch_size")


@pytest.mark.parametrize("flags, named", [
    (["--do_train", "--train_batch_size=1000000000"], "--train_batch_size=1000000000: 1,000,000,000 sequences of"),
    (["--do_train", "--do_eval", "--eval_batch_size=10000000000"], "--eval_batch_size=10000000000: 10,000,000,000 sequences of"),
])
def test_a_batch_too_large_for_the_machine_is_refused_before_anything_is_written(records_dir, small_config, tmp_path,
                                                                                  flags, named):
    # TensorFlow would try it: its input pipeline aborted in native code reserving room for the batch, after training
    # for an evaluation batch.
    out = tmp_path / "run"
    result = run_cli("pretrain", *pretrain_args(records_dir, small_config, out, "--num_train_steps=1", *flags))
    assert_clean_failure(result, named, "for their activations alone", "more than this machine's memory", "lower it")
    assert not out.exists()


def test_a_model_config_whose_one_tensor_outgrows_the_machine_is_named_not_the_batch_size(records_dir, tmp_path):
    vast = tmp_path / "vast.json"
    vast.write_text(json.dumps({**SMALL_MODEL, "hidden_size": 10**12, "num_attention_heads": 1}))
    result = run_cli("pretrain", *pretrain_args(records_dir, vast, tmp_path / "run", "--do_train", "--num_train_steps=1"))
    assert_clean_failure(result, "out of memory", f"shape[{SMALL_MODEL['vocab_size']},{10**12}]",
                         "is larger than this machine's whole memory", "check the sizes in the model config "
                         "(--bert_config_file) and the batch size")


def _trainer(config, **options):
    model = modeling.BertPretrainer(config, seed=3)
    defaults = dict(output_dir="unused", num_train_steps=10, num_warmup_steps=0, learning_rate=1e-3)
    return training.Trainer(pretraining.PretrainingTask(model), training.TrainOptions(**{**defaults, **options}),
                            distributed.Single())


def _batch(records_dir, size):
    files = sorted(str(p) for p in records_dir.glob("*.tfrecord"))
    return next(iter(pretraining.evaluation_dataset(files, size, SEQ, PREDICTIONS)))


def test_evaluation_reads_exactly_max_eval_steps_full_batches_wrapping_round_as_the_reference(records_dir, tmp_path):
    files = sorted(str(p) for p in records_dir.glob("*.tfrecord"))
    serialized = [r.numpy() for r in tf.data.TFRecordDataset(files).take(5)]

    def write(name, rows):
        with tf.io.TFRecordWriter(str(tmp_path / name)) as writer:
            for row in rows:
                writer.write(row)
        return [str(tmp_path / name)]

    five = write("five.tfrecord", serialized)
    # The reference's stream over five records in batches of 2 for 4 steps: records 0-4, then 0-2 again.
    unrolled = write("unrolled.tfrecord", serialized + serialized[:3])
    stream = list(pretraining.evaluation_dataset(five, 2, SEQ, PREDICTIONS).take(6))
    assert [int(batch["input_ids"].shape[0]) for batch in stream] == [2] * 6
    assert (stream[5]["input_ids"].numpy() == stream[0]["input_ids"].numpy()).all()

    task = pretraining.PretrainingTask(modeling.BertPretrainer(BertConfig.from_dict(SMALL_MODEL), seed=9))
    wrapped = training.evaluate(task, pretraining.evaluation_dataset(five, 2, SEQ, PREDICTIONS), 4)
    assert wrapped == training.evaluate(task, pretraining.evaluation_dataset(unrolled, 2, SEQ, PREDICTIONS), 4)
    one_pass = training.evaluate(task, pretraining.evaluation_dataset(five, 5, SEQ, PREDICTIONS), 1)
    assert wrapped["masked_lm_loss"] != one_pass["masked_lm_loss"]


@pytest.mark.parametrize("use_xla", [False, True], ids=["eager_kernels", "xla"])
def test_accumulating_k_micro_batches_equals_one_k_times_larger_batch(records_dir, use_xla):
    config = BertConfig.from_dict(SMALL_MODEL)
    assert config.hidden_dropout_prob > 0 and config.attention_probs_dropout_prob > 0  # each example's masks the same
    features = _batch(records_dir, 8)
    whole = _trainer(config, micro_batch_size=8, num_accumulation_steps=1, optimizer_type="lamb", use_xla=use_xla)
    accumulated = _trainer(config, micro_batch_size=2, num_accumulation_steps=4, optimizer_type="lamb", use_xla=use_xla)
    for _ in range(3):
        a, b = whole.train_step(features), accumulated.train_step(features)
        assert float(a["loss"]) == pytest.approx(float(b["loss"]), rel=1e-5)
    for name, variable in whole.variables_by_name.items():
        np.testing.assert_allclose(accumulated.variables_by_name[name].numpy(), variable.numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("use_xla", [False, True], ids=["eager_kernels", "xla"])
def test_each_micro_batch_starts_after_the_one_before_it_is_summed(records_dir, use_xla):
    """Accumulation is for a batch too large to hold at once: micro-batches left unordered run side by side (on a
    GPU all k before the first sum), holding k micro-batches' activations or gradients instead of one's."""
    k = 4
    trainer = _trainer(BertConfig.from_dict(SMALL_MODEL), micro_batch_size=2, num_accumulation_steps=k, use_xla=use_xla)
    graph = trainer.train_step.get_concrete_function(_batch(records_dir, 2 * k)).graph
    calls = [op for op in graph.get_operations()
             if "PartitionedCall" in op.type and "_micro_gradients" in op.get_attr("f").name]
    assert len(calls) == k

    def upstream(op):
        seen, stack = set(), [op]
        while stack:
            current = stack.pop()
            for parent in [tensor.op for tensor in current.inputs] + list(current.control_inputs):
                if parent not in seen:
                    seen.add(parent)
                    stack.append(parent)
        return seen

    # Each call waits for the running sum of the gradients before it: call 0's own, then the adds of each later one.
    gradient_count = len(trainer.variables)
    assert calls[0] in upstream(calls[1])
    for earlier, later in zip(calls[1:], calls[2:]):
        before_later = upstream(later)
        for gradient in earlier.outputs[:gradient_count]:
            assert any(consumer.type == "AddV2" for consumer in gradient.consumers() if consumer in before_later)


@pytest.mark.parametrize("kind", ["adam", "lamb"])
def test_a_step_clips_the_gradients_to_global_norm_one_then_applies_the_optimizer(records_dir, kind):
    from tests.test_optimization import numpy_steps

    config = BertConfig.from_dict({**SMALL_MODEL, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0})
    features = _batch(records_dir, 8)
    trainer = _trainer(config, micro_batch_size=8, optimizer_type=kind)
    names = list(trainer.variables_by_name)
    before = {name: trainer.variables_by_name[name].numpy() for name in names}
    with tf.GradientTape() as tape:
        out = trainer.task.model(features, modeling.Context())
        weights = features["masked_lm_weights"]
        # The reference's loss: weighted mean masked-LM loss (over sum(weights) + 1e-5) plus mean next-sentence loss.
        loss = tf.reduce_sum(out["mlm_loss"] * weights) / (tf.reduce_sum(weights) + 1e-5) + tf.reduce_mean(out["nsp_loss"])
    gradients = tape.gradient(loss, [trainer.variables_by_name[name] for name in names])
    norm = float(tf.linalg.global_norm(gradients))
    assert norm > 1.2, "a gradient this small is not clipped: nothing to test"
    clipped, _ = tf.clip_by_global_norm(gradients, 1.0)

    report = trainer.train_step(features)
    assert float(report["gradient_norm"]) == pytest.approx(norm, rel=1e-5)
    want, want_m, want_v = numpy_steps(kind, before, [{n: g.numpy() for n, g in zip(names, clipped)}], [1e-3])
    # Adam's first update hardly depends on the gradient's scale; its slots hold the clipped gradient itself.
    for name in names:
        np.testing.assert_allclose(trainer.variables_by_name[name].numpy(), want[name], rtol=1e-4, atol=1e-7, err_msg=name)
        np.testing.assert_allclose(trainer.optimizer.slots[f"{name}/adam_m"].numpy(), want_m[name], rtol=1e-4, atol=1e-9,
                                   err_msg=name)
        np.testing.assert_allclose(trainer.optimizer.slots[f"{name}/adam_v"].numpy(), want_v[name], rtol=1e-4, atol=1e-12,
                                   err_msg=name)


def test_float16_skips_non_finite_steps_and_lowers_the_scale(records_dir):
    config = BertConfig.from_dict(SMALL_MODEL)
    trainer = _trainer(config, micro_batch_size=4, compute_dtype="float16")
    features = _batch(records_dir, 4)
    assert float(trainer.loss_scale.numpy()) == training.INITIAL_LOSS_SCALE
    report = trainer.train_step(features)
    assert report["applied"] and int(trainer.step.numpy()) == 1
    trainer.loss_scale.assign(3e38)  # the scaled loss overflows float16 and float32
    before = {n: v.numpy() for n, v in trainer.variables_by_name.items()}
    report = trainer.train_step(features)
    assert not report["applied"]
    assert int(trainer.step.numpy()) == 1
    assert float(trainer.loss_scale.numpy()) == pytest.approx(1.5e38)
    assert all(np.array_equal(before[n], v.numpy()) for n, v in trainer.variables_by_name.items())
    assert all(v.dtype == tf.float32 for v in trainer.optimizer.slots.values())


def _fit_in_process(records_dir, out, compute_dtype, steps, loss_scale=None, **options):
    """Trains the small model on 16 real records, 4 a step in a fixed shuffled order, to `steps`, resuming from `out`."""
    arrays = {key: value.numpy() for key, value in _batch(records_dir, 16).items()}
    trainer = _trainer(BertConfig.from_dict(SMALL_MODEL), output_dir=str(out), num_train_steps=steps, micro_batch_size=4,
                       compute_dtype=compute_dtype, save_checkpoints_steps=2, **options)
    if loss_scale:
        trainer.loss_scale.assign(loss_scale)
    training.fit(trainer, training.IndexedBatches(arrays, 4, seed=5), trainer.options, distributed.Single(), log=lambda line: None)
    return trainer


def test_float16_steps_skipped_before_a_checkpoint_do_not_change_the_batches_of_a_resumed_run(records_dir, tmp_path):
    # Gradients overflow float16 at this scale: the first step is skipped, its batch passed over and the scale
    # halved, until they do not.
    overflowing = 2.0**40
    whole = _fit_in_process(records_dir, tmp_path, "float16", 4, loss_scale=overflowing)
    assert float(whole.loss_scale.numpy()) < overflowing and int(whole.step.numpy()) == 4
    assert int(whole.skipped_batches.numpy()) > 0
    for path in tmp_path.glob("ckpt-4.*"):
        path.unlink()
    resumed = _fit_in_process(records_dir, tmp_path, "float16", 4)
    assert float(resumed.loss_scale.numpy()) == float(whole.loss_scale.numpy())
    for name, variable in whole.variables_by_name.items():
        assert np.array_equal(resumed.variables_by_name[name].numpy(), variable.numpy()), name


def test_skipped_float16_steps_are_counted_in_tensorboard_not_averaged_into_a_step_or_reported_twice(records_dir, tmp_path):
    trainer = _fit_in_process(records_dir, tmp_path, "float16", 3, loss_scale=2.0**40, num_report_steps=1)
    skipped = int(trainer.skipped_batches.numpy())
    assert skipped > 0
    points = {}
    for event_file in tmp_path.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            for value in event.summary.value:
                points.setdefault(value.tag, []).append((event.step, float(tf.make_ndarray(value.tensor))))
    for tag in ("loss", "gradient_norm", "masked_lm_accuracy", "skipped_steps"):
        assert [step for step, _ in points[tag]] == [1, 2, 3], tag
        assert all(np.isfinite(value) for _, value in points[tag]), tag
    assert sum(value for _, value in points["skipped_steps"]) == skipped


def test_a_run_resumed_in_another_precision_takes_up_its_own_loss_scaling(records_dir, tmp_path):
    _fit_in_process(records_dir, tmp_path / "to_float16", "float32", 2)
    resumed = _fit_in_process(records_dir, tmp_path / "to_float16", "float16", 3)
    # Not the 1.0 a float32 run saves, where float16's small gradients underflow.
    assert float(resumed.loss_scale.numpy()) >= training.INITIAL_LOSS_SCALE / 2
    _fit_in_process(records_dir, tmp_path / "to_float32", "float16", 2)
    resumed = _fit_in_process(records_dir, tmp_path / "to_float32", "float32", 3)
    assert float(resumed.loss_scale.numpy()) == 1.0
    # Checkpoints of an earlier version, without skipped_batches, starting_ranks or loss_scaling: their loss scale
    # tells their precision.
    for saved, resumed_in, scale in (("float32", "float16", training.INITIAL_LOSS_SCALE), ("float16", "float32", 1.0)):
        earlier = _fit_in_process(records_dir, tmp_path / f"earlier_{saved}", saved, 2)
        state = earlier.state()
        del state["skipped_batches"], state["starting_ranks"], state["loss_scaling"]
        tf.train.CheckpointManager(tf.train.Checkpoint(**state), str(tmp_path / f"earlier_{saved}"), max_to_keep=5,
                                   checkpoint_name="ckpt").save(checkpoint_number=2)
        resumed = _fit_in_process(records_dir, tmp_path / f"earlier_{saved}", resumed_in, 3)
        assert scale / 2 <= float(resumed.loss_scale.numpy()) <= scale


def test_a_float16_run_stopped_just_after_a_skip_at_scale_2_resumes_at_scale_1(records_dir, tmp_path):
    # Scale 1 and no good steps, as a run without loss scaling saves too: the checkpoint says which it was.
    stopped = _fit_in_process(records_dir, tmp_path, "float16", 2)
    stopped.loss_scale.assign(1.0)
    stopped.good_steps.assign(0)
    tf.train.CheckpointManager(tf.train.Checkpoint(**stopped.state()), str(tmp_path), max_to_keep=5,
                               checkpoint_name="ckpt").save(checkpoint_number=2)
    resumed = _fit_in_process(records_dir, tmp_path, "float16", 3)
    assert int(resumed.step.numpy()) == 3 and int(resumed.good_steps.numpy()) == 1
    assert float(resumed.loss_scale.numpy()) == 1.0


def test_bfloat16_and_xla_train(records_dir, small_config, tmp_path):
    out = tmp_path / "bf16"
    result = run_cli("pretrain", *pretrain_args(records_dir, small_config, out, "--do_train", "--num_train_steps=3",
                                                "--auto_mixed_precision", "--amp_dtype=bfloat16", "--use_xla",
                                                "--optimizer_type=nlamb"))
    assert result.returncode == 0, result.stderr
    exported = tensors(out / "bert_model.ckpt")
    assert exported["bert/embeddings/word_embeddings"].dtype == np.float32
    # The same run in float32 ends with other weights (bfloat16 rounds the activations), but close ones.
    single = run_cli("pretrain", *pretrain_args(records_dir, small_config, tmp_path / "fp32", "--do_train",
                                                "--num_train_steps=3", "--use_xla", "--optimizer_type=nlamb"))
    assert single.returncode == 0, single.stderr
    in_float32 = tensors(tmp_path / "fp32" / "bert_model.ckpt")
    assert sorted(in_float32) == sorted(exported)
    assert any(not np.array_equal(in_float32[name], exported[name]) for name in exported)
    for name, value in exported.items():
        np.testing.assert_allclose(value, in_float32[name], atol=5e-3, err_msg=name)
    # Only where Linux lists x86 flags can the CPU be judged (ARM lists "Features", macOS has no cpuinfo).
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    flags = [set(line.split()) for line in lines if line.startswith("flags")]
    emulated = bool(flags) and not {"avx512_bf16", "amx_bf16"} & flags[0] and not tf.config.list_physical_devices("GPU")
    assert ("no bfloat16 instructions" in result.stderr) == emulated, result.stderr


def test_mixed_precision_warns_only_where_the_cpu_would_emulate_it(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    zen3 = "fpu sse sse2 ssse3 fma avx f16c avx2 sha_ni vaes"
    sapphire_rapids = "fpu sse sse2 avx avx2 avx512f avx512_bf16 avx512_fp16 amx_bf16 amx_tile"
    cpuinfo.write_text("".join(f"processor\t: {n}\nvendor_id\t: AuthenticAMD\nflags\t\t: {zen3}\n\n" for n in (0, 1)))
    flags = training.cpu_flags(str(cpuinfo))
    assert flags == set(zen3.split())
    for dtype in ("bfloat16", "float16"):
        warning = training.emulated_precision_warning(dtype, flags, has_gpu=False)
        assert f"--amp_dtype={dtype}" in warning and "slower than float32" in warning
        assert training.emulated_precision_warning(dtype, flags, has_gpu=True) is None
        assert training.emulated_precision_warning(dtype, set(sapphire_rapids.split()), has_gpu=False) is None
    assert training.emulated_precision_warning("float32", flags, has_gpu=False) is None
    assert training.emulated_precision_warning("bfloat16", {"avx512f", "avx512_fp16"}, has_gpu=False)
    assert training.cpu_flags(str(tmp_path / "absent")) is None
    assert training.emulated_precision_warning("bfloat16", None, has_gpu=False) is None


def test_float32_is_true_float32_unless_tf32_is_allowed():
    """TensorFlow rounds float32 matmuls to TF32 on Ampere and later GPUs by default; ours only when asked."""
    program = ("import sys; from absl import flags; from bert import cli; from bert.tf import tf; "
               "enabled = tf.config.experimental.tensor_float_32_execution_enabled; print(enabled()); "
               "cli.define_training_flags(); flags.FLAGS(sys.argv); cli.start_training_run(); print(enabled())")
    for flag, after_flags in (([], "False"), (["--allow_tf32"], "True"), (["--noallow_tf32"], "False")):
        result = subprocess.run([sys.executable, "-c", program, *flag], capture_output=True, text=True, cwd=ROOT,
                                env=dict(os.environ, PYTHONPATH=str(ROOT)))
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["False", after_flags]


def test_a_training_checkpoint_given_as_init_checkpoint_reports_its_training_state_apart(tmp_path):
    config = BertConfig.from_dict(SMALL_MODEL)
    trainer = _trainer(config, output_dir=str(tmp_path))
    tf.train.CheckpointManager(tf.train.Checkpoint(**trainer.state()), str(tmp_path), max_to_keep=1,
                               checkpoint_name="ckpt").save(checkpoint_number=5)
    encoder = modeling.BertModel(config)
    unused, _ = checkpoints.load_weights(encoder.weights, tmp_path, optional=modeling.POOLER_NAMES)
    line = checkpoints.initialised_line(tmp_path, unused)
    # The heads are what the encoder left; the step, loss scaling, slots and the manager's counter are the run's state.
    heads = [name for name in trainer.variables_by_name if name.startswith("cls/")]
    state = len(unused) - len(heads)
    assert line == (f"initialised from {tmp_path} ({tmp_path / 'ckpt-5'}); {len(heads)} checkpoint variable(s) not used: "
                    f"{', '.join(sorted(heads)[:4])}, ...; {state} training-state variable(s) (step, optimizer slots) not read")
    assert state > 2 * len(trainer.variables_by_name)
