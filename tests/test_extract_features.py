"""bert-extract-features: the reference's JSON-lines schema, values checked against a NumPy forward pass."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bert import extract_features, tokenization
from bert.config import BertConfig
from tests import numpy_bert
from tests.conftest import ROOT, assert_clean_failure, run_cli, shared_file
from tests.test_modeling import random_weights, write_tf1_checkpoint

# Our float32 encoder against the float64 NumPy one, on any device: on an H100 (TF32 off) a SentencePiece
# input missed rtol 1e-5 + atol 2e-5 by 5e-5 absolute, the GPU's exp, tanh and rsqrt rounding otherwise
# than the CPU's. A wrong layer, position, segment or mask is off by far more; test_modeling pins the
# numerics themselves.
FLOAT32_TOLERANCE = dict(rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A 2-layer model over Google's uncased vocabulary, written as a released checkpoint is."""
    vocab = shared_file("vocab", "uncased_vocab.txt")
    directory = tmp_path_factory.mktemp("model")
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, type_vocab_size=2)
    (directory / "bert_config.json").write_text(config.to_json_string())
    weights = random_weights(config, seed=4, heads=False)
    write_tf1_checkpoint(directory / "bert_model.ckpt", weights)
    return directory, vocab, weights


@pytest.fixture(scope="module")
def mrpc_lines():
    with open(shared_file("glue", "MRPC", "dev.tsv"), encoding="utf-8-sig") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:8]
    return [f"{row[3]} ||| {row[4]}" for row in rows[:4]] + [row[3] for row in rows[4:]]


def extract(model_dir, input_file, output_file, *extra):
    directory, vocab, _ = model_dir
    return run_cli(
        "extract_features", f"--input_file={input_file}", f"--output_file={output_file}",
        f"--vocab_file={vocab}", f"--bert_config_file={directory / 'bert_config.json'}",
        f"--init_checkpoint={directory / 'bert_model.ckpt'}", *extra,
    )


def expected_tokens(tokenizer, text, max_seq_length):
    """The reference's tokens and segment ids of an input line: longest-first truncation of a pair."""
    a, separator, b = text.rpartition(" ||| ")  # the reference's greedy pattern: the last separator splits
    if not separator:
        a, b = text, ""
    tokens_a, tokens_b = tokenizer.tokenize(a), tokenizer.tokenize(b) if b else None
    if not tokens_b:
        tokens = ["[CLS]", *tokens_a[: max_seq_length - 2], "[SEP]"]
        return tokens, [0] * len(tokens)
    while len(tokens_a) + len(tokens_b) > max_seq_length - 3:
        (tokens_a if len(tokens_a) > len(tokens_b) else tokens_b).pop()
    return ["[CLS]", *tokens_a, "[SEP]", *tokens_b, "[SEP]"], [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)


def test_features_match_numpy_forward_pass(model_dir, mrpc_lines, tmp_path):
    _, vocab, weights = model_dir
    input_file = tmp_path / "input.txt"
    input_file.write_text("\n".join(mrpc_lines) + "\n", encoding="utf-8")
    output_file = tmp_path / "features.jsonl"
    result = extract(model_dir, input_file, output_file, "--layers=-1,0", "--max_seq_length=40", "--batch_size=3")
    assert result.returncode == 0, result.stderr
    assert "7 examples" in result.stdout

    tokenizer = tokenization.FullTokenizer(str(vocab), do_lower_case=True)
    lines = output_file.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(mrpc_lines)
    for index, (line, text) in enumerate(zip(lines, mrpc_lines)):
        record = json.loads(line)
        assert list(record) == ["linex_index", "features"]
        assert record["linex_index"] == index
        tokens, segments = expected_tokens(tokenizer, text, 40)
        assert [f["token"] for f in record["features"]] == tokens

        ids = np.array([tokenizer.convert_tokens_to_ids(tokens)])
        layers, _ = numpy_bert.encoder(weights, 2, 2, ids, np.ones_like(ids), np.array([segments]))
        for position, feature in enumerate(record["features"]):
            assert [layer["index"] for layer in feature["layers"]] == [-1, 0]
            for layer, want in zip(feature["layers"], (layers[-1], layers[0])):
                assert len(layer["values"]) == 32
                assert all(v == round(v, 6) for v in layer["values"])
                np.testing.assert_allclose(layer["values"], want[0, position], **FLOAT32_TOLERANCE)


