"""The training loop every stage shares: exact global-batch gradients, mixed precision, checkpoints, resume.

A task (pre-training, a classifier) supplies its named variables and, for a batch of features, the
sums its loss and metrics are made of (`sums`) and the counts they are averaged over (`counts`). One
optimizer step then takes `num_accumulation_steps` micro-batches on each of `size` ranks and divides
the summed numerators by the summed counts of all of them, so accumulating k micro-batches, or running
on k ranks, gives the update of one k-times-larger batch. Gradients are summed across ranks before the
global-norm clipping.

Everything a step depends on is in the checkpoint (weights, optimizer slots, step, loss scale) or is a
function of the step (dropout seeds, the learning rate); each rank's input position is checkpointed
beside it. A run killed at any moment and started again with the same command continues from the last
checkpoint and, with --deterministic, ends with the same weights bit for bit. A run stopped by SIGINT or
SIGTERM loses nothing: it saves a checkpoint at the next step's end and exits (`StopSignals`).
"""

import contextlib
import glob
import json
import os
import re
import shutil
import signal
import threading
import time
from dataclasses import dataclass

import numpy as np

from bert import checkpoints, distributed, modeling, optimization, progress
from bert.errors import DamagedRecordError, InputError, StopRequested
from bert.fileio import (AtomicFile, lock_directory, remove_leftover_temporaries, restore_signal_handlers, unignored,
                         unlock_directory)
from bert.tf import error_text, tf

RUN_FILE = "run.json"
EXPORT_NAME = "bert_model.ckpt"
INITIAL_LOSS_SCALE = 2.0**15
LOSS_SCALE_GROWTH_INTERVAL = 2000
CLIP_NORM = 1.0
COMPUTE_DTYPES = {"float32": tf.float32, "float16": tf.float16, "bfloat16": tf.bfloat16}
# The x86 instructions (Linux's names for them) that let oneDNN compute in a half-precision dtype. Without
# one, TensorFlow widens every operand to float32 and rounds every result back, so the step is slower
# than float32's.
HALF_PRECISION_CPU_INSTRUCTIONS = {"bfloat16": ("avx512_bf16", "amx_bf16"), "float16": ("avx512_fp16", "amx_fp16")}


