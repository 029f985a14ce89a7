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
import time

from absl import flags

from bert import checkpoints, cli, config as bert_config, fileio, modeling, pretraining, training
from bert.errors import InputError

FLAGS = flags.FLAGS


def define_flags():
    cli.define_model_flags("A checkpoint to start from when --output_dir holds none (e.g. a released bert_model.ckpt).")
    flags.DEFINE_string("input_file", None, "Pre-training TFRecords (bert-create-data or the reference's): comma list or globs.")
    flags.DEFINE_string("output_dir", None, "Where checkpoints, TensorBoard logs, the exported model and eval_results.txt go.")
    flags.DEFINE_integer("max_seq_length", 128, "Sequence length of the records.")
    flags.DEFINE_integer("max_predictions_per_seq", 20, "Masked positions per record.")
    flags.DEFINE_bool("do_train", False, "Train.")
    flags.DEFINE_bool("do_eval", False, "Evaluate on --input_file and write eval_results.txt.")
    flags.DEFINE_integer("num_train_steps", 100000, "Optimizer steps to train for.")
    flags.DEFINE_integer("num_warmup_steps", 10000, "Steps of linear warmup.")
    flags.DEFINE_integer("max_eval_steps", 100, "Evaluation batches: exactly this many, as the reference reads, "
                         "starting the records again from the first if they run out.")
    flags.DEFINE_integer("shuffle_buffer_size", 1000, "Records in each rank's shuffle buffer.")
    cli.define_training_flags()
    cli.define_tpu_flags()


def _check_flags():
    cli.check_training_flags()
    # Each only where it is used: the reference evaluates with --num_train_steps=0.
    used = (["num_train_steps", "shuffle_buffer_size"] if FLAGS.do_train else []) + (["max_eval_steps"] if FLAGS.do_eval else [])
    for name in used:
        if FLAGS[name].value < 1:
            raise InputError(f"--{name} must be at least 1, got {FLAGS[name].value}")
    if FLAGS.num_warmup_steps < 0:
        raise InputError(f"--num_warmup_steps must not be negative, got {FLAGS.num_warmup_steps}")
    if FLAGS.max_seq_length < 8:
        raise InputError(f"--max_seq_length must be at least 8, got {FLAGS.max_seq_length}")
    if FLAGS.max_predictions_per_seq < 1:
        raise InputError(f"--max_predictions_per_seq must be at least 1, got {FLAGS.max_predictions_per_seq}")
    if not (FLAGS.do_train or FLAGS.do_eval):
        raise InputError("at least one of --do_train or --do_eval must be set")


def main(argv):
    cli.warn_ignored_tpu_flags()
    _check_flags()
    replicas = cli.start_training_run()
    chief = replicas.rank == 0
    log = cli.chief_log(replicas)

    config = bert_config.load_config(FLAGS.bert_config_file)
    bert_config.check_seq_length(config, FLAGS.max_seq_length)
    # Evaluation is the chief's alone.
    cli.check_batches_fit(config, last_layer_queries=FLAGS.max_predictions_per_seq + 1,
                          head_values=FLAGS.max_predictions_per_seq * config.vocab_size,
                          training=["train_batch_size"] if FLAGS.do_train else [],
                          inference=["eval_batch_size"] if FLAGS.do_eval and chief else [])
    files = fileio.expand_inputs(FLAGS.input_file)
    fileio.warn_if_named_twice(files, log)
    fileio.make_output_dir(FLAGS.output_dir, "--output_dir")
    files = pretraining.check_records(files, FLAGS.max_seq_length, FLAGS.max_predictions_per_seq, config, log=log)
    record_check = (files, FLAGS.max_seq_length, FLAGS.max_predictions_per_seq, config, cli.rank_log())
    mixed = pretraining.vocabulary_mix_warning(files)
    if mixed:
        log(mixed)
    vocabulary = pretraining.records_vocabulary(files)
    checkpoints.warn_if_vocabulary_differs(FLAGS.init_checkpoint, vocabulary, log)
    # A run that exported its model, trained on further or evaluated with records of another vocabulary.
    checkpoints.warn_if_vocabulary_differs(os.path.join(FLAGS.output_dir, training.EXPORT_NAME), vocabulary, log,
                                           flag="--output_dir")

    model = modeling.BertPretrainer(config, seed=FLAGS.seed)
    task = pretraining.PretrainingTask(model)
    options = cli.training_options(FLAGS.output_dir, FLAGS.num_train_steps, FLAGS.num_warmup_steps)
    start = time.perf_counter()
    step = None
    summary = []
    if FLAGS.do_train:
        description = training.describe(
            options,
            replicas,
            bert_config=config.to_dict(),
            max_seq_length=FLAGS.max_seq_length,
            max_predictions_per_seq=FLAGS.max_predictions_per_seq,
        )
        training.check_run_directory(FLAGS.output_dir, description, replicas, FLAGS.init_checkpoint, task.variables_by_name)
        trainer = training.Trainer(task, options, replicas)
        rank_batch = FLAGS.train_batch_size * FLAGS.num_accumulation_steps
        global_batch = rank_batch * replicas.size
        uneven = pretraining.uneven_files_warning(files, replicas.size)
        if uneven:
            log(uneven)

        def dataset(start_step):
            return pretraining.training_dataset(
                files,
                rank_batch,
                FLAGS.max_seq_length,
                FLAGS.max_predictions_per_seq,
                seed=FLAGS.seed + start_step,
                rank=replicas.rank,
                size=replicas.size,
                shuffle_buffer_size=FLAGS.shuffle_buffer_size,
                config=config,
            )

        with pretraining.damage_located(*record_check, read=pretraining.rank_files(files, replicas.rank, replicas.size)):
            step, report = training.fit(
                trainer, dataset, options, replicas, init_checkpoint=FLAGS.init_checkpoint,
                global_batch_size=global_batch, log=cli.rank_log(), input_files=files,
                ranks_share_records=pretraining.ranks_share_records(files, replicas.size),
            )
        if chief:
            vocabulary = pretraining.records_vocabulary(files)
            if vocabulary is None:
                earlier = os.path.exists(os.path.join(FLAGS.output_dir, checkpoints.VOCAB_NAME))
                advice = "the vocab.txt there is an earlier export's" if earlier else "copy there the vocab.txt they were made with"
                log(f"note: the records' manifests name no one vocabulary file as it was when they were made, so none is "
                    f"exported beside the model; {advice}")
            export = training.export_model(model.variables_by_name, FLAGS.output_dir, config, step, vocabulary)
            summary.append(training.training_summary(step, replicas, global_batch, report, export))
    if FLAGS.do_eval and chief:
        if step is None:
            step = training.restore_for_eval(model.variables_by_name, FLAGS.output_dir, FLAGS.init_checkpoint,
                                             evaluation_flags="--do_eval", log=log, config=config)
        dataset = pretraining.evaluation_dataset(files, FLAGS.eval_batch_size, FLAGS.max_seq_length,
                                                 FLAGS.max_predictions_per_seq, config)
        with pretraining.damage_located(*record_check):
            results = training.evaluate(task, dataset, FLAGS.max_eval_steps, training.COMPUTE_DTYPES[options.compute_dtype])
        results["global_step"] = step
        path = os.path.join(FLAGS.output_dir, "eval_results.txt")
        cli.write_results(path, results)
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
