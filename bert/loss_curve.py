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
    """{tag: [(step, value), ...]} of the scalars the training loop logged under `logdir`."""
    # TensorFlow first, through bert.tf so that its import-time notices stay quiet: TensorBoard's readers import it.
    importlib.import_module("bert.tf")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    if not glob.glob(os.path.join(glob.escape(logdir), "events.out.tfevents.*")):
        raise InputError(f"--logdir: no TensorBoard event files in {logdir}")
    events = EventAccumulator(logdir, size_guidance={"tensors": 0})
    events.Reload()
    found = {}
    for tag in tags:
        if tag in events.Tags()["tensors"]:
            found[tag] = _as_rewritten([(e.step, float(tensor_util.make_ndarray(e.tensor_proto)))
                                        for e in events.Tensors(tag)])
    return found


def _as_rewritten(points):
    """`points` in the order written, a point at a step already passed replacing the points from that step on:
    a run resumed from an earlier checkpoint trains those steps again, in an event file of its own."""
    kept = []
    for step, value in points:
        while kept and kept[-1][0] >= step:
            kept.pop()
        kept.append((step, value))
    return kept


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