def test_sentencepiece_model_tokenizes_in_place_of_a_vocab_file_and_no_pooler_is_needed(sentencepiece_model, mrpc_lines, tmp_path):
    config = BertConfig(vocab_size=4000, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, type_vocab_size=2)
    (tmp_path / "bert_config.json").write_text(config.to_json_string())
    weights = random_weights(config, seed=6, heads=False)
    # Without the pooler, which some converted models lack: the features never read it.
    write_tf1_checkpoint(tmp_path / "bert_model.ckpt",
                         {name: value for name, value in weights.items() if not name.startswith("bert/pooler/")})
    input_file = tmp_path / "input.txt"
    input_file.write_text("\n".join(mrpc_lines[3:6]) + "\n", encoding="utf-8")
    output_file = tmp_path / "features.jsonl"
    result = run_cli("extract_features", f"--input_file={input_file}", f"--output_file={output_file}",
                     f"--spm_model_file={sentencepiece_model}", f"--bert_config_file={tmp_path / 'bert_config.json'}",
                     f"--init_checkpoint={tmp_path / 'bert_model.ckpt'}", "--layers=-1", "--max_seq_length=48")
    assert result.returncode == 0, result.stderr

    tokenizer = tokenization.SentencePieceTokenizer(sentencepiece_model)
    records = [json.loads(line) for line in output_file.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 3
    for record, text in zip(records, mrpc_lines[3:6]):
        tokens, segments = expected_tokens(tokenizer, text, 48)
        assert [f["token"] for f in record["features"]] == tokens
        assert any(token.startswith("\u2581") for token in tokens)
        ids = np.array([tokenizer.convert_tokens_to_ids(tokens)])
        layers, _ = numpy_bert.encoder(weights, 2, 2, ids, np.ones_like(ids), np.array([segments]))
        for position, feature in enumerate(record["features"]):
            np.testing.assert_allclose(feature["layers"][0]["values"], layers[-1][0, position], **FLOAT32_TOLERANCE)


def test_features_written_to_stdout_reach_it_alone(model_dir, mrpc_lines, tmp_path):
    # --output_file=/dev/stdout piped into jq: the JSON lines go to the pipe, the summary to stderr. Our own
    # descriptor's name (/proc/self/fd/1) is used, as it is /dev/stdout's target on Linux: replacing
    # the shared /dev/stdout link, as root, is what an output renamed into place did.
    input_file = tmp_path / "input.txt"
    input_file.write_text("\n".join(mrpc_lines[:3]) + "\n", encoding="utf-8")
    into_file = extract(model_dir, input_file, tmp_path / "features.jsonl", "--max_seq_length=40", "--layers=-1")
    assert into_file.returncode == 0, into_file.stderr
    result = extract(model_dir, input_file, "/proc/self/fd/1", "--max_seq_length=40", "--layers=-1")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (tmp_path / "features.jsonl").read_text(encoding="utf-8")
    assert [json.loads(line)["linex_index"] for line in result.stdout.splitlines()] == [0, 1, 2]
    assert "bert-extract-features: 3 examples" in result.stderr

    # And the lines may come down a pipe: --input_file=/dev/stdin.
    directory, vocab, _ = model_dir
    piped = subprocess.run(
        [sys.executable, "-m", "bert.extract_features", "--input_file=/dev/stdin", f"--output_file={tmp_path / 'piped.jsonl'}",
         f"--vocab_file={vocab}", f"--bert_config_file={directory / 'bert_config.json'}",
         f"--init_checkpoint={directory / 'bert_model.ckpt'}", "--max_seq_length=40", "--layers=-1"],
        input=input_file.read_text(encoding="utf-8"), capture_output=True, text=True, cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=600,
    )
    assert piped.returncode == 0, piped.stderr
    assert (tmp_path / "piped.jsonl").read_text(encoding="utf-8") == result.stdout


def test_a_model_with_one_token_type_reads_pairs_as_the_reference_does(model_dir, mrpc_lines, tmp_path):
    # Converted models may have type_vocab_size 1; the reference's one-hot lookup gives the second
    # segment no token-type embedding rather than failing.
    _, vocab, _ = model_dir
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, type_vocab_size=1)
    (tmp_path / "bert_config.json").write_text(config.to_json_string())
    weights = random_weights(config, seed=7)
    # As released: the pre-training heads and the step beside the encoder, which the features do not read.
    write_tf1_checkpoint(tmp_path / "bert_model.ckpt", {**weights, "global_step": np.int64(1000)})
    input_file = tmp_path / "input.txt"
    input_file.write_text("\n".join(mrpc_lines[:2]) + "\n", encoding="utf-8")
    output_file = tmp_path / "features.jsonl"
    result = run_cli("extract_features", f"--input_file={input_file}", f"--output_file={output_file}",
                     f"--vocab_file={vocab}", f"--bert_config_file={tmp_path / 'bert_config.json'}",
                     f"--init_checkpoint={tmp_path / 'bert_model.ckpt'}", "--layers=-1", "--max_seq_length=40")
    assert result.returncode == 0, result.stderr
    assert (f"bert-extract-features: initialised from {tmp_path / 'bert_model.ckpt'}; 7 checkpoint variable(s) not used: "
            "cls/predictions/output_bias, cls/predictions/transform/LayerNorm/beta, "
            "cls/predictions/transform/LayerNorm/gamma, cls/predictions/transform/dense/bias, ...; 1 training-state "
            "variable(s) (step, optimizer slots) not read") in result.stderr.splitlines()
    tokenizer = tokenization.FullTokenizer(str(vocab), do_lower_case=True)
    for line, text in zip(output_file.read_text(encoding="utf-8").splitlines(), mrpc_lines[:2]):
        tokens, segments = expected_tokens(tokenizer, text, 40)
        assert 1 in segments
        ids = np.array([tokenizer.convert_tokens_to_ids(tokens)])
        layers, _ = numpy_bert.encoder(weights, 2, 2, ids, np.ones_like(ids), np.array([segments]))
        for position, feature in enumerate(json.loads(line)["features"]):
            np.testing.assert_allclose(feature["layers"][0]["values"], layers[-1][0, position], **FLOAT32_TOLERANCE)


