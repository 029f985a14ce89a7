"""bert-classify end to end on the real GLUE files: outputs, best-checkpoint selection, exact resume, refusals."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from bert import classifier, glue, tokenization, training
from tests import numpy_bert
from tests.conftest import (ROOT, assert_clean_failure, learning_rates, run_cli, run_cli_on_terminal, run_with_random_kills,
                            shared_file)
from tests.pretrain_fixtures import SMALL_MODEL
from tests.test_modeling import write_tf1_checkpoint

SEQ = 64


def tensors(prefix):
    reader = tf.train.load_checkpoint(str(prefix))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def snapshot(directory):
    return {p.relative_to(directory): (p.stat().st_mtime_ns, p.stat().st_size) for p in directory.rglob("*") if p.is_file()}


def classify_args(data_dir, config, vocab, output_dir, *extra, task="MRPC"):
    return (
        f"--task_name={task}", f"--data_dir={data_dir}", f"--vocab_file={vocab}", f"--bert_config_file={config}",
        f"--output_dir={output_dir}", f"--max_seq_length={SEQ}", *extra,
    )


def _logits(prefix, task, path, split, vocab):
    """The reference classifier's logits for a file's examples by the NumPy forward pass of the checkpoint at
    `prefix`: the pooled output times output_weights transposed, plus output_bias."""
    weights = tensors(prefix)
    examples, _ = glue.read_examples(task, path, split)
    tokenizer = tokenization.FullTokenizer(str(vocab), do_lower_case=True)
    arrays = classifier.encode_examples(examples, tokenizer, SEQ, task.labels)
    _, pooled = numpy_bert.encoder(weights, SMALL_MODEL["num_hidden_layers"], SMALL_MODEL["num_attention_heads"],
                                   arrays["input_ids"], arrays["input_mask"], arrays["segment_ids"])
    return pooled @ weights["output_weights"].T.astype(np.float64) + weights["output_bias"], arrays["label_ids"]


def test_train_eval_predict_with_best_checkpoint(small_config, uncased_vocab, tmp_path):
    data = shared_file("glue", "MRPC")
    out = tmp_path / "mrpc"
    command = classify_args(
        data, small_config, uncased_vocab, out, "--do_train", "--do_eval", "--do_predict", "--keep_best",
        "--num_train_epochs=0.06", "--save_checkpoints_steps=2", "--learning_rate=1e-3", "--predict_batch_size=16")
    result = run_cli("classify", *command)
    assert result.returncode == 0, result.stderr
    assert "dev: accuracy" in result.stdout

    # 3668 examples / 32 x 0.06 epochs = 6 steps; checkpoints at 2, 4, 6, each scored on dev.
    best = json.loads((out / "best" / "best.json").read_text())
    assert best["metric"] == "eval_accuracy" and best["step"] in (2, 4, 6)
    # Each export is a release: model, config and the vocabulary.
    for directory in (out, out / "best"):
        assert (directory / "vocab.txt").read_bytes() == uncased_vocab.read_bytes()
    results = dict(line.split(" = ") for line in (out / "eval_results.txt").read_text().splitlines())
    assert sorted(results) == ["eval_accuracy", "eval_f1", "eval_loss", "global_step", "loss"]
    assert int(results["global_step"]) == best["step"]

    # The file's figures are those of the best model, recomputed here from its exported weights.
    task = glue.get_task("mrpc")
    best_model = out / "best" / "bert_model.ckpt"
    logits, labels = _logits(best_model, task, data / "dev.tsv", "dev", uncased_vocab)
    predicted = logits.argmax(-1)
    assert float(results["eval_accuracy"]) == pytest.approx(np.mean(predicted == labels), abs=1e-6)
    assert float(results["eval_accuracy"]) == pytest.approx(best["value"], abs=1e-6)
    assert float(results["eval_f1"]) == pytest.approx(glue.compute_metrics(task, labels, predicted)["f1"], abs=1e-6)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    assert float(results["eval_loss"]) == pytest.approx(-log_probs[np.arange(len(labels)), labels].mean(), rel=1e-5)

    rows = [line.split("\t") for line in (out / "test_results.tsv").read_text().splitlines()]
    assert len(rows) == 1725 and all(len(r) == 2 for r in rows)
    probabilities = np.array(rows, dtype=np.float64)
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-6)
    test_logits, _ = _logits(best_model, task, data / "test.tsv", "test", uncased_vocab)
    test_logits = test_logits - test_logits.max(-1, keepdims=True)
    np.testing.assert_allclose(probabilities, np.exp(test_logits) / np.exp(test_logits).sum(-1, keepdims=True), atol=1e-5)

    # The final model is exported in the reference's names, classifier head included.
    exported = tensors(out / "bert_model.ckpt")
    assert exported["output_weights"].shape == (2, SMALL_MODEL["hidden_size"])
    assert int(exported["global_step"]) == 6
    assert "bert/pooler/dense/kernel" in exported

    # Evaluating again without training uses the same best checkpoint and gives the same file.
    before = (out / "eval_results.txt").read_text()
    again = run_cli("classify", *classify_args(data, small_config, uncased_vocab, out, "--do_eval", "--keep_best"))
    assert again.returncode == 0, again.stderr
    assert (out / "eval_results.txt").read_text() == before
    # Evaluated with another vocabulary than the run's, it is warned of; with another model's config, refused, the
    # results left as they were.
    cased_vocab = shared_file("vocab", "cased_vocab.txt")
    # Lower-cased, the cased vocabulary's capitals are never matched: that is warned of too.
    for keep_best, beside, casing in (((), out, ("--do_lower_case=False",)), (("--keep_best",), out / "best", ())):
        cased = run_cli("classify", *classify_args(data, small_config, cased_vocab, out, "--do_eval", *casing, *keep_best))
        assert cased.returncode == 0, cased.stderr
        assert (f"warning: the vocabulary {cased_vocab} is not the one beside --output_dir ({beside / 'vocab.txt'})"
                in cased.stderr)
        assert (f"bert-classify: warning: {cased_vocab} looks cased" in cased.stderr) == (not casing), cased.stderr
    heads = tmp_path / "heads.json"
    heads.write_text(json.dumps({**SMALL_MODEL, "num_attention_heads": 4}))
    written = (out / "eval_results.txt").read_text()
    for keep_best in ((), ("--keep_best",)):
        refused = run_cli("classify", *classify_args(data, heads, uncased_vocab, out, "--do_eval", *keep_best))
        assert_clean_failure(refused, "--bert_config_file: its 'num_attention_heads' is 4")
    assert (out / "eval_results.txt").read_text() == written

    # Killed after its last checkpoint but before scoring it on dev, the run scores it when the command is run
    # again. Emulated by the record of a run that scored steps 2 and 4 only, with a poor best.
    record = out / "best" / "best.json"
    assert json.loads(record.read_text()) == {**best, "evaluated": 6}
    record.write_text(json.dumps({**best, "value": -1.0, "step": 2, "evaluated": 4}))
    rerun = run_cli("classify", *command)
    assert rerun.returncode == 0, rerun.stderr
    assert "step 6: dev eval_accuracy" in rerun.stderr and "step 4: dev" not in rerun.stderr
    rescored = json.loads(record.read_text())
    assert rescored["step"] == 6 and rescored["evaluated"] == 6 and rescored["value"] > 0
    final = tensors(out / "bert_model.ckpt")
    for name, value in tensors(out / "best" / "bert_model.ckpt").items():
        assert np.array_equal(value, final[name]), name
    # Scored once: run again, the finished run scores nothing.
    assert "dev eval_accuracy" not in run_cli("classify", *command).stderr
    # A damaged record is named, with what to do.
    for text, why in (('{"metric": "eval_acc', "Unterminated string"),
                      (json.dumps({**rescored, "step": "6"}), "its 'step' is \"6\""),
                      (json.dumps({**rescored, "value": None}), "its 'value' is null")):
        record.write_text(text)
        damaged = run_cli("classify", *command)
        assert damaged.returncode == 1 and "Traceback" not in damaged.stderr, damaged.stderr
        assert f"error: --keep_best: {record} is damaged ({why}" in damaged.stderr.splitlines()[-1]


def _resume_command(data, config, vocab, out):
    return [sys.executable, "-m", "bert.classify", *classify_args(
        data, config, vocab, out, "--do_train", "--num_train_epochs=0.12", "--train_batch_size=16",
        "--save_checkpoints_steps=3", "--deterministic", "--seed=3", "--keep_checkpoints=2")]


def test_sigkill_then_resume_is_bit_identical(small_config, uncased_vocab, tmp_path):
    data = shared_file("glue", "MRPC")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    reference = tmp_path / "uninterrupted"
    subprocess.run(_resume_command(data, small_config, uncased_vocab, reference), check=True, capture_output=True, env=env, cwd=ROOT)
    assert int(tensors(reference / "bert_model.ckpt")["global_step"]) == 27

    interrupted = tmp_path / "interrupted"
    kills = run_with_random_kills(_resume_command(data, small_config, uncased_vocab, interrupted), interrupted,
                                  attempts=2, seed=1, max_delay=1.0)
    assert kills >= 1
    finish = subprocess.run(_resume_command(data, small_config, uncased_vocab, interrupted), capture_output=True, text=True, env=env, cwd=ROOT)
    assert finish.returncode == 0, finish.stderr
    assert "resuming from" in finish.stderr
    want, got = tensors(reference / "bert_model.ckpt"), tensors(interrupted / "bert_model.ckpt")
    assert sorted(want) == sorted(got)
    for name in want:
        assert np.array_equal(want[name], got[name]), name


def test_indexed_batches_resume_anywhere_and_ranks_share_the_global_batch():
    arrays = {"x": np.arange(50)}
    single = training.IndexedBatches(arrays, 8, seed=5)
    stream = single.from_step(0)
    first = [next(stream)["x"] for _ in range(20)]
    # Each epoch is a permutation: the first 6 full batches hold 48 distinct examples.
    assert len(set(np.concatenate(first[:6]).tolist())) == 48
    assert np.array_equal(next(single.from_step(13))["x"], first[13])
    ranks = [training.IndexedBatches(arrays, 4, seed=5, rank=r, size=2) for r in range(2)]
    for step in (0, 6, 17):
        union = np.concatenate([next(r.from_step(step))["x"] for r in ranks])
        assert np.array_equal(union, first[step])


def test_regression_task_writes_scores(small_config, uncased_vocab, tmp_path):
    mrpc = shared_file("glue", "MRPC", "dev.tsv")
    examples, _ = glue.read_examples(glue.get_task("mrpc"), mrpc, "dev")
    header = ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2"]
    data = tmp_path / "STS-B"
    data.mkdir()
    rng = np.random.default_rng(0)
    for split, chosen in (("train", examples[:200]), ("dev", examples[200:300]), ("test", examples[300:340])):
        with open(data / f"{split}.tsv", "w", encoding="utf-8") as f:
            f.write("\t".join(header + ([] if split == "test" else ["score"])) + "\n")
            for i, e in enumerate(chosen):
                score = [] if split == "test" else [f"{rng.uniform(0, 5):.3f}"]
                f.write("\t".join([str(i), "main", "x", "2012", str(i), "none", "none", e.text_a, e.text_b, *score]) + "\n")
    out = tmp_path / "out"
    result = run_cli("classify", *classify_args(
        data, small_config, uncased_vocab, out, "--do_train", "--do_eval", "--do_predict", "--num_train_epochs=0.5",
        "--warmup_proportion=0.5", "--learning_rate=3e-4", "--num_report_steps=1", "--use_tpu=false", "--tpu_name=grpc://tpu",
        task="STS-B"))
    assert result.returncode == 0, result.stderr
    assert "bert-classify: warning: ignoring TPU flag(s) --use_tpu, --tpu_name" in result.stderr.splitlines()
    # As the reference counts them: int(200 examples / 32 x 0.5 epochs) = 3 steps, int(3 x 0.5) = 1 of them warmup;
    # each point is the rate of the step before it.
    assert learning_rates(out) == pytest.approx({1: 0.0, 2: 3e-4 * (1 - 1 / 3), 3: 3e-4 * (1 - 2 / 3)})
    results = dict(line.split(" = ") for line in (out / "eval_results.txt").read_text().splitlines())
    assert sorted(results) == ["eval_loss", "eval_pearson", "eval_spearman", "global_step", "loss"]
    assert -1 <= float(results["eval_pearson"]) <= 1
    scores = [line.split("\t") for line in (out / "test_results.tsv").read_text().splitlines()]
    assert len(scores) == 40 and all(len(s) == 1 for s in scores)
    assert len({s[0] for s in scores}) > 1

    # This run's model evaluated on a task with another number of labels: refused, not scored with a random head.
    before = snapshot(out)
    other_task = run_cli("classify", *classify_args(shared_file("glue", "MRPC"), small_config, uncased_vocab, out, "--do_eval"))
    hidden = SMALL_MODEL["hidden_size"]
    assert_clean_failure(other_task, f"--output_dir: variable 'output_weights' in {out}/ckpt-", f"has shape [1, {hidden}], "
                         f"the model needs [2, {hidden}] (is it a model of another task or number of labels?)")
    assert snapshot(out) == before
    # Nor from --init_checkpoint, another task's model: the reference refuses a head of another shape too.
    exported = out / "bert_model.ckpt"
    from_init = run_cli("classify", *classify_args(shared_file("glue", "MRPC"), small_config, uncased_vocab,
                                                   tmp_path / "elsewhere", "--do_eval", f"--init_checkpoint={exported}"))
    assert_clean_failure(from_init, f"--init_checkpoint: variable 'output_weights' in {exported} has shape [1, {hidden}], "
                         f"the model needs [2, {hidden}] (is it a model of another task or number of labels?)")
    # From a model with no head (pre-trained), the head starts at random: said so, with where the weights came from.
    reader = tf.train.load_checkpoint(str(exported))
    headless = tmp_path / "headless" / "bert_model.ckpt"
    headless.parent.mkdir()
    write_tf1_checkpoint(headless, {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
                                    if not name.startswith("output_")})
    from_init = run_cli("classify", *classify_args(shared_file("glue", "MRPC"), small_config, uncased_vocab,
                                                   tmp_path / "elsewhere", "--do_eval", f"--init_checkpoint={headless.parent}"))
    assert from_init.returncode == 0, from_init.stderr
    lines = from_init.stderr.splitlines()
    assert any(line.startswith(f"bert-classify: initialised from {headless.parent} ({headless})") for line in lines), lines
    assert (f"bert-classify: warning: --init_checkpoint {headless.parent} holds no output_weights, output_bias: evaluated "
            "as initialised, at random") in lines

    # QQP's short rows are passed over in dev.tsv too, and said so there too, as they change the dev figures.
    qqp = tmp_path / "QQP"
    qqp.mkdir()
    rows = [[str(i), str(2 * i), str(2 * i + 1), e.text_a, e.text_b, e.label] for i, e in enumerate(examples[:30])]
    rows.insert(10, ["99", "198", "199", "A question cut short"])
    (qqp / "dev.tsv").write_text("".join("\t".join(row) + "\n" for row in [["id", "qid1", "qid2", "question1", "question2",
                                                                            "is_duplicate"], *rows]), encoding="utf-8")
    on_qqp = run_cli("classify", *classify_args(qqp, small_config, uncased_vocab, tmp_path / "qqp_out", "--do_eval",
                                                f"--init_checkpoint={headless}", task="QQP"))
    assert on_qqp.returncode == 0, on_qqp.stderr
    assert "bert-classify: dev.tsv: skipped 1 row(s) with missing fields" in on_qqp.stderr.splitlines()


def _write_mnli(path, examples, split):
    """MNLI's layout of `split` (train: 12 columns, dev: 16 with five annotator labels, test: 10, no label), from
    real sentence pairs with labels in turn."""
    labels = ["contradiction", "entailment", "neutral"]
    with open(path, "w", encoding="utf-8") as f:
        extra = {"train": ["label1"], "dev": [f"label{i}" for i in range(1, 6)], "test": []}[split]
        f.write("\t".join(["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
                           "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", *extra,
                           *([] if split == "test" else ["gold_label"])]) + "\n")
        for i, e in enumerate(examples):
            label = labels[i % 3]
            gold = [] if split == "test" else [label] * len(extra) + [label]
            f.write("\t".join([str(i), str(i), f"{i}e", "fiction", "", "", "", "", e.text_a, e.text_b, *gold]) + "\n")


def test_mnli_reads_its_mismatched_dev_and_test_files_where_present(small_config, uncased_vocab, tmp_path):
    examples, _ = glue.read_examples(glue.get_task("mrpc"), shared_file("glue", "MRPC", "dev.tsv"), "dev")
    data = tmp_path / "MNLI"
    data.mkdir()
    for name, chosen in (("train", examples[:96]), ("dev_matched", examples[100:140]), ("test_matched", examples[150:170])):
        _write_mnli(data / f"{name}.tsv", chosen, name.split("_")[0])
    out = tmp_path / "out"
    # Matched files alone, as the reference reads them: the run says which files it goes without.
    matched = run_cli("classify", *classify_args(data, small_config, uncased_vocab, out, "--do_train", "--do_eval",
                                                 "--do_predict", "--num_train_epochs=0.7", "--learning_rate=1e-3",
                                                 task="MNLI"))
    assert matched.returncode == 0, matched.stderr
    lines = matched.stderr.splitlines()
    assert "bert-classify: note: --data_dir has no dev_mismatched.tsv: dev is dev_matched.tsv alone" in lines
    assert "bert-classify: note: --data_dir has no test_mismatched.tsv: test is test_matched.tsv alone" in lines
    assert sorted(p.name for p in out.glob("*_results*")) == ["eval_results.txt", "test_results.tsv"]
    written = (out / "eval_results.txt").read_text()

    # With the mismatched files, each is scored and predicted on its own, by the same model.
    for name, chosen in (("dev_mismatched", examples[200:230]), ("test_mismatched", examples[240:255])):
        _write_mnli(data / f"{name}.tsv", chosen, name.split("_")[0])
    both = run_cli("classify", *classify_args(data, small_config, uncased_vocab, out, "--do_eval", "--do_predict",
                                              task="MNLI"))
    assert both.returncode == 0, both.stderr
    assert "note:" not in both.stderr
    assert (out / "eval_results.txt").read_text() == written
    task = glue.get_task("mnli")
    model = out / "bert_model.ckpt"
    for suffix, rows in (("", 40), ("_mismatched", 30)):
        results = dict(line.split(" = ") for line in (out / f"eval_results{suffix}.txt").read_text().splitlines())
        assert sorted(results) == ["eval_accuracy", "eval_loss", "global_step", "loss"]
        logits, labels = _logits(model, task, data / f"dev{suffix or '_matched'}.tsv", "dev", uncased_vocab)
        assert len(labels) == rows
        assert float(results["eval_accuracy"]) == pytest.approx(np.mean(logits.argmax(-1) == labels), abs=1e-6)
    for suffix, rows in (("", 20), ("_mismatched", 15)):
        probabilities = np.array([line.split("\t") for line in (out / f"test_results{suffix}.tsv").read_text().splitlines()],
                                 dtype=np.float64)
        logits, _ = _logits(model, task, data / f"test{suffix or '_matched'}.tsv", "test", uncased_vocab)
        logits -= logits.max(-1, keepdims=True)
        assert probabilities.shape == (rows, 3)
        np.testing.assert_allclose(probabilities, np.exp(logits) / np.exp(logits).sum(-1, keepdims=True), atol=1e-5)

    # Without it again, the mismatched results of the run before are not taken for this one's: the note says so.
    (data / "dev_mismatched.tsv").unlink()
    alone = run_cli("classify", *classify_args(data, small_config, uncased_vocab, out, "--do_eval", task="MNLI"))
    assert alone.returncode == 0, alone.stderr
    assert ("bert-classify: note: --data_dir has no dev_mismatched.tsv: dev is dev_matched.tsv alone "
            "(eval_results_mismatched.txt of an earlier run is left as it was)") in alone.stderr.splitlines()


def test_a_tsv_run_is_bound_to_its_columns(small_config, uncased_vocab, tmp_path):
    mrpc = shared_file("glue", "MRPC")
    data = tmp_path / "pairs"
    data.mkdir()
    for split, rows in (("train", 65), ("dev", 20)):
        lines = (mrpc / f"{split}.tsv").read_text(encoding="utf-8-sig").splitlines()[:rows]
        (data / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    columns = ("--text_a_column=3", "--label_column=0")
    first = run_cli("classify", *classify_args(data, small_config, uncased_vocab, out, "--do_train", "--num_train_epochs=1",
                                               *columns, task="tsv"))
    assert first.returncode == 0, first.stderr
    assert len(list(out.glob("train-features-*.npz"))) == 1
    before = snapshot(out)
    # The second sentence added: other inputs, so neither this run to resume nor its cached features.
    paired = run_cli("classify", *classify_args(data, small_config, uncased_vocab, out, "--do_train", "--num_train_epochs=1",
                                                *columns, "--text_b_column=4", task="tsv"))
    assert_clean_failure(paired, f"--output_dir: {out} holds a run with a different train_data (by columns ([3, null, 0, true], now "
                                 "[3, 4, 0, true]))")
    # What differs is named: here the vocabulary and its casing.
    cased = run_cli("classify", *classify_args(data, small_config, shared_file("vocab", "cased_vocab.txt"), out, "--do_train",
                                               "--num_train_epochs=1", "--do_lower_case=False", *columns, task="tsv"))
    assert_clean_failure(cased, "a different train_data (by the vocabulary's contents, do_lower_case (true, now false))")
    assert snapshot(out) == before
    # A run recorded before its fingerprint's parts were says what the fingerprint is made of.
    record = json.loads((out / "run.json").read_text())
    del record["train_data_parts"]
    (out / "run.json").write_text(json.dumps(record))
    paired = run_cli("classify", *classify_args(data, small_config, uncased_vocab, out, "--do_train", "--num_train_epochs=1",
                                                *columns, "--text_b_column=4", task="tsv"))
    assert_clean_failure(paired, f"--output_dir: {out} holds a run with a different train_data (a hash of the training "
                                 "file, the vocabulary, --do_lower_case")


def test_sentencepiece_model_tokenizes_in_place_of_a_vocab_file(sentencepiece_model, tmp_path):
    config = tmp_path / "bert_config.json"
    config.write_text(json.dumps({**SMALL_MODEL, "vocab_size": 4000}))
    out = tmp_path / "out"
    args = [arg for arg in classify_args(shared_file("glue", "MRPC"), config, "unused", out, "--do_train", "--do_predict",
                                         "--num_train_epochs=0.02") if not arg.startswith("--vocab_file")]
    result = run_cli("classify", *args, f"--spm_model_file={sentencepiece_model}")
    assert result.returncode == 0, result.stderr
    assert len((out / "test_results.tsv").read_text().splitlines()) == 1725


def test_bad_inputs_fail_cleanly_and_leave_the_output_dir(small_config, uncased_vocab, tmp_path):
    mrpc = shared_file("glue", "MRPC")
    data = tmp_path / "MRPC"
    shutil.copytree(mrpc, data)
    out = tmp_path / "out"
    ok = run_cli("classify", *classify_args(data, small_config, uncased_vocab, out, "--do_train", "--num_train_epochs=0.02"))
    assert ok.returncode == 0, ok.stderr
    before = snapshot(out)

    lines = (data / "train.tsv").read_text(encoding="utf-8-sig").splitlines()
    lines[5] = "2\t" + lines[5].split("\t", 1)[1]
    bad = tmp_path / "bad"
    shutil.copytree(data, bad)
    (bad / "train.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    no_test = tmp_path / "no_test"
    shutil.copytree(data, no_test)
    (no_test / "test.tsv").unlink()
    short_test = tmp_path / "short_test"
    shutil.copytree(data, short_test)
    test_lines = (data / "test.tsv").read_text(encoding="utf-8-sig").splitlines()
    test_lines[3] = "\t".join(test_lines[3].split("\t")[:3])
    (short_test / "test.tsv").write_text("\n".join(test_lines) + "\n", encoding="utf-8")
    small_vocab_config = tmp_path / "small_vocab.json"
    small_vocab_config.write_text(json.dumps({**SMALL_MODEL, "vocab_size": 1000}))
    one_label = tmp_path / "one_label"
    shutil.copytree(data, one_label)
    train_lines = (data / "train.tsv").read_text(encoding="utf-8-sig").splitlines()
    (one_label / "train.tsv").write_text("\n".join([train_lines[0], *("1\t" + line.split("\t", 1)[1] for line in train_lines[1:])])
                                        + "\n", encoding="utf-8")
    tsv_columns = ("--text_a_column=3", "--text_b_column=4", "--label_column=0")
    cases = [
        (classify_args(data, small_config, uncased_vocab, tmp_path / "new", "--do_train", "--tsv_labels=a,b"),
         ["--tsv_labels: only --task_name=tsv reads it; --task_name=MRPC has its own columns and labels"]),
        (classify_args(data, small_config, uncased_vocab, tmp_path / "new", "--do_train", *tsv_columns, "--tsv_labels=1",
                       task="tsv"), ["--tsv_labels: one label, '1'; a classifier needs two or more"]),
        (classify_args(one_label, small_config, uncased_vocab, tmp_path / "new", "--do_train", *tsv_columns, task="tsv"),
         [f"--tsv_labels: one label, '1' (all {one_label / 'train.tsv'} holds)", "--tsv_regression"]),
        (classify_args(data, small_config, uncased_vocab, tmp_path / "new", "--do_train", *tsv_columns, "--tsv_regression",
                       "--tsv_labels=0,1", task="tsv"), ["--tsv_labels: a regression (--tsv_regression) predicts a number"]),
        (classify_args(bad, small_config, uncased_vocab, tmp_path / "new", "--do_train"), ["train.tsv:6", "label '2'"]),
        (classify_args(data, small_config, uncased_vocab, out, "--do_train", task="SuperGLUE"), ["--task_name", "SuperGLUE"]),
        (classify_args(data, small_config, uncased_vocab, tmp_path / "new", "--do_train", "--tsv_labels=0,1,0", task="tsv"),
         ["--tsv_labels", "'0' is given twice"]),
        # The test file is read before training: a missing or malformed one stops the run before its first step.
        (classify_args(no_test, small_config, uncased_vocab, tmp_path / "new", "--do_train", "--do_predict"),
         [str(no_test / "test.tsv"), "not found"]),
        (classify_args(short_test, small_config, uncased_vocab, tmp_path / "new", "--do_train", "--do_predict"),
         [f"{short_test / 'test.tsv'}:4", "3 column(s)"]),
        (classify_args(data, small_vocab_config, uncased_vocab, out, "--do_train"), [str(uncased_vocab), "vocab_size"]),
        (classify_args(data, small_config, uncased_vocab, out), ["--do_train, --do_eval or --do_predict"]),
        (classify_args(tmp_path / "absent", small_config, uncased_vocab, out, "--do_eval"), ["--data_dir"]),
        (classify_args(data, small_config, uncased_vocab, out, "--do_train", "--num_train_epochs=0.02", "--max_seq_length=32"), ["--output_dir", "max_seq_length"]),
        (classify_args(data, small_config, uncased_vocab, out, "--do_predict", "--learning_rate=-1"), ["--learning_rate"]),
        (classify_args(data, small_config, uncased_vocab, out, "--do_train", "--learning_rate=inf"), ["--learning_rate", "finite"]),
        (classify_args(data, small_config, uncased_vocab, out, "--do_train", "--num_train_epochs=inf"),
         ["--num_train_epochs", "finite"]),
        (classify_args(data, small_config, uncased_vocab, out, "--do_train", "--train_batch_size=1000000000"),
         ["--train_batch_size=1000000000", "for their activations alone", "more than this machine's memory"]),
        (classify_args(data, small_config, uncased_vocab, out, "--do_train", f"--init_checkpoint={tmp_path}/cased_L-12_H-768_A-12/bert_model.ckpt"),
         ["--do_lower_case=True", "cased_L-12_H-768_A-12 is a cased model", "--do_lower_case=False"]),
    ]
    for args, fragments in cases:
        assert_clean_failure(run_cli("classify", *args), *fragments)
    assert snapshot(out) == before
    assert not (tmp_path / "new").exists()  # made for the run, left empty by its refusal: removed

    # The cached training features, damaged, are only a cache: made again.
    cache = next(out.glob("train-features-*.npz"))
    cache.write_bytes(cache.read_bytes()[:1000])
    again = run_cli("classify", *classify_args(data, small_config, uncased_vocab, out, "--do_train", "--num_train_epochs=0.02"))
    assert again.returncode == 0, again.stderr
    with np.load(cache) as rebuilt:
        assert len(rebuilt["input_ids"]) == 3668


def test_pretrained_minilm_fine_tunes_to_a_sensible_dev_score(minilm_checkpoint, tmp_path):
    """A real pretrained model (MiniLM-L6-H384) fine-tuned on 3,200 SST-2 sentences classifies its dev set.

    100 steps take about three minutes here; the full MRPC figures are in the README.
    """
    data = tmp_path / "SST-2"
    data.mkdir()
    train = shared_file("glue", "SST-2", "train.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    (data / "train.tsv").write_text("".join(train[:3201]), encoding="utf-8")
    shutil.copy(shared_file("glue", "SST-2", "dev.tsv"), data / "dev.tsv")
    out = tmp_path / "out"
    checkpoint = minilm_checkpoint
    result = run_cli(
        "classify", "--task_name=SST-2", f"--data_dir={data}", f"--vocab_file={checkpoint / 'vocab.txt'}",
        f"--bert_config_file={checkpoint / 'bert_config.json'}", f"--init_checkpoint={checkpoint / 'bert_model.ckpt'}",
        f"--output_dir={out}", "--do_train", "--do_eval", "--max_seq_length=64", "--num_train_epochs=1",
        "--learning_rate=1e-4", "--eval_batch_size=64",
    )
    assert result.returncode == 0, result.stderr
    assert "newly initialised: output_weights, output_bias (not in the checkpoint)" in result.stderr
    results = dict(line.split(" = ") for line in (out / "eval_results.txt").read_text().splitlines())
    # The majority class is 51% of SST-2 dev; this run reaches about 79% on an AMD EPYC and 74% on an Intel Xeon with
    # AMX, whose oneDNN kernels round otherwise and so take the 100 steps elsewhere.
    assert float(results["eval_accuracy"]) >= 0.7, results


def test_a_checkpoint_of_another_model_is_refused_before_the_training_set_is_encoded(small_config, uncased_vocab, tmp_path):
    from bert.config import BertConfig
    from tests.test_modeling import random_weights

    other = BertConfig.from_dict({**SMALL_MODEL, "max_position_embeddings": 2 * SMALL_MODEL["max_position_embeddings"]})
    (tmp_path / "other").mkdir()
    checkpoint = write_tf1_checkpoint(tmp_path / "other" / "bert_model.ckpt", random_weights(other))
    out = tmp_path / "out"
    result = run_cli("classify", *classify_args(shared_file("glue", "MRPC"), small_config, uncased_vocab, out, "--do_train",
                                                f"--init_checkpoint={checkpoint}"))
    assert_clean_failure(result, "--init_checkpoint: variable 'bert/embeddings/position_embeddings'",
                         f"(the config's 'max_position_embeddings' is {SMALL_MODEL['max_position_embeddings']}, the "
                         f"checkpoint's model had {2 * SMALL_MODEL['max_position_embeddings']}")
    # Nothing encoded, cached or recorded: the run directory it made is gone again.
    assert not out.exists()


def test_a_missing_or_mismatched_checkpoint_is_refused_before_the_dev_set_is_encoded(small_config, uncased_vocab, tmp_path):
    from bert.config import BertConfig
    from tests.test_modeling import random_weights

    other = BertConfig.from_dict({**SMALL_MODEL, "max_position_embeddings": 2 * SMALL_MODEL["max_position_embeddings"]})
    (tmp_path / "other").mkdir()
    checkpoint = write_tf1_checkpoint(tmp_path / "other" / "bert_model.ckpt", random_weights(other))
    mismatched = "--init_checkpoint: variable 'bert/embeddings/position_embeddings'"
    cases = [
        (("--do_eval",), "needs a checkpoint in --output_dir or --init_checkpoint"),
        (("--do_eval", f"--init_checkpoint={checkpoint}"), mismatched),
        (("--do_train", "--do_eval", f"--init_checkpoint={checkpoint}"), mismatched),
        (("--do_train", "--keep_best", f"--init_checkpoint={checkpoint}"), mismatched),
    ]
    for number, (extra, fragment) in enumerate(cases):
        args = classify_args(shared_file("glue", "MRPC"), small_config, uncased_vocab, tmp_path / f"out{number}", *extra)
        status, written = run_cli_on_terminal("classify", *args)
        assert status != 0 and fragment in written and "Traceback" not in written, written
        # No progress bar of encoding: the dev set, like the training set, is encoded once the checkpoint is known good.
        assert "encode" not in written, written
