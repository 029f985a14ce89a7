"""bert-squad: SQuAD v1.1 / v2.0 question answering, as the reference's run_squad, with the official scores.

    bert-squad --vocab_file=model/vocab.txt --bert_config_file=model/bert_config.json \\
        --init_checkpoint=model/bert_model.ckpt --do_train --train_file=train-v1.1.json \\
        --do_predict --predict_file=dev-v1.1.json --do_eval --train_batch_size=32 --learning_rate=3e-5 \\
        --num_train_epochs=2 --max_seq_length=384 --doc_stride=128 --output_dir=squad_output

The head is the reference's: `cls/squad/output_weights` [2, H] and `cls/squad/output_bias` [2] give
every position a start and an end logit; the loss is the mean of the start and end cross-entropies
over all positions. Contexts longer than the window are read in windows `--doc_stride` apart
(bert/squad_data.py has the data side: windows, max-context tokens, answer spans, n-best
post-processing, the official evaluation). --do_predict writes `predictions.json`,
`nbest_predictions.json` and, with --version_2_with_negative, `null_odds.json`; --do_eval writes
them too and scores them against --predict_file with the official EM/F1 and writes `eval_results.txt`.
Training runs for int(training questions / global batch x --num_train_epochs) steps, as the
reference counts them, through the same loop, optimizers and checkpoints as every stage.
"""

import json
import os
import time

import numpy as np
from absl import flags

from bert import cli, fileio, modeling, progress, squad_data, training
from bert.errors import InputError
from bert.tf import tf

FLAGS = flags.FLAGS
HEAD_NAMES = ("cls/squad/output_weights", "cls/squad/output_bias")
OPTIONAL_INIT = (*HEAD_NAMES, *modeling.POOLER_NAMES)


class BertSquad(modeling.NamedWeights):
    """The encoder and a start/end logit for every position."""

    def __init__(self, config, seed=0):
        super().__init__(seed, config.initializer_range)
        self.bert = modeling.BertModel(config, seed)
        self.output_weights = self.normal("cls/squad/output_weights", [2, config.hidden_size])
        self.output_bias = self.zeros("cls/squad/output_bias", [2])

    @property
    def variables_by_name(self):
        return {**self.bert.weights, **self.weights}

    def __call__(self, batch, ctx):
        """(start logits, end logits), each [B, S] float32."""
        layers, _ = self.bert(batch["input_ids"], batch["input_mask"], batch["segment_ids"], ctx)
        logits = tf.einsum("bsh,oh->bso", tf.cast(layers[-1], tf.float32), self.output_weights) + self.output_bias
        return logits[:, :, 0], logits[:, :, 1]


class SquadTask:
    """The training loop's view: the mean over windows of (start loss + end loss) / 2."""

    loss_terms = {"span_loss": "windows"}
    metrics = {}
    count_epsilon = {}
    untrained_names = modeling.POOLER_NAMES

    def __init__(self, model):
        self.model = model
        self.variables_by_name = model.variables_by_name

    def counts(self, batch):
        return {"windows": tf.cast(tf.shape(batch["input_ids"])[0], tf.float32)}

    def sums(self, batch, ctx):
        start_logits, end_logits = self.model(batch, ctx)
        start = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=batch["start_positions"], logits=start_logits)
        end = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=batch["end_positions"], logits=end_logits)
        return {"span_loss": tf.reduce_sum((start + end) / 2.0)}


def define_flags():
    cli.define_model_flags("The pre-trained checkpoint to fine-tune (a released bert_model.ckpt, ours, or bert-convert's).")
    cli.define_tokenizer_flags(spm_model_help="Not for bert-squad, which maps answers back to the text through "
                                              "WordPiece pieces: give --vocab_file.")
    flags.DEFINE_string("output_dir", None, "Where checkpoints, predictions and the fine-tuned model go.")
    flags.DEFINE_string("train_file", None, "SQuAD JSON to train on, e.g. train-v1.1.json.")
    flags.DEFINE_string("predict_file", None, "SQuAD JSON to predict (and, with --do_eval, to score), e.g. dev-v1.1.json.")
    flags.DEFINE_integer("max_seq_length", 384, "Tokens per window: [CLS] question [SEP] context part [SEP].")
    flags.DEFINE_integer("doc_stride", 128, "Sub-tokens between the starts of successive context windows.")
    flags.DEFINE_integer("max_query_length", 64, "Question sub-tokens kept; the rest is cut.")
    flags.DEFINE_bool("do_train", False, "Fine-tune on --train_file.")
    flags.DEFINE_bool("do_predict", False, "Predict --predict_file: predictions.json, nbest_predictions.json (null_odds.json).")
    flags.DEFINE_bool("do_eval", False, "Predict --predict_file (the --do_predict files) and score it with the official EM/F1 -> eval_results.txt.")
    flags.DEFINE_integer("n_best_size", 20, "Candidate answers kept per question in nbest_predictions.json.")
    flags.DEFINE_integer("max_answer_length", 30, "Longest answer, in sub-tokens.")
    flags.DEFINE_bool("version_2_with_negative", False, "SQuAD v2.0: questions may have no answer.")
    flags.DEFINE_float("null_score_diff_threshold", 0.0, "v2.0: answer \"\" when null score - best span score exceeds this.")
    flags.DEFINE_bool("verbose_logging", False, "Accepted for compatibility with the reference and ignored.")
    cli.define_training_flags()
    cli.define_fine_tuning_flags()
    cli.define_tpu_flags()


