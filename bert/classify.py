"""bert-classify: fine-tune and evaluate BERT on a GLUE task (or any TSV), as the reference's run_classifier.

    bert-classify --task_name=MRPC --data_dir=glue/MRPC --vocab_file=model/vocab.txt \\
        --bert_config_file=model/bert_config.json --init_checkpoint=model/bert_model.ckpt \\
        --do_train --do_eval --do_predict --max_seq_length=128 --train_batch_size=32 \\
        --learning_rate=2e-5 --num_train_epochs=3 --output_dir=mrpc_output

Outputs in --output_dir: `eval_results.txt` (eval_loss; eval_METRIC for each of the task's
metrics: accuracy, with f1 for MRPC and QQP and mcc for CoLA, or pearson and spearman for a
regression; global_step, loss), `test_results.tsv` (one line per test example: the class
probabilities, tab-separated; the predicted score for a regression task), training checkpoints
(a re-run resumes), TensorBoard logs, and the fine-tuned model as `bert_model.ckpt` + `bert_config.json`. MNLI's
mismatched dev and test sets, where present, go to `eval_results_mismatched.txt` and `test_results_mismatched.tsv`.
With --keep_best the model is evaluated on dev at every checkpoint and the best one is kept in
OUTPUT_DIR/best/, which evaluation and prediction then use.

Training runs for int(train examples / global batch x --num_train_epochs) steps, where the global
batch is --train_batch_size x --num_accumulation_steps x ranks, with linear warmup over
--warmup_proportion of them.
"""

import dataclasses
import functools
import json
import math
import os
import time

import numpy as np
from absl import flags

from bert import checkpoints, classifier, cli, fileio, glue, training
from bert.errors import InputError

FLAGS = flags.FLAGS
BEST_DIR = "best"
BEST_FILE = "best.json"


def define_flags():
    flags.DEFINE_string("data_dir", None, "The task's directory: train.tsv, dev.tsv, test.tsv (GLUE layout; MNLI: "
                        "dev_matched.tsv, dev_mismatched.tsv, test_matched.tsv, test_mismatched.tsv; XNLI: "
                        "multinli/multinli.train.LANGUAGE.tsv, xnli.dev.tsv, xnli.test.tsv).")
    flags.DEFINE_string("task_name", None, f"The task: {', '.join(glue.TASK_NAMES)}, or tsv (see --text_a_column).")
    cli.define_model_flags("The pre-trained checkpoint to fine-tune (a released bert_model.ckpt, ours, or bert-convert's).")
    cli.define_tokenizer_flags()
    flags.DEFINE_string("output_dir", None, "Where checkpoints, results and the fine-tuned model go.")
    flags.DEFINE_integer("max_seq_length", 128, "Maximum tokens per example after WordPiece, [CLS]/[SEP] included.")
    flags.DEFINE_bool("do_train", False, "Fine-tune on the task's training file (train.tsv).")
    flags.DEFINE_bool("do_eval", False, "Evaluate on the task's dev file(s) (dev.tsv) and write eval_results.txt.")
    flags.DEFINE_bool("do_predict", False, "Predict the task's test file(s) (test.tsv) and write test_results.tsv.")
    flags.DEFINE_float("classifier_dropout", classifier.CLASSIFIER_DROPOUT, "Dropout on the pooled output before the classifier (the reference's 0.1).")
    flags.DEFINE_bool("keep_best", False, "Evaluate on dev at every checkpoint; keep the best in OUTPUT_DIR/best and use it.")
    flags.DEFINE_string("xnli_language", "zh", "XNLI: the language to train and evaluate on.")
    flags.DEFINE_string("text_a_column", "0", "tsv task: the first text's column (index, or name if --tsv_header).")
    flags.DEFINE_string("text_b_column", None, "tsv task: the second text's column, if the task takes pairs.")
    flags.DEFINE_string("label_column", "1", "tsv task: the label's column.")
    flags.DEFINE_bool("tsv_header", True, "tsv task: the files start with a header row.")
    flags.DEFINE_list("tsv_labels", None, "tsv task: the labels, in order; default: those of train.tsv (dev.tsv without one), sorted.")
    flags.DEFINE_bool("tsv_regression", False, "tsv task: the label is a number to regress (one output).")
    cli.define_training_flags()
    cli.define_fine_tuning_flags()
    cli.define_tpu_flags()


def _check_flags():
    cli.check_fine_tuning_flags()
    if FLAGS.max_seq_length < 3:
        raise InputError(f"--max_seq_length must be at least 3, got {FLAGS.max_seq_length}")
    if not 0 <= FLAGS.classifier_dropout < 1:
        raise InputError(f"--classifier_dropout must be in [0, 1), got {FLAGS.classifier_dropout}")
    if not (FLAGS.do_train or FLAGS.do_eval or FLAGS.do_predict):
        raise InputError("at least one of --do_train, --do_eval or --do_predict must be set")
    if not os.path.isdir(FLAGS.data_dir):
        raise InputError(f"--data_dir: not a directory: {FLAGS.data_dir}")


