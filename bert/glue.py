"""Classification tasks in the GLUE directory layout: their readers, labels and metrics (SPEC §8).

A task directory holds `train.tsv`, `dev.tsv` and `test.tsv` as GLUE distributes them (MNLI has
`dev_matched`/`dev_mismatched` and `test_matched`/`test_mismatched`; XNLI reads MultiNLI's
translated training file and `xnli.dev.tsv`/`xnli.test.tsv`). Rows are split on tabs with no CSV
quoting, because sentences hold unbalanced `"`; a leading byte-order mark is dropped. Each task says
which columns hold its texts and label, whether the file has a header, and which labels exist; a row
whose label is not one of them, or that lacks a column, is reported with its file and line.

`--task_name=tsv` reads any such directory: columns by index or header name, labels as found in
train.tsv (dev.tsv without one; sorted) unless given.
"""

import csv
import math
import os
import sys
from dataclasses import dataclass, field

import numpy as np

from bert import fileio
from bert.errors import InputError

csv.field_size_limit(sys.maxsize)


@dataclass
class InputExample:
    guid: str
    text_a: str
    text_b: str | None
    label: str | None


@dataclass
class Columns:
    """Where one kind of file (train/dev or test) keeps its fields; None: the file has no such field."""

    text_a: int | str
    text_b: int | str | None = None
    label: int | str | None = None
    header: bool = True


@dataclass
class Task:
    name: str
    labels: list | None  # None: a regression task with one output
    labeled: Columns
    unlabeled: Columns
    splits: dict = field(default_factory=lambda: {"train": ["train.tsv"], "dev": ["dev.tsv"], "test": ["test.tsv"]})
    metrics: tuple = ("accuracy",)
    # QQP's training file has a few rows with missing fields; the usual practice is to skip them.
    skip_short_rows: bool = False
    label_map: dict = field(default_factory=dict)
    # The dev metric --keep_best selects on.
    primary_metric: str = "accuracy"

    @property
    def is_regression(self):
        return self.labels is None

    @property
    def num_labels(self):
        return 1 if self.is_regression else len(self.labels)


_BINARY = ["0", "1"]
_NLI = ["contradiction", "entailment", "neutral"]
_ENTAILMENT = ["entailment", "not_entailment"]

TASKS = {
    "cola": Task("cola", _BINARY, Columns(3, label=1, header=False), Columns(1), metrics=("accuracy", "mcc"), primary_metric="mcc"),
    "mnli": Task(
        "mnli", _NLI, Columns(8, 9, label=-1), Columns(8, 9),
        splits={"train": ["train.tsv"], "dev": ["dev_matched.tsv", "dev_mismatched.tsv"],
                "test": ["test_matched.tsv", "test_mismatched.tsv"]},
    ),
    "mrpc": Task("mrpc", _BINARY, Columns(3, 4, label=0), Columns(3, 4), metrics=("accuracy", "f1")),
    "qnli": Task("qnli", _ENTAILMENT, Columns(1, 2, label=-1), Columns(1, 2)),
    "qqp": Task("qqp", _BINARY, Columns(3, 4, label=5), Columns(1, 2), metrics=("accuracy", "f1"), skip_short_rows=True),
    "rte": Task("rte", _ENTAILMENT, Columns(1, 2, label=-1), Columns(1, 2)),
    "sst-2": Task("sst-2", _BINARY, Columns(0, label=1), Columns(1)),
    "sts-b": Task("sts-b", None, Columns(7, 8, label=9), Columns(7, 8), metrics=("pearson", "spearman"), primary_metric="pearson"),
    "wnli": Task("wnli", _BINARY, Columns(1, 2, label=-1), Columns(1, 2)),
    "xnli": Task(
        "xnli", _NLI, Columns(6, 7, label=1), Columns(6, 7),
        splits={"train": ["multinli/multinli.train.{language}.tsv"], "dev": ["xnli.dev.tsv"], "test": ["xnli.test.tsv"]},
        label_map={"contradictory": "contradiction"},
    ),
}
ALIASES = {"sst2": "sst-2", "stsb": "sts-b", "sts": "sts-b", "mnli-m": "mnli"}
TASK_NAMES = sorted(TASKS)
# XNLI's training rows are MultiNLI's, translated: premise, hypothesis, label.
_XNLI_TRAIN = Columns(0, 1, label=2)