def test_bad_layers_and_mismatched_vocab_fail_cleanly(model_dir, tmp_path):
    input_file = tmp_path / "input.txt"
    input_file.write_text("hello world\n")
    output_file = tmp_path / "out.jsonl"
    output_file.write_text("previous\n")
    assert_clean_failure(extract(model_dir, input_file, output_file, "--layers=-3", "--max_seq_length=40"), "--layers", "-3")
    assert_clean_failure(extract(model_dir, input_file, output_file, "--layers=x", "--max_seq_length=40"), "--layers")
    assert_clean_failure(extract(model_dir, input_file, output_file, "--max_seq_length=65"), "max_position_embeddings")
    assert_clean_failure(extract(model_dir, input_file, output_file, "--bert_config_file=tiny", "--max_seq_length=40",
                                 "--layers=-1"),
                         "word_embeddings", "[30522, 32]", "[30522, 128]")
    small_vocab = tmp_path / "small_vocab.json"
    small_vocab.write_text(json.dumps({**json.loads((model_dir[0] / "bert_config.json").read_text()), "vocab_size": 1000}))
    assert_clean_failure(extract(model_dir, input_file, output_file, f"--bert_config_file={small_vocab}",
                                 "--max_seq_length=40"), "uncased_vocab.txt", "'vocab_size' is 1000")
    # Ids are line numbers: a token listed twice takes the later id, one past a table sized to the distinct tokens.
    repeated = tmp_path / "repeated_vocab.txt"
    repeated.write_text(model_dir[1].read_text(encoding="utf-8") + "hello\n", encoding="utf-8")
    assert_clean_failure(extract(model_dir, input_file, output_file, f"--vocab_file={repeated}", "--max_seq_length=40"),
                         "repeated_vocab.txt", "30523 token ids", "'vocab_size' is 30522")
    directory, vocab, _ = model_dir
    missing = run_cli("extract_features", f"--input_file={input_file}", f"--output_file={output_file}",
                      f"--vocab_file={vocab}", f"--bert_config_file={directory / 'bert_config.json'}",
                      f"--init_checkpoint={tmp_path / 'nothing.ckpt'}", "--max_seq_length=40")
    assert_clean_failure(missing, "--init_checkpoint", "nothing.ckpt")
    (tmp_path / "input2.txt").write_text("another line\n")
    assert_clean_failure(extract(model_dir, tmp_path / "input*.txt", output_file, "--max_seq_length=40"),
                         "--input_file", "names 2 files")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert_clean_failure(extract(model_dir, empty, output_file, "--max_seq_length=40", "--layers=-1"), "--input_file",
                         "empty.txt is empty")
    no_cls = tmp_path / "no_cls_vocab.txt"
    no_cls.write_text("[PAD]\n[UNK]\n[SEP]\nhello\nworld\n")
    assert_clean_failure(extract(model_dir, input_file, output_file, f"--vocab_file={no_cls}", "--max_seq_length=40"),
                         str(no_cls), "no [CLS] token")
    no_unk = tmp_path / "no_unk_vocab.txt"
    no_unk.write_text("[PAD]\n[CLS]\n[SEP]\nhello\nworld\n")
    assert_clean_failure(extract(model_dir, input_file, output_file, f"--vocab_file={no_unk}", "--max_seq_length=40"),
                         str(no_unk), "no [UNK] token")
    no_vocab = run_cli("extract_features", f"--input_file={input_file}", f"--output_file={output_file}",
                       f"--bert_config_file={directory / 'bert_config.json'}",
                       f"--init_checkpoint={directory / 'bert_model.ckpt'}", "--max_seq_length=40")
    assert_clean_failure(no_vocab, "--vocab_file", "--spm_model_file")
    assert_clean_failure(extract(model_dir, input_file, output_file, f"--spm_model_file={no_cls}", "--max_seq_length=40"),
                         "--vocab_file and --spm_model_file both given")
    assert_clean_failure(extract(model_dir, input_file, tmp_path, "--max_seq_length=40"), "--output_file", "is a directory")
    assert_clean_failure(extract(model_dir, input_file, input_file, "--max_seq_length=40"), "--output_file", "input file too")
    # Nor the config or vocabulary the features are computed with.
    config_copy, vocab_copy = tmp_path / "bert_config.json", tmp_path / "vocab.txt"
    config_copy.write_bytes((directory / "bert_config.json").read_bytes())
    vocab_copy.write_bytes(vocab.read_bytes())
    assert_clean_failure(extract(model_dir, input_file, config_copy, f"--bert_config_file={config_copy}",
                                 "--max_seq_length=40"), "--output_file", "bert_config.json is an input file too")
    assert_clean_failure(extract(model_dir, input_file, vocab_copy, f"--vocab_file={vocab_copy}", "--max_seq_length=40"),
                         "--output_file", "vocab.txt is an input file too")
    # Nor the config of a model directory given as --bert_config_file.
    assert_clean_failure(extract(model_dir, input_file, config_copy, f"--bert_config_file={tmp_path}",
                                 "--max_seq_length=40", "--layers=-1"), "--output_file",
                         "bert_config.json is an input file too")
    # Nor the checkpoint read, by any of its files.
    checkpoint_copy = tmp_path / "copy"
    checkpoint_copy.mkdir()
    for file in directory.glob("bert_model.ckpt.*"):
        (checkpoint_copy / file.name).write_bytes(file.read_bytes())
    for name in ("bert_model.ckpt.index", "bert_model.ckpt.data-00000-of-00001"):
        assert_clean_failure(extract(model_dir, input_file, checkpoint_copy / name, "--max_seq_length=40", "--layers=-1",
                                     f"--init_checkpoint={checkpoint_copy}"), "--output_file", f"{name} is an input file too")
        assert (checkpoint_copy / name).read_bytes() == (directory / name).read_bytes()
    # Nor the `checkpoint` file through which a directory names it.
    state_file = checkpoint_copy / "checkpoint"
    state_file.write_text('model_checkpoint_path: "bert_model.ckpt"\n')
    assert_clean_failure(extract(model_dir, input_file, state_file, "--max_seq_length=40", "--layers=-1",
                                 f"--init_checkpoint={checkpoint_copy}"), "--output_file", "checkpoint is an input file too")
    assert state_file.read_text() == 'model_checkpoint_path: "bert_model.ckpt"\n'
    # A released cased model read with the default --do_lower_case would see lower-cased text, as in fine-tuning.
    cased = tmp_path / "cased_L-12_H-768_A-12"
    checkpoint_copy.rename(cased)
    assert_clean_failure(extract(model_dir, input_file, output_file, "--max_seq_length=40", "--layers=-1",
                                 f"--init_checkpoint={cased}"),
                         "cased_L-12_H-768_A-12", "--do_lower_case")
    assert config_copy.read_bytes() == (directory / "bert_config.json").read_bytes()
    assert vocab_copy.read_bytes() == vocab.read_bytes()
    assert input_file.read_text() == "hello world\n"
    assert not list(tmp_path.glob(".*tmp-*"))
    assert output_file.read_text() == "previous\n"


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGHUP])
def test_a_stopped_run_leaves_the_previous_output_and_no_partial_file(model_dir, tmp_path, signal_number):
    """As `docker stop` or a closed ssh session stops it: the partial output (as large as the whole, gigabytes for
    BERT-base) is removed; one a SIGKILL left is removed by the next run that finishes."""
    input_file = tmp_path / "input.txt"
    input_file.write_text(shared_file("corpus", "wikitext2_valid.raw.txt").read_text(encoding="utf-8"), encoding="utf-8")
    output_file = tmp_path / "out.jsonl"
    output_file.write_text("previous\n")
    directory, vocab, _ = model_dir
    args = [f"--input_file={input_file}", f"--output_file={output_file}", f"--vocab_file={vocab}",
            f"--bert_config_file={directory / 'bert_config.json'}", f"--init_checkpoint={directory / 'bert_model.ckpt'}",
            "--max_seq_length=64", "--layers=-1"]

    def started_writing():
        # SIGHUP as a shell gives it, also where the tests run under nohup (which ignores it, as the command then does).
        process = subprocess.Popen([sys.executable, "-m", "bert.extract_features", *args], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                                   preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))
        try:
            deadline = time.time() + 120
            while not list(tmp_path.glob(".out.jsonl.tmp-*")):
                assert process.poll() is None, process.communicate()
                assert time.time() < deadline
                time.sleep(0.05)
        except BaseException:
            process.kill()
            raise
        time.sleep(0.5)  # inside the writing loop
        return process

    process = started_writing()
    process.send_signal(signal_number)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal_number, stderr
    assert "terminated; no output was finalised" in stderr and "Traceback" not in stderr, stderr
    assert not list(tmp_path.glob(".out.jsonl.tmp-*"))
    assert output_file.read_text() == "previous\n"

    process = started_writing()
    process.kill()
    process.wait()
    assert list(tmp_path.glob(".out.jsonl.tmp-*"))
    lines = input_file.read_text(encoding="utf-8").split("\n")[:50]
    input_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    finished = run_cli("extract_features", *args)
    assert finished.returncode == 0, finished.stderr
    assert len(output_file.read_text().splitlines()) == 50
    assert not list(tmp_path.glob(".out.jsonl.tmp-*"))


