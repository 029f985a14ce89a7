"""Progress of long work on stderr: a tqdm bar on a terminal, plain lines anywhere else.

Under horovodrun, Docker or Slurm stderr is a pipe or a file. A redrawn bar there is noise, and no bar
leaves a job of hours silent between its first line and its summary. So there the bar becomes a line
(`<command>: <desc>: <unit> <n> of <total> (<percent>), <postfix>, <time> left`) once the work has run
PLAIN_SECONDS, and then at most every PLAIN_SECONDS, so that short work stays quiet. The time left is
reckoned from the first update on, past start-up costs such as compiling.
"""

import datetime
import sys
import threading
import time

from tqdm import tqdm

from bert import cli

PLAIN_SECONDS = 60


def bar(iterable=None, *, desc, unit, total=None, unit_scale=False, initial=0, leave=True, disable=False):
    """A progress bar over `iterable`, or advanced by update(n): tqdm's, or PlainProgress where stderr is no terminal.

    `disable` shows nothing at all (ranks other than the chief).
    """
    if disable:
        return tqdm(iterable, total=total, initial=initial, disable=True)
    if sys.stderr.isatty():
        return tqdm(iterable, total=total, desc=desc, unit=unit, unit_scale=unit_scale, initial=initial, leave=leave,
                    file=sys.stderr, dynamic_ncols=True)
    return PlainProgress(iterable, total=total, desc=desc, unit=unit, unit_scale=unit_scale, initial=initial)


def in_background(work, desc):
    """work()'s result, or its exception, with work run in a thread while this one shows the time it is taking.

    A native trainer called from the main thread holds it until it returns, and Python handles signals only there:
    Ctrl-C or SIGTERM waited for the whole training, hours on a large corpus. Here the main thread only waits, so a
    signal unwinds it at once; the thread, left behind, ends with the process. For work that lets go of the GIL.
    """
    outcome = {}

    def run():
        try:
            outcome["result"] = work()
        except BaseException as e:  # handed to the main thread, which raises it
            outcome["error"] = e

    thread = threading.Thread(target=run, name=desc, daemon=True)
    thread.start()
    with _elapsed(desc) as shown:
        while thread.is_alive():
            thread.join(timeout=1)
            shown.update(0)
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("result")


def _elapsed(desc):
    """A display of how long `desc` has taken so far, updated by update(0)."""
    if sys.stderr.isatty():
        return tqdm(desc=desc, bar_format="{desc}: {elapsed}", file=sys.stderr)
    return _PlainElapsed(desc)


class _PlainElapsed:
    """Where stderr is no terminal: `<command>: <desc>: <time> so far` once the work has run PLAIN_SECONDS, then at
    most every PLAIN_SECONDS."""

    def __init__(self, desc):
        self.desc = desc
        self._log = cli.rank_log()
        self._start = self._last_line_time = time.monotonic()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        pass

    def update(self, n):
        del n  # Only the time counts.
        now = time.monotonic()
        if now - self._last_line_time >= PLAIN_SECONDS:
            self._log(f"{self.desc}: {datetime.timedelta(seconds=round(now - self._start))} so far")
            self._last_line_time = now


class PlainProgress:
    """The part of tqdm's interface the commands use, logging plain lines instead of drawing a bar."""

    def __init__(self, iterable=None, *, desc, unit, total=None, unit_scale=False, initial=0):
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.iterable, self.total, self.n = iterable, total, initial
        self.desc, self.unit, self.unit_scale = desc, unit, unit_scale
        self._postfix = {}
        self._log = cli.rank_log()
        self._first_update = None  # (n, time)
        self._last_line_time = time.monotonic()

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def set_postfix(self, refresh=True, **values):
        del refresh  # A line shows the latest values when it is due.
        self._postfix = values

    def update(self, n=1):
        self.n += n
        now = time.monotonic()
        self._first_update = self._first_update or (self.n, now)
        if now - self._last_line_time >= PLAIN_SECONDS:
            self._log(self._line(now))
            self._last_line_time = now

    def close(self):
        """Nothing to clear: the command's summary line follows."""

    def _amount(self, n):
        return f"{tqdm.format_sizeof(n)}{self.unit}" if self.unit_scale else str(n)

    def _line(self, now):
        done = self._amount(self.n) if self.unit_scale else f"{self.unit} {self.n}"
        parts = [f"{self.desc}: {done}"]
        if self.total:
            parts[0] += f" of {self._amount(self.total)} ({100 * self.n // self.total}%)"
        parts += [f"{key}={value}" for key, value in self._postfix.items()]
        first_n, first_time = self._first_update
        if self.total and self.n > first_n:
            seconds_per_unit = (now - first_time) / (self.n - first_n)
            remaining = max(self.total - self.n, 0) * seconds_per_unit
            parts.append(f"{datetime.timedelta(seconds=round(remaining))} left")
        return ", ".join(parts)