def cpu_flags(cpuinfo="/proc/cpuinfo"):
    """The CPU's feature flags as Linux lists them in `cpuinfo`; None where there is no such list."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name.strip() == "flags":
                    return set(value.split())
    except OSError:
        pass
    return None


def emulated_precision_warning(compute_dtype, flags, has_gpu):
    """A warning when `compute_dtype` would run on a CPU that lacks its instructions, else None."""
    instructions = HALF_PRECISION_CPU_INSTRUCTIONS.get(compute_dtype)
    if not instructions or has_gpu or flags is None or flags & set(instructions):
        return None
    return (f"warning: this CPU has no {compute_dtype} instructions ({' or '.join(instructions)}), so "
            f"--amp_dtype={compute_dtype} is emulated and slower than float32; leave --auto_mixed_precision off here")


@dataclass
class TrainOptions:
    output_dir: str
    num_train_steps: int
    num_warmup_steps: int
    learning_rate: float
    optimizer_type: str = "adam"
    micro_batch_size: int = 32
    num_accumulation_steps: int = 1
    save_checkpoints_steps: int = 1000
    keep_checkpoints: int = 5
    num_report_steps: int = 10
    seed: int = 12345
    compute_dtype: str = "float32"
    use_xla: bool = False
    # --scale_lr_by_world_size: learning_rate times the number of ranks the run started on (its global batch's).
    scale_learning_rate_by_ranks: bool = False


def with_epsilon(task, counts):
    """The counts a task's loss divides by, each with the task's epsilon (the reference's + 1e-5)."""
    return {name: count + task.count_epsilon.get(name, 0.0) for name, count in counts.items()}


def task_loss(task, sums, counts):
    """A task's loss: each loss term's sum over its count (counts from `with_epsilon`)."""
    return tf.add_n([sums[term] / counts[count] for term, count in task.loss_terms.items()])


class Trainer:
    """One task's optimisation state and its compiled step."""

    def __init__(self, task, options, replicas):
        self.task = task
        self.options = options
        self.replicas = replicas
        self.variables_by_name = task.variables_by_name
        # Weights the task's loss does not reach (SQuAD's pooler) are saved but, as in the reference,
        # get no update and no optimizer slots.
        untrained = getattr(task, "untrained_names", ())
        self.names = [n for n in self.variables_by_name if n not in untrained]
        self.variables = [self.variables_by_name[n] for n in self.names]
        self.optimizer = optimization.Optimizer(options.optimizer_type, {n: self.variables_by_name[n] for n in self.names})
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        self.dynamic_scaling = options.compute_dtype == "float16"
        self.loss_scale = tf.Variable(INITIAL_LOSS_SCALE if self.dynamic_scaling else 1.0, trainable=False, name="loss_scale")
        self.good_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="good_steps")
        # Saved so that a resumption knows the precision its checkpoint was written in: a float16 run may
        # stop just after a skip at scale 2, and save scale 1 and no good steps, as a run without scaling does.
        self.loss_scaling = tf.Variable(self.dynamic_scaling, trainable=False, name="loss_scaling")
        # Batches whose step float16 skipped: in-memory input (IndexedBatches) resumes past them.
        self.skipped_batches = tf.Variable(0, dtype=tf.int64, trainable=False, name="skipped_batches")
        # A run resumed on fewer or more ranks keeps its global batch, and so the learning rate scaled for it.
        self.starting_ranks = tf.Variable(replicas.size, dtype=tf.int64, trainable=False, name="starting_ranks")
        self.dtype = COMPUTE_DTYPES[options.compute_dtype]
        # autograph=False, here and at every tf.function of the package: the model's control flow is plain Python
        # over configuration values, which tracing runs as it is, and AutoGraph's rewriting of the whole call
        # tree took about 5 s of every training command's start-up.
        self._gradients = tf.function(self._micro_gradients, jit_compile=options.use_xla or None, autograph=False)
        # The update is elementwise over every weight and slot: TensorFlow's own ops take a pass over memory
        # each (about a dozen per weight), XLA fuses the clipping and the optimizer formulas into one pass per
        # weight, so it is compiled whatever --use_xla says.
        self._update = tf.function(self._apply, jit_compile=True, autograph=False)
        self.train_step = tf.function(self._train_step, autograph=False)

    @tf.function(autograph=False)
    def weights_are_finite(self):
        """Whether no weight holds an Inf or NaN: a step that overflowed them checked only its gradients."""
        return tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in self.variables_by_name.values()])

    def state(self):
        """The trackable objects of a training checkpoint."""
        return {
            "weights": self.variables_by_name,
            "slots": self.optimizer.slots,
            "step": self.step,
            "loss_scale": self.loss_scale,
            "good_steps": self.good_steps,
            "loss_scaling": self.loss_scaling,
            "skipped_batches": self.skipped_batches,
            "starting_ranks": self.starting_ranks,
        }

    def state_variables(self):
        return [*self.variables_by_name.values(), *self.optimizer.slots.values(), self.step, self.loss_scale, self.good_steps,
                self.skipped_batches, self.starting_ranks]

    def restore(self, path):
        """Restores a training checkpoint; one written before `skipped_batches` existed counts none, one
        written before `starting_ranks` existed is taken as started on this run's number of ranks, and one
        written before `loss_scaling` existed is judged by its loss scale."""
        state = self.state()
        saved = {name.split("/")[0] for name, _ in tf.train.list_variables(path)}
        for later in ("skipped_batches", "starting_ranks", "loss_scaling"):
            if later not in saved:
                del state[later]
        tf.train.Checkpoint(**state).restore(path).assert_existing_objects_matched()
        # A run without loss scaling saves scale 1 and no good steps, which a float16 run saves only just
        # after a skip at scale 2.
        scaled = (bool(self.loss_scaling.numpy()) if "loss_scaling" in saved
                  else int(self.good_steps.numpy()) > 0 or float(self.loss_scale.numpy()) != 1.0)
        self.loss_scaling.assign(self.dynamic_scaling)
        # A checkpoint of a run in another precision: this run's own loss scaling from its start.
        if scaled != self.dynamic_scaling:
            self.loss_scale.assign(INITIAL_LOSS_SCALE if self.dynamic_scaling else 1.0)
            self.good_steps.assign(0)

    def _micro_gradients(self, features, counts, seed, first_example):
        with tf.GradientTape() as tape:
            ctx = modeling.Context(self.dtype, training=True, seed=seed, first_example=first_example)
            sums = self.task.sums(features, ctx)
            loss = task_loss(self.task, sums, counts)
            scaled = loss * self.loss_scale if self.dynamic_scaling else loss
        gradients = tape.gradient(scaled, self.variables)
        return [tf.convert_to_tensor(g) for g in gradients], sums

    def _apply(self, gradients, scale, rate):
        self.optimizer.apply(gradients, rate, self.step, scale=scale)
        self.step.assign_add(1)
        if self.dynamic_scaling:
            grow = self.good_steps + 1 >= LOSS_SCALE_GROWTH_INTERVAL
            self.loss_scale.assign(tf.where(grow, self.loss_scale * 2.0, self.loss_scale))
            self.good_steps.assign(tf.where(grow, tf.constant(0, tf.int64), self.good_steps + 1))
        return tf.constant(True)

    def _skip(self):
        self.skipped_batches.assign_add(1)
        if self.dynamic_scaling:
            self.loss_scale.assign(tf.maximum(self.loss_scale / 2.0, 1.0))
            self.good_steps.assign(0)
        return tf.constant(False)

    def _clip_and_update(self, gradients):
        """Clips `gradients` to global norm CLIP_NORM and applies them, unless one is not finite."""
        # The norm is reduced by TensorFlow's own kernels (XLA's CPU reductions take several times as
        # long), and the branch is taken here rather than inside the compiled update, where XLA would
        # copy every weight and slot to keep them on the skipping side.
        norm = tf.linalg.global_norm(gradients)
        if self.dynamic_scaling:
            norm = norm / self.loss_scale
        # tf.clip_by_global_norm's factor, applied inside the update. The loss scale is a power of two,
        # so dividing the factor by it rounds as dividing each gradient would.
        scale = CLIP_NORM * tf.minimum(1.0 / norm, 1.0 / CLIP_NORM)
        if self.dynamic_scaling:
            scale = scale / self.loss_scale
        base_rate = self.options.learning_rate
        if self.options.scale_learning_rate_by_ranks:
            base_rate = base_rate * tf.cast(self.starting_ranks, tf.float32)
        rate = optimization.learning_rate(self.step, base_rate, self.options.num_train_steps, self.options.num_warmup_steps)
        # An Inf or NaN anywhere makes the norm non-finite: one scalar test instead of one per weight.
        applied = tf.cond(tf.math.is_finite(norm), lambda: self._update(gradients, scale, rate), self._skip)
        return applied, rate, norm

    def _train_step(self, features, stop_requests=0.0):
        """One optimizer step; the report's `stop_requests` counts the ranks that asked to stop after it."""
        k = self.options.num_accumulation_steps
        micro = self.options.micro_batch_size
        step_seed = tf.random.experimental.stateless_fold_in(
            tf.constant([self.options.seed & 0x7FFFFFFF, 0x5EED], tf.int32), self.step
        )
        counts = self.task.counts(features)
        names = sorted(counts)
        # The stop requests ride on the counts' all-reduce, so every rank learns of them at the same step.
        summed = self.replicas.all_sum([*(counts[n] for n in names), tf.cast(stop_requests, tf.float32)])
        counts = with_epsilon(self.task, dict(zip(names, summed[:-1])))

        def micro_batch(i):
            return {key: value[i * micro : (i + 1) * micro] for key, value in features.items()}

        def first_example(i):
            # The global batch is the ranks' batches in rank order, each its micro-batches in order: a micro-batch's
            # dropout masks are those of its examples there, however the global batch is split.
            return tf.constant((self.replicas.rank * k + i) * micro, tf.int32)

        gradients, sums = self._gradients(micro_batch(0), counts, step_seed, first_example(0))
        for i in range(1, k):
            # Nothing else orders the micro-batches: without this, the runtime starts them side by side (on a GPU,
            # all k before the first sum), holding k micro-batches' activations or gradients instead of one.
            with tf.control_dependencies(gradients):
                more, more_sums = self._gradients(micro_batch(i), counts, step_seed, first_example(i))
            gradients = [a + b for a, b in zip(gradients, more)]
            sums = {key: sums[key] + more_sums[key] for key in sums}
        sum_names = sorted(sums)
        reduced = self.replicas.all_sum([*gradients, *[sums[n] for n in sum_names]])
        gradients = reduced[: len(gradients)]
        sums = dict(zip(sum_names, reduced[len(gradients) :]))
        applied, rate, norm = self._clip_and_update(gradients)
        report = {"applied": applied, "learning_rate": rate, "gradient_norm": norm, "loss_scale": self.loss_scale,
                  "stop_requests": summed[-1]}
        report["loss"] = task_loss(self.task, sums, counts)
        for metric, (term, count) in self.task.metrics.items():
            report[metric] = sums[term] / counts[count]
        return report


# What the refusal of a run.json key that is not a flag's name says the key is made of.
_KEY_SOURCES = {
    "train_data": " (a hash of the training file, the vocabulary, --do_lower_case and the flags that shape the examples)",
    "global_batch_size": " (--train_batch_size times --num_accumulation_steps times the number of ranks)",
}


