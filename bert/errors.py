"""The exception type for bad input: the commands print its message as one line and exit 1."""


class InputError(ValueError):
    """A file, flag or key the user gave is wrong; the message names it."""


class DamagedRecordError(InputError):
    """tf.data met a damaged or mismatched record mid-run; its message cannot say which file holds it."""
