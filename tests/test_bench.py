"""The benchmarks run end to end and write every figure they print (no timing is asserted)."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def test_pretrain_bench_writes_its_figures_with_the_rounds_cpu_steal(tmp_path):
    output = tmp_path / "pretrain.json"
    # A bare file name is one in the working directory.
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "pretrain.py"), "--sizes=tiny", "--dtypes=float32",
                             "--rounds=1", "--warmup=1", "--steps=2", "--threads=1", "--output=pretrain.json"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pretrain.json"]
    results = json.loads(output.read_text())
    assert results["machine"]["cpus"] >= 1 and results["threads"] == 1
    (case,) = results["cases"]
    figures = case["float32"]
    assert case["size"] == "tiny" and figures["sequences_per_second"] > 0
    assert figures["tokens_per_second"] == figures["sequences_per_second"] * results["seq"]
    assert figures["mfu"] > 0
    steal = figures["cpu_steal"]
    assert steal is None or 0 <= steal <= 1
    assert "tiny   float32" in result.stdout and "wrote pretrain.json" in result.stdout


def test_extract_features_bench_writes_ours_and_the_reference_algorithms_figures(tmp_path):
    output = tmp_path / "extract_features.json"
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "extract_features.py"), "--sizes=tiny", "--examples=8",
                             "--batch_size=4", "--rounds=1", f"--output={output}"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.loads(output.read_text())
    assert results["cases"]
    for case in results["cases"]:
        assert case["size"] == "tiny" and case["layers"] == [-1, -2] and case["examples"] == 8
        ours, reference = case["ours"], case["reference algorithm"]
        assert ours["tokens_per_second"] == pytest.approx(ours["examples_per_second"] * case["tokens"] / 8)
        # Both write the same lines but for the last digit of a value here and there (float rounding).
        assert ours["output_megabytes"] == pytest.approx(reference["output_megabytes"], rel=1e-3)
        assert case["ours_over_reference_algorithm"] == pytest.approx(
            ours["examples_per_second"] / reference["examples_per_second"])
    assert f"wrote {output}" in result.stdout


def test_accumulation_bench_writes_each_ks_peak_memory(tmp_path):
    output = tmp_path / "accumulation.json"
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "accumulation.py"), "--size=tiny", "--micro_batch_size=2",
                             "--accumulation=1,3", f"--output={output}"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.loads(output.read_text())
    assert results["size"] == "tiny" and results["micro_batch_size"] == 2 and results["machine"]["cpus"] >= 1
    assert [(case["k"], case["batch"]) for case in results["cases"]] == [(1, 2), (3, 6)]
    for case in results["cases"]:
        assert 0 < case["before_mib"] <= case["after_mib"]
        assert case["step_mib"] == pytest.approx(case["after_mib"] - case["before_mib"], abs=0.11)
        assert f"tiny k={case['k']:<3d} batch {case['batch']:4d}: peak" in result.stdout
    assert f"wrote {output}" in result.stdout


@pytest.mark.parametrize("script, flag, fragment", [
    ("pretrain.py", "--sizes=huge", "--sizes: 'huge' is not one of tiny, mini, small, medium, base"),
    ("pretrain.py", "--dtypes=float32,fp8", "--dtypes: 'fp8' is not one of float32, bfloat16, float16"),
    ("pretrain.py", "--rounds=0", "--rounds must be at least 1, got 0"),
    ("pretrain.py", "--threads=0", "--threads must be at least 1, got 0"),
    ("finetune.py", "--steps=0", "--steps must be at least 1, got 0"),
    ("finetune.py", "--sizes=tiny", "--sizes: 'tiny' is not one of mini, minilm, small, base"),
    ("extract_features.py", "--sizes=huge", "--sizes: 'huge' is not one of tiny, mini, small, medium, base, large"),
    ("create_data.py", "--workers=0", "--workers must be at least 1, got 0"),
    ("accumulation.py", "--accumulation=1,0", "--accumulation: each k must be at least 1, got '1,0'"),
    ("accumulation.py", "--accumulation=4x", "--accumulation: '4x' is not a comma list of whole numbers"),
    ("accumulation.py", "--micro_batch_size=0", "--micro_batch_size must be at least 1, got 0"),
])
def test_a_bench_refuses_a_bad_flag_in_one_line_before_measuring(tmp_path, script, flag, fragment):
    output = tmp_path / "out.json"
    result = subprocess.run([sys.executable, str(ROOT / "bench" / script), flag, f"--output={output}"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"{script}: error: {fragment}"
    assert not output.exists()

