"""The pre-training benchmark runs end to end and writes every figure it prints (no timing is asserted)."""

import json
import subprocess
import sys

from tests.conftest import ROOT


def test_pretrain_bench_writes_its_figures_with_the_rounds_cpu_steal(tmp_path):
    output = tmp_path / "pretrain.json"
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "pretrain.py"), "--sizes=tiny", "--dtypes=float32",
                             "--rounds=1", "--warmup=1", "--steps=2", f"--output={output}"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.loads(output.read_text())
    (case,) = results["cases"]
    figures = case["float32"]
    assert case["size"] == "tiny" and figures["sequences_per_second"] > 0
    assert figures["tokens_per_second"] == figures["sequences_per_second"] * results["seq"]
    assert figures["mfu"] > 0
    steal = figures["cpu_steal"]
    assert steal is None or 0 <= steal <= 1
    assert "tiny   float32" in result.stdout and f"wrote {output}" in result.stdout
