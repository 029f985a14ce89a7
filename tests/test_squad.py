"""bert-squad end to end on SQuAD-format files written for the project (tests/test_squad_data.py)."""

import json

import numpy as np
import pytest
import tensorflow as tf

from bert import checkpoints, config as bert_config, modeling, squad, squad_data, tokenization
from tests.conftest import assert_clean_failure, run_cli, run_cli_on_terminal
from tests.pretrain_fixtures import SMALL_MODEL
from tests.test_classify import snapshot
from tests.test_modeling import random_weights, write_tf1_checkpoint
from tests.test_squad_data import GOLD, OBSERVATORY, OBSERVATORY_QUESTIONS, squad_dataset, squad_files, write_json  # noqa: F401 (fixture)

WINDOW = ("--max_seq_length=96", "--doc_stride=32", "--max_query_length=24")


@pytest.fixture(scope="module")
def squad_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("config") / "bert_config.json"
    path.write_text(json.dumps({**SMALL_MODEL, "max_position_embeddings": 128}))
    return path


def squad_args(config, vocab, out, *extra):
    return (f"--vocab_file={vocab}", f"--bert_config_file={config}", f"--output_dir={out}", *WINDOW, *extra)


def _recomputed_predictions(out, data_file, vocab, version_2):
    """predictions.json recomputed here from the exported weights: the CLI's wiring, checked."""
    config = bert_config.load_config(out / "bert_config.json")
    model = squad.BertSquad(config)
    checkpoints.load_weights(model.variables_by_name, str(out / "bert_model.ckpt"))
    tokenizer = tokenization.FullTokenizer(str(vocab), do_lower_case=True)
    examples, _ = squad_data.read_squad_examples(data_file, False, version_2)
    features = squad_data.convert_examples_to_features(examples, tokenizer, 96, 32, 24, is_training=False)
    arrays = squad.feature_arrays(features, training_positions=False)
    starts, ends = model(arrays, modeling.Context())
    results = [squad_data.RawResult(f.unique_id, s.tolist(), e.tolist()) for f, s, e in zip(features, starts.numpy(), ends.numpy())]
    return squad_data.postprocess_predictions(examples, features, results, 20, 30, True, version_2, 0.0)


def test_v2_train_predict_eval(squad_config, uncased_vocab, squad_files, tmp_path):
    out = tmp_path / "v2"
    result = run_cli("squad", *squad_args(
        squad_config, uncased_vocab, out, f"--train_file={squad_files['v2']}", f"--predict_file={squad_files['v2']}",
        "--do_train", "--do_predict", "--do_eval", "--version_2_with_negative", "--train_batch_size=4",
        "--num_train_epochs=2", "--save_checkpoints_steps=3"))
    assert result.returncode == 0, result.stderr
    # 11 answerable + 2 unanswerable questions train (the misplaced answer is skipped): int(13 / 4 x 2) = 6 steps.
    assert "skipped 1 question" in result.stderr
    assert int(tf.train.load_checkpoint(str(out / "bert_model.ckpt")).get_tensor("global_step")) == 6

    predictions = json.loads((out / "predictions.json").read_text())
    nbest = json.loads((out / "nbest_predictions.json").read_text())
    null_odds = json.loads((out / "null_odds.json").read_text())
    assert set(predictions) == set(nbest) == set(null_odds) == set(GOLD) | {"obs-misplaced", "obs-closed", "canal-founder"}
    want_predictions, want_nbest, want_null_odds = _recomputed_predictions(out, squad_files["v2"], uncased_vocab, True)
    assert (out / "vocab.txt").read_bytes() == uncased_vocab.read_bytes()  # a release: model, config and vocabulary
    assert predictions == want_predictions
    for qid in predictions:
        assert [e["text"] for e in nbest[qid]] == [e["text"] for e in want_nbest[qid]]
        assert null_odds[qid] == pytest.approx(want_null_odds[qid], abs=1e-4)

    results = dict(line.split(" = ") for line in (out / "eval_results.txt").read_text().splitlines())
    scores = squad_data.evaluate_v2(squad_dataset(version_2=True), predictions, na_probs=null_odds)
    for key in ("exact", "f1", "HasAns_exact", "NoAns_f1", "best_f1", "best_f1_thresh"):
        assert float(results[key]) == pytest.approx(scores[key], abs=1e-6), key
    assert int(results["global_step"]) == 6

    # Predicted again as SQuAD v1.1: the v2 run's null odds stay, and are said to be not of these predictions.
    earlier = (out / "null_odds.json").read_bytes()
    again = run_cli("squad", *squad_args(squad_config, uncased_vocab, out, f"--predict_file={squad_files['v2']}",
                                         "--do_predict"))
    assert again.returncode == 0, again.stderr
    assert (f"bert-squad: note: {out / 'null_odds.json'} of an earlier --version_2_with_negative run is left as it was: "
            "it is not of these predictions") in again.stderr.splitlines()
    assert (out / "null_odds.json").read_bytes() == earlier
    assert json.loads((out / "predictions.json").read_text()) == _recomputed_predictions(
        out, squad_files["v2"], uncased_vocab, False)[0]