def get_task(name):
    """The GLUE task called `name` (case-insensitive, GLUE spellings and common aliases)."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in TASKS:
        raise InputError(f"--task_name: unknown task '{name}' (one of {', '.join(TASK_NAMES)}, or tsv)")
    return TASKS[key]


def tsv_task(columns, labels):
    """The generic task: `columns` (text_a, text_b, label, header), `labels` a list or None for regression."""
    text_a, text_b, label, header = columns
    regression = labels is None
    return Task(
        "tsv", labels, Columns(text_a, text_b, label, header), Columns(text_a, text_b, None, header),
        metrics=("pearson", "spearman") if regression else ("accuracy",),
        primary_metric="pearson" if regression else "accuracy",
    )


def read_rows(path):
    """The tab-separated rows of `path`: no quoting, byte-order mark dropped, (line number, fields).

    Lines end at "\n" alone and every "\r" is dropped, wherever it is, as the reference's GFile drops it.
    """
    try:
        lines = fileio.read_lines_as_gfile(path)
    except OSError as e:
        raise InputError(f"{path}: {e.strerror or e}") from None
    if lines:
        lines[0] = lines[0].removeprefix("\ufeff")
    return list(enumerate(csv.reader(lines, delimiter="\t", quotechar=None), 1))


def _column_index(column, header, path, what):
    if column is None or isinstance(column, int):
        return column
    if header is None:
        raise InputError(f"{path}: {what} column '{column}' is a name, but the file has no header (use its index)")
    if column not in header:
        raise InputError(f"{path}: no {what} column named '{column}' in its header ({', '.join(header)})")
    return header.index(column)


def split_paths(task, data_dir, split, language="zh"):
    """(The files of a split, those of its optional files that are absent). A split's first file is required
    (InputError naming it); MNLI's mismatched dev and test files are optional, as the reference reads the
    matched ones alone."""
    paths = [os.path.join(data_dir, name.format(language=language)) for name in task.splits[split]]
    present = [path for path in paths if os.path.isfile(path)]
    if paths[0] not in present:
        raise InputError(f"--data_dir: {paths[0]} not found (task {task.name} needs it for {split})")
    return present, [path for path in paths if path not in present]


def read_examples(task, path, split, language="zh"):
    """The examples of one file and how many short rows were skipped (QQP)."""
    labeled = split != "test"
    columns = task.labeled if labeled else task.unlabeled
    if task.name == "xnli" and split == "train":
        columns = _XNLI_TRAIN
    rows = read_rows(path)
    header = rows[0][1] if columns.header and rows else None
    body = rows[1:] if columns.header else rows
    indexes = {
        what: _column_index(getattr(columns, what), header, path, what) for what in ("text_a", "text_b", "label")
    }
    needed = _columns_needed(indexes.values())
    xnli_dev = task.name == "xnli" and split != "train"
    examples, skipped = [], 0
    blank = None
    for number, row in body:
        if not row:
            blank = blank or number
            continue
        if blank and split == "test":
            raise InputError(f"{path}:{blank}: a blank line among the rows; test_results.tsv has a line for each row, "
                             f"in order, so a blank line would shift the predictions after it: remove it")
        if len(row) < needed:
            # Not in a test file: test_results.tsv has a line for each of its rows, in order.
            if task.skip_short_rows and labeled:
                skipped += 1
                continue
            raise InputError(f"{path}:{number}: {len(row)} column(s), task {task.name} needs at least {needed}")
        if xnli_dev and row[0] != language:
            continue
        label = None
        if labeled and indexes["label"] is not None:
            label = row[indexes["label"]].strip()
            label = task.label_map.get(label, label)
            if task.is_regression:
                try:
                    finite = math.isfinite(float(label))
                except ValueError:
                    finite = False
                if not finite:
                    raise InputError(f"{path}:{number}: label '{label}' is not a finite number (task {task.name} is a "
                                     f"regression)")
            elif label not in task.labels:
                raise InputError(f"{path}:{number}: label '{label}' is not one of the task's labels ({', '.join(task.labels)})")
        text_b = row[indexes["text_b"]] if indexes["text_b"] is not None else None
        examples.append(InputExample(f"{split}-{number}", row[indexes["text_a"]], text_b, label))
    if not examples:
        languages = sorted({row[0] for _, row in body if row}) if xnli_dev else []
        if languages:
            raise InputError(f"{path}: no rows for --xnli_language '{language}' (the file has {', '.join(languages)})")
        raise InputError(f"{path}: no examples")
    return examples, skipped


def _columns_needed(indexes):
    """How many fields a row needs for the column `indexes` (None: unused). A negative index counts from the
    row's end, as the reference's line[-1] does for rows of varying width (GLUE's SNLI has such rows), so it
    needs fields of its own past the last one counted from the start."""
    used = [i for i in indexes if i is not None]
    from_start = max((i + 1 for i in used if i >= 0), default=0)
    return from_start + max((-i for i in used if i < 0), default=0)


def discover_labels(columns, path):
    """A tsv task's labels: those in the label column of `path`, sorted; an empty label cell is refused."""
    rows = read_rows(path)
    header = rows[0][1] if columns.header and rows else None
    index = _column_index(columns.label, header, path, "label")
    body = rows[1:] if columns.header else rows
    labels, needed = set(), _columns_needed([index])
    for number, row in body:
        if len(row) >= needed:
            label = row[index].strip()
            if not label:
                raise InputError(f"{path}:{number}: the label column ({columns.label}) is empty")
            labels.add(label)
    labels = sorted(labels)
    if not labels:
        raise InputError(f"{path}: no labels found in column {columns.label}")
    return labels


def _f1(labels, predictions):
    true_positive = np.sum((predictions == 1) & (labels == 1))
    predicted, actual = np.sum(predictions == 1), np.sum(labels == 1)
    if true_positive == 0:
        return 0.0
    precision, recall = true_positive / predicted, true_positive / actual
    return 2 * precision * recall / (precision + recall)


def _matthews(labels, predictions):
    tp = float(np.sum((predictions == 1) & (labels == 1)))
    tn = float(np.sum((predictions == 0) & (labels == 0)))
    fp = float(np.sum((predictions == 1) & (labels == 0)))
    fn = float(np.sum((predictions == 0) & (labels == 1)))
    denominator = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return (tp * tn - fp * fn) / denominator if denominator else 0.0


def _ranks(values):
    """Ranks from 1, ties sharing their mean rank (as Spearman's coefficient needs)."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    sorted_values = values[order]
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def _pearson(x, y):
    x, y = x - x.mean(), y - y.mean()
    denominator = math.sqrt(float(np.sum(x * x)) * float(np.sum(y * y)))
    return float(np.sum(x * y)) / denominator if denominator else 0.0


def compute_metrics(task, labels, outputs):
    """The task's metrics: `labels` are class ids (or scores), `outputs` the predicted ids (or scores)."""
    labels, outputs = np.asarray(labels), np.asarray(outputs)
    if not np.all(np.isfinite(outputs)):
        # A diverged model's scores: ranks and correlations of NaN would give it a score.
        return {name: math.nan for name in task.metrics}
    values = {
        "accuracy": lambda: float(np.mean(labels == outputs)),
        "f1": lambda: float(_f1(labels, outputs)),
        "mcc": lambda: _matthews(labels, outputs),
        "pearson": lambda: _pearson(labels.astype(np.float64), outputs.astype(np.float64)),
        "spearman": lambda: _pearson(_ranks(labels.astype(np.float64)), _ranks(outputs.astype(np.float64))),
    }
    return {name: values[name]() for name in task.metrics}