def _command_of(record):
    """The command whose run a RUN_FILE record describes, by the keys each command's describe() gives it."""
    if "task" not in record:
        return "bert-pretrain"
    return "bert-squad" if record["task"] == "squad" else "bert-classify"


def _refuse_another_run(output_dir, previous, description):
    """Raises InputError naming every way the run recorded in `output_dir` differs from `description`, if any."""
    differences = [difference for difference in _differences(previous, description)
                   if difference[0].split(".")[0] not in _UNPINNED]
    if not differences:
        return
    recorded_command, command = _command_of(previous), _command_of(description)
    if recorded_command != command:
        advice = f" (to fine-tune its model, give --init_checkpoint={output_dir})" if recorded_command == "bert-pretrain" else ""
        raise InputError(f"--output_dir: {output_dir} holds a {recorded_command} run, not a {command} one; use another "
                         f"--output_dir{advice}")
    shown = []
    for key, before, after in differences:
        if key == "train_data":
            explained = _train_data_changes(previous, description, {key for key, _, _ in differences})
            if explained is not None:
                if explained:
                    shown.append(f"train_data (by {', '.join(explained)})")
                continue
        shown.append(f"{_key_name(key)} ({json.dumps(before)}, now {json.dumps(after)})")
    raise InputError(f"--output_dir: {output_dir} holds a run with a different {'; a different '.join(shown)}; resume it "
                     f"with its own flags or use another --output_dir")


def _key_name(key, explained=True):
    """How a message names the dotted key of a run record: a config's key as one of --bert_config_file, and (where
    `explained`) a setting with what it is made of."""
    if key.startswith("bert_config."):
        return f"'{key[len('bert_config.'):]}' in --bert_config_file"
    return key.removeprefix(f"{CHANGEABLE}.") + (_KEY_SOURCES.get(key, "") if explained else "")


def check_ranks_agree(replicas, description, **settings):
    """Refuses, on every rank alike, a run whose ranks were started with different settings: a `description`
    (describe()'s) or other `settings` (by flag name, without --) that differ from rank 0's. Ranks given different
    steps or checkpoint schedules would wait in different collectives for ever; a different model, data or learning
    rate would train into different weights without a word."""
    values = dict(_leaves(description))
    values.update(settings)
    differing = distributed.differing_across_ranks(replicas, values)
    if differing is None:
        raise InputError(f"the ranks ({replicas.name}) run different commands or versions of this package: start every "
                         f"rank with the same command, flags, config and data")
    if not differing:
        return
    shown = []
    for key in differing:
        group, _, part = key.partition(".")
        own = f"({json.dumps(values[key])} on rank {replicas.rank})"
        if group == TRAIN_DATA_PARTS:
            kind, _, name = part.partition(".")
            shown.append(f"the {name}'s contents" if kind == "files" else f"{name} {own}")
        elif key == "train_data":
            if not any(k.startswith(f"{TRAIN_DATA_PARTS}.") for k in differing):  # else the parts say what
                shown.append(_key_name(key))
        else:
            shown.append(f"{_key_name(key, explained=False)} {own}")
    # A setting of the data's fingerprint may be a key of the description too.
    shown = list(dict.fromkeys(shown))
    raise InputError(f"the ranks ({replicas.name}) differ in {'; '.join(shown)}: start every rank with the same "
                     f"flags, config and data")


def _leaves(record, prefix=""):
    """(dotted key, value) of every leaf of a JSON dict."""
    for key, value in record.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _train_data_changes(previous, description, shown_keys):
    """What made the train_data fingerprints of two records differ, by their TRAIN_DATA_PARTS (settings among
    `shown_keys` left out, being named already); None where the parts do not say (a record without them)."""
    parts = previous.get(TRAIN_DATA_PARTS), description.get(TRAIN_DATA_PARTS)
    if not all(isinstance(part, dict) for part in parts):
        return None
    differences = list(_differences(*parts))
    if not differences:
        return None  # a fingerprint made otherwise than its parts say: as a record without them
    changes = []
    for name, was, now in differences:
        group, _, key = name.partition(".")
        if group == "files":
            changes.append(f"the {key}'s contents")
        elif key not in shown_keys:
            changes.append(f"{key} ({json.dumps(was)}, now {json.dumps(now)})")
    return changes


def _own_checkpoint(output_dir):
    """The newest checkpoint of this tool's run in `output_dir`, or None. A `checkpoint` file naming another
    program's (the reference's model.ckpt-N) is refused: this run could neither resume from it nor keep it."""
    newest = checkpoints.newest_checkpoint(output_dir)
    if newest and not (re.fullmatch(r"ckpt-\d+", os.path.basename(newest))
                       and os.path.samefile(os.path.dirname(newest), output_dir)):
        raise InputError(f"--output_dir: {output_dir} holds another program's training run: its {checkpoints.STATE_FILE} "
                         f"file names {newest}; to start from that checkpoint give it as --init_checkpoint, with another "
                         f"--output_dir")
    return newest


def _read_run_record(output_dir, strict=False):
    """The JSON object the RUN_FILE of `output_dir` holds, or None. A record that cannot be read, or is not an
    object, is refused (InputError) when `strict`, and read as no record otherwise."""
    path = os.path.join(output_dir, RUN_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError) as e:
        if strict:
            raise InputError(f"--output_dir: cannot read {path}: {e}") from None
        return None
    if not isinstance(record, dict):
        if strict:
            raise InputError(f"--output_dir: {path} is not a record of a run (a JSON object)")
        return None
    return record