def _check_flags():
    cli.check_fine_tuning_flags()
    if FLAGS.spm_model_file:
        raise InputError("--spm_model_file: bert-squad maps answers back to the text through WordPiece pieces; "
                         "give the model's --vocab_file")
    if not FLAGS.vocab_file:
        raise InputError("--vocab_file is required")
    for name in ("n_best_size", "max_answer_length", "max_query_length"):
        if FLAGS[name].value < 1:
            raise InputError(f"--{name} must be at least 1, got {FLAGS[name].value}")
    if FLAGS.doc_stride < 1:
        raise InputError(f"--doc_stride must be at least 1, got {FLAGS.doc_stride}")
    if not (FLAGS.do_train or FLAGS.do_predict or FLAGS.do_eval):
        raise InputError("at least one of --do_train, --do_predict or --do_eval must be set")
    if FLAGS.do_train and not FLAGS.train_file:
        raise InputError("--train_file is required with --do_train")
    if (FLAGS.do_predict or FLAGS.do_eval) and not FLAGS.predict_file:
        raise InputError("--predict_file is required with --do_predict or --do_eval")
    # One file each, named as it is (a comma or a * is part of its name), as the reference opens it.
    for flag in ("train_file", "predict_file"):
        path = FLAGS[flag].value
        if path and not os.path.isfile(path):
            raise InputError(f"--{flag}: {path} " + ("is a directory" if os.path.isdir(path) else "not found"))


def feature_arrays(features, training_positions):
    arrays = {key: np.array([getattr(f, key) for f in features], np.int32) for key in ("input_ids", "input_mask", "segment_ids")}
    if training_positions:
        arrays["start_positions"] = np.array([f.start_position for f in features], np.int32)
        arrays["end_positions"] = np.array([f.end_position for f in features], np.int32)
    return arrays


def _window_settings():
    return dict(max_seq_length=FLAGS.max_seq_length, doc_stride=FLAGS.doc_stride, max_query_length=FLAGS.max_query_length)


def predict(model, examples, features, compute_dtype):
    """The three prediction dicts (predictions, nbest, null_odds) of the model for the questions."""
    arrays = feature_arrays(features, training_positions=False)
    spec = tf.TensorSpec([None, FLAGS.max_seq_length], tf.int32)

    @tf.function(input_signature=[spec, spec, spec], autograph=False)
    def logits(input_ids, input_mask, segment_ids):
        batch = {"input_ids": input_ids, "input_mask": input_mask, "segment_ids": segment_ids}
        return model(batch, modeling.Context(compute_dtype))

    results = []
    size = FLAGS.predict_batch_size
    for begin in progress.bar(range(0, len(features), size), desc="predict", unit="batch"):
        window = slice(begin, begin + size)
        starts, ends = logits(arrays["input_ids"][window], arrays["input_mask"][window], arrays["segment_ids"][window])
        for feature, start, end in zip(features[window], starts.numpy(), ends.numpy()):
            results.append(squad_data.RawResult(feature.unique_id, start.tolist(), end.tolist()))
    predictions = squad_data.postprocess_predictions(
        examples, features, results, FLAGS.n_best_size, FLAGS.max_answer_length, FLAGS.do_lower_case,
        FLAGS.version_2_with_negative, FLAGS.null_score_diff_threshold,
    )
    return predictions


def _write_json(path, value):
    with fileio.AtomicFile(path) as f:
        json.dump(value, f, indent=4)
        f.write("\n")


def _score(dataset, predictions, null_odds):
    """The scores of `predictions` against --predict_file's answers, by the official script of its SQuAD version."""
    source = f"--predict_file {FLAGS.predict_file}"
    if FLAGS.version_2_with_negative:
        return squad_data.evaluate_v2(dataset, predictions, na_probs=null_odds, source=source)
    return squad_data.evaluate_v1(dataset, predictions, source=source)


