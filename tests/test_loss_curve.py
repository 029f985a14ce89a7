"""bert-loss-curve's reading of a run's TensorBoard logs."""

import tensorflow as tf

from bert import loss_curve, training
from tests.conftest import run_cli


def write_points(logdir, steps, value, tag="loss", started_after=None):
    """One training process's event file: `value` logged as `tag` at each of `steps`, after the mark of a start
    after step `started_after` where given, as training writes it."""
    writer = tf.summary.create_file_writer(str(logdir))
    if started_after is not None:
        training._mark_session_start(writer, started_after)
    with writer.as_default():
        for step in steps:
            tf.summary.scalar(tag, value, step=step)
    writer.close()


def test_a_resumed_run_replaces_the_steps_it_trains_again(tmp_path):
    # Killed after logging step 40 with its newest checkpoint at step 20; resumed, and stopped again after step 35.
    write_points(tmp_path, range(5, 45, 5), 1.0)
    write_points(tmp_path, range(25, 40, 5), 2.0)
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 2
    assert loss_curve.read_scalars(str(tmp_path))["loss"] == [
        (5, 1.0), (10, 1.0), (15, 1.0), (20, 1.0), (25, 2.0), (30, 2.0), (35, 2.0)]


def test_a_run_taken_back_to_an_earlier_checkpoint_twice_drops_every_point_past_it(tmp_path):
    # Checkpoints at 10, 20, 30; taken back to step 10 twice (the newer checkpoints removed), the last time reporting
    # less often: the points the second run logged past step 10 were trained again, and go too.
    write_points(tmp_path, range(4, 32, 4), 1.0, started_after=0)
    write_points(tmp_path, [12, 16, 20, 24, 28, 30], 2.0, started_after=10)
    write_points(tmp_path, [25, 30], 3.0, started_after=10)
    assert loss_curve.read_scalars(str(tmp_path))["loss"] == [(4, 1.0), (8, 1.0), (25, 3.0), (30, 3.0)]
    # Started over, and stopped before its first report: nothing of the run is left to draw.
    write_points(tmp_path, [], 0.0, started_after=0)
    assert loss_curve.read_scalars(str(tmp_path)) == {}
    result = run_cli("loss_curve", f"--logdir={tmp_path}")
    assert result.returncode == 1 and result.stderr.strip().endswith(f"--logdir: {tmp_path} has no loss scalars")


def test_event_files_are_read_in_the_order_they_were_opened():
    names = ["events.out.tfevents.1796587079.vm.example.org.24252.10.v2", "events.out.tfevents.1796587079.vm.24252.9.v2",
             "events.out.tfevents.1796587080.vm.24252.0.v2", "events.out.tfevents.1796587078.host"]
    assert sorted(names, key=loss_curve._opened_order) == [names[3], names[1], names[0], names[2]]


def test_a_directory_named_like_a_glob_with_masked_lm_loss_alone_is_plotted(tmp_path):
    logdir = tmp_path / "run [1]"
    write_points(logdir, range(10, 40, 10), 7.5, tag="masked_lm_loss")
    result = run_cli("loss_curve", f"--logdir={logdir}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (f"bert-loss-curve: masked_lm_loss 7.500 at step 10 -> 7.500 at step 30; "
                                     f"{logdir / 'loss_curve.png'}")
    assert (logdir / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_curve_of_one_point_is_drawn_as_a_point():
    from matplotlib import pyplot

    figure = loss_curve.figure_of({"loss": [(5, 2.0)], "masked_lm_loss": [(5, 1.5), (10, 1.0)]}, "run")
    try:
        lines = {line.get_label(): line for line in figure.axes[0].get_lines()}
        assert lines["loss"].get_marker() not in ("None", "", None, " ")  # a line through one point draws nothing
        assert list(lines["loss"].get_xydata().tolist()) == [[5.0, 2.0]]
        assert lines["masked_lm_loss"].get_linestyle() == "-"
    finally:
        pyplot.close(figure)