def check_run_directory(output_dir, description, replicas, init_checkpoint=None, variables_by_name=None, optional_init=()):
    """Refuses ranks started with different descriptions (check_ranks_agree); and an output directory that another
    training process is using, that holds a run of another model or data shape, or a model whose export would be
    replaced (a released model's directory given as --output_dir); records ours there, and locks it (on the chief)
    while this process lives. An `init_checkpoint` the run will start from is checked against the model's
    `variables_by_name` first.

    `description` is a JSON-able dict of what must not change between a run and its resumption. Only a
    run that saved a checkpoint or its exported model binds the directory: one refused or stopped before
    its first checkpoint left nothing to resume or lose, so its record is replaced.
    """
    check_ranks_agree(replicas, description)
    chief = replicas.rank == 0
    saved = _own_checkpoint(output_dir)
    # A run resuming from its own checkpoint does not read --init_checkpoint.
    if init_checkpoint and not saved:
        start = checkpoints.resolve_checkpoint(init_checkpoint)
        if os.path.basename(start) == EXPORT_NAME and os.path.samefile(os.path.dirname(start) or ".", output_dir):
            raise InputError(f"--init_checkpoint: {start} is where this run exports its model, which would replace "
                             f"it; use another --output_dir")
        if variables_by_name is not None:
            checkpoints.check_weights(variables_by_name, start, optional=optional_init)
    path = os.path.join(output_dir, RUN_FILE)
    exported = os.path.exists(os.path.join(output_dir, f"{EXPORT_NAME}.index"))
    # Before the lock, which would leave a file in a released model's directory.
    if exported and not os.path.exists(path):
        raise InputError(f"--output_dir: {output_dir} holds a model ({EXPORT_NAME}) of another run (no {RUN_FILE}), which "
                         f"this run's export would replace; use another --output_dir")
    busy, created_lock = None, False
    if chief:
        try:
            created_lock = lock_directory(output_dir, "--output_dir")
        except InputError as e:
            busy = e
    # Every rank stops with the chief rather than wait for it in the first collective of training.
    if int(replicas.all_sum([tf.constant(1 if busy else 0, tf.int64)])[0]):
        raise busy or InputError(f"--output_dir: {output_dir} is in use by another training process (rank 0 found it locked)")
    recorded = False
    try:
        if (saved or exported) and os.path.exists(path):
            previous = _read_run_record(output_dir, strict=True)
            legacy = "global_batch_size" not in previous
            if legacy:
                _pin_global_batch(previous, _ranks_of_saved_input(output_dir) or replicas.size)
            _refuse_another_run(output_dir, previous, description)
            recorded = not legacy
        elif saved:
            raise InputError(f"--output_dir: {output_dir} holds checkpoints of another run (no {RUN_FILE}); use another "
                             f"--output_dir")
    except InputError:
        if chief:
            unlock_directory(output_dir, remove_file=created_lock)
        raise
    if chief:
        # Once the run is known to be this one (a refused command changes nothing): what a run killed while writing
        # its results, features or export left, as large as those and never read.
        remove_leftover_temporaries(output_dir, "*")
        if not recorded:
            with AtomicFile(path) as f:
                json.dump(description, f, indent=2, sort_keys=True)
                f.write("\n")


def _ranks_of_saved_input(output_dir):
    """The number of ranks rank 0's newest saved input position was taken with, or None."""
    newest = checkpoints.newest_checkpoint(os.path.join(output_dir, "data", "rank-0"), checkpoint_name="data")
    if newest is None:
        return None
    try:
        inputs = DataPosition.recorded_inputs(newest)
    except checkpoints.READ_ERRORS:
        return None
    ranks = inputs.get("ranks") if isinstance(inputs, dict) else None
    return ranks if type(ranks) is int and ranks > 0 else None


def _pin_global_batch(record, ranks):
    """A run record of an earlier version, which pinned each rank's batch (or its split into micro-batches)
    without the number of ranks, read as pinning the global batch of that batch on `ranks` ranks."""
    split = (record.get("micro_batch_size"), record.get("num_accumulation_steps"))
    if "rank_batch_size" not in record and all(type(n) is int for n in split):
        del record["micro_batch_size"], record["num_accumulation_steps"]
        record["rank_batch_size"] = split[0] * split[1]
    if type(record.get("rank_batch_size")) is int:
        record["global_batch_size"] = record.pop("rank_batch_size") * ranks


def _differences(previous, current, prefix=""):
    """(dotted key, previous value, current value) for every leaf that differs between two JSON dicts."""
    for key in sorted(set(previous) | set(current)):
        was, now = previous.get(key), current.get(key)
        if isinstance(was, dict) and isinstance(now, dict):
            yield from _differences(was, now, f"{prefix}{key}.")
        elif was != now:
            yield f"{prefix}{key}", was, now


class DataPosition:
    """Each rank's input iterator, checkpointed under OUTPUT_DIR/data/rank-N at the same steps as the model.

    A position belongs to the input it was taken on (the files, the number of ranks), which each
    checkpoint records beside the iterator's state with the step its stream started at (the stream
    itself depends on it, see `fit`); it is restored only into the same input, on a stream started there.
    """

    INPUTS_KEY = "inputs/.ATTRIBUTES/VARIABLE_VALUE"

    def __init__(self, output_dir, rank, keep, inputs, resume_step):
        self.directory = os.path.join(output_dir, "data", f"rank-{rank}")
        self.inputs = inputs
        self.keep = keep
        resumed = self.prefix(resume_step)
        checkpoints.forget_missing_checkpoints(
            self.directory, resumed if resume_step and os.path.exists(f"{resumed}.index") else None, "data"
        )

    def prefix(self, step):
        return os.path.join(self.directory, f"data-{step}")

    def save(self, step):
        self.manager.save(checkpoint_number=step)

    def open(self, dataset, resume_step):
        """(The iterator of `dataset`, a function of a start step, for a run at `resume_step`; None, or why the
        position saved there is not restored). The iterator goes on where the saved one was, or else is a new
        stream started at `resume_step`."""
        start, unrestored = self._saved_start(resume_step) if resume_step else (0, None)
        if unrestored is None:
            self._track(iter(dataset(start)), start)
            if resume_step:
                try:
                    self.checkpoint.restore(self.prefix(resume_step)).assert_existing_objects_matched()
                except checkpoints.READ_ERRORS as e:
                    unrestored = f"{self.prefix(resume_step)} is damaged: {error_text(e)}"
        if unrestored is not None:
            self.restart(dataset, resume_step)
        return self.iterator, unrestored

    def restart(self, dataset, resume_step):
        """The iterator of a new stream of `dataset` started at `resume_step`, in place of any restored."""
        self._track(iter(dataset(resume_step)), resume_step)
        return self.iterator

    def _track(self, iterator, start):
        """Makes `iterator`, of a stream started at step `start`, the one whose position is saved."""
        self.iterator = iterator
        self.start_step = start
        record = tf.Variable(json.dumps({**self.inputs, "start_step": start}, sort_keys=True), trainable=False)
        self.checkpoint = tf.train.Checkpoint(iterator=iterator, inputs=record)
        # One more than the model's checkpoints: a position is saved before its model checkpoint, and TensorFlow
        # deletes the oldest at once, which with --keep_checkpoints=1 would be the one a run killed while writing
        # the model checkpoint resumes from.
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.directory, max_to_keep=self.keep + 1,
                                                  checkpoint_name="data")

    @staticmethod
    def prune_absent_ranks(output_dir, ranks, kept_steps):
        """Removes the positions that ranks past the first `ranks` (of a run since resumed on fewer) saved at steps
        other than `kept_steps`, and such a rank's folder once it holds none: nothing can restore them. Those at
        a kept model checkpoint they were saved with stay, for a run taken back to it on as many ranks as before."""
        root = os.path.join(output_dir, "data")
        try:
            names = os.listdir(root)
        except OSError:
            return
        for name in names:
            match = re.fullmatch(r"rank-(\d+)", name)
            if match is None or int(match[1]) < ranks:
                continue
            directory = os.path.join(root, name)
            saved = {int(step[1]): path[:-len(".index")]
                     for path in glob.glob(os.path.join(glob.escape(directory), "data-*.index"))
                     if (step := re.fullmatch(r"data-(\d+)\.index", os.path.basename(path)))}
            for step, prefix in saved.items():
                if step not in kept_steps:
                    checkpoints.remove_partial(prefix)
            if not saved.keys() & kept_steps:
                shutil.rmtree(directory, ignore_errors=True)

    @classmethod
    def recorded_inputs(cls, path):
        """The input recorded beside the position saved at checkpoint `path` (decoded JSON), or None where an
        earlier version saved none; raises one of checkpoints.READ_ERRORS where it cannot be read."""
        reader = tf.train.load_checkpoint(path)
        return json.loads(reader.get_tensor(cls.INPUTS_KEY).decode()) if reader.has_tensor(cls.INPUTS_KEY) else None

    def _saved_start(self, step):
        """(The start step of the stream whose position was saved at `step`, None) if it was taken on this
        input, else (None, why not)."""
        path = self.prefix(step)
        if not os.path.exists(path + ".index"):
            return None, "none was saved"
        try:
            saved = self.recorded_inputs(path)
        except checkpoints.READ_ERRORS as e:
            return None, f"{path} is damaged: {error_text(e)}"
        if saved is None:
            return None, "an earlier version saved it without its input"
        # Saved before streams were started anywhere but at the run's start.
        start = saved.pop("start_step", 0) if isinstance(saved, dict) else None
        if saved != self.inputs or type(start) is not int:
            return None, "it was taken on other input files or another number of ranks"
        return start, None