def main(argv):
    cli.warn_ignored_tpu_flags()
    _check_flags()
    replicas = cli.start_training_run()
    chief = replicas.rank == 0
    log = cli.chief_log(replicas)
    config, tokenizer = cli.load_config_and_tokenizer(log)
    if FLAGS.do_train:
        cli.check_batches_fit(config, training=["train_batch_size"])
    fileio.make_output_dir(FLAGS.output_dir, "--output_dir")
    model = BertSquad(config, seed=FLAGS.seed)
    if FLAGS.do_predict or FLAGS.do_eval:
        # Read first: a bad --predict_file should not wait for the end of training to be found.
        predict_examples, _ = squad_data.read_squad_examples(FLAGS.predict_file, False, FLAGS.version_2_with_negative)
        squad_data.check_questions_fit(predict_examples, tokenizer, FLAGS.max_seq_length, FLAGS.max_query_length)
    if FLAGS.do_eval:
        # Its answers too: scoring no predictions checks every question can be scored.
        eval_dataset = squad_data.read_squad_json(FLAGS.predict_file)
        _score(eval_dataset, {}, {})
    start = time.perf_counter()
    summary = []
    step = None
    if FLAGS.do_train:
        examples, skipped = squad_data.read_squad_examples(FLAGS.train_file, True, FLAGS.version_2_with_negative)
        if not examples:
            raise InputError(f"--train_file: {FLAGS.train_file} has no usable questions")
        if skipped:
            log(f"{FLAGS.train_file}: skipped {skipped} question(s) whose answer text is not at its answer_start")
        fingerprint, fingerprint_parts = fileio.fingerprint(
            {"training file": FLAGS.train_file, "vocabulary": FLAGS.vocab_file},
            {"do_lower_case": FLAGS.do_lower_case, "version_2_with_negative": FLAGS.version_2_with_negative, **_window_settings()},
        )
        options, rank_batch, global_batch = cli.fine_tuning_options(FLAGS.output_dir, len(examples), replicas)
        description = training.describe(options, replicas, bert_config=config.to_dict(), task="squad", train_data=fingerprint,
                                        train_data_parts=fingerprint_parts, **_window_settings())
        training.check_run_directory(FLAGS.output_dir, description, replicas, FLAGS.init_checkpoint, model.variables_by_name,
                                     OPTIONAL_INIT)
        arrays = fileio.cached_arrays(
            os.path.join(FLAGS.output_dir, f"train-features-{fingerprint}.npz"),
            lambda: feature_arrays(
                squad_data.convert_examples_to_features(examples, tokenizer, is_training=True, show_progress=chief,
                                                        **_window_settings()),
                training_positions=True,
            ),
            save=chief,  # the other ranks read the chief's once it is there, and write nothing
        )
        log(f"{len(examples)} training questions in {len(arrays['input_ids'])} windows, {options.num_train_steps} steps of {global_batch}")
        trainer = training.Trainer(SquadTask(model), options, replicas)
        batches = training.IndexedBatches(arrays, rank_batch, FLAGS.seed, replicas.rank, replicas.size)
        step, report = training.fit(
            trainer, batches, options, replicas, init_checkpoint=FLAGS.init_checkpoint, global_batch_size=global_batch,
            log=cli.rank_log(), optional_init=OPTIONAL_INIT,
        )
        if chief:
            export = training.export_model(model.variables_by_name, FLAGS.output_dir, config, step, cli.tokenizer_file())
            summary.append(training.training_summary(step, replicas, global_batch, report, export))
    if chief and (FLAGS.do_predict or FLAGS.do_eval):
        if step is None:
            step = training.restore_for_eval(model.variables_by_name, FLAGS.output_dir, FLAGS.init_checkpoint,
                                             optional=OPTIONAL_INIT, log=log, config=config,
                                             tokenizer_file=cli.tokenizer_file())
        # Converted once the model is known good, and by the chief alone.
        predict_features = squad_data.convert_examples_to_features(
            predict_examples, tokenizer, is_training=False, **_window_settings())
        predictions, nbest, null_odds = predict(
            model, predict_examples, predict_features, training.COMPUTE_DTYPES[cli.compute_dtype()])
        _write_json(os.path.join(FLAGS.output_dir, "predictions.json"), predictions)
        _write_json(os.path.join(FLAGS.output_dir, "nbest_predictions.json"), nbest)
        null_odds_path = os.path.join(FLAGS.output_dir, "null_odds.json")
        if FLAGS.version_2_with_negative:
            _write_json(null_odds_path, null_odds)
        elif os.path.exists(null_odds_path):
            log(f"note: {null_odds_path} of an earlier --version_2_with_negative run is left as it was: it is not of "
                "these predictions")
        summary.append(f"{len(predict_examples)} questions ({len(predict_features)} windows) predicted -> {FLAGS.output_dir}/predictions.json")
        if FLAGS.do_eval:
            scores = _score(eval_dataset, predictions, null_odds)
            scores["global_step"] = step
            path = os.path.join(FLAGS.output_dir, "eval_results.txt")
            cli.write_results(path, scores)
            f1 = scores["f1"]
            exact = scores.get("exact_match", scores.get("exact"))
            summary.append(f"exact match {exact:.2f}, F1 {f1:.2f} -> {path}")
    if chief:
        print(f"bert-squad: {'; '.join(summary)} ({time.perf_counter() - start:.1f}s)")


def run():
    define_flags()
    cli.run_command(main, required=("bert_config_file", "output_dir"))


if __name__ == "__main__":
    run()
