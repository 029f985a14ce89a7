"""The one exception type for bad input: the commands print its message as one line and exit 1."""


class InputError(ValueError):
    """A file, flag or key the user gave is wrong; the message names it."""