class IndexedBatches:
    """In-memory examples served so that the batch of a step is a function of the step alone.

    Each epoch is a permutation of the examples seeded by (seed, epoch); the global batch of step s is
    the next `rank_batch_size x size` examples of the endless sequence of epochs, and rank r takes its
    r-th slice of it. Resuming at a step therefore needs no saved input position, and N ranks together
    see exactly the batches one process would.
    """

    def __init__(self, arrays, rank_batch_size, seed, rank=0, size=1):
        self.arrays = arrays
        self.rank_batch_size = rank_batch_size
        self.seed = seed
        self.rank = rank
        self.size = size
        self.num_examples = len(next(iter(arrays.values())))

    def _permutation(self, epoch):
        return np.random.default_rng([self.seed & 0x7FFFFFFF, epoch]).permutation(self.num_examples)

    def indexes(self, step):
        """The example indexes this rank trains on at `step`."""
        global_batch = self.rank_batch_size * self.size
        begin = step * global_batch + self.rank * self.rank_batch_size
        positions = np.arange(begin, begin + self.rank_batch_size)
        epochs, offsets = np.divmod(positions, self.num_examples)
        permutations = {epoch: self._permutation(epoch) for epoch in np.unique(epochs)}
        return np.array([permutations[e][o] for e, o in zip(epochs, offsets)])

    def from_step(self, step):
        while True:
            chosen = self.indexes(step)
            yield {key: value[chosen] for key, value in self.arrays.items()}
            step += 1


class StopSignals:
    """Within it, SIGINT, SIGTERM or SIGHUP asks training to stop; a second one acts as it would have without this.

    Ctrl-C sends SIGINT; `docker stop`, Kubernetes, Slurm and horovodrun stop a job with SIGTERM and kill
    it a few seconds later; a closed terminal or ssh session sends SIGHUP (nohup ignores it). Python runs
    the handler once the step in flight returns; the ranks then agree on a stop through the next step's
    all-reduce, after which `fit` saves a checkpoint and raises StopRequested, so nothing since the last
    scheduled checkpoint is lost. The first signal puts the
    previous handlers back, so a second one interrupts (SIGINT) or kills (SIGTERM) even a process stuck in
    a step or a collective. Signals reach only the main thread, and one the process ignores (a job started
    with `&` ignores SIGINT) stays ignored.
    """

    HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self):
        self.received = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for number in unignored(*self.HANDLED):
                self._previous[number] = signal.signal(number, self._receive)
        return self

    def __exit__(self, *exc_info):
        restore_signal_handlers(self._previous)
        self._previous = {}

    def _receive(self, number, frame):
        self.received = number
        self.__exit__()


def _next_batch(batches):
    """The next batch of an input iterator; tf.data's errors about a record become DamagedRecordError, and those
    about a file it can no longer open or read an InputError naming it."""
    try:
        return next(batches)
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
        raise DamagedRecordError(f"--input_file: corrupt or mismatched record: {error_text(e)}") from None
    except UnicodeDecodeError:
        # TensorFlow's message quotes the record, and a record that is not a tf.train.Example may not be text.
        raise DamagedRecordError("--input_file: a record is not a tf.train.Example") from None
    except (tf.errors.NotFoundError, tf.errors.PermissionDeniedError, tf.errors.UnavailableError) as e:
        # A file deleted, moved or made unreadable while the run reads it (records made again into its directory, a
        # network file system gone): the checkpoints saved so far stay, and the same command resumes from them.
        raise InputError(f"--input_file: a record file can no longer be read: {error_text(e)}") from None