def test_carriage_returns_are_dropped_and_text_that_is_not_utf8_is_refused(model_dir, tmp_path):
    # TensorFlow's GFile.readline, which the reference reads with, drops every "\r": "hello\rworld" is one
    # word, and a last line of only "\r" is no line at all.
    input_file = tmp_path / "input.txt"
    input_file.write_bytes(b"hello\rworld\n\r")
    output_file = tmp_path / "features.jsonl"
    result = extract(model_dir, input_file, output_file, "--layers=-1", "--max_seq_length=16")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in output_file.read_text().splitlines()]
    assert [[f["token"] for f in r["features"]] for r in records] == [["[CLS]", "hello", "##world", "[SEP]"]]

    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("fine\ncaf\u00e9\n".encode("latin-1"))
    before = output_file.read_bytes()
    assert_clean_failure(extract(model_dir, latin1, output_file, "--layers=-1", "--max_seq_length=16"), str(latin1),
                         "not UTF-8 (byte 8, line 2)")
    assert output_file.read_bytes() == before


def test_lines_are_read_as_the_reference_reads_them(model_dir, tmp_path):
    input_file = tmp_path / "input.txt"
    # CRLF endings, a blank line in the middle, a pair whose second text has no tokens, a line with two separators
    # (the reference's greedy pattern splits at the last), no final newline.
    input_file.write_bytes("Hello world.\r\n\r\nfirst ||| \u200b\none ||| two ||| three\nlast line ||| its pair"
                           .encode("utf-8"))
    output_file = tmp_path / "features.jsonl"
    result = extract(model_dir, input_file, output_file, "--layers=-1", "--max_seq_length=16")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in output_file.read_text().splitlines()]
    assert [r["linex_index"] for r in records] == [0, 1, 2, 3, 4]
    tokens = [[f["token"] for f in r["features"]] for r in records]
    assert tokens == [
        ["[CLS]", "hello", "world", ".", "[SEP]"],
        ["[CLS]", "[SEP]"],
        ["[CLS]", "first", "[SEP]"],
        ["[CLS]", "one", "|", "|", "|", "two", "[SEP]", "three", "[SEP]"],
        ["[CLS]", "last", "line", "[SEP]", "its", "pair", "[SEP]"],
    ]


