"""Data parallelism for real: two ranks under horovodrun (Gloo), on this machine and across two over ssh, and two
tf.distribute workers."""

import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from bert import distributed, training
from tests import distributed_worker
from tests.conftest import (ROOT, assert_clean_failure, file_size_limit, learning_rates, message_lines, run_cli, unavailable,
                            wait_for)
from tests.pretrain_fixtures import pretrain_args

WORKER = ROOT / "tests" / "distributed_worker.py"


def horovodrun():
    try:
        import horovod.tensorflow  # noqa: F401
    except ImportError as e:
        unavailable(f"Horovod is not installed (bin/setup --with-horovod builds it; CI does): {e}")
    return str(Path(sys.executable).parent / "horovodrun")


def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")


def _load(path):
    with np.load(path) as data:
        return {name.replace("|", "/"): data[name] for name in data.files}


def _single_process_union(records_dir):
    """The same three steps in one process on both halves as one batch, from rank 0's initial weights.

    Dropout is on, so this also shows each rank drawing the masks of its place in the global batch.
    """
    trainer = distributed_worker.make_trainer(distributed.Single(), seed=100,
                                              micro_batch_size=2 * distributed_worker.HALF_BATCH)
    batch = distributed_worker.fixed_batch(str(records_dir))
    for _ in range(distributed_worker.STEPS):
        trainer.train_step(batch)
    return {name: v.numpy() for name, v in trainer.variables_by_name.items()}


def _assert_ranks_agree_with_union(out, records_dir):
    rank0, rank1 = _load(out / "rank-0.npz"), _load(out / "rank-1.npz")
    for name in rank0:
        assert np.array_equal(rank0[name], rank1[name]), name
    union = _single_process_union(records_dir)
    for name, value in union.items():
        np.testing.assert_allclose(rank0[name], value, rtol=1e-4, atol=1e-6, err_msg=name)