def fit(trainer, dataset, options, replicas, init_checkpoint=None, global_batch_size=None, log=print,
        optional_init=(), on_save=None, input_files=None, ranks_share_records=False):
    """Trains `trainer` on `dataset` to options.num_train_steps, resuming from OUTPUT_DIR when it can.

    `dataset` is an IndexedBatches, or a function of a step giving a tf.data.Dataset: its iterator is
    checkpointed per rank, and restored on resuming only if it reads the same `input_files` with as many
    ranks; otherwise the input restarts from `dataset(resume_step)`, so that it is not shuffled as at the
    start of the run, whose first batches the model has already seen. Where the ranks take their records from one
    stream (`ranks_share_records`), they restart together unless every rank goes on in a stream of the same start:
    each rank takes every size-th record of its stream, and from streams of other orders some records would be
    taken twice and some not at all.
    `optional_init` names variables (a new task head) that --init_checkpoint may lack; `on_save(step)`
    runs on every rank after each scheduled checkpoint, and again when a run resumes from one. The chief
    shows progress (bert.progress: a bar, or plain lines in a log) and logs what the run does; `log` is called
    on every other rank only for a warning of its own. Returns the final step and the last report (Python floats).
    """
    check_ranks_agree(replicas, {}, save_checkpoints_steps=options.save_checkpoints_steps,
                      scale_lr_by_world_size=options.scale_learning_rate_by_ranks)
    chief = replicas.rank == 0
    latest = checkpoints.newest_checkpoint(options.output_dir, log) if chief else None
    if chief:
        checkpoints.forget_missing_checkpoints(options.output_dir, latest)
    resume_step = int(latest.rsplit("-", 1)[1]) if latest else 0
    # A collective, so also no rank reads the `checkpoint` file below before the chief has mended it.
    resume_step = int(replicas.all_sum([tf.constant(resume_step, tf.int64)])[0])
    model_checkpoint = tf.train.Checkpoint(**trainer.state())
    manager = tf.train.CheckpointManager(
        model_checkpoint, options.output_dir, max_to_keep=options.keep_checkpoints, checkpoint_name="ckpt"
    )
    indexed = isinstance(dataset, IndexedBatches)
    iterator, unrestored, position = None, None, None
    if not indexed:
        # Sizes too: shards made again under the same names are other input.
        files = [[os.path.abspath(path), os.path.getsize(path)] for path in input_files or ()]
        position = DataPosition(options.output_dir, replicas.rank, options.keep_checkpoints,
                                {"files": files, "ranks": replicas.size}, resume_step)
        iterator, unrestored = position.open(dataset, resume_step)
        if resume_step:
            # On every rank, whatever its input: whether the ranks share one is seen otherwise where their files differ.
            starts, squares = (int(n) for n in replicas.all_sum(
                [tf.constant([position.start_step, position.start_step ** 2], tf.int64)])[0])
            # A stream is a function of the step it started at. Equal starts, and only those, give size * sum of
            # squares == square of the sum.
            if ranks_share_records and replicas.size * squares != starts ** 2:
                if unrestored is None:
                    iterator = position.restart(dataset, resume_step)
                if chief:
                    log(f"warning: every rank's input restarts at step {resume_step}, shuffled anew: the ranks share "
                        f"out the records of one stream (there are fewer record files than ranks), and not all of "
                        f"them could go on in the same stream")

    if resume_step:
        path = os.path.join(options.output_dir, f"ckpt-{resume_step}")
        # The chief alone reads the checkpoint it starts from (this one or --init_checkpoint), whose state the
        # broadcast below gives every rank: the others need no copy of the run's checkpoints.
        if chief:
            try:
                trainer.restore(path)
            except ValueError as e:
                raise InputError(f"--output_dir: cannot restore {path} into this model: {error_text(e)}") from None
            except checkpoints.READ_ERRORS as e:
                raise InputError(f"--output_dir: checkpoint {path} is damaged or incomplete ({error_text(e)}); "
                                 f"delete its files ({os.path.basename(path)}.*) to resume from the one before it") from None
            # Whether or not it still exists, as a run resumed with its own command gives it again.
            unread = f"; --init_checkpoint {init_checkpoint} is not read" if init_checkpoint else ""
            log(f"resuming from {path} (step {resume_step}){unread}")
            if resume_step < options.num_train_steps:
                _record_changed_settings(options, log)
        if unrestored:
            log(f"warning: the input position of rank {replicas.rank} at step {resume_step} is not restored "
                f"({unrestored}); its input restarts, shuffled anew")
    elif init_checkpoint and chief:
        unused, fresh = checkpoints.load_weights(trainer.variables_by_name, init_checkpoint, optional=optional_init)
        checkpoints.report_initialisation(init_checkpoint, unused, log, trainer.variables_by_name)
        if fresh:
            log(checkpoints.fresh_line(fresh, trainer.variables_by_name))
    replicas.broadcast(trainer.state_variables())
    # A run killed after a scheduled checkpoint but before `on_save` finished with it: `on_save` knows
    # whether it did, and does it now if not.
    if on_save and resume_step and (resume_step % options.save_checkpoints_steps == 0
                                    or resume_step == options.num_train_steps):
        on_save(resume_step)

    step = int(trainer.step.numpy())
    if chief and step >= options.num_train_steps:
        where = f"is at step {step}, past" if step > options.num_train_steps else "has reached"
        log(f"note: the run in {options.output_dir} {where} the flags' last step ({options.num_train_steps}): "
            f"nothing to train")
    # A run with nothing to train writes no events file, which would show in TensorBoard as a run of its own.
    events = f"TensorBoard events to {options.output_dir}"
    writer = None
    if chief and step < options.num_train_steps:
        # Creating the writer writes the file's first event.
        with _writing(step, manager, what=events):
            writer = tf.summary.create_file_writer(options.output_dir)
            _mark_session_start(writer, step)
    if indexed:
        iterator = dataset.from_step(step + int(trainer.skipped_batches.numpy()))
    total = options.num_train_steps
    progress_bar = progress.bar(total=total, initial=step, desc="train", unit="step", disable=not chief)
    window, window_start, window_steps, window_batches = {}, time.perf_counter(), 0, 0
    report = {}
    loss_scale = float(trainer.loss_scale.numpy())
    saved_step = reported_step = step
    stop = False
    with StopSignals() as signals:
        try:
            while step < total and not stop:
                features = _next_batch(iterator)
                # A tensor, not a Python number, which tf.function would compile the step again for.
                requests = tf.constant(0.0 if signals.received is None else 1.0)
                report = {key: float(value) for key, value in trainer.train_step(features, requests).items()}
                # float16 skips a non-finite step and halves the loss scale; once the scale is down to 1
                # nothing is left to lower, and skipping on would loop forever.
                applied = report.pop("applied")
                if not applied and (not trainer.dynamic_scaling or loss_scale <= 1.0):
                    last = _last_good_checkpoint(options.output_dir)
                    at_scale = " at loss scale 1" if trainer.dynamic_scaling else ""
                    raise InputError(
                        f"loss is {report['loss']} (non-finite gradients{at_scale}) at step {step + 1}; stopped "
                        f"without saving; the last good checkpoint is {last}"
                    )
                loss_scale = report["loss_scale"]
                step = int(trainer.step.numpy())
                stop = report.pop("stop_requests") > 0
                window_batches += 1
                # A skipped float16 step is no step: its loss and gradient norm (infinite) are not averaged in,
                # and it reports nothing at the step it left unchanged, which has been reported already.
                if applied:
                    for key, value in report.items():
                        window[key] = window.get(key, 0.0) + value
                    window_steps += 1
                if chief and step != reported_step and (step % options.num_report_steps == 0 or step == total):
                    elapsed = time.perf_counter() - window_start
                    means = {key: value / window_steps for key, value in window.items()}
                    means["sequences_per_second"] = window_batches * (global_batch_size or 0) / elapsed if elapsed else 0.0
                    if trainer.dynamic_scaling:
                        means["skipped_steps"] = window_batches - window_steps
                    progress_bar.set_postfix(loss=f"{means['loss']:.4f}", seq_s=f"{means['sequences_per_second']:.1f}")
                    with _writing(step, manager, what=events):
                        with writer.as_default(step=step):
                            for key, value in means.items():
                                tf.summary.scalar(key, value)
                        writer.flush()
                    window, window_start, window_steps, window_batches = {}, time.perf_counter(), 0, 0
                    reported_step = step
                progress_bar.update(step - progress_bar.n)
                scheduled = step % options.save_checkpoints_steps == 0 or step == total
                # A skipped float16 step leaves the step where it was: nothing new to save.
                if step != saved_step and (scheduled or stop):
                    if not trainer.weights_are_finite():
                        raise InputError(
                            f"the weights are not finite after step {step} (is --learning_rate "
                            f"{options.learning_rate:g} too high?); stopped without saving; the last good checkpoint "
                            f"is {_last_good_checkpoint(options.output_dir)}"
                        )
                    if position:
                        with _writing(step, manager, checkpoint=position.prefix(step)):
                            position.save(step)
                    replicas.barrier()
                    if chief:
                        with _writing(step, manager, checkpoint=os.path.join(options.output_dir, f"ckpt-{step}")):
                            manager.save(checkpoint_number=step)
                        if position:
                            # A position saved at this step by a rank now absent is of the run's other history.
                            kept = {int(path.rsplit("-", 1)[1]) for path in manager.checkpoints} - {step}
                            DataPosition.prune_absent_ranks(options.output_dir, replicas.size, kept)
                    saved_step = step
                    # Not at an unscheduled stop: the checkpoints it sees (classify's --keep_best) stay those
                    # of an uninterrupted run.
                    if on_save and scheduled:
                        on_save(step)
            # Launchers (horovodrun, mpirun) end every rank once one has exited: none leaves before the
            # chief's last checkpoint is written, also a rank stopping for a signal that came in the last step.
            replicas.barrier()
            if writer is not None:
                with _writing(step, manager, what=events):
                    writer.close()
        except tf.errors.OpError as e:
            # The collectives of a training step, when another process of the run has ended.
            lost = replicas.lost_contact(e)
            if lost is None:
                raise
            raise lost from None
        finally:
            progress_bar.close()
            if writer is not None:
                # Already closed unless an error is on its way out, which a failure to flush must not replace.
                with contextlib.suppress(tf.errors.OpError):
                    writer.close()
    # A signal to this rank alone in the last step is a stop too: what follows training (export, evaluation)
    # is left to the re-run.
    if stop or signals.received is not None:
        raise _stop_requested(signals.received, step, total, options.output_dir if saved_step else None)
    return step, report


