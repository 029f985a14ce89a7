"""bert-vocab: learned vocabularies work with FullTokenizer and bert-create-data unchanged."""

import json
from collections import Counter
from pathlib import Path

import pytest

import oracle
from bert import tokenization, vocab
from conftest import assert_clean_failure, learn_vocabulary, read_records, run_cli


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
                           ("--vocab_size=5000000000000000000000", "--vocab_size must be in [8, 2147483647]")):
        assert_clean_failure(run_cli("vocab", f"--input_file={wikitext_docs}", f"--output_file={out}", flag), fragment)
    assert_clean_failure(run_cli("vocab", f"--input_file={wikitext_docs}", f"--output_file={tmp_path / 'm.model'}",
                                 "--model_type=sentencepiece", "--spm_max_sentences=-1"), "--spm_max_sentences")
    assert_clean_failure(run_cli("vocab", f"--input_file={empty}", f"--output_file={tmp_path / 'm.model'}",
                                 "--model_type=sentencepiece", "--vocab_size=100"), "--input_file: no text to learn from", "empty.txt")
    # The text's words go to a scratch file beside the output first; a disk too full for it is named.
    assert_clean_failure(run_cli("vocab", f"--input_file={wikitext_docs}", f"--output_file={out}", max_file_size=1 << 16),
                         f"cannot write {tmp_path}/.vocab-", "/words.txt: File too large")
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
