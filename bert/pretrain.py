"""bert-pretrain: pre-training records + bert_config.json -> checkpoints, TensorBoard logs, eval_results.txt.

    bert-pretrain --input_file='records/part-*.tfrecord' --output_dir=run --bert_config_file=mini \\
        --do_train --do_eval --train_batch_size=32 --max_seq_length=128 --max_predictions_per_seq=20 \\
        --num_train_steps=10000 --num_warmup_steps=1000 --learning_rate=1e-4 --optimizer_type=lamb

The reference's flags (run_pretraining.py), the ROCm fork's (--use_horovod, --optimizer_type,
--auto_mixed_precision, --num_report_steps) and ours. Re-running a command resumes it from its
--output_dir. At the end the model is exported as OUTPUT_DIR/bert_model.ckpt + bert_config.json in the
reference's variable names. Under Horovod (`horovodrun -np N bert-pretrain --use_horovod ...`),
--train_batch_size is per rank and per micro-batch: one step sees
train_batch_size x num_accumulation_steps x ranks sequences.
"""

import os
import sys
import time

from absl import flags

from bert import checkpoints, cli, config as bert_config, distributed, fileio, modeling, optimization, pretraining, training
from bert.errors import InputError
from bert.tf import tf

FLAGS = flags.FLAGS


def define_flags():
    cli.define_model_flags("A checkpoint to start from when --output_dir holds none (e.g. a released bert_model.ckpt).")
    flags.DEFINE_string("input_file", None, "Pre-training TFRecords (bert-create-data or the reference's): comma list or globs.")
    flags.DEFINE_string("output_dir", None, "Where checkpoints, TensorBoard logs, the exported model and eval_results.txt go.")
    flags.DEFINE_integer("max_seq_length", 128, "Sequence length of the records.")
    flags.DEFINE_integer("max_predictions_per_seq", 20, "Masked positions per record.")
    flags.DEFINE_bool("do_train", False, "Train.")
    flags.DEFINE_bool("do_eval", False, "Evaluate on --input_file and write eval_results.txt.")
    flags.DEFINE_integer("train_batch_size", 32, "Sequences per micro-batch on each rank.")
    flags.DEFINE_integer("eval_batch_size", 8, "Sequences per evaluation batch.")
    flags.DEFINE_float("learning_rate", 5e-5, "Peak learning rate.")
    flags.DEFINE_integer("num_train_steps", 100000, "Optimizer steps to train for.")
    flags.DEFINE_integer("num_warmup_steps", 10000, "Steps of linear warmup.")
    flags.DEFINE_integer("save_checkpoints_steps", 1000, "Save a checkpoint every this many steps (and at the end).")
    flags.DEFINE_integer("max_eval_steps", 100, "Maximum number of evaluation batches.")
    flags.DEFINE_enum("optimizer_type", "adam", optimization.OPTIMIZERS, "adam (the reference's AdamWeightDecay), lamb, nadam or nlamb.")
    flags.DEFINE_bool("use_horovod", False, "Data parallelism over Horovod (run under horovodrun).")
    flags.DEFINE_enum(
        "distribution_strategy", "none", distributed.STRATEGIES,
        "Data parallelism engine: none, horovod (same as --use_horovod), or multi_worker_mirrored (tf.distribute, "
        "cluster in TF_CONFIG).",
    )
    flags.DEFINE_bool("scale_lr_by_world_size", False, "Multiply --learning_rate by the number of ranks.")
    flags.DEFINE_bool("auto_mixed_precision", False, "Compute in --amp_dtype; weights and optimizer state stay float32.")
    flags.DEFINE_enum("amp_dtype", "float16", ["float16", "bfloat16"], "float16 (dynamic loss scaling) or bfloat16.")
    flags.DEFINE_bool("use_xla", False, "Compile the step with XLA.")
    flags.DEFINE_integer("num_accumulation_steps", 1, "Micro-batches accumulated into one optimizer step.")
    flags.DEFINE_integer("num_report_steps", 10, "Log to TensorBoard and the progress bar every this many steps.")
    flags.DEFINE_integer("keep_checkpoints", 5, "How many recent checkpoints to keep.")
    flags.DEFINE_integer("shuffle_buffer_size", 1000, "Records in each rank's shuffle buffer.")
    flags.DEFINE_integer("seed", 12345, "Seed of the initial weights, the input order and dropout.")
    flags.DEFINE_bool("deterministic", False, "TensorFlow op determinism: with --seed, a run is reproducible bit for bit.")
    cli.define_tpu_flags()


def _check_flags():
    positive = ("train_batch_size", "eval_batch_size", "num_train_steps", "save_checkpoints_steps", "max_eval_steps",
                "num_accumulation_steps", "num_report_steps", "keep_checkpoints", "shuffle_buffer_size")
    for name in positive:
        if FLAGS[name].value < 1:
            raise InputError(f"--{name} must be at least 1, got {FLAGS[name].value}")
    if FLAGS.num_warmup_steps < 0:
        raise InputError(f"--num_warmup_steps must not be negative, got {FLAGS.num_warmup_steps}")
    if not FLAGS.learning_rate > 0:
        raise InputError(f"--learning_rate must be positive, got {FLAGS.learning_rate}")
    if FLAGS.max_seq_length < 8:
        raise InputError(f"--max_seq_length must be at least 8, got {FLAGS.max_seq_length}")
    if FLAGS.max_predictions_per_seq < 1:
        raise InputError(f"--max_predictions_per_seq must be at least 1, got {FLAGS.max_predictions_per_seq}")
    if not (FLAGS.do_train or FLAGS.do_eval):
        raise InputError("at least one of --do_train or --do_eval must be set")
    if FLAGS.use_horovod and FLAGS.distribution_strategy not in ("none", "horovod"):
        raise InputError(f"--use_horovod contradicts --distribution_strategy={FLAGS.distribution_strategy}")


