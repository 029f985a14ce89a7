"""TensorFlow, imported without its start-up notices.

TensorFlow's C++ runtime writes oneDNN and CPU-feature notices straight to file descriptor 2 when it
loads and when it runs its first op, drowning a command's own one-line messages; TF_CPP_MIN_LOG_LEVEL
no longer silences them. Modules of this package import TensorFlow as `from bert.tf import tf`, which
sends descriptor 2 to /dev/null for exactly that moment. Set BERT_TF_NOTICES=1 to see them.
"""

import os

if os.environ.get("BERT_TF_NOTICES") == "1":
    import tensorflow as tf
else:
    _saved_stderr = os.dup(2)
    _devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(_devnull, 2)
    try:
        import tensorflow as tf

        tf.add(tf.constant(1), 1)
    finally:
        os.dup2(_saved_stderr, 2)
        os.close(_saved_stderr)
        os.close(_devnull)

__all__ = ["tf"]
