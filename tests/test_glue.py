"""GLUE readers on the real files and on each task's layout, and the task metrics against their definitions."""

import math

import numpy as np
import pytest

from bert import glue
from bert.errors import InputError
from tests.conftest import shared_file


def _raw_rows(path):
    """An independent reading: the lines of the file split on tabs, BOM and header handled by hand."""
    text = path.read_bytes().decode("utf-8")
    text = text.removeprefix("\ufeff")
    return [line.split("\t") for line in text.split("\n") if line]


@pytest.mark.parametrize("split, count, positives", [("train", 3668, 2474), ("dev", 408, 279)])
def test_mrpc_reader_sees_every_row_with_its_label(split, count, positives):
    path = shared_file("glue", "MRPC", f"{split}.tsv")
    examples, skipped = glue.read_examples(glue.get_task("MRPC"), path, split)
    rows = _raw_rows(path)[1:]
    assert skipped == 0 and len(examples) == len(rows) == count
    assert sum(e.label == "1" for e in examples) == positives
    for example, row in zip(examples, rows):
        assert (example.label, example.text_a, example.text_b) == (row[0], row[3], row[4])
    # Sentences with an unbalanced quote are read whole, not merged with the next row.
    quoted = [e for e in examples if e.text_a.count('"') % 2 or e.text_b.count('"') % 2]
    assert quoted and all("\t" not in e.text_a + e.text_b for e in quoted)


def test_mrpc_test_set_has_no_labels():
    path = shared_file("glue", "MRPC", "test.tsv")
    examples, _ = glue.read_examples(glue.get_task("mrpc"), path, "test")
    assert len(examples) == 1725 and all(e.label is None for e in examples)
    assert examples[0].text_a.startswith("PCCW's chief operating officer")


@pytest.mark.parametrize("split, count", [("train", 8551), ("dev", 1043)])
def test_cola_reader(split, count):
    path = shared_file("glue", "CoLA", f"{split}.tsv")
    examples, _ = glue.read_examples(glue.get_task("CoLA"), path, split)
    rows = _raw_rows(path)
    assert len(examples) == len(rows) == count
    assert [(e.label, e.text_a) for e in examples] == [(r[1], r[3]) for r in rows]
    assert {e.label for e in examples} == {"0", "1"}


@pytest.mark.parametrize("split, count", [("train", 67349), ("dev", 872), ("test", 1821)])
def test_sst2_reader(split, count):
    path = shared_file("glue", "SST-2", f"{split}.tsv")
    examples, _ = glue.read_examples(glue.get_task("SST-2"), path, split)
    rows = _raw_rows(path)[1:]
    assert len(examples) == len(rows) == count
    if split == "test":
        assert [e.text_a for e in examples] == [r[1] for r in rows]
    else:
        assert [(e.label, e.text_a) for e in examples] == [(r[1], r[0]) for r in rows]
        assert all(e.text_b is None for e in examples)


