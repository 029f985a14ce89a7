"""The exceptions the commands turn into one line on stderr: bad input (exit 1) and a requested stop."""

import signal


class InputError(ValueError):
    """A file, flag or key the user gave is wrong; the message names it."""


class DamagedRecordError(InputError):
    """tf.data met a damaged or mismatched record mid-run; its message cannot say which file holds it."""


class StopRequested(Exception):
    """Training stopped on a signal after saving a checkpoint; the command exits with `status` (128 + signal)."""

    def __init__(self, message, status):
        super().__init__(message)
        self.status = status


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, within `fileio.sigterm_interrupts()`: unwinds as Ctrl-C does, so output in progress is
    removed."""

    def __init__(self, signal_number=signal.SIGTERM):
        super().__init__(signal_number)
        self.signal_number = signal_number
