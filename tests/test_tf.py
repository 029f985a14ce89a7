"""How `bert.tf` sets TensorFlow up: oneDNN's CPU kernels on by default, a user's own choice honoured."""

import importlib.util
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

REPORT_ONEDNN = ("from tensorflow.python.util import _pywrap_util_port as port; "
                 "print('onednn', port.IsMklEnabled())")


def onednn_enabled(setting, through_bert):
    """Whether TensorFlow runs oneDNN kernels in a fresh process, TF_ENABLE_ONEDNN_OPTS set to `setting` (None: unset)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if setting is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = setting
    program = ("from bert.tf import tf; " if through_bert else "import tensorflow; ") + REPORT_ONEDNN
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip().splitlines()[-1] == "onednn True"


def test_onednn_kernels_are_on_by_default_and_off_when_the_user_says_so():
    if not onednn_enabled("1", through_bert=False):
        pytest.skip("this TensorFlow build has no oneDNN kernels for this CPU")
    assert onednn_enabled(None, through_bert=True)
    assert not onednn_enabled("0", through_bert=True)


REPORT_KERAS = ("import os, sys; from bert.tf import tf; "
                "print(sorted(m for m in ('keras', 'keras.src', 'matplotlib') if m in sys.modules), "
                "os.environ.get('TF_USE_LEGACY_KERAS'), tf.keras.layers.Dense.__module__)")


def test_keras_is_loaded_only_when_tf_keras_is_used_and_a_users_legacy_keras_choice_is_kept():
    """TensorFlow's import would load all of Keras 3 and matplotlib, a second of every command's start."""
    if importlib.util.find_spec("tf_keras"):
        pytest.skip("tf_keras is installed: bert.tf then leaves TensorFlow to import Keras as it does")
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    result = subprocess.run([sys.executable, "-c", REPORT_KERAS], capture_output=True, text=True, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["[]", "None", "keras.src.layers.core.dense"]
    # A user who chose tf_keras (Keras 2) keeps it; where it is not installed tf.keras says so when used.
    result = subprocess.run([sys.executable, "-c", REPORT_KERAS], capture_output=True, text=True, cwd=ROOT,
                            env={**env, "TF_USE_LEGACY_KERAS": "1"})
    assert "tf_keras" in result.stderr, result.stderr[-2000:]