def reference_line(index, tokens, layer_values, layers):
    """An output line as the reference builds it: json.dumps of round(float(x), 6) per value."""
    features = [
        {"token": token, "layers": [{"index": layer, "values": [round(float(x), 6) for x in values[position]]}
                                    for layer, values in zip(layers, layer_values)]}
        for position, token in enumerate(tokens)
    ]
    return json.dumps({"linex_index": index, "features": features}) + "\n"


# Six-decimal ties that float32 holds exactly, values either side of 1e-4 and 1e-5 (where repr turns to
# exponent form), values rounding to (minus) zero or next to a rounding boundary.
EDGE_VALUES = [
    0.0078125, -0.0078125, 0.0234375, 1e-7, -1e-7, 5e-7, -5e-7, 4.9999e-7, 5.00001e-7, 1e-6, 1.5e-6, 2.5e-6,
    9.4e-6, 9.6e-6, 1e-5, -1e-5, 1.2e-5, 1.25e-5, 9.9994e-5, 9.99995e-5, 1e-4, 1.00004e-4, 0.0, -0.0, 1.0,
    -2.0, 10.00001, -10.000012, 100.000001, 20.0000005, 9.9999995, 0.1, 1 / 3, 65504.0, 123456.789, 1e8,
    -9.9999e8, 1e-45, -1e-45, 1.17e-38,
]
# Values the fast path leaves to float-by-float printing.
LARGE_AND_NON_FINITE = [1e9, -3e9, 1e16, 3.4e38, float("nan"), float("inf"), float("-inf")]


