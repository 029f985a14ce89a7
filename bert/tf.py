"""TensorFlow, imported without its start-up notices.

TensorFlow's C++ runtime writes oneDNN and CPU-feature notices straight to file descriptor 2 when it
loads, drowning a command's own one-line messages; TF_CPP_MIN_LOG_LEVEL no longer
silences those. Modules of this package import TensorFlow as `from bert.tf import tf`, which
sends descriptor 2 to /dev/null while TensorFlow loads. Set BERT_TF_NOTICES=1 to see them. It also
turns on TensorFlow's oneDNN CPU kernels wherever the user has not chosen otherwise, and leaves Keras
unloaded until something asks for tf.keras (see below).
"""

import importlib.util
import os
import re

# Runtime log lines do honour this. Errors reach the user as our own one-line messages (see
# `error_text`), so TensorFlow's C++ INFO, WARNING and ERROR lines are off unless the variable says
# otherwise; ERROR too, because TensorFlow files notices there (oneDNN "falling back" to Eigen for
# float16 on CPUs without its instructions), which would stand beside our one line.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# TensorFlow turns its oneDNN CPU kernels on by itself only on CPUs with AVX-512 VNNI, bfloat16 or AMX
# instructions; elsewhere (AVX2 CPUs such as AMD Zen 3) its matmuls run on Eigen, which trains BERT
# 1.3-1.7x slower there (bench/pretrain.py). TF_ENABLE_ONEDNN_OPTS=0 still chooses Eigen.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

# Importing TensorFlow also imports Keras 3's optimizers, and through them all of Keras and matplotlib:
# a quarter of every command's start-up (about a second), for nothing this package uses (Horovod's
# TensorFlow module loads Keras anyway). TensorFlow skips that while TF_USE_LEGACY_KERAS is set and
# tf_keras is absent; tf.keras, which reads the variable only when first used, still gives Keras 3
# once it is unset again.
_keras_deferred = "TF_USE_LEGACY_KERAS" not in os.environ and importlib.util.find_spec("tf_keras") is None
_saved_stderr = None
try:
    if _keras_deferred:
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
    if os.environ.get("BERT_TF_NOTICES") != "1":
        _saved_stderr = os.dup(2)
        _devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(_devnull, 2)
        os.close(_devnull)
    import tensorflow as tf
finally:
    if _saved_stderr is not None:
        os.dup2(_saved_stderr, 2)
        os.close(_saved_stderr)
    if _keras_deferred:
        os.environ.pop("TF_USE_LEGACY_KERAS", None)

# TensorFlow rounds float32 matmul inputs to TF32 (10-bit mantissa) on Ampere and later GPUs unless told
# not to; float32 here means the reference's float32, so TF32 is opt-in (the training commands' --allow_tf32).
tf.config.experimental.enable_tensor_float_32_execution(False)

_FUNCTION_NODE = re.compile(r"\{\{[^}]*\}\}\s*")
_OP_SUFFIX = re.compile(r"\s*\[Op:[^\]]*\].*$")


def error_text(error):
    """A TensorFlow error as one readable line, without its graph-node decorations."""
    text = str(getattr(error, "message", None) or error).strip()
    text = text.splitlines()[0] if text else type(error).__name__
    return _OP_SUFFIX.sub("", _FUNCTION_NODE.sub("", text)).strip()


__all__ = ["tf", "error_text"]
