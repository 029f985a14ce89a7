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


def run_peer(script, name, size, warmup, steps, python=None, details=None, flags=()):
    """Seconds per step of a peer, measured by `script --peer name` (and `flags`) in its own process, which prints a
    last line of JSON: its seconds and what it ran (versions, settings), put into `details` when it is the fastest
    so far (the round the figures keep); None when it fails."""
    env = dict(os.environ)
    # Each peer at its fastest on this CPU: keras-hub's TensorFlow with the oneDNN kernels ours use (TensorFlow
    # leaves them off on AVX2-only CPUs, where they make keras-hub 1.2-2x faster too), transformers with the shim.
    env.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    env["KERAS_BACKEND"] = "tensorflow"
    shimmed = False
    if name == "transformers":
        try:
            env["LD_PRELOAD"] = str(mkl_shim())
            shimmed = True
        except (OSError, subprocess.CalledProcessError) as e:
            print(f"  transformers: without the MKL shim, which could not be built ({e}); MKL may take its slow path")
        # PyTorch's CPU tuning advice, a caching allocator, in glibc's terms: keep freed memory rather than
        # return it to the system. Otherwise every step maps and faults in its [batch, seq, vocab] logits
        # (500 MB at batch 32) afresh, and transformers runs 1.2-1.6x slower here.
        env.setdefault("MALLOC_MMAP_MAX_", "0")
        env.setdefault("MALLOC_TRIM_THRESHOLD_", str(2**40))
    result = subprocess.run([python or sys.executable, str(script), "--peer", name, "--sizes", size, "--warmup", str(warmup),
                             "--steps", str(steps), *flags], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["failed"])[-1]
        print(f"  {name} {size}: skipped ({reason})")
        return None
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    if details is not None and measured["seconds"] < details.get("seconds", float("inf")):
        details.clear()
        details.update(measured["details"], seconds=measured["seconds"], mkl_shim=shimmed)
    return measured["seconds"]


def write_results(path, results):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.tmp-")
    with os.fdopen(fd, "w") as f:
        json.dump(results, f, indent=2)
    os.replace(temp, path)


def comma_list(parser, value, flag, choices):
    """The items of a comma list `value`, each one of `choices`; anything else is a usage error naming `flag`."""
    items = [item for item in value.split(",") if item]
    wrong = next((item for item in items if item not in choices), None)
    if wrong is not None or not items:
        parser.error(f"{flag}: {wrong!r} is not one of {', '.join(choices)}" if wrong else f"{flag}: nothing named")
    return items


def check_positive(parser, args, *names):
    """A usage error naming the first of `names` whose value in `args` is below 1."""
    for name in names:
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")


def machine():
    """The CPU model and count, and Python's version: what a figure was measured on."""
    model = None
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        pass
    return {"cpu": model, "cpus": os.cpu_count(), "python": sys.version.split()[0]}