def reference_rows(values):
    return [json.dumps([round(float(x), 6) for x in row])[1:-1] for row in values]


@pytest.mark.parametrize("scale", [1e-7, 1e-5, 1e-3, 1.0, 1e3, 1e8])
def test_rows_are_printed_as_the_reference_rounds_and_prints_them(scale):
    rng = np.random.default_rng(int(scale * 1e7) % 1000)
    values = (rng.standard_normal((40, 384)) * scale).astype(np.float32)
    values[0, : len(EDGE_VALUES)] = EDGE_VALUES
    assert extract_features.format_rows(values) == reference_rows(values)


@pytest.mark.parametrize("value", LARGE_AND_NON_FINITE)
def test_large_and_non_finite_values_are_printed_as_the_reference_prints_them(value):
    values = np.array([EDGE_VALUES, EDGE_VALUES[::-1]], np.float32)
    values[1, 3] = value
    assert extract_features.format_rows(values) == reference_rows(values)


@settings(max_examples=300, deadline=None)
@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=2, max_side=12), elements=st.floats(width=32)))
def test_any_float32_row_is_printed_as_the_reference_prints_it(values):
    assert extract_features.format_rows(values) == reference_rows(values)


def test_output_line_is_the_references_json_byte_for_byte():
    rng = np.random.default_rng(5)
    tokens = ["[CLS]", "caf\u00e9", '"', "\\", "##s", "\u4e2d", "[SEP]"]
    layer_values = [rng.standard_normal((10, 16)).astype(np.float32) for _ in range(3)]
    layer_values[1][2, :4] = [1e-5, -0.0, float("nan"), 2e9]
    line = extract_features.format_example(17, tokens, layer_values, [-1, 0, -2])
    assert line == reference_line(17, tokens, layer_values, [-1, 0, -2])
