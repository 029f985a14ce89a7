"""What the benchmarks share: timing, running a peer implementation in its own process, writing results."""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def time_steps(step, warmup, steps):
    """Median seconds per step: on a shared machine the median shrugs off steps slowed by neighbours."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cpu_counters():
    """(stolen, total) CPU ticks of the whole machine so far, from /proc/stat; None where there is none.

    "Stolen" is time the hypervisor gave this virtual machine's CPUs to other tenants: a figure measured
    while it is high says more about the neighbours than about the code.
    """
    try:
        with open("/proc/stat") as f:
            ticks = [int(t) for t in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal; guest time is already inside user and nice.
    return (ticks[7] if len(ticks) > 7 else 0), sum(ticks[:8])


def stolen_fraction(before, after):
    if before is None or after is None or after[1] == before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def fastest_of_rounds(cases, rounds, report):
    """Seconds of each case, the fastest of `rounds` interleaved rounds, and the CPU steal during that round.

    `cases` is a list of (key, measure), measure() giving seconds or None (a peer that could not run).
    Neighbours on a shared machine slow whole minutes, not single steps: every case is timed once per
    round, rounds run one after another, and each case keeps its fastest round, so ours and the peers
    are each measured at their best of the same stretch of time. Returns ({key: seconds}, {key: steal}),
    steal the fraction of the machine's CPU time taken by the hypervisor during the kept round (None where
    unknown). `report(round_index, key, seconds, steal)` is called after each measurement.
    """
    seconds, steals = {}, {}
    for round_index in range(rounds):
        for key, measure in cases:
            before = cpu_counters()
            measured = measure()
            steal = stolen_fraction(before, cpu_counters())
            if measured is not None:
                if key not in seconds or measured < seconds[key]:
                    seconds[key], steals[key] = measured, steal
                report(round_index, key, measured, steal)
    return seconds, steals


def steal_note(steal):
    """' (steal 12%)' for a round the hypervisor took more than 5% of the CPU from, else ''."""
    return f" (steal {steal:.0%})" if steal is not None and steal > 0.05 else ""


def mkl_shim():
    """A shared object whose one function tells MKL this CPU is Intel, so it takes its fast path."""
    directory = Path(tempfile.gettempdir()) / "bert-bench"
    directory.mkdir(exist_ok=True)
    library = directory / "libfakeintel.so"
    if not library.exists():
        source = directory / "fakeintel.c"
        source.write_text("int mkl_serv_intel_cpu_true(void) { return 1; }\n")
        subprocess.run(["cc", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    return library


def run_peer(script, name, size, warmup, steps, python=None):
    """Seconds per step of a peer, measured by `script --peer name` in its own process; None when it fails."""
    env = dict(os.environ)
    # Each peer at its fastest on this CPU: keras-hub's TensorFlow with the oneDNN kernels ours use (TensorFlow
    # leaves them off on AVX2-only CPUs, where they make keras-hub 1.2-2x faster too), transformers with the shim.
    env.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    if name == "transformers":
        try:
            env["LD_PRELOAD"] = str(mkl_shim())
        except (OSError, subprocess.CalledProcessError) as e:
            print(f"  transformers: without the MKL shim, which could not be built ({e}); MKL may take its slow path")
        # PyTorch's CPU tuning advice, a caching allocator, in glibc's terms: keep freed memory rather than
        # return it to the system. Otherwise every step maps and faults in its [batch, seq, vocab] logits
        # (500 MB at batch 32) afresh, and transformers runs 1.2-1.6x slower here.
        env.setdefault("MALLOC_MMAP_MAX_", "0")
        env.setdefault("MALLOC_TRIM_THRESHOLD_", str(2**40))
    result = subprocess.run([python or sys.executable, str(script), "--peer", name, "--sizes", size, "--warmup", str(warmup),
                             "--steps", str(steps)], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["failed"])[-1]
        print(f"  {name} {size}: skipped ({reason})")
        return None
    return float(result.stdout.strip().splitlines()[-1])


def write_results(path, results):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temp = f"{path}.tmp"
    with open(temp, "w") as f:
        json.dump(results, f, indent=2)
    os.replace(temp, path)
