"""Loss curves from a run's TensorBoard logs, as a PNG beside them (the quick start's picture of training).

    python -m bert.loss_curve --logdir=run/ --output=run/loss_curve.png
"""

import glob
import importlib
import os

from absl import flags

from bert import cli, fileio
from bert.errors import InputError

FLAGS = flags.FLAGS
CURVES = ("loss", "masked_lm_loss", "next_sentence_loss")


def read_scalars(logdir, tags=CURVES):
    """{tag: [(step, value), ...]} of the scalars the training loop logged under `logdir`, as the run stands: a
    point logged at a step already passed replaces the points from that step on, and so does TensorBoard's mark
    of a (re)start (SessionLog.START at the step after the checkpoint resumed from): a resumed run trains those
    steps again, in an event file of its own, which is read after the earlier ones (see _opened_order)."""
    # TensorFlow first, through bert.tf so that its import-time notices stay quiet: TensorBoard's readers import it.
    importlib.import_module("bert.tf")
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.compat.proto.event_pb2 import SessionLog
    from tensorboard.util import tensor_util

    paths = sorted(glob.glob(os.path.join(glob.escape(logdir), "events.out.tfevents.*")), key=_opened_order)
    if not paths:
        raise InputError(f"--logdir: no TensorBoard event files in {logdir}")
    found = {}
    for path in paths:
        for event in EventFileLoader(path).Load():
            restarted = event.HasField("session_log") and event.session_log.status == SessionLog.START
            for tag, points in found.items():
                if restarted or any(value.tag == tag for value in event.summary.value):
                    while points and points[-1][0] >= event.step:
                        points.pop()
            for value in event.summary.value:
                if value.tag in tags:
                    found.setdefault(value.tag, []).append((event.step, float(tensor_util.make_ndarray(value.tensor))))
    # A tag whose every point a later start took back has none.
    return {tag: found[tag] for tag in tags if found.get(tag)}


def _opened_order(path):
    """The order event files were opened in, by their names: events.out.tfevents.SECONDS.HOST[.PID.COUNTER.v2].
    The counter of one process's writers is a number, which sorted as text puts 10 before 9."""
    parts = os.path.basename(path).split(".")
    seconds = int(parts[3]) if len(parts) > 3 and parts[3].isdigit() else 0
    counter = int(parts[-2]) if parts[-1] == "v2" and parts[-2].isdigit() else 0
    return seconds, counter, path


def figure_of(curves, title):
    """A matplotlib figure of `curves` ({tag: [(step, value), ...]}); close it with pyplot.close."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(7, 4), dpi=100)
    for tag, points in curves.items():
        steps, values = zip(*sorted(points))
        # A line through one point draws nothing: a run that reported once (num_train_steps <= num_report_steps).
        axes.plot(steps, values, label=tag, marker="o" if len(steps) == 1 else None)
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    return figure


def plot(curves, path, title):
    from matplotlib import pyplot

    figure = figure_of(curves, title)
    with fileio.AtomicFile(path, "wb") as f:
        f.write_with(lambda stream: figure.savefig(stream, format="png"))
    pyplot.close(figure)


def main(argv):
    output = FLAGS.output or os.path.join(FLAGS.logdir, "loss_curve.png")
    fileio.check_output_file(output, "--output" if FLAGS.output else "--logdir")
    curves = read_scalars(FLAGS.logdir)
    if not curves:
        raise InputError(f"--logdir: {FLAGS.logdir} has no loss scalars")
    plot(curves, output, FLAGS.title or os.path.basename(os.path.abspath(FLAGS.logdir)))
    # A run's logs hold "loss"; the others alone where only they were logged.
    tag = next(tag for tag in CURVES if tag in curves)
    first, last = curves[tag][0], curves[tag][-1]
    cli.print_summary(f"bert-loss-curve: {tag} {first[1]:.3f} at step {first[0]} -> {last[1]:.3f} at step {last[0]}; "
                      f"{output}", output)


def run():
    flags.DEFINE_string("logdir", None, "A run's --output_dir (where its TensorBoard event files are).")
    flags.DEFINE_string("output", None, "The PNG to write (default: LOGDIR/loss_curve.png).")
    flags.DEFINE_string("title", None, "The plot's title (default: the directory's name).")
    cli.run_command(main, required=("logdir",))


if __name__ == "__main__":
    run()
