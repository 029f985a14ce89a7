"""Benchmark bert-create-data: instances/s and peak memory, reference mode and scale mode.

Input: WikiText-2 valid made one sentence a line by ../shared/tools/wikitext_to_docs.py, once (1x)
and concatenated ten times (10x); seq 128, dupe_factor 5, the uncased vocabulary. Each run is a real
`bert-create-data` subprocess; instances/s counts the whole command (start-up included), peak RSS
is sampled over the process and all its children, summed. With --reference_script pointing at a
checkout of google-research/bert's create_pretraining_data.py, the reference runs on the same input
in the same session and the ratios are against it; without it, no ratio is computed (a figure from
another machine or session says nothing about this one).

    .venv/bin/python bench/create_data.py [--reference_script PATH] [--output bench/results/create_data.json]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from common import ROOT, check_positive, machine, write_results

SHARED = ROOT.parent / "shared"


def run_measured(command, env=None):
    """(wall seconds, peak summed RSS in MB, output) of a command and all its children."""
    # Output goes to files: a pipe nobody reads while the command runs would fill up and block it.
    log = tempfile.TemporaryFile(mode="w+")
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True, env=env)
    parent = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            tree = [parent, *parent.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.02)
    elapsed = time.perf_counter() - start
    log.seek(0)
    output = log.read()
    if proc.returncode != 0:
        sys.exit(f"benchmark run failed: {' '.join(command)}\n{output[-2000:]}")
    return elapsed, peak / 2**20, output


def count_records(path):
    """Records in a TFRecord file, from its length prefixes (no TensorFlow needed)."""
    count = 0
    with open(path, "rb") as f:
        while header := f.read(12):
            length = int.from_bytes(header[:8], "little")
            f.seek(length + 4, os.SEEK_CUR)
            count += 1
    return count


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference_script", help="google-research/bert create_pretraining_data.py (TF2-runnable)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dupe_factor", type=int, default=5)
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "create_data.json"))
    args = parser.parse_args()
    check_positive(parser, args, "workers", "dupe_factor")

    raw = SHARED / "data" / "corpus" / "wikitext2_valid.raw.txt"
    vocab = SHARED / "data" / "vocab" / "uncased_vocab.txt"
    if not raw.exists():
        sys.exit(f"needs the real data: {raw} is missing")
    results = {"machine": machine(), "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        one = tmp / "wikitext2_valid_1x.txt"
        subprocess.run([sys.executable, str(SHARED / "tools" / "wikitext_to_docs.py"), str(raw), str(one)],
                       check=True, capture_output=True)
        ten = tmp / "wikitext2_valid_10x.txt"
        ten.write_bytes(one.read_bytes() * 10)
        common = [f"--vocab_file={vocab}", "--max_seq_length=128", "--max_predictions_per_seq=20",
                  f"--dupe_factor={args.dupe_factor}", "--random_seed=12345"]
        ours = [sys.executable, "-m", "bert.create_data"]
        for corpus, label in ((one, "1x"), (ten, "10x")):
            mb = corpus.stat().st_size / 2**20
            plans = [("reference mode", ours + [f"--output_file={tmp / 'ref.tfrecord'}"], tmp / "ref.tfrecord"),
                     (f"scale mode ({args.workers} workers)",
                      ours + [f"--output_dir={tmp / 'scale'}", "--overwrite", f"--num_workers={args.workers}"],
                      tmp / "scale")]
            if args.reference_script:
                plans.insert(0, ("google-research/bert", [sys.executable, args.reference_script,
                                                          f"--output_file={tmp / 'google.tfrecord'}"],
                                 tmp / "google.tfrecord"))
            for name, command, output in plans:
                cwd_env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
                elapsed, peak_mb, _ = run_measured(command + [f"--input_file={corpus}"] + common, env=cwd_env)
                files = sorted(output.glob("*.tfrecord")) if output.is_dir() else [output]
                instances = sum(count_records(f) for f in files)
                run = {"corpus": label, "corpus_mb": round(mb, 2), "tool": name, "instances": instances,
                       "seconds": round(elapsed, 2), "instances_per_s": round(instances / elapsed),
                       "peak_rss_mb": round(peak_mb, 1)}
                results["runs"].append(run)
                print(f"{label:>4} {mb:6.1f} MB  {name:<26} {instances:>8} inst  {elapsed:7.2f} s  "
                      f"{run['instances_per_s']:>7} inst/s  peak RSS {peak_mb:7.1f} MB", flush=True)

    def rate(tool, corpus):
        return next(r["instances_per_s"] for r in results["runs"] if r["tool"].startswith(tool) and r["corpus"] == corpus)

    def rss(tool, corpus):
        return next(r["peak_rss_mb"] for r in results["runs"] if r["tool"].startswith(tool) and r["corpus"] == corpus)

    summary = {}
    if args.reference_script:
        for corpus in ("1x", "10x"):
            base = rate("google", corpus)
            summary[f"reference_mode_speedup_{corpus}"] = round(rate("reference mode", corpus) / base, 2)
            summary[f"scale_mode_speedup_{corpus}"] = round(rate("scale mode", corpus) / base, 2)
        summary["reference_peak_rss_10x_over_1x"] = round(rss("google", "10x") / rss("google", "1x"), 2)
    summary["scale_mode_peak_rss_10x_over_1x"] = round(rss("scale mode", "10x") / rss("scale mode", "1x"), 2)
    summary["baseline"] = ("google-research/bert measured in this run" if args.reference_script else
                           "none (give --reference_script for the speedups over the reference)")
    results["summary"] = summary
    for key, value in summary.items():
        print(f"{key}: {value}")
    write_results(args.output, results)
    print(f"written {args.output}")


if __name__ == "__main__":
    main()