def _write(path, rows, bom=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(("\ufeff" if bom else "") + "".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_each_task_reads_its_glue_layout(tmp_path):
    mnli_header = ["index", "promptID", "pairID", "genre", "s1_bp", "s2_bp", "s1_p", "s2_p", "sentence1", "sentence2", "label1", "gold_label"]
    cases = {
        "mnli": (mnli_header, ["0", "1", "2", "fiction", "", "", "", "", "A man sleeps.", "Nobody sleeps.", "contradiction", "contradiction"], ("A man sleeps.", "Nobody sleeps.", "contradiction")),
        "qnli": (["index", "question", "sentence", "label"], ["0", "Who?", "Him.", "entailment"], ("Who?", "Him.", "entailment")),
        "qqp": (["id", "qid1", "qid2", "question1", "question2", "is_duplicate"], ["1", "2", "3", "How?", "Why?", "0"], ("How?", "Why?", "0")),
        "rte": (["index", "sentence1", "sentence2", "label"], ["0", "It rains.", "It is wet.", "not_entailment"], ("It rains.", "It is wet.", "not_entailment")),
        "wnli": (["index", "sentence1", "sentence2", "label"], ["0", "The cup fell.", "It fell.", "1"], ("The cup fell.", "It fell.", "1")),
        "sts-b": (["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2", "score"], ["0", "main", "f", "2012", "1", "none", "none", "A plane takes off.", "An air plane is taking off.", "5.000"], ("A plane takes off.", "An air plane is taking off.", "5.000")),
    }
    for name, (header, row, want) in cases.items():
        task = glue.get_task(name)
        path = _write(tmp_path / name / task.splits["dev"][0], [header, row], bom=True)
        (example,), _ = glue.read_examples(task, path, "dev")
        assert (example.text_a, example.text_b, example.label) == want, name
    assert glue.get_task("sts-b").is_regression and glue.get_task("sts-b").num_labels == 1
    assert glue.get_task("MNLI").splits["dev"] == ["dev_matched.tsv", "dev_mismatched.tsv"]


def test_xnli_reads_multinli_train_and_filters_dev_by_language(tmp_path):
    task = glue.get_task("xnli")
    train = _write(tmp_path / "multinli" / "multinli.train.de.tsv", [["premise", "hypo", "label"], ["Ein Hund.", "Ein Tier.", "entailment"], ["Ja.", "Nein.", "contradictory"]])
    assert glue.split_paths(task, tmp_path, "train", "de") == ([str(train)], [])
    examples, _ = glue.read_examples(task, train, "train", "de")
    assert [(e.text_a, e.label) for e in examples] == [("Ein Hund.", "entailment"), ("Ja.", "contradiction")]
    header = ["language", "gold_label", "a", "b", "c", "d", "sentence1", "sentence2"]
    dev = _write(tmp_path / "xnli.dev.tsv", [header, ["de", "neutral", "", "", "", "", "Er geht.", "Er rennt."], ["fr", "neutral", "", "", "", "", "Il va.", "Il court."]])
    examples, _ = glue.read_examples(task, dev, "dev", "de")
    assert [(e.text_a, e.text_b, e.label) for e in examples] == [("Er geht.", "Er rennt.", "neutral")]
    with pytest.raises(InputError, match=r"xnli.dev.tsv: no rows for --xnli_language 'xx' \(the file has de, fr\)"):
        glue.read_examples(task, dev, "dev", "xx")


def test_a_regression_label_must_be_a_finite_number(tmp_path):
    header = ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2", "score"]
    row = ["0", "main", "f", "2012", "1", "none", "none", "A plane takes off.", "A plane is taking off."]
    for label in ("nan", "inf", "-Infinity", "high"):
        path = _write(tmp_path / "dev.tsv", [header, row + ["4.2"], row + [label]])
        with pytest.raises(InputError, match=rf"dev.tsv:3: label '{label}' is not a finite number"):
            glue.read_examples(glue.get_task("sts-b"), path, "dev")


def test_qqp_skips_short_rows_other_tasks_name_the_line(tmp_path):
    header = ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"]
    path = _write(tmp_path / "qqp.tsv", [header, ["1", "2", "3", "How?", "Why?", "1"], ["4", "5", "6", "Broken"]])
    examples, skipped = glue.read_examples(glue.get_task("qqp"), path, "train")
    assert len(examples) == 1 and skipped == 1
    # A test file's rows are all predicted, one line each of test_results.tsv: a short one is named.
    path = _write(tmp_path / "test.tsv", [["id", "question1", "question2"], ["0", "How?", "Why?"], ["1", "Broken"]])
    with pytest.raises(InputError, match=r"test.tsv:3: 2 column\(s\), task qqp needs at least 3"):
        glue.read_examples(glue.get_task("qqp"), path, "test")
    path = _write(tmp_path / "rte.tsv", [["index", "sentence1", "sentence2", "label"], ["0", "a", "b", "entailment"], ["1", "a"]])
    with pytest.raises(InputError, match=r"rte.tsv:3: 2 column\(s\)"):
        glue.read_examples(glue.get_task("rte"), path, "train")
    # A label counted from the row's end (-1) needs a field of its own past the texts: not the second text's.
    path = _write(tmp_path / "rte_dev.tsv", [["index", "sentence1", "sentence2", "label"], ["0", "a", "b", "entailment"],
                                             ["1", "a", "not_entailment"]])
    with pytest.raises(InputError, match=r"rte_dev.tsv:3: 3 column\(s\), task rte needs at least 4"):
        glue.read_examples(glue.get_task("rte"), path, "dev")
    mnli_row = ["0", "1", "2", "fiction", "", "", "", "", "A man sleeps.", "Nobody sleeps."]
    path = _write(tmp_path / "dev_matched.tsv", [[f"c{i}" for i in range(16)], mnli_row + ["neutral"] * 5 + ["contradiction"],
                                                 mnli_row[:9] + ["neutral"]])
    with pytest.raises(InputError, match=r"dev_matched.tsv:3: 10 column\(s\), task mnli needs at least 11"):
        glue.read_examples(glue.get_task("mnli"), path, "dev")
    # Rows narrower than the header, as in GLUE's SNLI (one annotator's label, not five), read as the reference reads them.
    path = _write(tmp_path / "dev_matched.tsv", [[f"c{i}" for i in range(16)], mnli_row + ["neutral", "entailment"]])
    assert [e.label for e in glue.read_examples(glue.get_task("mnli"), path, "dev")[0]] == ["entailment"]
    path = _write(tmp_path / "bad_label.tsv", [["index", "sentence1", "sentence2", "label"], ["0", "a", "b", "maybe"]])
    with pytest.raises(InputError, match=r"bad_label.tsv:2: label 'maybe' is not one of"):
        glue.read_examples(glue.get_task("rte"), path, "train")
    with pytest.raises(InputError, match="--task_name: unknown task 'glue'"):
        glue.get_task("glue")


def test_tsv_task_by_column_names_and_discovered_labels(tmp_path):
    path = _write(tmp_path / "train.tsv", [["id", "review", "stars"], ["1", "great", "pos"], ["2", "awful", "neg"], ["3", "fine", "pos"]])
    columns = glue.Columns("review", None, "stars", True)
    labels = glue.discover_labels(columns, path)
    assert labels == ["neg", "pos"]
    task = glue.tsv_task(("review", None, "stars", True), labels)
    examples, _ = glue.read_examples(task, path, "train")
    assert [(e.text_a, e.label) for e in examples] == [("great", "pos"), ("awful", "neg"), ("fine", "pos")]
    with pytest.raises(InputError, match="no text_a column named 'text'"):
        glue.read_examples(glue.tsv_task(("text", None, "stars", True), labels), path, "train")
    path = _write(tmp_path / "train.tsv", [["id", "review", "stars"], ["1", "great", "pos"], ["2", "meh", " "]])
    with pytest.raises(InputError, match=r"train.tsv:3: the label column \(stars\) is empty"):
        glue.discover_labels(columns, path)


def test_a_blank_line_among_test_rows_is_refused_and_elsewhere_passed_over(tmp_path):
    task = glue.get_task("sst-2")
    rows = [["index", "sentence"], ["0", "good"], [], ["1", "bad"]]
    path = _write(tmp_path / "test.tsv", rows)
    # Each test row has its line of test_results.tsv, in order: a blank line skipped would shift the rest.
    with pytest.raises(InputError, match=r"test.tsv:3: a blank line among the rows"):
        glue.read_examples(task, path, "test")
    examples, _ = glue.read_examples(task, _write(tmp_path / "test.tsv", rows[:2] + [[], []]), "test")
    assert [e.text_a for e in examples] == ["good"]
    path = _write(tmp_path / "dev.tsv", [["sentence", "label"], ["good", "1"], [], ["bad", "0"]])
    assert [e.text_a for e in glue.read_examples(task, path, "dev")[0]] == ["good", "bad"]


def test_metrics_match_their_definitions():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    predictions = np.where(rng.random(200) < 0.8, labels, 1 - labels)
    tp = np.sum((predictions == 1) & (labels == 1))
    fp = np.sum((predictions == 1) & (labels == 0))
    fn = np.sum((predictions == 0) & (labels == 1))
    tn = np.sum((predictions == 0) & (labels == 0))
    got = glue.compute_metrics(glue.get_task("mrpc"), labels, predictions)
    assert got["accuracy"] == pytest.approx((tp + tn) / 200)
    assert got["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    mcc = glue.compute_metrics(glue.get_task("cola"), labels, predictions)["mcc"]
    assert mcc == pytest.approx(np.corrcoef(labels, predictions)[0, 1])
    assert glue.compute_metrics(glue.get_task("cola"), labels, np.ones(200, int))["mcc"] == 0.0

    scores = np.round(rng.random(100) * 5, 1)  # rounded: many ties
    predicted = scores + rng.normal(0, 1, 100)
    got = glue.compute_metrics(glue.get_task("sts-b"), scores, predicted)
    assert got["pearson"] == pytest.approx(np.corrcoef(scores, predicted)[0, 1])

    def average_ranks(x):
        return np.array([np.sum(x < v) + (np.sum(x == v) + 1) / 2 for v in x])

    assert got["spearman"] == pytest.approx(np.corrcoef(average_ranks(scores), average_ranks(predicted))[0, 1])
    assert not math.isnan(glue.compute_metrics(glue.get_task("sts-b"), scores, np.zeros(100))["pearson"])
    # A diverged model's scores are not ranked into a correlation.
    diverged = predicted.copy()
    diverged[::2] = np.nan
    assert all(math.isnan(v) for v in glue.compute_metrics(glue.get_task("sts-b"), scores, diverged).values())


def test_rows_are_read_as_the_reference_reads_them_and_bad_bytes_are_placed(tmp_path):
    # GFile, through which the reference reads, ends lines at "\n" alone and drops every "\r".
    path = tmp_path / "train.tsv"
    path.write_bytes("\ufeffa\tb\r\nfoo\rbar\tbaz\n\nlast\tx".encode("utf-8"))
    assert glue.read_rows(path) == [(1, ["a", "b"]), (2, ["foobar", "baz"]), (3, []), (4, ["last", "x"])]
    # Past the decoder's first chunk, the offset is still the file's.
    lines = [f"{i}\tsome text".encode() for i in range(5000)]
    lines[4000] += b"\xff"
    data = b"\n".join(lines) + b"\n"
    path.write_bytes(data)
    bad = data.index(bytes([0xFF]))
    with pytest.raises(InputError, match=f"^{path}: not UTF-8 \\(byte {bad}, line 4001\\)$"):
        glue.read_rows(path)