def test_pretrained_model_learns_the_answers(minilm_checkpoint, tmp_path):
    """MiniLM fine-tuned on five questions answers them: the answer positions reach the loss intact."""
    qas = [{"id": qid, "question": q, "answers": [{"text": a, "answer_start": OBSERVATORY.index(a)}]}
           for qid, q, a in OBSERVATORY_QUESTIONS]
    data = write_json(tmp_path / "observatory.json", {"version": "1.1", "data": [
        {"title": "Kestrel_Observatory", "paragraphs": [{"context": OBSERVATORY, "qas": qas}]}]})
    out = tmp_path / "v1"
    checkpoint = minilm_checkpoint
    result = run_cli("squad", *squad_args(
        checkpoint / "bert_config.json", checkpoint / "vocab.txt", out, f"--init_checkpoint={checkpoint / 'bert_model.ckpt'}",
        f"--train_file={data}", f"--predict_file={data}", "--do_train", "--do_predict", "--do_eval",
        "--train_batch_size=5", "--num_train_epochs=40", "--learning_rate=1e-4", "--max_seq_length=64"))
    assert result.returncode == 0, result.stderr
    results = dict(line.split(" = ") for line in (out / "eval_results.txt").read_text().splitlines())
    assert float(results["exact_match"]) >= 80.0, results
    predictions = json.loads((out / "predictions.json").read_text())
    assert sum(predictions[qid] == answer for qid, _, answer in OBSERVATORY_QUESTIONS) >= 4, predictions


def test_bad_inputs_fail_cleanly(squad_config, uncased_vocab, squad_files, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    before = snapshot(out)
    not_json = tmp_path / "broken.json"
    not_json.write_text('{"data": [')
    cases = [
        (squad_args(squad_config, uncased_vocab, out, "--do_train"), ["--train_file is required"]),
        (squad_args(squad_config, uncased_vocab, out, "--do_predict", f"--predict_file={not_json}"), [str(not_json), "not JSON"]),
        (squad_args(squad_config, uncased_vocab, out, "--do_train", f"--train_file={tmp_path / 'absent.json'}"), ["--train_file", "absent.json"]),
        (squad_args(squad_config, uncased_vocab, out, "--do_predict", f"--predict_file={squad_files['v1']}", "--max_seq_length=8"),
         ["question obs-", "--max_seq_length=8", "--max_query_length"]),
        (squad_args(squad_config, uncased_vocab, out, "--do_predict", f"--predict_file={tmp_path}"), [f"--predict_file: {tmp_path} is a directory"]),
        (squad_args(squad_config, uncased_vocab, out, "--do_predict", f"--predict_file={squad_files['v1']}", "--n_best_size=0"), ["--n_best_size"]),
        (squad_args(squad_config, uncased_vocab, out, "--do_predict", f"--predict_file={squad_files['v1']}",
                    f"--spm_model_file={tmp_path / 'spm.model'}"), ["--spm_model_file", "WordPiece"]),
        # Given in place of --vocab_file, it is refused for what it is, not as a missing --vocab_file.
        ([f"--bert_config_file={squad_config}", f"--output_dir={out}", "--do_predict", f"--predict_file={squad_files['v1']}",
          f"--spm_model_file={tmp_path / 'spm.model'}"], ["--spm_model_file", "WordPiece"]),
        ([f"--bert_config_file={squad_config}", f"--output_dir={out}", "--do_predict", f"--predict_file={squad_files['v1']}"],
         ["--vocab_file is required"]),
        (squad_args(squad_config, uncased_vocab, out, "--do_predict", f"--predict_file={squad_files['v1']}", "--do_lower_case=False",
                    f"--init_checkpoint={tmp_path}/uncased_L-12_H-768_A-12/bert_model.ckpt"), ["--do_lower_case=False", "uncased model"]),
        # Scoring SQuAD v2.0 answers as v1.1 is found before training, not after.
        (squad_args(squad_config, uncased_vocab, out, "--do_train", f"--train_file={squad_files['v1']}", "--do_predict",
                    "--do_eval", f"--predict_file={squad_files['v2']}"),
         [f"--predict_file {squad_files['v2']}: data[0].paragraphs[", "has no answers (SQuAD v2.0 data is scored as v2.0, "
          "--version_2_with_negative)"]),
    ]
    for args, fragments in cases:
        assert_clean_failure(run_cli("squad", *args), *fragments)
    assert snapshot(out) == before


def test_a_missing_or_mismatched_checkpoint_is_refused_before_the_predict_file_is_converted(squad_config, uncased_vocab,
                                                                                          squad_files, tmp_path):
    other = bert_config.BertConfig.from_dict({**SMALL_MODEL, "max_position_embeddings": 256})
    (tmp_path / "other").mkdir()
    checkpoint = write_tf1_checkpoint(tmp_path / "other" / "bert_model.ckpt", random_weights(other))
    predict = ("--do_predict", f"--predict_file={squad_files['v1']}")
    mismatched = "--init_checkpoint: variable 'bert/embeddings/position_embeddings'"
    cases = [
        ((), "needs a checkpoint in --output_dir or --init_checkpoint"),
        ((f"--init_checkpoint={checkpoint}",), mismatched),
        ((f"--init_checkpoint={checkpoint}", "--do_train", f"--train_file={squad_files['v1']}"), mismatched),
    ]
    for number, (extra, fragment) in enumerate(cases):
        args = squad_args(squad_config, uncased_vocab, tmp_path / f"out{number}", *predict, *extra)
        status, written = run_cli_on_terminal("squad", *args)
        assert status != 0 and fragment in written and "Traceback" not in written, written
        # No progress bar of windows: no file was converted.
        assert "windows" not in written, written


def test_head_names_are_the_references(squad_config):
    model = squad.BertSquad(bert_config.load_config(squad_config))
    assert list(model.weights) == ["cls/squad/output_weights", "cls/squad/output_bias"]
    assert model.weights["cls/squad/output_weights"].shape == (2, 32)
    starts, ends = model({k: np.ones((2, 8), np.int32) for k in ("input_ids", "input_mask", "segment_ids")}, modeling.Context())
    assert starts.shape == ends.shape == (2, 8)
