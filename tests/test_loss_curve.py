"""bert-loss-curve's reading of a run's TensorBoard logs."""

import pytest
import tensorflow as tf

from bert import loss_curve


def write_points(logdir, steps, value):
    """One training process's event file: `value` logged as loss at each of `steps`."""
    writer = tf.summary.create_file_writer(str(logdir))
    with writer.as_default():
        for step in steps:
            tf.summary.scalar("loss", value, step=step)
    writer.close()


def test_a_resumed_run_replaces_the_steps_it_trains_again(tmp_path):
    # Killed after logging step 40 with its newest checkpoint at step 20; resumed, and stopped again after step 35.
    write_points(tmp_path, range(5, 45, 5), 1.0)
    write_points(tmp_path, range(25, 40, 5), 2.0)
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 2
    assert loss_curve.read_scalars(str(tmp_path))["loss"] == [
        (5, 1.0), (10, 1.0), (15, 1.0), (20, 1.0), (25, 2.0), (30, 2.0), (35, 2.0)]