def _mark_session_start(writer, step):
    """Writes TensorBoard's mark of a (re)start after `step`: its readers drop the points a run logged past the
    checkpoint it is resumed from, which it trains again (after newer checkpoints were removed to go back to it),
    as they do for the reference's Estimator, which marks every start."""
    from tensorboard.compat.proto import event_pb2

    event = event_pb2.Event(step=step + 1, wall_time=time.time(),
                            session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START))
    # tf.summary has no call for an event other than a summary: the writer's own resource takes the raw one.
    tf.raw_ops.ImportEvent(writer=writer._resource, event=[event.SerializeToString()])


def _last_good_checkpoint(output_dir):
    # From the disk: only the chief's checkpoint manager saves, and so knows of any.
    return checkpoints.newest_checkpoint(output_dir) or "none"


@contextlib.contextmanager
def _writing(step, manager, checkpoint=None, what=None):
    """Turns a failed write after `step` (a full disk, a file-size limit) of the checkpoint prefix `checkpoint`, or
    of `what`, into an InputError saying where the run resumes; a half-written checkpoint is removed first. One
    written whole is kept: TensorFlow records the `checkpoint` file, and removes the checkpoints past the number
    to keep, once it is written, and a failure there would otherwise leave none with --keep_checkpoints=1.
    The staging directory (PREFIX_temp) a killed save left is removed first: TensorFlow's own removal of it after
    the save would fail while it holds files, and the checkpoint would look half-written."""
    if checkpoint:
        shutil.rmtree(f"{checkpoint}_temp", ignore_errors=True)
    try:
        yield
    except tf.errors.OpError as e:
        if checkpoint:
            if not checkpoints.is_complete(checkpoint):
                checkpoints.remove_partial(checkpoint)
            what = f"checkpoint {checkpoint}"
        # From the disk: after a failed write the manager's own list of checkpoints is not to be trusted.
        newest = checkpoints.newest_checkpoint(manager.directory)
        resume = (f"the newest checkpoint is {newest}: run the same command again to resume from it" if newest
                  else "no checkpoint was saved: run the same command again to start over")
        raise InputError(f"cannot write {what} after step {step}: {checkpoints.write_error_reason(e)}; {resume}") from None


def _stop_requested(received, step, total, output_dir):
    """The StopRequested for a stop after `step`, saved in `output_dir` (None: no step was taken, nothing saved)."""
    if received is None:
        cause, status = "a signal to another rank", 128 + signal.SIGTERM
    else:
        cause, status = signal.Signals(received).name, 128 + received
    saved = f"saved {os.path.join(output_dir, f'ckpt-{step}')}" if output_dir else "no step was taken, nothing to save"
    return StopRequested(f"stopped by {cause} after step {step} of {total}; {saved}; run the same command again to resume",
                         status)


def export_model(variables_by_name, output_dir, config, step, tokenizer_file=None):
    """The trained model as OUTPUT_DIR/bert_model.ckpt (+ bert_config.json) in the reference's names; its path.

    With `tokenizer_file` ((path, kind), kind "wordpiece" or "sentencepiece") the directory is a release:
    the vocabulary goes beside the model (checkpoints.export_tokenizer_file).
    """
    path = os.path.join(output_dir, EXPORT_NAME)
    try:
        checkpoints.export_checkpoint(variables_by_name, path, config=config, extra={"global_step": tf.constant(step, tf.int64)})
        if tokenizer_file:
            checkpoints.export_tokenizer_file(*tokenizer_file, output_dir)
    except InputError as e:
        raise InputError(f"{e}; the trained model is saved as {os.path.join(output_dir, f'ckpt-{step}')}: run the same "
                         f"command again to export it") from None
    return path


def training_summary(step, replicas, global_batch, report, export):
    loss = f", loss {report['loss']:.4f}" if report else ""
    return f"trained to step {step} ({replicas.name}, global batch {global_batch}{loss}); exported {export}"


CHANGEABLE = "changeable"
# Under this key a run records what its train_data fingerprint is made of, which says what changed.
TRAIN_DATA_PARTS = "train_data_parts"
# Keys of a run's record that a resumption may change.
_UNPINNED = (CHANGEABLE, TRAIN_DATA_PARTS)


def describe(options, replicas, **shape):
    """What a run directory pins: the model and data shape, the optimizer and the global batch per step; and
    under CHANGEABLE the settings a resumption may change.

    The global batch is pinned, not its split among ranks and micro-batches: a run may resume on another
    number of ranks (after losing a machine), or where memory is short in more, smaller micro-batches,
    as the out-of-memory message advises.
    """
    return {
        "optimizer_type": options.optimizer_type,
        "global_batch_size": options.micro_batch_size * options.num_accumulation_steps * replicas.size,
        CHANGEABLE: _changeable_settings(options),
        **shape,
    }


