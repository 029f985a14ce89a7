"""Benchmark gradient accumulation's memory: the peak of a training step that accumulates k micro-batches.

    .venv/bin/python bench/accumulation.py                              # mini, micro-batch 16, k = 1, 4, 16
    .venv/bin/python bench/accumulation.py --size=small --xla --accumulation=1,8

--num_accumulation_steps=k is there to train a batch k times larger than memory holds, so a step's peak
should grow with k by little more than the larger input batch and the running sum of the gradients. Each
case runs in its own process, as a peak is a high-water mark: it builds the model and its trainer, takes
two optimizer steps on random token ids (seq 128, 20 masked positions) and reports the process's peak
resident memory before and after them, and on a GPU the peak of the GPU's memory. The difference,
step_mib, includes the first step's tracing and compiling: the differences between values of k are what
accumulation costs. Printed and written to bench/results/accumulation.json.
"""

import argparse
import json
import resource
import subprocess
import sys

from common import ROOT, check_positive, machine, write_results
from pretrain import SEQ, SIZES, our_step

sys.path.insert(0, str(ROOT))


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def measure(size, micro_batch_size, k, xla):
    """{before_mib, after_mib, step_mib, gpu_peak_mib} of two steps at k micro-batches, in this process."""
    from bert.tf import tf

    step = our_step(size, xla=xla, micro_batch_size=micro_batch_size, accumulation=k)
    before = peak_mib()
    for _ in range(2):
        step()
    after = peak_mib()
    gpu = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20 if tf.config.list_logical_devices("GPU") else None
    return {"before_mib": round(before, 1), "after_mib": round(after, 1), "step_mib": round(after - before, 1),
            "gpu_peak_mib": gpu and round(gpu, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="mini", choices=list(SIZES))
    parser.add_argument("--micro_batch_size", type=int, default=16)
    parser.add_argument("--accumulation", default="1,4,16", help="the values of k, comma-separated")
    parser.add_argument("--xla", action="store_true", help="compile the micro-batches' gradients with XLA")
    parser.add_argument("--case", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "accumulation.json"))
    args = parser.parse_args()
    check_positive(parser, args, "micro_batch_size")
    try:
        ks = [int(k) for k in args.accumulation.split(",") if k]
    except ValueError:
        parser.error(f"--accumulation: {args.accumulation!r} is not a comma list of whole numbers")
    if not ks or min(ks) < 1:
        parser.error(f"--accumulation: each k must be at least 1, got {args.accumulation!r}")
    if args.case:
        print(json.dumps(measure(args.size, args.micro_batch_size, args.case, args.xla)))
        return

    results = {"machine": machine(), "size": args.size, "seq": SEQ, "micro_batch_size": args.micro_batch_size,
               "xla": args.xla, "cases": []}
    for k in ks:
        command = [sys.executable, __file__, f"--size={args.size}", f"--micro_batch_size={args.micro_batch_size}",
                   f"--case={k}", *(["--xla"] if args.xla else [])]
        run = subprocess.run(command, capture_output=True, text=True)
        if run.returncode != 0:
            sys.exit(f"accumulation.py: k={k} failed: {(run.stderr.strip().splitlines() or ['no message'])[-1]}")
        case = {"k": k, "batch": k * args.micro_batch_size, **json.loads(run.stdout.strip().splitlines()[-1])}
        results["cases"].append(case)
        gpu = f", GPU peak {case['gpu_peak_mib']:.0f} MiB" if case["gpu_peak_mib"] is not None else ""
        print(f"{args.size} k={k:<3d} batch {case['batch']:4d}: peak {case['after_mib']:7.0f} MiB, "
              f"{case['step_mib']:6.0f} MiB over the peak before the steps{gpu}")
    write_results(args.output, results)
    print(f"accumulation.py: wrote {args.output}")


if __name__ == "__main__":
    main()