def _write_eval_results(path, results):
    with fileio.AtomicFile(path) as f:
        for key in sorted(results):
            # str(), not format(): numpy float32 then prints as the reference's results do.
            f.write(f"{key} = {results[key]!s}\n")


def main(argv):
    cli.warn_ignored_tpu_flags()
    _check_flags()
    strategy = "horovod" if FLAGS.use_horovod else FLAGS.distribution_strategy
    replicas = distributed.make_replicas(strategy)
    chief = replicas.rank == 0

    def log(message):
        if chief:
            print(f"bert-pretrain: {message}", file=sys.stderr)

    config = bert_config.load_config(FLAGS.bert_config_file)
    bert_config.check_seq_length(config, FLAGS.max_seq_length)
    files = fileio.expand_inputs(FLAGS.input_file)
    fileio.make_output_dir(FLAGS.output_dir, "--output_dir")
    pretraining.check_records(files, FLAGS.max_seq_length, FLAGS.max_predictions_per_seq, config.vocab_size)
    if FLAGS.deterministic:
        tf.config.experimental.enable_op_determinism()
    tf.random.set_seed(FLAGS.seed)

    compute_dtype = FLAGS.amp_dtype if FLAGS.auto_mixed_precision else "float32"
    model = modeling.BertPretrainer(config, seed=FLAGS.seed)
    task = pretraining.PretrainingTask(model)
    options = training.TrainOptions(
        output_dir=FLAGS.output_dir,
        num_train_steps=FLAGS.num_train_steps,
        num_warmup_steps=FLAGS.num_warmup_steps,
        learning_rate=FLAGS.learning_rate * (replicas.size if FLAGS.scale_lr_by_world_size else 1),
        optimizer_type=FLAGS.optimizer_type,
        micro_batch_size=FLAGS.train_batch_size,
        num_accumulation_steps=FLAGS.num_accumulation_steps,
        save_checkpoints_steps=FLAGS.save_checkpoints_steps,
        keep_checkpoints=FLAGS.keep_checkpoints,
        num_report_steps=FLAGS.num_report_steps,
        seed=FLAGS.seed,
        compute_dtype=compute_dtype,
        use_xla=FLAGS.use_xla,
    )
    start = time.perf_counter()
    step = None
    summary = []
    if FLAGS.do_train:
        description = training.describe(
            options,
            bert_config=config.to_dict(),
            max_seq_length=FLAGS.max_seq_length,
            max_predictions_per_seq=FLAGS.max_predictions_per_seq,
        )
        training.check_run_directory(FLAGS.output_dir, description, chief)
        trainer = training.Trainer(task, options, replicas)
        rank_batch = FLAGS.train_batch_size * FLAGS.num_accumulation_steps
        global_batch = rank_batch * replicas.size
        dataset = pretraining.training_dataset(
            files,
            rank_batch,
            FLAGS.max_seq_length,
            FLAGS.max_predictions_per_seq,
            seed=FLAGS.seed,
            rank=replicas.rank,
            size=replicas.size,
            shuffle_buffer_size=FLAGS.shuffle_buffer_size,
        )
        step, report = training.fit(
            trainer, dataset, options, replicas, init_checkpoint=FLAGS.init_checkpoint,
            global_batch_size=global_batch, log=log,
        )
        export = os.path.join(FLAGS.output_dir, "bert_model.ckpt")
        if chief:
            checkpoints.export_checkpoint(model.variables_by_name, export, config=config, extra={"global_step": tf.constant(step, tf.int64)})
        loss = f", loss {report['loss']:.4f}" if report else ""
        summary.append(f"trained to step {step} ({replicas.name}, global batch {global_batch}{loss}); exported {export}")
    if FLAGS.do_eval and chief:
        if step is None:
            source = tf.train.latest_checkpoint(FLAGS.output_dir) or FLAGS.init_checkpoint
            if not source:
                raise InputError("--do_eval without --do_train needs a checkpoint in --output_dir or --init_checkpoint")
            checkpoints.load_weights(model.variables_by_name, source)
            reader = checkpoints.CheckpointReader(source)
            step = next((int(reader.tensor(n)) for n in ("step", "global_step") if n in reader), 0)
        dataset = pretraining.evaluation_dataset(files, FLAGS.eval_batch_size, FLAGS.max_seq_length, FLAGS.max_predictions_per_seq)
        results = training.evaluate(task, dataset, FLAGS.max_eval_steps, training.COMPUTE_DTYPES[compute_dtype])
        results["global_step"] = step
        path = os.path.join(FLAGS.output_dir, "eval_results.txt")
        _write_eval_results(path, results)
        summary.append(
            f"eval masked_lm_accuracy {results['masked_lm_accuracy']:.4f}, next_sentence_accuracy "
            f"{results['next_sentence_accuracy']:.4f} -> {path}"
        )
    if chief:
        print(f"bert-pretrain: {'; '.join(summary)} ({time.perf_counter() - start:.1f}s)")


def run():
    define_flags()
    cli.run_command(main, required=("bert_config_file", "input_file", "output_dir"))


if __name__ == "__main__":
    run()