def _changeable_settings(options):
    # Not pinned (the reference's runs resume with any), but a resumption that changes them says so.
    return {"learning_rate": options.learning_rate, "num_train_steps": options.num_train_steps,
            "num_warmup_steps": options.num_warmup_steps, "seed": options.seed, "compute_dtype": options.compute_dtype,
            "scale_lr_by_world_size": options.scale_learning_rate_by_ranks}


def _record_changed_settings(options, log):
    """Notes to `log` the CHANGEABLE settings a resumed run takes that differ from those its RUN_FILE records, and
    records them there. Called once the run has resumed and will train: a run that fails to or has nothing to train
    keeps the record of the settings its steps were taken with."""
    record = _read_run_record(options.output_dir)
    if record is None:
        return
    recorded, current = record.get(CHANGEABLE), _changeable_settings(options)
    recorded = recorded if isinstance(recorded, dict) else {}
    # A setting an earlier version did not record is recorded now, but is not one this resumption changed.
    changed = [change for change in _differences(recorded, current) if change[0] in recorded]
    if not changed and set(current) <= set(recorded):
        return
    if changed:
        shown = ", ".join(f"{key} ({json.dumps(was)}, now {json.dumps(now)})" for key, was, now in changed)
        log(f"note: resuming the run in {options.output_dir} with another {shown}: its further steps take the new "
            f"value{'s' if len(changed) > 1 else ''}")
    with AtomicFile(os.path.join(options.output_dir, RUN_FILE)) as f:
        json.dump({**record, CHANGEABLE: current}, f, indent=2, sort_keys=True)
        f.write("\n")


def restore_for_eval(variables_by_name, output_dir, init_checkpoint, optional=(), evaluation_flags="--do_eval or --do_predict",
                     log=None, config=None, tokenizer_file=None):
    """Loads the newest checkpoint of `output_dir`, or else `init_checkpoint`, for evaluation; returns the step.

    The step is the reference's `global_step`: that of the run in `output_dir`, and 0 when only
    `init_checkpoint` is evaluated (the reference restores its trainable variables alone, so a
    `global_step` it holds belongs to the run that made it, not to this one). `evaluation_flags` names
    the command's evaluation flags in the message when there is neither; `log` gets newest_checkpoint's warnings.
    The run's own checkpoint is checked against `config` and `tokenizer_file` first (check_evaluated_run).
    """
    run_checkpoint = checkpoints.newest_checkpoint(output_dir, log)
    if not (run_checkpoint or init_checkpoint):
        raise InputError(f"{evaluation_flags} without --do_train needs a checkpoint in --output_dir or --init_checkpoint")
    if not run_checkpoint:
        # A head of another shape is another task's: an error, not a head evaluated as initialised, at random.
        unused, fresh = checkpoints.load_weights(variables_by_name, init_checkpoint, optional=optional,
                                                 restart_reshaped=False)
        if log:
            checkpoints.report_initialisation(init_checkpoint, unused, log, variables_by_name)
            if fresh:
                log(f"warning: --init_checkpoint {init_checkpoint} holds no {', '.join(fresh)}: evaluated as "
                    f"initialised, at random")
        return 0
    if init_checkpoint and log:
        log(f"evaluating {run_checkpoint}, the run's newest checkpoint; --init_checkpoint {init_checkpoint} is not read")
    check_evaluated_run(output_dir, run_checkpoint, config, tokenizer_file, log)
    # A run's own checkpoint holds its whole model: a head missing or of another shape is another task's.
    checkpoints.load_weights(variables_by_name, run_checkpoint, flag="--output_dir")
    reader = checkpoints.CheckpointReader(run_checkpoint, flag="--output_dir")
    return next((int(reader.tensor(n)) for n in ("step", "global_step") if n in reader), 0)


# The config keys evaluation does not read: a model evaluated with other dropouts is the same model.
_TRAINING_ONLY_CONFIG_KEYS = ("attention_probs_dropout_prob", "hidden_dropout_prob", "initializer_range")


def check_evaluated_run(output_dir, checkpoint, config, tokenizer_file, log):
    """Before `checkpoint`, a model of the run in `output_dir`, is evaluated: refuses a `config` (--bert_config_file)
    whose model is not the one the run trained, by the config its RUN_FILE records, and warns `log` of a
    `tokenizer_file` ((path, kind)) other than the one exported beside the checkpoint. The weights would load
    into fewer layers without a word, or into other attention heads or another activation of the same shapes,
    and be scored as that run's."""
    if config is not None:
        _check_run_config(output_dir, config)
    if log:
        checkpoints.warn_if_vocabulary_differs(checkpoint, tokenizer_file, log, flag="--output_dir")


def _check_run_config(output_dir, config):
    # A run of an earlier version, or one whose record is lost: load_weights checks what the names and shapes can.
    recorded = (_read_run_record(output_dir) or {}).get("bert_config")
    if not isinstance(recorded, dict):
        return
    current = config.to_dict()
    for key in sorted(set(recorded) & set(current) - set(_TRAINING_ONLY_CONFIG_KEYS)):
        if recorded[key] != current[key]:
            own = os.path.join(output_dir, "bert_config.json")
            advice = f"give the run's own, {own}" if os.path.isfile(own) else "give the config the run was trained with"
            raise InputError(f"--bert_config_file: its '{key}' is {json.dumps(current[key])}, but the model trained in "
                             f"--output_dir {output_dir} has {json.dumps(recorded[key])} (by its {RUN_FILE}); {advice}")


def evaluate(task, dataset, max_steps, compute_dtype=tf.float32):
    """The reference's eval metrics over the first `max_steps` batches of `dataset` (all of it if fewer)."""

    @tf.function(autograph=False)
    def batch_sums(features):
        ctx = modeling.Context(compute_dtype)
        sums = task.sums(features, ctx)
        counts = task.counts(features)
        loss = task_loss(task, sums, with_epsilon(task, counts))
        return sums, counts, loss

    totals, count_totals, losses = {}, {}, []
    batches = iter(dataset)
    for _ in progress.bar(range(max_steps), desc="eval", unit="batch"):
        try:
            features = _next_batch(batches)
        except StopIteration:
            break
        sums, counts, loss = batch_sums(features)
        for key, value in sums.items():
            totals[key] = totals.get(key, 0.0) + float(value)
        for key, value in counts.items():
            count_totals[key] = count_totals.get(key, 0.0) + float(value)
        losses.append(float(loss))
    if not losses:
        raise InputError("--input_file: no records to evaluate")
    results = {}
    for metric, (term, count) in task.metrics.items():
        results[metric] = np.float32(totals[term] / count_totals[count]) if count_totals[count] else np.float32(0)
    results["loss"] = np.float32(np.mean(losses))
    return results