def _column(value, flag):
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        if not FLAGS.tsv_header:
            raise InputError(f"--{flag}: '{value}' is not a column index (the files have no header, --notsv_header)") from None
        return value


TSV_FLAGS = ("text_a_column", "text_b_column", "label_column", "tsv_header", "tsv_labels", "tsv_regression")


def resolve_task():
    if FLAGS.task_name.lower() != "tsv":
        given = next((name for name in TSV_FLAGS if FLAGS[name].present), None)
        if given:
            raise InputError(f"--{given}: only --task_name=tsv reads it; --task_name={FLAGS.task_name} has its own columns "
                             f"and labels")
        return glue.get_task(FLAGS.task_name)
    columns = (
        _column(FLAGS.text_a_column, "text_a_column"),
        _column(FLAGS.text_b_column, "text_b_column"),
        _column(FLAGS.label_column, "label_column"),
        FLAGS.tsv_header,
    )
    if FLAGS.tsv_regression:
        if FLAGS.tsv_labels:
            raise InputError("--tsv_labels: a regression (--tsv_regression) predicts a number, and has no labels")
        return glue.tsv_task(columns, None)
    labels = FLAGS.tsv_labels
    twice = next((label for i, label in enumerate(labels or []) if label in labels[:i]), None)
    if twice is not None:
        raise InputError(f"--tsv_labels: '{twice}' is given twice; each label is one output of the classifier")
    if not labels:
        source = next((p for p in (os.path.join(FLAGS.data_dir, n) for n in ("train.tsv", "dev.tsv")) if os.path.isfile(p)), None)
        if source is None:
            raise InputError("--tsv_labels: not given, and --data_dir has no train.tsv or dev.tsv to find the labels in")
        labels = glue.discover_labels(glue.Columns(*columns), source)
    if len(labels) < 2:
        found = "" if FLAGS.tsv_labels else f" (all {source} holds)"
        raise InputError(f"--tsv_labels: one label, '{labels[0]}'{found}; a classifier needs two or more (a number to "
                         f"predict takes --tsv_regression)")
    return glue.tsv_task(columns, labels)


def _training_set(task, tokenizer):
    """The training examples, and a fingerprint of everything their encoding depends on and its parts."""
    (path,), _ = glue.split_paths(task, FLAGS.data_dir, "train", FLAGS.xnli_language)
    examples, skipped = glue.read_examples(task, path, "train", FLAGS.xnli_language)
    fingerprint, parts = fileio.fingerprint(
        {"training file": path, "vocabulary": cli.vocabulary_source()},
        {"task": task.name, "labels": task.labels, "max_seq_length": FLAGS.max_seq_length,
         "do_lower_case": tokenizer.lower_cases, "language": FLAGS.xnli_language,
         # Columns other than the defaults (a GLUE task's, or a tsv task's as given by default, keep the
         # fingerprint they had before the columns counted).
         **({"columns": dataclasses.astuple(task.labeled)} if _custom_columns(task) else {})},
    )
    return examples, skipped, fingerprint, parts


def _custom_columns(task):
    """Whether a tsv task reads other columns than its flags' defaults."""
    defaults = [FLAGS[name].default for name in ("text_a_column", "text_b_column", "label_column", "tsv_header")]
    return task.name == "tsv" and [FLAGS.text_a_column, FLAGS.text_b_column, FLAGS.label_column, FLAGS.tsv_header] != defaults


def _suffix(index, path):
    """'' for a split's first file, '_mismatched' for MNLI's dev_mismatched.tsv."""
    if index == 0:
        return ""
    stem = os.path.splitext(os.path.basename(path))[0]
    return "_" + stem.split("_", 1)[-1]


def _results_path(split, suffix):
    """Where a dev file's results or a test file's predictions are written."""
    return os.path.join(FLAGS.output_dir, f"eval_results{suffix}.txt" if split == "dev" else f"test_results{suffix}.tsv")


def _read_split(task, split, log):
    """(path, examples) for each file of a split; raises InputError naming a missing or malformed file."""
    files = []
    paths, absent = glue.split_paths(task, FLAGS.data_dir, split, FLAGS.xnli_language)
    for path in absent:
        earlier = _results_path(split, _suffix(1, path))
        left = f" ({os.path.basename(earlier)} of an earlier run is left as it was)" if os.path.exists(earlier) else ""
        log(f"note: --data_dir has no {os.path.basename(path)}: {split} is {os.path.basename(paths[0])} alone{left}")
    for path in paths:
        examples, skipped = glue.read_examples(task, path, split, FLAGS.xnli_language)
        if skipped:
            log(f"{os.path.basename(path)}: skipped {skipped} row(s) with missing fields")
        files.append((path, examples))
    return files