def test_horovod_two_ranks_equal_single_process_on_the_union(records_dir, tmp_path):
    runner = horovodrun()
    result = subprocess.run([runner, "--gloo", "-np", "2", "-H", "localhost:2", sys.executable, str(WORKER), "horovod",
                             str(records_dir), str(tmp_path)], capture_output=True, text=True, env=_env(), timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    _assert_ranks_agree_with_union(tmp_path, records_dir)


@pytest.fixture
def second_machine(tmp_path):
    """Another machine for horovodrun: an sshd of the test's own on 127.0.0.2, an address of the loopback network
    that is not one of this machine's, so horovodrun starts the ranks placed there over ssh, as on another host.
    Yields (host, ssh port, a directory to put first on PATH): its `ssh` logs in with the test's key alone, and
    neither reads nor writes the user's ~/.ssh."""
    sshd, ssh = "/usr/sbin/sshd", shutil.which("ssh")
    if not (os.access(sshd, os.X_OK) and ssh):
        unavailable("OpenSSH's server and client are not installed (.ci/run installs them)")
    directory = tmp_path / "ssh"
    directory.mkdir()
    for key in ("host_key", "user_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", directory / key], check=True)
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.2", 0))
            port = s.getsockname()[1]
    except OSError as e:
        unavailable(f"127.0.0.2 is not a loopback address here: {e}")
    log = directory / "sshd.log"
    (directory / "sshd_config").write_text(
        f"ListenAddress 127.0.0.2:{port}\nHostKey {directory / 'host_key'}\n"
        f"AuthorizedKeysFile {directory / 'user_key.pub'}\nPidFile {directory / 'sshd.pid'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n")
    if os.geteuid() == 0:
        # sshd run as root confines its unprivileged child there; nothing makes it in a container.
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    server = subprocess.Popen([sshd, "-D", "-f", directory / "sshd_config", "-E", log])
    try:
        try:
            wait_for(directory / "sshd.pid", server, timeout=30)
        except AssertionError as e:
            unavailable(f"sshd did not start: {e}: {log.read_text().strip() if log.exists() else ''}")
        client = directory / "ssh"
        client.write_text(f'#!/bin/sh\nexec {ssh} -F /dev/null -i {directory / "user_key"} -o IdentitiesOnly=yes '
                          '-o IdentityAgent=none -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null '
                          '-o LogLevel=ERROR "$@"\n')
        client.chmod(0o755)
        # sshd without PAM refuses an account whose password is locked, as root's is on some systems.
        login = subprocess.run([client, "-p", str(port), "127.0.0.2", "true"], capture_output=True, text=True, timeout=60)
        if login.returncode != 0:
            unavailable(f"cannot log in to the test's sshd: {login.stderr.strip()} {log.read_text().strip()}")
        yield "127.0.0.2", port, directory
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_horovod_across_two_machines_over_ssh_trains_as_on_one(records_dir, small_config, tmp_path, second_machine):
    """The README's command across machines: `bert-pretrain` found on the other machine through the PATH horovodrun
    passes on, its rank meeting rank 0 over the network, and the weights bit for bit those of the same run on one."""
    runner = horovodrun()
    host, port, ssh_directory = second_machine
    env = dict(_env(), PATH=os.pathsep.join([str(ssh_directory), str(Path(sys.executable).parent), os.environ["PATH"]]))
    exports = []
    for hosts in ("localhost:2", f"localhost:1,{host}:1"):
        out = tmp_path / hosts.replace(":", "_").replace(",", "+")
        result = subprocess.run(
            [runner, "--verbose", "-np", "2", "-H", hosts, "-p", str(port), "bert-pretrain", "--use_horovod",
             *pretrain_args(records_dir, small_config, out, "--do_train", "--num_train_steps=3", "--seed=7",
                            "--deterministic")],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
        assert result.returncode == 0, (result.stdout[-3000:] + result.stderr[-3000:]
                                        + (ssh_directory / "sshd.log").read_text()[-2000:])
        assert result.stdout.count("trained to step 3 (Horovod, 2 ranks, global batch 16") == 1
        exports.append((out / "bert_model.ckpt.data-00000-of-00001").read_bytes())
    assert f"Remote host found: {host}" in result.stdout
    assert "Accepted publickey" in (ssh_directory / "sshd.log").read_text()
    assert exports[0] == exports[1]


def _worker_addresses(count=2):
    """`count` distinct free local addresses: the ports are held together while they are chosen, so no two match."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("localhost", 0))
        return [f"localhost:{s.getsockname()[1]}" for s in sockets]
    finally:
        for s in sockets:
            s.close()


def test_a_worker_waiting_for_the_cluster_stops_on_ctrl_c_and_a_joined_one_on_sigterm(tmp_path):
    # TensorFlow waits for the other workers inside one call that does not return to Python, and takes SIGTERM over
    # for its preemption notices: a worker whose peer never came could be ended by SIGKILL alone.
    workers = _worker_addresses()
    joined = ("import signal, sys; from bert import distributed; distributed.MirroredWorkers(); "
              "open(sys.argv[1], 'w').close(); signal.pause()")

    def start(index):
        env = dict(_env(), TF_CONFIG=json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}))
        with open(tmp_path / f"worker-{index}.log", "w") as log:
            return subprocess.Popen([sys.executable, "-c", joined, str(tmp_path / f"joined-{index}")], env=env, cwd=ROOT,
                                    stdout=log, stderr=log)

    def stop(processes):
        for process in processes:
            process.kill()
            process.wait()

    alone = start(0)
    try:
        host, port = workers[0].split(":")
        deadline, listening = time.monotonic() + 120, False
        while not listening and alone.poll() is None and time.monotonic() < deadline:  # waiting for worker 1 there
            with socket.socket() as probe:
                listening = probe.connect_ex((host, int(port))) == 0
            time.sleep(0.2)
        assert listening and alone.poll() is None, (tmp_path / "worker-0.log").read_text()[-3000:]
        alone.send_signal(signal.SIGINT)
        assert alone.wait(timeout=30) == -signal.SIGINT
    finally:
        stop([alone])

    workers[:] = _worker_addresses()
    pair = [start(0), start(1)]
    try:
        for index, process in enumerate(pair):
            wait_for(tmp_path / f"joined-{index}", process)
        pair[1].send_signal(signal.SIGTERM)
        assert pair[1].wait(timeout=30) == -signal.SIGTERM
    finally:
        stop(pair)


def test_multi_worker_mirrored_two_workers_equal_single_process_on_the_union(records_dir, tmp_path):
    workers = _worker_addresses()
    processes = []
    for index in range(2):
        env = dict(_env(), TF_CONFIG=json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}))
        processes.append(subprocess.Popen([sys.executable, str(WORKER), "multi_worker_mirrored", str(records_dir), str(tmp_path)],
                                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=600)[0] for p in processes]
    for p, output in zip(processes, outputs):
        assert p.returncode == 0, output[-3000:]
        assert "retracing" not in output  # the broadcast's many groups share their traced collectives
    _assert_ranks_agree_with_union(tmp_path, records_dir)


def test_horovod_pretrain_cli_only_rank_zero_writes_and_resumes(records_dir, small_config, tmp_path):
    runner = horovodrun()
    out = tmp_path / "run"

    def pretrain(steps):
        return subprocess.run(
            [runner, "--gloo", "-np", "2", "-H", "localhost:2", sys.executable, "-m", "bert.pretrain", "--use_horovod",
             *pretrain_args(records_dir, small_config, out, "--do_train", "--do_eval", f"--num_train_steps={steps}",
                            "--save_checkpoints_steps=2", "--max_eval_steps=2", "--scale_lr_by_world_size")],
            capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=600)

    first = pretrain(4)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert first.stdout.count("trained to step 4 (Horovod, 2 ranks, global batch 16") == 1
    assert sorted(p.name for p in out.glob("ckpt-*.index")) == ["ckpt-2.index", "ckpt-4.index"]
    assert len(list(out.glob("events.out.tfevents.*"))) == 1
    # --learning_rate=1e-3 --num_warmup_steps=3, times 2 ranks: the mean rate of steps 1-4.
    assert learning_rates(out)[4] == pytest.approx(2e-3 * (0 / 3 + 1 / 3 + 2 / 3 + (1 - 3 / 4)) / 4)
    assert sorted(p.name for p in (out / "data").iterdir()) == ["rank-0", "rank-1"]
    assert (out / "eval_results.txt").read_text().count("global_step = 4") == 1
    # Rank 1's input position lost (its disk, not the shared one): rank 1 says so, rank 0's input goes on where it was.
    for path in (out / "data" / "rank-1").glob("data-4.*"):
        path.unlink()
    second = pretrain(6)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "resuming from" in second.stderr and "(step 4)" in second.stderr
    assert [line for line in second.stderr.splitlines() if "not restored" in line] == [
        "[1]<stderr>:bert-pretrain: warning: the input position of rank 1 at step 4 is not restored (none was saved); its "
        "input restarts, shuffled anew"]
    assert "trained to step 6" in second.stdout
    # On one rank (a machine lost) the run goes on with the same global batch, not with half of it.
    alone = run_cli("pretrain", *pretrain_args(records_dir, small_config, out, "--do_train", "--num_train_steps=8",
                                               "--train_batch_size=8"))
    assert_clean_failure(alone, "a different global_batch_size (--train_batch_size times --num_accumulation_steps times "
                                "the number of ranks) (16, now 8)")
    # So does a run recorded by an earlier version with each rank's batch: its input positions say on how many ranks.
    record = json.loads((out / "run.json").read_text())
    legacy = {key: value for key, value in record.items() if key != "global_batch_size"}
    (out / "run.json").write_text(json.dumps({**legacy, "rank_batch_size": 8}))
    alone = run_cli("pretrain", *pretrain_args(records_dir, small_config, out, "--do_train", "--num_train_steps=8",
                                               "--train_batch_size=16", "--scale_lr_by_world_size"))
    assert alone.returncode == 0, alone.stderr
    # Scaled for the 2 ranks whose global batch it keeps, not for 1.
    assert learning_rates(out)[8] == pytest.approx(2e-3 * ((1 - 6 / 8) + (1 - 7 / 8)) / 2)
    assert json.loads((out / "run.json").read_text()) == {**record, "changeable": {**record["changeable"], "num_train_steps": 8}}
    assert ("input position of rank 0 at step 6 is not restored (it was taken on other input files or another number "
            "of ranks); its input restarts, shuffled anew") in alone.stderr
    assert "trained to step 8 (single process, global batch 16" in alone.stdout
    # Rank 1's positions stay while their model checkpoints do (the run may be taken back to one on 2 ranks), and go
    # with them.
    assert sorted(p.name for p in (out / "data" / "rank-1").glob("*.index")) == ["data-2.index", "data-6.index"]
    for steps, keep, model, rank_1 in ((10, 3, [6, 8, 10], [6]), (12, 1, [12], None)):
        fewer = run_cli("pretrain", *pretrain_args(records_dir, small_config, out, "--do_train", f"--num_train_steps={steps}",
                                                   "--train_batch_size=16", "--scale_lr_by_world_size",
                                                   "--save_checkpoints_steps=2", f"--keep_checkpoints={keep}"))
        assert fewer.returncode == 0, fewer.stderr
        assert sorted(p.name for p in out.glob("ckpt-*.index")) == sorted(f"ckpt-{step}.index" for step in model)
        if rank_1 is None:
            assert sorted(p.name for p in (out / "data").iterdir()) == ["rank-0"]
        else:
            assert sorted(p.name for p in (out / "data" / "rank-1").glob("*.index")) == [f"data-{s}.index" for s in rank_1]


def test_ranks_reading_one_file_restart_their_input_together_when_one_rank_s_position_is_lost(records_dir, small_config,
                                                                                                 tmp_path):
    runner = horovodrun()
    out = tmp_path / "run"

    def pretrain(steps):
        return subprocess.run(
            [runner, "--gloo", "-np", "2", "-H", "localhost:2", sys.executable, "-m", "bert.pretrain", "--use_horovod",
             *pretrain_args(records_dir, small_config, out, "--do_train", f"--num_train_steps={steps}",
                            "--save_checkpoints_steps=2", inputs="part-00000-*.tfrecord")],
            capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=600)

    first = pretrain(2)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for path in (out / "data" / "rank-1").glob("data-2.*"):
        path.unlink()
    second = pretrain(4)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    # Each rank takes every other record of one stream: rank 0 going on in the stream of step 0 while rank 1 starts
    # that of step 2 would train on records of two orders, some twice and some not at all.
    warnings = sorted(line for line in second.stderr.splitlines() if "bert-pretrain: warning" in line)
    assert warnings == [
        "[0]<stderr>:bert-pretrain: warning: every rank's input restarts at step 2, shuffled anew: the ranks share out "
        "the records of one stream (there are fewer record files than ranks), and not all of them could go on in the "
        "same stream",
        "[1]<stderr>:bert-pretrain: warning: the input position of rank 1 at step 2 is not restored (none was saved); "
        "its input restarts, shuffled anew"], second.stderr[-3000:]
    for rank in (0, 1):
        saved = training.DataPosition.recorded_inputs(str(out / "data" / f"rank-{rank}" / "data-4"))
        assert saved["start_step"] == 2, rank
    # Positions in one stream go on in it.
    third = pretrain(6)
    assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
    assert "bert-pretrain: warning" not in third.stderr, third.stderr[-3000:]
    for rank in (0, 1):
        saved = training.DataPosition.recorded_inputs(str(out / "data" / f"rank-{rank}" / "data-6"))
        assert saved["start_step"] == 2, rank


def _start_mirrored_pretrain(records_dir, config, out, *flags, chief_max_file_size=None, worker_out=None):
    """Two bert-pretrain workers under MultiWorkerMirroredStrategy on this machine; their Popen objects.

    `chief_max_file_size` limits the files worker 0 writes (see conftest.file_size_limit); `worker_out` is worker 1's
    --output_dir where it is not `out` (as on a machine of its own)."""
    workers = _worker_addresses()
    processes = []
    for index in range(2):
        env = dict(_env(), TF_CONFIG=json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}))
        output_dir = worker_out if index == 1 and worker_out else out
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "bert.pretrain", "--distribution_strategy=multi_worker_mirrored",
             *pretrain_args(records_dir, config, output_dir, "--do_train", *flags)],
            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=file_size_limit(chief_max_file_size) if index == 0 else None))
    return processes


def test_multi_worker_mirrored_pretrain_cli(records_dir, small_config, tmp_path):
    out = tmp_path / "run"
    processes = _start_mirrored_pretrain(records_dir, small_config, out, "--num_train_steps=4", "--save_checkpoints_steps=2")
    outputs = [p.communicate(timeout=600) for p in processes]
    for p, (stdout, stderr) in zip(processes, outputs):
        assert p.returncode == 0, stderr[-3000:]
        # The barriers and checks are sums of one traced function, not one traced anew each time.
        assert "retracing" not in stderr, stderr[-3000:]
    assert "trained to step 4 (MultiWorkerMirroredStrategy, 2 workers, global batch 16" in outputs[0][0]
    assert outputs[1][0] == ""
    assert sorted(p.name for p in out.glob("ckpt-*.index")) == ["ckpt-2.index", "ckpt-4.index"]
    assert sorted(p.name for p in (out / "data").iterdir()) == ["rank-0", "rank-1"]
    assert (out / "bert_model.ckpt.index").exists()


def test_multi_worker_mirrored_workers_with_output_dirs_of_their_own_resume(records_dir, small_config, tmp_path):
    # As on two machines with local disks: the chief's directory alone holds the checkpoints, which it broadcasts.
    out, worker_out = tmp_path / "chief", tmp_path / "worker"
    for steps in (4, 6):
        processes = _start_mirrored_pretrain(records_dir, small_config, out, f"--num_train_steps={steps}",
                                             "--save_checkpoints_steps=2", worker_out=worker_out)
        outputs = [p.communicate(timeout=600) for p in processes]
        assert [p.returncode for p in processes] == [0, 0], outputs
    assert "resuming from" in outputs[0][1] and "(step 4)" in outputs[0][1]
    assert "not restored" not in outputs[0][1] + outputs[1][1]
    assert "trained to step 6" in outputs[0][0]
    assert not list(worker_out.glob("ckpt-*")) and sorted(p.name for p in (worker_out / "data").iterdir()) == ["rank-1"]


NODES = ["node1:2222", "node1:2223", "node2:2222"]


@pytest.mark.parametrize("cluster, task, position", [
    ({"worker": NODES}, ("worker", 0), (0, 0, 2)),
    ({"worker": NODES}, ("worker", 1), (1, 1, 2)),
    ({"worker": NODES}, ("worker", 2), (2, 0, 1)),
    ({"chief": NODES[:1], "worker": NODES[2:] + NODES[1:2]}, ("worker", 1), (2, 1, 2)),
    ({"chief": NODES[:1], "worker": NODES[1:]}, ("chief", 0), (0, 0, 2)),
])
def test_a_worker_takes_its_rank_from_tf_config_and_the_gpu_of_its_place_on_its_machine(cluster, task, position,
                                                                                          monkeypatch):
    from bert.tf import tf

    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": task[0], "index": task[1]}}))
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    assert distributed.cluster_position(resolver.cluster_spec().as_dict(), resolver.task_type, resolver.task_id) == position


def test_broadcast_groups_keep_the_order_and_stay_within_the_byte_limit():
    import tensorflow as tf

    variables = [tf.Variable(tf.zeros(shape, dtype)) for shape, dtype in
                 [([4], tf.float32), ([3], tf.float32), ([2], tf.int64), ([], tf.int64), ([10], tf.float32), ([1], tf.float32),
                  ([2], tf.float32), ([0], tf.float32)]]
    groups = distributed.byte_groups(variables, limit=32)
    position = {id(v): i for i, v in enumerate(variables)}
    assert [[position[id(v)] for v in group] for group in groups] == [[0, 1], [2, 3], [4], [5, 6, 7]]
    assert distributed.byte_groups([], limit=32) == []


def test_processes_that_do_not_match_their_machines_gpus_one_to_one_are_warned():
    assert distributed.gpu_use_warning(7, 8, 8, {}) is None
    assert distributed.gpu_use_warning(9, 10, 8, {}) == ("warning: local rank 9 shares GPU 1 with another process: this "
                                                         "machine has 8 GPU(s); start one process per GPU")
    # One worker per machine, as tf.distribute is often run: seven of eight GPUs would idle without a word.
    assert distributed.gpu_use_warning(0, 1, 8, {}) == ("warning: 1 process(es) on this machine use 1 of its 8 GPUs, one "
                                                        "each; start one process per GPU")
    assert distributed.gpu_use_warning(1, 2, 8, {}) is None  # said once per machine, by its local rank 0
    # Two processes seeing one GPU share it, unless their launcher showed each its own (Slurm's --gpus-per-task=1).
    shared = "warning: local rank 1 shares GPU 0 with another process: this machine has 1 GPU(s); start one process per GPU"
    assert distributed.gpu_use_warning(1, 2, 1, {}) == shared
    assert distributed.gpu_use_warning(1, 2, 1, {"CUDA_VISIBLE_DEVICES": ""}) == shared
    for variable in ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES"):
        assert distributed.gpu_use_warning(1, 2, 1, {variable: "3"}) is None


def test_multi_worker_mirrored_sums_over_nccl_on_a_gpu_of_the_workers_own():
    implementation = tf.distribute.experimental.CommunicationImplementation
    assert distributed.communication_options(True).implementation == implementation.NCCL
    # On CPUs, and on a GPU shared with another worker (which NCCL refuses), TensorFlow's ring.
    assert distributed.communication_options(False).implementation == implementation.AUTO


@pytest.mark.parametrize("cluster, task, message", [
    ({"worker": NODES[:1], "ps": NODES[1:2]}, ("ps", 0), "TF_CONFIG: task type 'ps' does not train; use chief or worker"),
    ({"worker": NODES[:2]}, ("worker", 2), "TF_CONFIG: task worker 2 is not in its cluster"),
    ({"worker": NODES[:2]}, ("chief", 0), "TF_CONFIG: task chief 0 is not in its cluster"),
])
def test_a_tf_config_task_that_does_not_train_or_is_not_in_the_cluster_is_refused(records_dir, small_config, tmp_path,
                                                                                 cluster, task, message):
    tf_config = {"cluster": cluster, "task": {"type": task[0], "index": task[1]}}
    result = run_cli("pretrain", "--distribution_strategy=multi_worker_mirrored",
                     *pretrain_args(records_dir, small_config, tmp_path / "run", "--do_train"),
                     env={"TF_CONFIG": json.dumps(tf_config)})
    assert_clean_failure(result, message)
    assert not (tmp_path / "run").exists()


def test_multi_worker_mirrored_without_a_cluster_in_tf_config_is_refused(records_dir, small_config, tmp_path):
    for tf_config in ("", "[]", json.dumps({"cluster": {"worker": NODES[:2]}}), json.dumps({"task": "worker"})):
        result = run_cli("pretrain", "--distribution_strategy=multi_worker_mirrored",
                         *pretrain_args(records_dir, small_config, tmp_path / "run", "--do_train"), env={"TF_CONFIG": tf_config})
        assert_clean_failure(result, "--distribution_strategy=multi_worker_mirrored: TF_CONFIG names no cluster and task")
    assert not (tmp_path / "run").exists()


def test_a_tf_config_that_is_not_json_is_refused(records_dir, small_config, tmp_path):
    result = run_cli("pretrain", "--distribution_strategy=multi_worker_mirrored",
                     *pretrain_args(records_dir, small_config, tmp_path / "run", "--do_train"), env={"TF_CONFIG": "{bad"})
    assert_clean_failure(result, "TF_CONFIG: not valid JSON")
    assert not (tmp_path / "run").exists()
    # JSON, but not of the shape TensorFlow reads (its own errors are tracebacks).
    task = {"type": "worker", "index": 0}
    for tf_config, said in (({"cluster": {"worker": "localhost:2222"}, "task": task},
                             "TF_CONFIG: its cluster's 'worker' must be a list of \"host:port\" strings, got \"localhost:2222\""),
                            ({"cluster": {"worker": [2222]}, "task": task},
                             "TF_CONFIG: its cluster's 'worker' must be a list of \"host:port\" strings, got [2222]"),
                            ({"cluster": {"worker": ["localhost:2222"]}, "task": {"type": "worker", "index": "zero"}},
                             "TF_CONFIG: its task's index must be a whole number, got \"zero\"")):
        result = run_cli("pretrain", "--distribution_strategy=multi_worker_mirrored",
                         *pretrain_args(records_dir, small_config, tmp_path / "run", "--do_train"),
                         env={"TF_CONFIG": json.dumps(tf_config)})
        assert_clean_failure(result, said)
        assert not (tmp_path / "run").exists()


def test_a_worker_stopped_by_a_failed_write_ends_the_other_with_one_line_each(records_dir, small_config, tmp_path):
    out = tmp_path / "run"
    # Below the size of a training checkpoint, above the input positions and TensorBoard events.
    processes = _start_mirrored_pretrain(records_dir, small_config, out, "--num_train_steps=8", "--save_checkpoints_steps=2",
                                         chief_max_file_size=2 << 20)
    outputs = [p.communicate(timeout=600) for p in processes]
    lines = [message_lines(stderr) for _, stderr in outputs]
    assert [p.returncode for p in processes] == [1, 1], outputs
    assert lines[0] == [f"bert-pretrain: error: cannot write checkpoint {out / 'ckpt-2'} after step 2: File too large; no "
                        "checkpoint was saved: run the same command again to start over"]
    assert lines[1] == [f"bert-pretrain: error: {distributed.LOST_CONTACT}"]
    assert not list(out.glob("ckpt-*"))


def _rank_script(directory, command, rank, statement):
    """A script running `python -m bert.<command>` under horovodrun, rank `rank` alone running the Python
    `statement` first (with os, resource and sys imported)."""
    (directory / "bin").mkdir(exist_ok=True)
    script = directory / "bin" / f"{command}_rank{rank}.py"
    script.write_text("import os, resource, runpy, sys\n"
                      f"if os.environ['HOROVOD_RANK'] == '{rank}':\n"
                      f"    {statement}\n"
                      f"runpy.run_module('bert.{command}', run_name='__main__', alter_sys=True)\n")
    return script


def _rank_with_file_size_limit(directory, command, rank, max_file_size):
    """`command` under horovodrun with the files that rank `rank` writes limited to `max_file_size` bytes (see
    conftest.file_size_limit)."""
    return _rank_script(directory, command, rank,
                        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({max_file_size}, {max_file_size}))")


SIGNALLED_RANK = """\
import os, runpy, signal, time

import tensorflow as tf

from bert import training

# Rank 1 gets a SIGTERM during the last step (4), after the step's collectives: it alone asks to stop. The chief
# takes 5 s over its model checkpoint, as over a large model's: the rank that stops must not end the run before
# the checkpoint is written.
if os.environ["HOROVOD_RANK"] == "0":
    save = tf.train.CheckpointManager.save

    def slow_save(self, *args, **kwargs):
        if not os.path.basename(self.directory).startswith("rank-"):
            time.sleep(5)
        return save(self, *args, **kwargs)

    tf.train.CheckpointManager.save = slow_save
else:
    initialise = training.Trainer.__init__

    def signalled_in_step_4(self, *args, **kwargs):
        initialise(self, *args, **kwargs)
        train_step = self.train_step

        def step(*step_args):
            report = train_step(*step_args)
            if int(self.step.numpy()) == 4:
                signal.raise_signal(signal.SIGTERM)
            return report

        self.train_step = step

    training.Trainer.__init__ = signalled_in_step_4
runpy.run_module("bert.pretrain", run_name="__main__", alter_sys=True)
"""


def test_a_rank_signalled_in_the_last_step_leaves_only_after_the_chief_s_last_checkpoint(records_dir, small_config,
                                                                                          tmp_path):
    # horovodrun ends every rank once one has exited: leaving at once would kill the chief while it saves.
    runner = horovodrun()
    script = tmp_path / "signalled_pretrain.py"
    script.write_text(SIGNALLED_RANK)
    out = tmp_path / "run"
    args = pretrain_args(records_dir, small_config, out, "--do_train", "--num_train_steps=4", "--save_checkpoints_steps=4")
    result = subprocess.run([runner, "--gloo", "-np", "2", "-H", "localhost:2", sys.executable, str(script), "--use_horovod",
                             *args], capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=600)
    ranks = [[line.split(":", 1)[1] for line in result.stderr.splitlines() if line.startswith(f"[{r}]<stderr>:")]
             for r in range(2)]
    assert [line for line in ranks[1] if line.startswith("bert-pretrain")] == [
        f"bert-pretrain: stopped by SIGTERM after step 4 of 4; saved {out}/ckpt-4; run the same command again to "
        "resume"], result.stderr[-3000:]
    assert not any("Traceback" in line for lines in ranks for line in lines), result.stderr[-3000:]
    # The chief's checkpoint of the last step is whole: every variable reads back.
    reader = tf.train.load_checkpoint(str(out / "ckpt-4"))
    assert all(reader.get_tensor(name) is not None for name in reader.get_variable_to_shape_map())
    resumed = subprocess.run([runner, "--gloo", "-np", "2", "-H", "localhost:2", sys.executable, "-m", "bert.pretrain",
                              "--use_horovod", *args], capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "(step 4)" in resumed.stderr and (out / "bert_model.ckpt.index").exists()


def test_a_rank_stopped_by_a_failed_write_under_horovod_ends_the_other_with_one_line(records_dir, small_config, tmp_path):
    runner = horovodrun()
    out = tmp_path / "run"
    # Rank 0's writes alone are limited: below a training checkpoint's size.
    rank = _rank_with_file_size_limit(tmp_path, "pretrain", 0, 2 << 20)
    result = subprocess.run(
        [runner, "--gloo", "-np", "2", "-H", "localhost:2", sys.executable, str(rank), "--use_horovod",
         *pretrain_args(records_dir, small_config, out, "--do_train", "--num_train_steps=8", "--save_checkpoints_steps=2")],
        capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=600)
    assert result.returncode != 0
    # horovodrun prefixes each rank's lines with its rank; its own report of the failed ranks follows.
    by_rank = [[line.split(":", 1)[1] for line in result.stderr.splitlines() if line.startswith(f"[{r}]<stderr>:")]
               for r in range(2)]
    assert [line for line in by_rank[0] if line.startswith("bert-pretrain")] == [
        f"bert-pretrain: error: cannot write checkpoint {out / 'ckpt-2'} after step 2: File too large; no checkpoint was "
        "saved: run the same command again to start over"], result.stderr[-3000:]
    assert [line for line in by_rank[1] if line.startswith("bert-pretrain")] == [
        f"bert-pretrain: error: {distributed.LOST_CONTACT}"], result.stderr[-3000:]
    assert not any("Traceback" in line for lines in by_rank for line in lines), result.stderr[-3000:]
    assert not list(out.glob("ckpt-*"))


def test_every_worker_stops_with_one_line_when_the_output_dir_is_in_use(records_dir, small_config, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with open(out / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a training process still running there holds it
        processes = _start_mirrored_pretrain(records_dir, small_config, out, "--num_train_steps=4")
        outputs = [p.communicate(timeout=600) for p in processes]
    lines = [message_lines(stderr) for _, stderr in outputs]
    assert [p.returncode for p in processes] == [1, 1], outputs
    assert lines[0] == [f"bert-pretrain: error: --output_dir: {out} is in use by another training process (it holds "
                        f"{out / '.lock'}); wait for it to end or use another --output_dir"]
    assert lines[1] == [f"bert-pretrain: error: --output_dir: {out} is in use by another training process (rank 0 found "
                        "it locked)"]
    assert sorted(p.name for p in out.iterdir()) == [".lock"]


def _stopped_step(line, cause, out):
    stopped = re.search(rf"bert-pretrain: stopped by {cause} after step (\d+) of 40; saved {re.escape(str(out))}/ckpt-(\d+); "
                        "run the same command again to resume$", line)
    assert stopped and stopped[1] == stopped[2], line
    return int(stopped[1])


def _assert_stop_saved(out, step):
    assert 10 <= step < 40
    assert (out / f"ckpt-{step}.index").exists()
    for rank in (0, 1):
        assert (out / "data" / f"rank-{rank}" / f"data-{step}.index").exists()


def test_a_signal_to_one_worker_stops_every_worker_after_the_same_step_and_saves_it(records_dir, small_config, tmp_path):
    out = tmp_path / "run"
    flags = ("--num_train_steps=40", "--save_checkpoints_steps=10")
    processes = _start_mirrored_pretrain(records_dir, small_config, out, *flags)
    wait_for(out / "ckpt-10.index", processes[0])
    processes[1].send_signal(signal.SIGTERM)
    outputs = [p.communicate(timeout=600) for p in processes]
    for p, (stdout, stderr) in zip(processes, outputs):
        assert p.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    stop_lines = [[line for line in stderr.splitlines() if "bert-pretrain: stopped by" in line] for _, stderr in outputs]
    assert [len(lines) for lines in stop_lines] == [1, 1], outputs
    step = _stopped_step(stop_lines[1][0], "SIGTERM", out)
    assert _stopped_step(stop_lines[0][0], "a signal to another rank", out) == step
    _assert_stop_saved(out, step)

    processes = _start_mirrored_pretrain(records_dir, small_config, out, *flags)
    outputs = [p.communicate(timeout=600) for p in processes]
    for p, (stdout, stderr) in zip(processes, outputs):
        assert p.returncode == 0, stderr[-3000:]
        assert "not restored" not in stderr  # each worker's input goes on where it stopped
    assert f"resuming from {out}/ckpt-{step} (step {step})" in outputs[0][1]
    assert "trained to step 40" in outputs[0][0]


def test_ctrl_c_to_horovodrun_stops_the_ranks_after_one_step_and_the_resumed_run_is_bit_identical(records_dir, small_config,
                                                                                                   tmp_path):
    import tensorflow as tf

    runner = horovodrun()
    out = tmp_path / "run"

    def command(output_dir):
        return [runner, "--gloo", "-np", "2", "-H", "localhost:2", sys.executable, "-m", "bert.pretrain", "--use_horovod",
                *pretrain_args(records_dir, small_config, output_dir, "--do_train", "--num_train_steps=40",
                               "--save_checkpoints_steps=10", "--deterministic", "--seed=7")]

    straight = subprocess.run(command(tmp_path / "straight"), capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=600)
    assert straight.returncode == 0, straight.stdout[-3000:] + straight.stderr[-3000:]
    process = subprocess.Popen(command(out), env=_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(out / "ckpt-10.index", process)
    # horovodrun passes it on to each rank as SIGTERM, and kills every rank once one has exited.
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=600)
    lines = [line for line in stderr.splitlines() if "bert-pretrain: stopped by" in line]
    assert lines, stderr[-3000:]
    steps = {_stopped_step(line, "SIGTERM", out) for line in lines}
    assert len(steps) == 1
    step = steps.pop()
    _assert_stop_saved(out, step)

    again = subprocess.run(command(out), capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"resuming from {out}/ckpt-{step} (step {step})" in again.stderr
    assert "not restored" not in again.stderr
    assert "trained to step 40" in again.stdout
    # Each rank's weights and input went on where they were: the same model as a run never stopped.
    resumed, uninterrupted = (tf.train.load_checkpoint(str(d / "bert_model.ckpt")) for d in (out, tmp_path / "straight"))
    names = sorted(uninterrupted.get_variable_to_shape_map())
    assert names == sorted(resumed.get_variable_to_shape_map())
    for name in names:
        assert np.array_equal(resumed.get_tensor(name), uninterrupted.get_tensor(name)), name


def test_horovod_classify_equals_one_process_with_the_global_batch(small_config, uncased_vocab, tmp_path):
    """bert-classify under 2 ranks x 8 trains like one process x 16: same batches, same steps, same weights."""
    from tests.conftest import shared_file
    from tests.pretrain_fixtures import SMALL_MODEL
    from tests.test_classify import classify_args, tensors

    runner = horovodrun()
    data = shared_file("glue", "MRPC")
    # Dropout included: each example draws its masks by its place in the global batch, on whichever rank.
    assert SMALL_MODEL["hidden_dropout_prob"] > 0 and SMALL_MODEL["attention_probs_dropout_prob"] > 0

    def args(out, batch):
        return classify_args(data, small_config, uncased_vocab, out, "--do_train", "--num_train_epochs=0.04",
                             f"--train_batch_size={batch}", "--learning_rate=1e-3", "--seed=5")

    single = subprocess.run([sys.executable, "-m", "bert.classify", *args(tmp_path / "single", 16)],
                            capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=600)
    assert single.returncode == 0, single.stderr
    # Rank 1 can write no file as large as the training features: only rank 0 writes them.
    rank = _rank_with_file_size_limit(tmp_path, "classify", 1, 64 << 10)
    ranks = subprocess.run([runner, "--gloo", "-np", "2", "-H", "localhost:2", sys.executable, str(rank),
                            "--use_horovod", *args(tmp_path / "ranks", 8)],
                           capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=600)
    assert ranks.returncode == 0, ranks.stdout[-3000:] + ranks.stderr[-3000:]
    assert len(list((tmp_path / "ranks").glob("train-features-*.npz"))) == 1
    assert ranks.stdout.count("trained to step 9 (Horovod, 2 ranks, global batch 16") == 1
    want, got = tensors(tmp_path / "single" / "bert_model.ckpt"), tensors(tmp_path / "ranks" / "bert_model.ckpt")
    assert int(got["global_step"]) == int(want["global_step"]) == 9
    for name in want:
        np.testing.assert_allclose(got[name], want[name], atol=2e-5, err_msg=name)


def _rank_with_extra_flags(directory, command, rank, flags):
    """`command` under horovodrun with `flags` added to rank `rank`'s own."""
    return _rank_script(directory, command, rank, f"sys.argv += {list(flags)!r}")


@pytest.mark.parametrize("flags, named", [
    # Rank 1 would have left for the last barrier after step 4 while rank 0 waited in step 5's allreduce.
    (["--num_train_steps=4", "--learning_rate=0.002"], ["num_train_steps (4 on rank 1)", "learning_rate (0.002 on rank 1)"]),
    (["--save_checkpoints_steps=3"], ["save_checkpoints_steps (3 on rank 1)"]),
    (["--scale_lr_by_world_size"], ["scale_lr_by_world_size (true on rank 1)"]),
])
def test_ranks_started_with_different_settings_stop_with_one_line_each_instead_of_waiting(records_dir, small_config,
                                                                                          tmp_path, flags, named):
    runner = horovodrun()
    out = tmp_path / "run"
    script = _rank_with_extra_flags(tmp_path, "pretrain", 1, flags)
    result = subprocess.run(
        [runner, "--gloo", "-np", "2", "-H", "localhost:2", sys.executable, str(script), "--use_horovod",
         *pretrain_args(records_dir, small_config, out, "--do_train", "--num_train_steps=6", "--save_checkpoints_steps=2")],
        capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=300)
    assert result.returncode != 0
    for rank in range(2):
        lines = [line.split(":", 1)[1] for line in result.stderr.splitlines() if line.startswith(f"[{rank}]<stderr>:")]
        (error,) = [line for line in lines if line.startswith("bert-pretrain")]
        assert error.startswith("bert-pretrain: error: the ranks (Horovod, 2 ranks) differ in "), error
        assert error.endswith(": start every rank with the same flags, config and data"), error
        for fragment in named:
            # Each rank shows its own value.
            assert (fragment if rank else fragment.split(" (")[0] + " (") in error, error
        assert f" on rank {rank})" in error, error
        assert not any("Traceback" in line for line in lines), result.stderr[-3000:]
    assert not list(out.glob("ckpt-*"))


def test_horovod_classify_ranks_with_other_data_or_config_say_which(small_config, uncased_vocab, tmp_path):
    import shutil

    from tests.conftest import shared_file
    from tests.pretrain_fixtures import SMALL_MODEL
    from tests.test_classify import classify_args

    runner = horovodrun()
    # Rank 1's copy of the training file has one sentence edited, and its config another activation: the same
    # shapes and steps, so nothing would stop the run but this.
    other = tmp_path / "other_MRPC"
    other.mkdir()
    lines = shared_file("glue", "MRPC", "train.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    lines[1] = lines[1].replace("Amrozi", "Amrozy")
    (other / "train.tsv").write_text("".join(lines), encoding="utf-8")
    shutil.copyfile(shared_file("glue", "MRPC", "dev.tsv"), other / "dev.tsv")
    relu = tmp_path / "relu.json"
    relu.write_text(json.dumps({**SMALL_MODEL, "hidden_act": "relu"}))
    script = _rank_with_extra_flags(tmp_path, "classify", 1, [f"--data_dir={other}", f"--bert_config_file={relu}"])
    result = subprocess.run(
        [runner, "--gloo", "-np", "2", "-H", "localhost:2", sys.executable, str(script), "--use_horovod",
         *classify_args(shared_file("glue", "MRPC"), small_config, uncased_vocab, tmp_path / "run", "--do_train",
                        "--num_train_epochs=0.04")],
        capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=300)
    assert result.returncode != 0
    lines = [line.split(":", 1)[1] for line in result.stderr.splitlines() if line.startswith("[1]<stderr>:")]
    assert [line for line in lines if line.startswith("bert-classify")] == [
        "bert-classify: error: the ranks (Horovod, 2 ranks) differ in 'hidden_act' in --bert_config_file (\"relu\" on "
        "rank 1); the training file's contents: start every rank with the same flags, config and data"], result.stderr[-3000:]


def test_a_dev_file_missing_stops_every_horovod_rank_before_training(small_config, uncased_vocab, tmp_path):
    import shutil

    from tests.conftest import shared_file
    from tests.test_classify import classify_args

    runner = horovodrun()
    data = tmp_path / "MRPC"
    data.mkdir()
    shutil.copyfile(shared_file("glue", "MRPC", "train.tsv"), data / "train.tsv")
    result = subprocess.run(
        [runner, "--gloo", "-np", "2", "-H", "localhost:2", sys.executable, "-m", "bert.classify", "--use_horovod",
         *classify_args(data, small_config, uncased_vocab, tmp_path / "run", "--do_train", "--do_eval")],
        capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=600)
    assert result.returncode != 0
    for rank in range(2):
        lines = [line.split(":", 1)[1] for line in result.stderr.splitlines() if line.startswith(f"[{rank}]<stderr>:")]
        assert [line for line in lines if line.startswith("bert-classify")] == [
            f"bert-classify: error: --data_dir: {data / 'dev.tsv'} not found (task mrpc needs it for dev)"], result.stderr[-3000:]
    assert not (tmp_path / "run").exists()
