"""bert-vocab: learned vocabularies work with FullTokenizer and bert-create-data unchanged."""

import bz2
import gzip
import io
import json
import lzma
import os
import random
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import oracle
from bert import tokenization, vocab
from conftest import ROOT, assert_clean_failure, learn_vocabulary, message_lines, read_records, run_cli


@pytest.fixture(scope="module")
def learned_vocab(tmp_path_factory, wikitext_docs):
    out, result = learn_vocabulary(tmp_path_factory, wikitext_docs, "vocab.txt", "--vocab_size=8000", "--num_unused=20")
    assert "8000 tokens" in result.stdout
    return out


def test_layout_of_a_learned_wordpiece_vocab(learned_vocab):
    tokens = learned_vocab.read_text(encoding="utf-8").split("\n")[:-1]
    assert len(tokens) == len(set(tokens)) == 8000
    assert tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert tokens[5:25] == [f"[unused{i}]" for i in range(20)]
    pieces = set(tokens[25:])
    # every character has both its word-initial and its continuation form
    for token in pieces:
        if len(token) == 1:
            assert f"##{token}" in pieces
    assert all(t == t.lower() for t in pieces)  # learned lower-cased
    assert "the" in pieces and "##s" in pieces


def test_the_same_text_gives_the_same_vocabulary(tmp_path, learned_vocab, wikitext_docs):
    # The trainer's own numbering follows hash order; other hash seeds and thread counts must not matter.
    again = tmp_path / "again.txt"
    result = run_cli("vocab", f"--input_file={wikitext_docs}", f"--output_file={again}", "--vocab_size=8000",
                     "--num_unused=20", env={"PYTHONHASHSEED": "7", "RAYON_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert again.read_bytes() == learned_vocab.read_bytes()


def test_limit_alphabet_keeps_the_most_frequent_characters(tmp_path, wikitext_docs):
    out = tmp_path / "vocab.txt"
    result = run_cli("vocab", f"--input_file={wikitext_docs}", f"--output_file={out}", "--vocab_size=2000",
                     "--num_unused=0", "--limit_alphabet=40")
    assert result.returncode == 0, result.stderr
    tokens = out.read_text(encoding="utf-8").split("\n")[:-1]
    characters = [t for t in tokens[5:] if len(t) == 1]
    assert len(characters) == 40
    assert tokens[5:85] == characters + [f"##{c}" for c in characters]
    assert {"e", "t", "a", ",", "."} <= set(characters) and "£" not in characters
    assert not any(c in t for t in tokens[85:] for c in "£—")  # a dropped character is in no piece
    # The summary and a warning say how much of the text the characters left out are, and which flag left them out.
    basic = tokenization.BasicTokenizer(do_lower_case=True)
    counts = Counter(c for line in wikitext_docs.read_text(encoding="utf-8").splitlines() for c in "".join(basic.tokenize(line)))
    left_out = sum(n for c, n in counts.items() if c not in characters) / sum(counts.values())
    assert f", {len(counts) - 40} rarer characters ({left_out:.2%} of the text's) left out by --limit_alphabet)" in result.stdout
    assert (f"bert-vocab: warning: {left_out:.2%} of the text's characters ({len(counts) - 40} distinct ones) are in no "
            f"piece and become [UNK]: raise --limit_alphabet (now 40)") in result.stderr


def test_unknown_rate_on_unseen_text_is_under_one_percent(learned_vocab, wikitext_test_docs):
    tokenizer = tokenization.FullTokenizer(str(learned_vocab), do_lower_case=True)
    total = unknown = 0
    for line in wikitext_test_docs.read_text(encoding="utf-8").splitlines():
        tokens = tokenizer.tokenize(line)
        total += len(tokens)
        unknown += tokens.count("[UNK]")
    assert total > 250_000
    assert unknown / total < 0.01


def test_learned_vocab_drives_create_data(tmp_path, learned_vocab, wikitext_docs):
    out = tmp_path / "r.tfrecord"
    result = run_cli("create_data", f"--input_file={wikitext_docs}", f"--vocab_file={learned_vocab}",
                     "--dupe_factor=1", f"--output_file={out}")
    assert result.returncode == 0, result.stderr
    lines = wikitext_docs.read_text(encoding="utf-8").split("\n")
    expected = oracle.reference_instances([lines], oracle.read_vocab(learned_vocab), True, 12345, dupe_factor=1)
    assert read_records([out]) == expected and len(expected) > 300


def test_cased_vocab_keeps_case(tmp_path, wikitext_docs):
    out = tmp_path / "cased.txt"
    result = run_cli("vocab", f"--input_file={wikitext_docs}", f"--output_file={out}", "--vocab_size=3000",
                     "--do_lower_case=False")
    assert result.returncode == 0, result.stderr
    tokens = set(out.read_text(encoding="utf-8").split("\n"))
    assert "The" in tokens and "the" in tokens


def test_sentencepiece_model_drives_create_data(tmp_path, wikitext_docs, sentencepiece_model):
    model = sentencepiece_model
    assert model.with_suffix(".vocab").exists()
    tokenizer = tokenization.SentencePieceTokenizer(model)
    assert [tokenizer.vocab[t] for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")] == [0, 1, 2, 3, 4]
    pieces = tokenizer.tokenize("The tower was built in 1889.")
    assert pieces[0].startswith("\u2581") and "[UNK]" not in pieces
    out = tmp_path / "r.tfrecord"
    result = run_cli("create_data", f"--input_file={wikitext_docs}", f"--spm_model_file={model}", "--dupe_factor=1",
                     "--do_whole_word_mask=True", f"--output_file={out}")
    assert result.returncode == 0, result.stderr
    records = read_records([out])
    assert len(records) > 300 and all(0 <= i < tokenizer.vocab_size for r in records for i in r["input_ids"])
    assert all(r["input_ids"][0] == tokenizer.vocab["[CLS]"] for r in records)
    # Without whole words, the records are those of the reference's algorithm run on the model's pieces.
    plain = tmp_path / "plain.tfrecord"
    assert run_cli("create_data", f"--input_file={wikitext_docs}", f"--spm_model_file={model}", "--dupe_factor=1",
                   f"--output_file={plain}").returncode == 0
    lines = wikitext_docs.read_text(encoding="utf-8").split("\n")
    assert read_records([plain]) == oracle.reference_instances([lines], tokenizer.vocab, True, 12345, dupe_factor=1,
                                                               tokenize=tokenizer.tokenize)
    # bert-vocab's model folds case itself (nmt_nfkc_cf): the manifest says so, and a contrary flag is refused.
    assert tokenizer.lower_cases and tokenizer.tokenize("The TOWER") == tokenizer.tokenize("the tower")
    manifest = json.loads(Path(f"{out}.manifest.json").read_text())
    assert manifest["flags"]["do_lower_case"] is True
    refused = tmp_path / "refused.tfrecord"
    assert_clean_failure(run_cli("create_data", f"--input_file={wikitext_docs}", f"--spm_model_file={model}",
                                 "--nodo_lower_case", f"--output_file={refused}"),
                         str(model), "folds case itself", "(--do_lower_case=False)")
    assert not refused.exists()


def test_a_cased_sentencepiece_model_keeps_case_unless_told_to_lower_case(tmp_path, wikitext_docs):
    model = tmp_path / "cased.model"
    learned = run_cli("vocab", f"--input_file={wikitext_docs}", f"--output_file={model}", "--vocab_size=2000",
                      "--model_type=sentencepiece", "--nodo_lower_case")
    assert learned.returncode == 0, learned.stderr
    cased, lowered = tokenization.SentencePieceTokenizer(model), tokenization.SentencePieceTokenizer(model, lower_case=True)
    assert not cased.lower_cases and cased.tokenize("The Tower") != cased.tokenize("the tower")
    # As ALBERT's tokenizer does for its models, which keep case: the text is lower-cased before the model.
    assert lowered.lower_cases and lowered.tokenize("The Tower") == cased.tokenize("the tower")
    for flags, lower_cases in (((), False), (("--do_lower_case",), True)):
        out = tmp_path / f"lower-{lower_cases}.tfrecord"
        result = run_cli("create_data", f"--input_file={wikitext_docs}", f"--spm_model_file={model}", "--dupe_factor=1",
                         *flags, f"--output_file={out}")
        assert result.returncode == 0, result.stderr
        assert json.loads(Path(f"{out}.manifest.json").read_text())["flags"]["do_lower_case"] is lower_cases
    assert (tmp_path / "lower-False.tfrecord").read_bytes() != (tmp_path / "lower-True.tfrecord").read_bytes()


def test_special_tokens_written_in_text_are_text_to_a_learned_sentencepiece_model(sentencepiece_model):
    tokenizer = tokenization.SentencePieceTokenizer(sentencepiece_model)
    ids = tokenizer.convert_tokens_to_ids(tokenizer.tokenize("A [MASK] line [SEP] here [CLS]"))
    assert not {tokenizer.vocab[t] for t in ("[CLS]", "[SEP]", "[MASK]")} & set(ids)


def test_a_sentencepiece_model_is_the_same_on_every_run_even_when_sampled(tmp_path, wikitext_docs):
    # Each in its own process: SentencePiece's own sampling differed from one process to the next.
    runs = []
    for name in ("a", "b"):
        model = tmp_path / name / "spm.model"
        model.parent.mkdir()
        learned = run_cli("vocab", f"--input_file={wikitext_docs}", f"--output_file={model}", "--vocab_size=1000",
                          "--model_type=sentencepiece", "--spm_max_sentences=400")
        assert learned.returncode == 0, learned.stderr
        runs.append((model.read_bytes(), model.with_suffix(".vocab").read_bytes()))
    assert runs[0] == runs[1]
    assert str(tmp_path).encode() not in runs[0][0]
    assert runs[0][1].decode("utf-8").split("\n")[:3] == ["[PAD]\t0", "[UNK]\t0", "[CLS]\t0"]


def test_sample_lines_draws_uniformly_in_input_order():
    import random

    counts = Counter()
    for seed in range(2000):
        sample = vocab.sample_lines((str(i) for i in range(10)), 3, random.Random(seed))
        assert len(sample) == 3 and sample == sorted(sample, key=int)
        counts.update(sample)
    assert all(abs(counts[str(i)] / 2000 - 0.3) < 0.05 for i in range(10))
    assert vocab.sample_lines(iter(["x", "y"]), 5, random.Random(0)) == ["x", "y"]


def test_a_sentencepiece_model_learned_on_lower_cased_text_lower_cases_its_input(tmp_path, wikitext_docs):
    lowered = tmp_path / "lowered.txt"
    lowered.write_text(wikitext_docs.read_text(encoding="utf-8").lower(), encoding="utf-8")
    model = tmp_path / "albert_like.model"
    # No case folding in the model, lower-cased text: how ALBERT's models are made.
    learned = run_cli("vocab", f"--input_file={lowered}", f"--output_file={model}", "--vocab_size=2000",
                      "--model_type=sentencepiece", "--nodo_lower_case")
    assert learned.returncode == 0, learned.stderr
    tokenizer = tokenization.SentencePieceTokenizer(model)
    assert tokenizer.lower_cases and "[UNK]" not in tokenizer.tokenize("The Tower Was Built In Paris.")
    assert tokenizer.tokenize("The Tower") == tokenizer.tokenize("the tower")


def test_a_sentencepiece_training_failure_is_told_in_bert_vocab_terms(tmp_path, wikitext_docs):
    result = run_cli("vocab", f"--input_file={wikitext_docs}", f"--output_file={tmp_path / 'm.model'}",
                     "--vocab_size=8", "--model_type=sentencepiece")
    assert_clean_failure(result, "sentencepiece training failed: Vocabulary size is smaller than required_chars")
    assert ".cc(" not in result.stderr and "character_coverage" not in result.stderr
    assert not list(tmp_path.iterdir())


def test_a_vocabulary_written_to_stdout_reaches_it_alone(tmp_path, wikitext_docs):
    into_file = tmp_path / "vocab.txt"
    assert run_cli("vocab", f"--input_file={wikitext_docs}", f"--output_file={into_file}", "--vocab_size=500").returncode == 0
    result = run_cli("vocab", f"--input_file={wikitext_docs}", "--output_file=/proc/self/fd/1", "--vocab_size=500")
    assert result.returncode == 0, result.stderr
    assert result.stdout == into_file.read_text(encoding="utf-8")
    assert "500 tokens -> /proc/self/fd/1" in result.stderr
    assert_clean_failure(run_cli("vocab", f"--input_file={wikitext_docs}", "--output_file=/proc/self/fd/1",
                                 "--model_type=sentencepiece"), "--output_file: /proc/self/fd/1 is a stream")


def first_lines(path, count):
    return b"".join(path.read_bytes().splitlines(keepends=True)[:count])


def test_invalid_utf8_is_dropped_and_counted_as_create_data_does(tmp_path, wikitext_docs):
    text = first_lines(wikitext_docs, 300)
    clean, mangled = tmp_path / "clean.txt", tmp_path / "mangled.txt"
    clean.write_bytes(text)
    mangled.write_bytes(text.replace(b"the ", b"th\xffe ", 2).replace(b"of ", b"o\x80\xfef ", 1))
    runs = [run_cli("vocab", f"--input_file={path}", f"--output_file={tmp_path / (path.stem + '.vocab.txt')}",
                    "--vocab_size=600") for path in (clean, mangled)]
    assert [r.returncode for r in runs] == [0, 0], runs[1].stderr
    assert "invalid UTF-8" not in runs[0].stdout and "dropped 4 invalid UTF-8 bytes" in runs[1].stdout
    assert (tmp_path / "clean.vocab.txt").read_bytes() == (tmp_path / "mangled.vocab.txt").read_bytes()


def test_bad_input_fails_cleanly(tmp_path, wikitext_docs):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    out = tmp_path / "v.txt"
    assert_clean_failure(run_cli("vocab", f"--input_file={tmp_path}/nope.txt", f"--output_file={out}"), "nope.txt")
    assert_clean_failure(run_cli("vocab", f"--input_file={empty}", f"--output_file={out}"), "--input_file")
    assert_clean_failure(run_cli("vocab", f"--input_file={wikitext_docs}", f"--output_file={out}", "--vocab_size=50",
                                 "--num_unused=100"), "--vocab_size")
    assert_clean_failure(run_cli("vocab", f"--input_file={wikitext_docs}", f"--output_file={out}",
                                 "--model_type=bpe"), "model_type")
    for flag, fragment in (("--limit_alphabet=0", "--limit_alphabet must be at least 1"),
                           ("--limit_alphabet=-20", "--limit_alphabet must be at least 1"),
                           ("--min_frequency=-1", "--min_frequency must be 0 or more"),
                           ("--vocab_size=5000000000000000000000", "--vocab_size must be in [8, 4194304]"),
                           # The trainers allocate for every piece asked for first: a slip ran out of memory or hung.
                           ("--vocab_size=2147483647", "--vocab_size must be in [8, 4194304]"),
                           # Checked before a list of a billion [unusedN] tokens was made.
                           ("--num_unused=1000000000", "--vocab_size (30522) leaves no room for a character"),
                           ("--vocab_size=106", "--vocab_size (106) leaves no room for a character (and its ## form) "
                                                "after the 105 special and unused tokens (--num_unused=100)")):
        assert_clean_failure(run_cli("vocab", f"--input_file={wikitext_docs}", f"--output_file={out}", flag), fragment)
    assert_clean_failure(run_cli("vocab", f"--input_file={wikitext_docs}", f"--output_file={tmp_path / 'm.model'}",
                                 "--model_type=sentencepiece", "--spm_max_sentences=-1"), "--spm_max_sentences")
    assert_clean_failure(run_cli("vocab", f"--input_file={empty}", f"--output_file={tmp_path / 'm.model'}",
                                 "--model_type=sentencepiece", "--vocab_size=100"), "--input_file: no text to learn from", "empty.txt")
    # The text's words go to a scratch file beside the output first; a disk too full for it is named.
    assert_clean_failure(run_cli("vocab", f"--input_file={wikitext_docs}", f"--output_file={out}", max_file_size=1 << 16),
                         f"cannot write the text's words to a scratch file in {tmp_path}: File too large")
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.txt"]
    # A rerun whose glob now matches the vocabulary it wrote, a typo naming the corpus, or a SentencePiece model
    # whose piece list (.vocab beside it) would replace the corpus: refused, and the inputs left as they were.
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("hello world\n", encoding="utf-8")
    pieces = tmp_path / "spm.vocab"
    pieces.write_text("hello world\n", encoding="utf-8")
    for inputs, output, model_type in ((tmp_path / "*.txt", empty, "wordpiece"), (corpus, corpus, "wordpiece"),
                                       (pieces, tmp_path / "spm.model", "sentencepiece")):
        assert_clean_failure(run_cli("vocab", f"--input_file={inputs}", f"--output_file={output}", f"--model_type={model_type}"),
                             "--output_file", "is an input file too")
    assert [p.read_text(encoding="utf-8") for p in (empty, corpus, pieces)] == ["\n\n", "hello world\n", "hello world\n"]
    assert_clean_failure(run_cli("vocab", f"--input_file={corpus}", f"--output_file={tmp_path / 'spm.vocab'}",
                                 "--model_type=sentencepiece"), "--output_file", "is where the model's piece list goes")
    assert_clean_failure(run_cli("vocab", f"--input_file={corpus}", f"--output_file={tmp_path}"), "--output_file", "is a directory")
    assert_clean_failure(run_cli("vocab", f"--input_file={corpus}", f"--output_file={tmp_path / 'new'}/"),
                         f"--output_file: {tmp_path / 'new'}/ names a directory, which does not exist; name a file")
    assert not (tmp_path / "new").exists()
    # A compressed corpus read as text gave a vocabulary of garbage (its invalid UTF-8 dropped, the rest kept).
    text = first_lines(wikitext_docs, 100)
    for name, compress, kind in (("corpus.txt.gz", gzip.compress, "gzip"), ("corpus.txt.bz2", bz2.compress, "bzip2"),
                                 ("corpus.xz", lzma.compress, "xz")):
        (tmp_path / name).write_bytes(compress(text))
        assert_clean_failure(run_cli("vocab", f"--input_file={corpus},{tmp_path / name}", f"--output_file={out}"),
                             f"--input_file: {tmp_path / name} is {kind}-compressed, not text; decompress it first")
    # So did UTF-16 text, its NUL bytes dropped as control characters, the rest of anything but ASCII garbage.
    (tmp_path / "utf16.txt").write_text(text.decode("utf-8"), encoding="utf-16-le")
    assert_clean_failure(run_cli("vocab", f"--input_file={corpus},{tmp_path / 'utf16.txt'}", f"--output_file={out}"),
                         f"--input_file: {tmp_path / 'utf16.txt'} is UTF-16LE text, not UTF-8; convert it first")
    assert not out.exists()


def test_a_text_too_small_for_the_size_asked_says_so(tmp_path, wikitext_docs):
    text = tmp_path / "small.txt"
    text.write_bytes(first_lines(wikitext_docs, 50))
    out = tmp_path / "vocab.txt"
    result = run_cli("vocab", f"--input_file={text}", f"--output_file={out}", "--vocab_size=30522")
    assert result.returncode == 0, result.stderr
    size = len(out.read_text(encoding="utf-8").splitlines())
    assert size < 30522
    assert (f"vocabulary of {size} tokens -> {out}" in result.stdout
            and "short of --vocab_size=30522: the text holds no more pieces seen --min_frequency=2 times" in result.stdout)


def random_words_corpus(path, lines):
    """`lines` lines of random lower-case words: many distinct words, so that learning their pieces takes seconds."""
    rng = random.Random(0)
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(lines):
            f.write(" ".join("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 12)))
                             for _ in range(8)) + "\n")


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_the_pieces_are_learned_stops_the_command_and_leaves_nothing(tmp_path, signal_number):
    corpus, out = tmp_path / "corpus.txt", tmp_path / "vocab.txt"
    random_words_corpus(corpus, 80_000)
    out.write_text("[PAD]\n[UNK]\nhello\n", encoding="utf-8")
    # Its progress lines due every second, and SIGINT at its default, as in a terminal, however pytest was started.
    command = ("import sys; from bert import progress, vocab; progress.PLAIN_SECONDS = 0; sys.argv[0] = 'bert-vocab'; "
               "vocab.run()")
    process = subprocess.Popen(
        [sys.executable, "-c", command, f"--input_file={corpus}", f"--output_file={out}", "--vocab_size=30000"],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # The trainer runs, native code, while the command's main thread goes on reporting: it is free to take a signal.
    learning = next((line for line in process.stderr if line.startswith("bert-vocab: learning the pieces: ")), None)
    assert learning is not None, process.communicate()
    assert re.fullmatch(r"bert-vocab: learning the pieces: 0:00:0\d so far\n", learning)
    # The scratch file of the text's words, as large as the corpus, has no name: a killed run cannot leave it behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt", "vocab.txt"]
    process.send_signal(signal_number)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 128 + signal_number, stderr
    what = "interrupted" if signal_number == signal.SIGINT else "terminated"
    assert [line for line in message_lines(stderr) if "learning the pieces" not in line] == [
        f"bert-vocab: error: {what}; no output was finalised"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt", "vocab.txt"]
    assert out.read_text(encoding="utf-8") == "[PAD]\n[UNK]\nhello\n"


def test_a_sentencepiece_model_learns_from_lines_longer_than_its_trainers_default(tmp_path, wikitext_docs):
    # One paragraph a line, each over SentencePiece's default 4192 bytes, which its trainer skipped without a word.
    lines = [line for line in wikitext_docs.read_text(encoding="utf-8").splitlines() if line.strip()][:2000]
    paragraphs = [p for p in (" ".join(lines[i:i + 60]) for i in range(0, len(lines), 60)) if len(p.encode("utf-8")) > 4192]
    assert len(paragraphs) > 25
    corpus = tmp_path / "paragraphs.txt"
    corpus.write_text("\n".join(paragraphs) + "\n", encoding="utf-8")
    model = tmp_path / "spm.model"
    result = run_cli("vocab", f"--input_file={corpus}", f"--output_file={model}", "--model_type=sentencepiece",
                     "--vocab_size=1000")
    assert result.returncode == 0, result.stderr
    import sentencepiece

    pieces = sentencepiece.SentencePieceProcessor(model_file=str(model)).encode(lines[5], out_type=str)
    assert "▁the" in pieces and "[UNK]" not in pieces


def test_text_read_from_a_pipe_gives_the_vocabulary_of_the_file(tmp_path, wikitext_docs):
    from_file = tmp_path / "from_file.txt"
    assert run_cli("vocab", f"--input_file={wikitext_docs}", f"--output_file={from_file}", "--vocab_size=600").returncode == 0
    from_pipe = tmp_path / "from_pipe.txt"
    result = subprocess.run([sys.executable, "-m", "bert.vocab", "--input_file=/dev/stdin", f"--output_file={from_pipe}",
                             "--vocab_size=600"], input=wikitext_docs.read_text(encoding="utf-8"), capture_output=True,
                            text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=600)
    assert result.returncode == 0, result.stderr
    assert from_pipe.read_bytes() == from_file.read_bytes()


def test_a_text_of_one_huge_line_is_read_in_pieces_cut_between_words(wikitext_docs, monkeypatch):
    # Old Mac text, its lines ended by \r alone: one line, which was held whole and tokenized at 80 times its size.
    text = wikitext_docs.read_bytes()[:300_000].replace(b"\n", b"\r")
    monkeypatch.setattr(vocab, "MAX_LINE_BYTES", 4096)
    pieces = list(vocab.bounded_lines(io.BytesIO(text)))
    assert b"".join(pieces) == text and len(pieces) > 70
    assert max(map(len, pieces)) <= 2 * 4096  # with the word carried over from the piece before
    basic = tokenization.BasicTokenizer(do_lower_case=True)
    assert [word for piece in pieces for word in basic.tokenize(piece.decode("utf-8"))] == basic.tokenize(text.decode("utf-8"))
    # Lines within the limit, the last unended too, come whole.
    assert list(vocab.bounded_lines(io.BytesIO(b"a b\nlast line, no newline"))) == [b"a b\n", b"last line, no newline"]
    # With no whitespace to cut at, a piece ends between characters, never inside one.
    unbroken = "€𝄞é".encode("utf-8") * 3000
    pieces = list(vocab.bounded_lines(io.BytesIO(unbroken)))
    assert b"".join(pieces) == unbroken and len(pieces) > 5
    assert "".join(piece.decode("utf-8") for piece in pieces) == unbroken.decode("utf-8")


def test_a_file_named_twice_is_warned_of(tmp_path, wikitext_docs):
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(first_lines(wikitext_docs, 300))
    (tmp_path / "same.txt").symlink_to(corpus)
    result = run_cli("vocab", f"--input_file={corpus},{tmp_path}/*.txt", f"--output_file={tmp_path / 'vocab.out'}",
                     "--vocab_size=600")
    assert result.returncode == 0, result.stderr
    assert (f"bert-vocab: warning: --input_file names {corpus} 3 times (overlapping globs?): it is read 3 times"
            in result.stderr)