class Evaluator:
    """A split's files encoded once, and the reference's eval metrics of the model on them."""

    def __init__(self, task, tokenizer, logits_function, split, files):
        self.task = task
        self.logits_function = logits_function
        self._tokenizer = tokenizer
        self._split = split
        self._files = files

    @functools.cached_property
    def sets(self):
        """(file suffix, arrays) of each file, encoded at the first evaluation: after the checkpoint is checked."""
        return [(_suffix(index, path), classifier.encode_examples(examples, self._tokenizer, FLAGS.max_seq_length,
                                                                  self.task.labels, f"encode {self._split}"))
                for index, (path, examples) in enumerate(self._files)]

    def evaluate(self, arrays, batch_size):
        logits = classifier.predict_logits(self.logits_function, arrays, batch_size, "eval")
        labels = arrays["label_ids"]
        losses = classifier.example_losses(logits, labels, self.task.is_regression)
        outputs = logits[:, 0] if self.task.is_regression else logits.argmax(-1)
        results = {f"eval_{name}": np.float32(value) for name, value in glue.compute_metrics(self.task, labels, outputs).items()}
        results["eval_loss"] = np.float32(losses.mean())
        # The reference's "loss" is the mean over evaluation batches of each batch's mean loss.
        results["loss"] = np.float32(np.mean([chunk.mean() for chunk in np.array_split(losses, range(batch_size, len(losses), batch_size))]))
        return results


def _keep_best(model, config, evaluator, log):
    """An on_save callback: evaluate on dev and export the model to OUTPUT_DIR/best when it is the best yet."""
    directory = os.path.join(FLAGS.output_dir, BEST_DIR)
    record_path = os.path.join(directory, BEST_FILE)
    metric = f"eval_{evaluator.task.primary_metric}"

    def on_save(step):
        best = _read_best(record_path)
        # Called again for the checkpoint a run resumes from: a step already evaluated is not evaluated twice.
        if best is not None and best.get("evaluated", best["step"]) >= step:
            return
        results = evaluator.evaluate(evaluator.sets[0][1], FLAGS.eval_batch_size)
        # A NaN score (a diverged model's) is beaten by any other.
        if best is None or math.isnan(best["value"]) or results[metric] > best["value"]:
            os.makedirs(directory, exist_ok=True)
            checkpoints.export_checkpoint(model.variables_by_name, os.path.join(directory, "bert_model.ckpt"), config=config)
            checkpoints.export_tokenizer_file(*cli.tokenizer_file(), directory)
            best = {"metric": metric, "value": float(results[metric]), "step": step}
            log(f"step {step}: dev {metric} {results[metric]:.4f}, the best so far -> {directory}")
        else:
            log(f"step {step}: dev {metric} {results[metric]:.4f} (best {best['value']:.4f} at step {best['step']})")
        # Last, so that a run killed before it evaluates the step again (and exports it again if it is the best).
        with fileio.AtomicFile(record_path) as f:
            json.dump({**best, "evaluated": step}, f)

    return on_save


def _read_best(path):
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
        if not isinstance(record, dict) or not {"metric", "step", "value"} <= set(record):
            raise ValueError("not a record of the best checkpoint")
        for key, kinds in (("metric", str), ("step", int), ("value", (int, float)), ("evaluated", int)):
            if key in record and (not isinstance(record[key], kinds) or isinstance(record[key], bool)):
                raise ValueError(f"its {key!r} is {json.dumps(record[key])}")
        return record
    except ValueError as e:
        raise InputError(f"--keep_best: {path} is damaged ({e}); delete it to choose the best checkpoint afresh "
                         f"from the next one scored") from None


def main(argv):
    cli.warn_ignored_tpu_flags()
    _check_flags()
    replicas = cli.start_training_run()
    chief = replicas.rank == 0
    log = cli.chief_log(replicas)
    task = resolve_task()
    config, tokenizer = cli.load_config_and_tokenizer(log)
    if FLAGS.do_train:
        cli.check_batches_fit(config, last_layer_queries=1, training=["train_batch_size"])
    fileio.make_output_dir(FLAGS.output_dir, "--output_dir")

    model = classifier.BertClassifier(config, task.num_labels, seed=FLAGS.seed, dropout=FLAGS.classifier_dropout)
    logits_function = classifier.make_logits_function(model, FLAGS.max_seq_length, training.COMPUTE_DTYPES[cli.compute_dtype()])
    # Read now, and on every rank (the chief alone evaluates and predicts), so that a missing or malformed file stops
    # every rank before training, not the chief alone or after training.
    dev_files = _read_split(task, "dev", log) if FLAGS.do_eval or FLAGS.keep_best else None
    test = _read_split(task, "test", log) if FLAGS.do_predict else None
    dev = Evaluator(task, tokenizer, logits_function, "dev", dev_files) if dev_files and chief else None
    start = time.perf_counter()
    summary = []
    step = None
    if FLAGS.do_train:
        examples, skipped, fingerprint, fingerprint_parts = _training_set(task, tokenizer)
        if skipped:
            log(f"train.tsv: skipped {skipped} row(s) with missing fields")
        options, rank_batch, global_batch = cli.fine_tuning_options(FLAGS.output_dir, len(examples), replicas)
        description = training.describe(
            options, replicas, bert_config=config.to_dict(), max_seq_length=FLAGS.max_seq_length, task=task.name,
            labels=task.labels, train_data=fingerprint, train_data_parts=fingerprint_parts,
        )
        training.check_run_directory(FLAGS.output_dir, description, replicas, FLAGS.init_checkpoint, model.variables_by_name,
                                     classifier.OPTIONAL_INIT)
        arrays = fileio.cached_arrays(
            os.path.join(FLAGS.output_dir, f"train-features-{fingerprint}.npz"),
            lambda: classifier.encode_examples(examples, tokenizer, FLAGS.max_seq_length, task.labels, "encode train",
                                              show_progress=chief),
            save=chief,  # the other ranks read the chief's once it is there, and write nothing
        )
        trainer = training.Trainer(classifier.ClassificationTask(model, task.is_regression), options, replicas)
        batches = training.IndexedBatches(arrays, rank_batch, FLAGS.seed, replicas.rank, replicas.size)
        on_save = _keep_best(model, config, dev, log) if FLAGS.keep_best and chief else None
        log(f"{len(examples)} training examples, {options.num_train_steps} steps of {global_batch} ({options.num_warmup_steps} warmup)")
        step, report = training.fit(
            trainer, batches, options, replicas, init_checkpoint=FLAGS.init_checkpoint, global_batch_size=global_batch,
            log=cli.rank_log(), optional_init=classifier.OPTIONAL_INIT, on_save=on_save,
        )
        if chief:
            export = training.export_model(model.variables_by_name, FLAGS.output_dir, config, step, cli.tokenizer_file())
            summary.append(training.training_summary(step, replicas, global_batch, report, export))
    if not chief or not (FLAGS.do_eval or FLAGS.do_predict):
        if chief:
            print(f"bert-classify: {'; '.join(summary)} ({time.perf_counter() - start:.1f}s)")
        return
    best = _read_best(os.path.join(FLAGS.output_dir, BEST_DIR, BEST_FILE)) if FLAGS.keep_best else None
    if best:
        best_model = os.path.join(FLAGS.output_dir, BEST_DIR, "bert_model.ckpt")
        if step is None:
            training.check_evaluated_run(FLAGS.output_dir, best_model, config, cli.tokenizer_file(), log)
        checkpoints.load_weights(model.variables_by_name, best_model)
        step = best["step"]
        summary.append(f"using the best checkpoint (step {step}, dev {best['metric']} {best['value']:.4f})")
    elif step is None:
        step = training.restore_for_eval(model.variables_by_name, FLAGS.output_dir, FLAGS.init_checkpoint,
                                         optional=classifier.OPTIONAL_INIT, log=log, config=config,
                                         tokenizer_file=cli.tokenizer_file())
    if FLAGS.do_eval:
        for suffix, arrays in dev.sets:
            results = dev.evaluate(arrays, FLAGS.eval_batch_size)
            results["global_step"] = step
            path = _results_path("dev", suffix)
            cli.write_results(path, results)
            shown = ", ".join(f"{k[5:]} {v:.4f}" for k, v in sorted(results.items()) if k.startswith("eval_"))
            summary.append(f"dev{suffix}: {shown} -> {path}")
    if FLAGS.do_predict:
        for index, (path, examples) in enumerate(test):
            arrays = classifier.encode_examples(examples, tokenizer, FLAGS.max_seq_length, task.labels, "encode test")
            logits = classifier.predict_logits(logits_function, arrays, FLAGS.predict_batch_size)
            rows = logits[:, :1] if task.is_regression else classifier.softmax(logits)
            out = _results_path("test", _suffix(index, path))
            with fileio.AtomicFile(out) as f:
                for row in rows:
                    f.write("\t".join(str(value) for value in row) + "\n")
            summary.append(f"{len(rows)} test predictions -> {out}")
    print(f"bert-classify: {'; '.join(summary)} ({time.perf_counter() - start:.1f}s)")


def run():
    define_flags()
    cli.run_command(main, required=("data_dir", "task_name", "bert_config_file", "output_dir"))


if __name__ == "__main__":
    run()
