"""bert-create-data: reference-exact records, their invariants, scale mode, and bad input."""

import bz2
import json
import os
import signal
import subprocess
import sys
from collections import Counter

import pytest
import tensorflow as tf

import oracle
from bert import pretraining_data
from conftest import ROOT, assert_clean_failure, read_records, run_cli


def interleave(per_file):
    """Undo round-robin writing: record i went to file i % n."""
    out = []
    for i in range(max(len(f) for f in per_file)):
        for f in per_file:
            if i < len(f):
                out.append(f[i])
    return out


def create(tmp_path, *flags, name="out.tfrecord"):
    result = run_cli("create_data", *flags, f"--output_file={tmp_path / name}")
    assert result.returncode == 0, result.stderr
    return result


def first_lines(path, count, tmp_path, name="part.txt"):
    lines = path.read_text(encoding="utf-8").split("\n")[:count]
    out = tmp_path / name
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


@pytest.mark.parametrize(
    "flags",
    [
        {"dupe_factor": 2},
        {"dupe_factor": 1, "do_whole_word_mask": True, "max_seq_length": 64, "max_predictions_per_seq": 10,
         "random_seed": 7, "short_seq_prob": 0.3},
        {"dupe_factor": 1, "masked_lm_prob": 0.3, "max_seq_length": 512, "max_predictions_per_seq": 80},
        # More predictions than tokens, as the reference allows: the default 20 with short sequences.
        {"dupe_factor": 1, "max_seq_length": 16, "masked_lm_prob": 0.9},
    ],
    ids=["defaults", "whole-word-short", "long", "tiny"],
)
def test_records_equal_the_reference_algorithm(flags, tmp_path, wikitext_docs, uncased_vocab):
    result = create(tmp_path, f"--input_file={wikitext_docs}", f"--vocab_file={uncased_vocab}",
                    *[f"--{k}={v}" for k, v in flags.items()])
    ours = read_records([tmp_path / "out.tfrecord"])
    lines = wikitext_docs.read_text(encoding="utf-8").split("\n")
    options = {k: v for k, v in flags.items() if k not in ("random_seed", "do_whole_word_mask")}
    expected = oracle.reference_instances(
        [lines], oracle.read_vocab(uncased_vocab), True, flags.get("random_seed", 12345),
        whole_word=flags.get("do_whole_word_mask", False), **options,
    )
    assert len(ours) == len(expected) > 700
    assert ours == expected
    assert f"-> {len(ours)} instances" in result.stdout


def test_cased_many_inputs_and_outputs_equal_the_reference(tmp_path, wikitext_docs, cased_vocab):
    # A document continues across input files; output files are filled round-robin.
    part_a = first_lines(wikitext_docs, 700, tmp_path, "a.txt")
    lines = wikitext_docs.read_text(encoding="utf-8").split("\n")
    part_b = tmp_path / "b.txt"
    part_b.write_text("\n".join(lines[700:1500]) + "\n", encoding="utf-8")
    outputs = [tmp_path / f"o{i}.tfrecord" for i in range(3)]
    result = run_cli("create_data", f"--input_file={part_a},{part_b}", f"--vocab_file={cased_vocab}",
                     "--do_lower_case=False", "--dupe_factor=3", "--random_seed=99",
                     "--output_file=" + ",".join(map(str, outputs)))
    assert result.returncode == 0, result.stderr
    per_file = [read_records([p]) for p in outputs]
    assert max(map(len, per_file)) - min(map(len, per_file)) <= 1
    expected = oracle.reference_instances(
        [part_a.read_text().split("\n")[:-1], part_b.read_text().split("\n")[:-1]],
        oracle.read_vocab(cased_vocab), False, 99, dupe_factor=3,
    )
    assert interleave(per_file) == expected


def test_lower_casing_that_does_not_suit_the_vocabulary_is_warned_of_and_the_records_are_still_the_reference_s(
        tmp_path, wikitext_docs, uncased_vocab, cased_vocab):
    text = first_lines(wikitext_docs, 300, tmp_path)
    lines = text.read_text(encoding="utf-8").split("\n")[:-1]
    for vocab, lower_case, warned in [(uncased_vocab, False, "looks uncased"), (cased_vocab, True, "looks cased"),
                                      (uncased_vocab, True, None), (cased_vocab, False, None)]:
        output = tmp_path / f"{vocab.stem}_{lower_case}.tfrecord"
        result = run_cli("create_data", f"--input_file={text}", f"--vocab_file={vocab}", f"--do_lower_case={lower_case}",
                         f"--output_file={output}", "--dupe_factor=1")
        assert result.returncode == 0, result.stderr
        warnings = [line for line in result.stderr.splitlines() if "looks" in line]
        if warned:
            assert len(warnings) == 1 and warnings[0].startswith(f"bert-create-data: warning: {vocab} {warned}")
            assert f"pass --do_lower_case={not lower_case}" in warnings[0]
        else:
            assert warnings == []
        # A warning, not a refusal: the reference takes either, and the records stay its records.
        expected = oracle.reference_instances([lines], oracle.read_vocab(vocab), lower_case, 12345, dupe_factor=1)
        assert read_records([output]) == expected


def test_paragraph_per_line_text_is_truncated_as_the_reference_truncates(tmp_path, wikitext_docs, uncased_vocab):
    # Whole paragraphs on one line: every pair is far over --max_seq_length and trimmed at both ends.
    documents = wikitext_docs.read_text(encoding="utf-8").split("\n\n")[:40]
    lines = []
    for document in documents:
        sentences = document.split("\n")
        lines += [" ".join(sentences[i:i + 12]) for i in range(0, len(sentences), 12)] + [""]
    text = tmp_path / "paragraphs.txt"
    text.write_text("\n".join(lines), encoding="utf-8")
    assert max(map(len, lines)) > 2000
    create(tmp_path, f"--input_file={text}", f"--vocab_file={uncased_vocab}", "--dupe_factor=2",
           "--max_seq_length=24", "--max_predictions_per_seq=4", "--short_seq_prob=0.5")
    expected = oracle.reference_instances([lines], oracle.read_vocab(uncased_vocab), True, 12345, dupe_factor=2,
                                          max_seq_length=24, max_predictions_per_seq=4, short_seq_prob=0.5)
    assert read_records([tmp_path / "out.tfrecord"]) == expected != []


def test_carriage_returns_are_dropped_as_the_reference_reader_drops_them(tmp_path, wikitext_docs, uncased_vocab):
    import tensorflow as tf

    lines = wikitext_docs.read_text(encoding="utf-8").split("\n")[:400]
    # Windows line ends, a carriage return for a space, one inside a word.
    mangled = [line + "\r" if i % 3 == 0 else line.replace(" ", "\r", 1) if i % 3 == 1 else
               line[: len(line) // 2] + "\r" + line[len(line) // 2 :] for i, line in enumerate(lines)]
    text = tmp_path / "windows.txt"
    text.write_bytes("\n".join(mangled).encode("utf-8") + b"\n")
    create(tmp_path, f"--input_file={text}", f"--vocab_file={uncased_vocab}", "--dupe_factor=1")
    with tf.io.gfile.GFile(str(text), "r") as f:
        as_the_reference_reads = [line.rstrip("\n") for line in iter(f.readline, "")]
    assert as_the_reference_reads == [line.replace("\r", "") for line in mangled]
    expected = oracle.reference_instances([as_the_reference_reads], oracle.read_vocab(uncased_vocab), True, 12345,
                                          dupe_factor=1)
    assert read_records([tmp_path / "out.tfrecord"]) == expected


def test_carriage_returns_after_the_last_newline_end_the_file_as_in_the_reference(tmp_path, wikitext_docs, uncased_vocab):
    import tensorflow as tf

    lines = [line for line in wikitext_docs.read_text(encoding="utf-8").split("\n")[:300] if line.strip()]
    # No blank line anywhere: a document runs on into the next file unless a file's ending breaks it.
    endings = [b"\r", b"\r\r", b"\n\r", b""]
    files, lines_per_file = [], []
    for i, ending in enumerate(endings):
        files.append(tmp_path / f"part{i}.txt")
        part = lines[i * 60:(i + 1) * 60]
        files[-1].write_bytes("\n".join(part).encode("utf-8") + b"\n" + ending)
        with tf.io.gfile.GFile(str(files[-1]), "r") as f:
            lines_per_file.append([line.rstrip("\n") for line in iter(f.readline, "")])
    assert lines_per_file == [lines[i * 60:(i + 1) * 60] + ([""] if ending == b"\n\r" else [])
                              for i, ending in enumerate(endings)]
    create(tmp_path, f"--input_file={','.join(map(str, files))}", f"--vocab_file={uncased_vocab}", "--dupe_factor=2")
    expected = oracle.reference_instances(lines_per_file, oracle.read_vocab(uncased_vocab), True, 12345, dupe_factor=2)
    assert read_records([tmp_path / "out.tfrecord"]) == expected


def test_scale_mode_reads_the_corpus_a_block_at_a_time():
    pulled = []

    def blocks():
        for i in range(1000):
            pulled.append(i)
            yield pretraining_data.Block([b"line %d\n" % i], False)

    paired = pretraining_data.with_neighbours(blocks(), 1024)
    for made in range(1, 6):
        next(paired)
        assert len(pulled) == max(made, 2)
    assert len(list(paired)) == 995 and len(pulled) == 1000


@pytest.fixture(scope="module")
def many_records(tmp_path_factory, wikitext_docs, uncased_vocab):
    out = tmp_path_factory.mktemp("many") / "records.tfrecord"
    result = run_cli("create_data", f"--input_file={wikitext_docs}", f"--vocab_file={uncased_vocab}",
                     "--dupe_factor=3", f"--output_file={out}")
    assert result.returncode == 0, result.stderr
    return read_records([out]), out


def check_instance(record, max_seq_length=128, max_predictions=20, mask_id=103, cls_id=101, sep_id=102):
    ids, mask, segments = record["input_ids"], record["input_mask"], record["segment_ids"]
    assert len(ids) == len(mask) == len(segments) == max_seq_length
    length = sum(mask)
    assert mask == [1] * length + [0] * (max_seq_length - length)
    assert ids[length:] == [0] * (max_seq_length - length) and 0 not in ids[:length]
    seps = [i for i in range(length) if ids[i] == sep_id]
    assert ids[0] == cls_id and len(seps) == 2 and seps[1] == length - 1
    assert segments == [0] * (seps[0] + 1) + [1] * (length - seps[0] - 1) + [0] * (max_seq_length - length)
    assert 1 <= seps[0] - 1 and 1 <= length - seps[0] - 2  # A and B both non-empty
    positions, weights = record["masked_lm_positions"], record["masked_lm_weights"]
    count = int(sum(weights))
    assert weights == [1.0] * count + [0.0] * (max_predictions - count)
    assert count == min(max_predictions, max(1, int(round(length * 0.15))))
    real = positions[:count]
    assert real == sorted(set(real)) and positions[count:] == [0] * (max_predictions - count)
    assert all(0 < p < length and p not in seps for p in real)
    assert record["masked_lm_ids"][count:] == [0] * (max_predictions - count)
    assert record["next_sentence_labels"] in ([0], [1])
    return count


def test_instance_invariants_hold_for_every_record(many_records):
    records, _ = many_records
    for record in records:
        check_instance(record)


def test_masking_split_and_next_sentence_balance(many_records):
    records, _ = many_records
    outcome = Counter()
    for record in records:
        count = int(sum(record["masked_lm_weights"]))
        for position, original in zip(record["masked_lm_positions"][:count], record["masked_lm_ids"][:count]):
            current = record["input_ids"][position]
            outcome["mask" if current == 103 else "kept" if current == original else "random"] += 1
    total = sum(outcome.values())
    assert total > 100_000
    assert abs(outcome["mask"] / total - 0.8) < 0.01
    assert abs(outcome["kept"] / total - 0.1) < 0.01
    assert abs(outcome["random"] / total - 0.1) < 0.01
    random_next = sum(r["next_sentence_labels"][0] for r in records) / len(records)
    assert 0.47 < random_next < 0.6  # one-segment chunks always take a random B, so a little over half
    lengths = Counter(sum(r["input_mask"]) for r in records)
    assert lengths[128] / len(records) > 0.6  # most instances fill max_seq_length
    assert sum(n for length, n in lengths.items() if length < 100) / len(records) > 0.05  # short_seq_prob


def test_manifest_describes_the_output(many_records, uncased_vocab):
    records, path = many_records
    manifest = json.loads(open(f"{path}.manifest.json").read())
    assert manifest["format"] == "bert-pretraining-records" and manifest["mode"] == "reference"
    assert manifest["num_instances"] == len(records) == manifest["files"][0]["num_instances"]
    assert manifest["max_seq_length"] == 128 and manifest["max_predictions_per_seq"] == 20
    assert manifest["vocab"]["size"] == 30522 and len(manifest["vocab"]["sha256"]) == 64
    assert manifest["flags"]["dupe_factor"] == 3 and manifest["num_documents"] == 60


def test_whole_word_masking_masks_whole_words(tmp_path, wikitext_docs, uncased_vocab):
    create(tmp_path, f"--input_file={wikitext_docs}", f"--vocab_file={uncased_vocab}", "--dupe_factor=1",
           "--do_whole_word_mask=True")
    vocab = oracle.read_vocab(uncased_vocab)
    continuation = {i for t, i in vocab.items() if t.startswith("##")}
    partial = 0
    for record in read_records([tmp_path / "out.tfrecord"]):
        count = int(sum(record["masked_lm_weights"]))
        assert count <= min(20, max(1, int(round(sum(record["input_mask"]) * 0.15))))
        masked = set(record["masked_lm_positions"][:count])
        originals = dict(zip(record["masked_lm_positions"][:count], record["masked_lm_ids"][:count]))
        for p in masked:
            # The piece after a masked piece is masked too when it continues the word.
            nxt = p + 1
            if nxt not in masked and nxt < sum(record["input_mask"]):
                word_continues = record["input_ids"][nxt] in continuation
                partial += word_continues
            if originals[p] in continuation:
                assert p - 1 in masked or record["input_ids"][p - 1] in (101, 102)
    assert partial == 0


def scale_run(tmp_path, name, docs, vocab, *extra):
    out = tmp_path / name
    result = run_cli("create_data", f"--input_file={docs}", f"--vocab_file={vocab}", "--dupe_factor=2",
                     f"--output_dir={out}", "--num_output_shards=3", "--block_size_kb=64", *extra)
    assert result.returncode == 0, result.stderr
    return out, result


def test_scale_mode_is_valid_sharded_and_independent_of_worker_count(tmp_path, wikitext_docs, uncased_vocab):
    two, result = scale_run(tmp_path, "two", wikitext_docs, uncased_vocab, "--num_workers=2")
    one, _ = scale_run(tmp_path, "one", wikitext_docs, uncased_vocab, "--num_workers=1")
    shards = sorted(two.glob("*.tfrecord"))
    assert [p.name for p in shards] == [f"part-{i:05d}-of-00003.tfrecord" for i in range(3)]
    for name in [p.name for p in shards] + ["manifest.json"]:
        assert (two / name).read_bytes() == (one / name).read_bytes().replace(b'"num_workers": 1', b'"num_workers": 2')
    records = read_records(shards)
    for record in records:
        check_instance(record)
    manifest = json.loads((two / "manifest.json").read_text())
    assert manifest["mode"] == "scale" and manifest["num_instances"] == len(records)
    assert [f["num_instances"] for f in manifest["files"]] == [len(read_records([p])) for p in shards]
    assert [f["bytes"] for f in manifest["files"]] == [p.stat().st_size for p in shards]
    assert manifest["num_documents"] >= 60  # blocks end at document ends: no document is lost
    # Same corpus, same dupe factor: about as many instances as the reference mode makes. The count
    # varies by ~10% between seeds (a short target length, drawn per document, multiplies that
    # document's instances), so the bound is loose.
    reference = run_cli("create_data", f"--input_file={wikitext_docs}", f"--vocab_file={uncased_vocab}",
                        "--dupe_factor=2", f"--output_file={tmp_path / 'ref.tfrecord'}")
    assert reference.returncode == 0
    assert abs(len(records) - len(read_records([tmp_path / "ref.tfrecord"]))) / len(records) < 0.2
    assert not list(two.glob(".*tmp*"))
    assert "instances" in result.stdout


def test_scale_mode_cuts_text_without_blank_lines_at_line_ends_and_says_so(tmp_path, wikitext_docs, uncased_vocab):
    # One document of ~100 KB, as a sentence-per-line dump without document breaks is.
    lines = [line for line in wikitext_docs.read_bytes().splitlines(keepends=True) if line.strip()]
    corpus = tmp_path / "no_breaks.txt"
    corpus.write_bytes(b"".join(lines)[:100_000].rsplit(b"\n", 1)[0] + b"\n")
    cuts = []
    pieces = list(pretraining_data.iter_blocks([str(corpus)], 1024, lambda: cuts.append(1)))
    assert [block.continues for block in pieces] == [False] + [True] * (len(pieces) - 1)
    blocks = [b"".join(block.chunks) for block in pieces]
    longest = pretraining_data.LONGEST_DOCUMENT_BLOCKS * 1024
    assert b"".join(blocks) == corpus.read_bytes()
    assert all(longest <= len(block) < longest + max(map(len, lines)) for block in blocks[:-1])
    assert all(block.endswith(b"\n") for block in blocks) and len(cuts) == len(blocks) - 1 >= 5

    out, result = scale_run(tmp_path, "cut", corpus, uncased_vocab, "--num_workers=1", "--block_size_kb=1")
    assert (f"bert-create-data: warning: {len(cuts)} document(s) ran past {pretraining_data.LONGEST_DOCUMENT_BLOCKS} x "
            "--block_size_kb without a blank line, and were cut at a line end into documents of their own (a blank line "
            "ends a document)") in result.stderr.splitlines()
    assert json.loads((out / "manifest.json").read_text())["num_documents"] == len(blocks)


def test_a_line_that_ends_its_file_past_the_longest_document_is_no_cut(tmp_path):
    corpus = tmp_path / "one_line.txt"
    corpus.write_bytes(b"word " * 5000 + b"\n")
    cuts = []
    blocks = list(pretraining_data.iter_blocks([str(corpus)], 1024, lambda: cuts.append(1)))
    assert blocks == [pretraining_data.Block([corpus.read_bytes()], False)] and cuts == []


def test_small_files_share_a_block_and_each_ends_a_document(tmp_path):
    files = []
    for name, text in [("a", b"one\ntwo\n"), ("b", b"three"), ("c", b"four\n\n"), ("d", b"five\n")]:
        files.append(tmp_path / name)
        files[-1].write_bytes(text)
    blocks = list(pretraining_data.iter_blocks([str(f) for f in files], 10))
    assert blocks == [([b"one\ntwo\n", b"three"], False), ([b"four\n\n", b"five\n"], False)]


def words_by_document(vocab_path, documents, words_per_document=150):
    """Disjoint sets of whole words from the vocabulary, one per document, so a token tells its document."""
    words = [w for w in vocab_path.read_text(encoding="utf-8").split("\n") if w.isalpha() and w.islower()]
    words = words[2000:2000 + documents * words_per_document]
    return [words[i * words_per_document:(i + 1) * words_per_document] for i in range(documents)]


def random_next_sources(records, document_of):
    """For each random-next record: (documents of segment A's tokens, documents of segment B's tokens), read
    from the original ids (masked positions restored)."""
    sources = []
    for record in records:
        if record["next_sentence_labels"] != [1]:
            continue
        ids = list(record["input_ids"])
        for position, original, weight in zip(record["masked_lm_positions"], record["masked_lm_ids"],
                                              record["masked_lm_weights"]):
            if weight:
                ids[position] = original
        a_end = record["segment_ids"].index(1)
        length = sum(record["input_mask"])
        sources.append(({document_of[t] for t in ids[1:a_end - 1]}, {document_of[t] for t in ids[a_end:length - 1]}))
    return sources


@pytest.mark.parametrize("layout", ["a small document per file", "a document per block", "a document cut into blocks"])
def test_scale_mode_draws_random_next_sentences_from_other_documents(tmp_path, uncased_vocab, layout):
    import random

    vocab = uncased_vocab.read_text(encoding="utf-8").split("\n")
    word_sets = words_by_document(uncased_vocab, 4)
    rng = random.Random(0)
    documents = ["\n".join(" ".join(rng.choice(words) for _ in range(12)) + " ." for _ in range(40)) + "\n"
                 for words in word_sets]
    if layout == "a small document per file":
        inputs = []
        for i, document in enumerate(documents):
            inputs.append(tmp_path / f"doc{i}.txt")
            inputs[-1].write_text(document, encoding="utf-8")
        block_flag = "--block_size_kb=64"
    elif layout == "a document per block":
        inputs = [tmp_path / "docs.txt"]
        inputs[0].write_text("\n".join(documents), encoding="utf-8")
        block_flag = "--block_size_kb=1"
        assert all(len(d) > 1024 for d in documents)
    else:
        # The second document, without a blank line for over 48 KB, is cut into blocks of its own: their neighbour is
        # the block before the first of them, not one another.
        documents[1] = documents[1] * 16
        assert len(documents[1]) > pretraining_data.LONGEST_DOCUMENT_BLOCKS * 1024 * 2
        inputs = [tmp_path / "docs.txt"]
        inputs[0].write_text("\n".join(documents), encoding="utf-8")
        block_flag = "--block_size_kb=1"
    out = tmp_path / "records"
    result = run_cli("create_data", f"--input_file={','.join(map(str, inputs))}", f"--vocab_file={uncased_vocab}",
                     f"--output_dir={out}", "--num_workers=1", "--dupe_factor=3", "--max_seq_length=64", block_flag)
    assert result.returncode == 0, result.stderr
    document_of = {vocab.index(w): i for i, words in enumerate(word_sets) for w in words}
    document_of[vocab.index(".")] = None
    sources = random_next_sources(read_records(sorted(out.glob("*.tfrecord"))), document_of)
    assert len(sources) > 20
    for a_documents, b_documents in sources:
        a_documents.discard(None)
        b_documents.discard(None)
        assert len(a_documents) == 1 and len(b_documents) == 1 and a_documents != b_documents


def test_scale_mode_is_deterministic_in_its_seed(tmp_path, wikitext_docs, uncased_vocab):
    first, _ = scale_run(tmp_path, "s", wikitext_docs, uncased_vocab, "--num_workers=2", "--shuffle_buffer_size=500")
    again, _ = scale_run(tmp_path, "t", wikitext_docs, uncased_vocab, "--num_workers=2", "--shuffle_buffer_size=500")
    other, _ = scale_run(tmp_path, "u", wikitext_docs, uncased_vocab, "--num_workers=2", "--shuffle_buffer_size=500",
                         "--random_seed=1")
    shard = "part-00000-of-00003.tfrecord"
    assert (first / shard).read_bytes() == (again / shard).read_bytes()
    assert read_records([other / shard])[:50] != read_records([first / shard])[:50]


def test_invalid_utf8_is_dropped_and_counted(tmp_path, uncased_vocab):
    corpus = tmp_path / "bad.txt"
    corpus.write_bytes(b"Caf\xc3\xa9 is open.\nIt sells \xff\xfebread.\n\nA second \x80document here.\nIt ends.\n")
    clean = tmp_path / "clean.txt"
    clean.write_bytes(b"Caf\xc3\xa9 is open.\nIt sells bread.\n\nA second document here.\nIt ends.\n")
    result = create(tmp_path, f"--input_file={corpus}", f"--vocab_file={uncased_vocab}", "--dupe_factor=3")
    assert "dropped 3 invalid UTF-8 bytes" in result.stdout
    assert json.loads((tmp_path / "out.tfrecord.manifest.json").read_text())["invalid_utf8_bytes_dropped"] == 3
    create(tmp_path, f"--input_file={clean}", f"--vocab_file={uncased_vocab}", "--dupe_factor=3", name="clean.tfrecord")
    assert read_records([tmp_path / "out.tfrecord"]) == read_records([tmp_path / "clean.tfrecord"])


@pytest.mark.parametrize(
    "flag, fragment",
    [
        ("--max_seq_length=7", "--max_seq_length"),
        ("--masked_lm_prob=0", "--masked_lm_prob"),
        ("--masked_lm_prob=1.5", "--masked_lm_prob"),
        ("--max_predictions_per_seq=0", "--max_predictions_per_seq"),
        ("--dupe_factor=0", "--dupe_factor"),
        ("--num_workers=-1", "--num_workers"),
        ("--max_seq_length=abc", "max_seq_length"),
        ("--no_such_flag=1", "no_such_flag"),
        ("--nodo_lower_case=true", "--nodo_lower_case=true does not take an argument"),
    ],
)
def test_nonsensical_flags_fail_cleanly_and_leave_output_alone(flag, fragment, tmp_path, uncased_vocab):
    corpus = tmp_path / "c.txt"
    corpus.write_text("One sentence here.\nAnother one.\n", encoding="utf-8")
    out = tmp_path / "out.tfrecord"
    out.write_bytes(b"previous run")
    result = run_cli("create_data", f"--input_file={corpus}", f"--vocab_file={uncased_vocab}", flag,
                     f"--output_file={out}")
    assert_clean_failure(result, fragment)
    assert out.read_bytes() == b"previous run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.txt", "out.tfrecord"]


def test_bad_inputs_fail_cleanly(tmp_path, uncased_vocab):
    corpus = tmp_path / "c.txt"
    corpus.write_text("One sentence here.\nAnother one.\n", encoding="utf-8")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n   \n\x00\n", encoding="utf-8")
    out = tmp_path / "out.tfrecord"
    cases = [
        ((f"--input_file={tmp_path / 'missing.txt'}", f"--vocab_file={uncased_vocab}", f"--output_file={out}"),
         ("--input_file", "missing.txt")),
        ((f"--input_file={tmp_path / 'none-*.txt'}", f"--vocab_file={uncased_vocab}", f"--output_file={out}"),
         ("--input_file", "none-*.txt")),
        ((f"--input_file={empty}", f"--vocab_file={uncased_vocab}", f"--output_file={out}"),
         ("--input_file", "empty.txt")),
        ((f"--input_file={corpus}", f"--vocab_file={tmp_path / 'nov.txt'}", f"--output_file={out}"),
         ("nov.txt",)),
        ((f"--input_file={corpus}", f"--vocab_file={corpus}", f"--output_file={out}"),
         ("c.txt", "[CLS]")),
        ((f"--input_file={corpus}", f"--vocab_file={uncased_vocab}", f"--output_file={tmp_path}/no/dir/x.tfrecord"),
         ("--output_file", "does not exist")),
        ((f"--input_file={corpus}", f"--vocab_file={uncased_vocab}"), ("--output_file", "--output_dir")),
        ((f"--vocab_file={uncased_vocab}", f"--output_file={out}"), ("--input_file",)),
        ((f"--input_file={corpus}", f"--vocab_file={uncased_vocab}", f"--output_file={corpus}"),
         ("--output_file", "c.txt is an input file too")),
        ((f"--input_file={tmp_path}", f"--vocab_file={uncased_vocab}", f"--output_file={out}"),
         ("--input_file", "is a directory")),
        ((f"--input_file={corpus}", f"--vocab_file={uncased_vocab}", "--output_file=,"), ("--output_file", "no file named")),
        ((f"--input_file={corpus}", f"--vocab_file={uncased_vocab}", f"--output_file={out}", "--num_output_shards=4"),
         ("--num_output_shards applies to --output_dir",)),
        ((f"--input_file={corpus}", f"--vocab_file={uncased_vocab}", f"--output_file={out},{tmp_path}/./out.tfrecord"),
         ("--output_file", f"{out} is named twice")),
        # /dev/stdout's target on Linux: a run of code that renamed its output over /dev/stdout would replace that link.
        ((f"--input_file={corpus}", f"--vocab_file={uncased_vocab}", "--output_file=/proc/self/fd/1"),
         ("--output_file", "/proc/self/fd/1 is a stream")),
    ]
    for args, fragments in cases:
        assert_clean_failure(run_cli("create_data", *args), *fragments)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.txt", "empty.txt"]
    assert corpus.read_text(encoding="utf-8") == "One sentence here.\nAnother one.\n"

    # Nor may the records replace the vocabulary they are made with.
    vocab = tmp_path / "vocab.txt"
    vocab.write_bytes(uncased_vocab.read_bytes())
    for output in (f"--output_file={vocab}", f"--output_file={tmp_path / 'vocab.tfrecord'},{vocab}"):
        assert_clean_failure(run_cli("create_data", f"--input_file={corpus}", f"--vocab_file={vocab}", output),
                             "--output_file", "vocab.txt is an input file too")
    assert vocab.read_bytes() == uncased_vocab.read_bytes()
    vocab.unlink()

    (tmp_path / "out.tfrecord.manifest.json").mkdir()
    assert_clean_failure(run_cli("create_data", f"--input_file={corpus}", f"--vocab_file={uncased_vocab}", f"--output_file={out}"),
                         "--output_file", "out.tfrecord.manifest.json is a directory")
    assert not out.exists()

    # A compressed corpus, read as text, gave records of garbage: its invalid UTF-8 dropped, the rest kept.
    compressed = tmp_path / "c.txt.bz2"
    compressed.write_bytes(bz2.compress(corpus.read_bytes()))
    assert_clean_failure(run_cli("create_data", f"--input_file={compressed}", f"--vocab_file={uncased_vocab}",
                                 f"--output_file={out}"),
                         f"--input_file: {compressed} is bzip2-compressed, not text; decompress it first (bunzip2 -k")
    assert not out.exists()
    # So did records, or UTF-16 text, which their NUL bytes tell.
    utf16 = tmp_path / "c16.txt"
    utf16.write_text(corpus.read_text(encoding="utf-8"), encoding="utf-16-be")
    records = tmp_path / "records.tfrecord"
    with tf.io.TFRecordWriter(str(records)) as writer:
        writer.write(tf.train.Example(features=tf.train.Features(feature={
            "input_ids": tf.train.Feature(int64_list=tf.train.Int64List(value=[101, 7592, 102, 0, 0]))})).SerializeToString())
    # And text in another encoding, which lost a letter in every accented word; UTF-16 of Chinese, with no NUL.
    latin1 = tmp_path / "latin1.txt"
    latin1.write_text("Café crème brûlée à la française, déjà vu.\n" * 20, encoding="latin-1")
    chinese = tmp_path / "chinese.txt"
    chinese.write_text("北京是中国的首都。\n" * 20, encoding="utf-16")
    french = tmp_path / "french.txt"
    french.write_text("The café on the corner serves thé.\n" * 5 + "Plain English text follows here.\n" * 60,
                      encoding="latin-1")
    for path, said in ((utf16, "is UTF-16BE text, not UTF-8; convert it first (iconv -f UTF-16BE -t UTF-8)"),
                       (records, "is binary ("), (chinese, "is UTF-16 text"),
                       (latin1, "is not UTF-8 text (160 of the 160 non-ASCII bytes in its first 860 are no UTF-8: "
                                "Latin-1 or another encoding?); convert it first, e.g. iconv -f LATIN1 -t UTF-8"),
                       # Mostly ASCII, as English or French is: few invalid bytes, but all its non-ASCII ones.
                       (french, "is not UTF-8 text (10 of the 10 non-ASCII bytes in its first")):
        assert_clean_failure(run_cli("create_data", f"--input_file={corpus},{path}", f"--vocab_file={uncased_vocab}",
                                     f"--output_file={out}"), f"--input_file: {path} {said}")
        assert not out.exists()
    # A stray NUL in text is dropped, as the reference's tokenizer drops it.
    stray = tmp_path / "stray.txt"
    stray.write_text(corpus.read_text(encoding="utf-8").replace(" ", " \0", 1), encoding="utf-8")
    result = run_cli("create_data", f"--input_file={stray}", f"--vocab_file={uncased_vocab}",
                     f"--output_file={tmp_path / 'stray.tfrecord'}")
    assert result.returncode == 0, result.stderr


def test_a_vocabulary_without_unk_is_refused_before_anything_is_written(tmp_path, uncased_vocab):
    # WordPiece gives [UNK] to every word it cannot match: without it, the first such word had no id.
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("".join(line for line in uncased_vocab.read_text(encoding="utf-8").splitlines(keepends=True)
                             if line != "[UNK]\n"), encoding="utf-8")
    corpus = tmp_path / "c.txt"
    corpus.write_text("Hello world \U0001f99c here.\nSecond line.\n\nDoc two.\nIt ends.\n", encoding="utf-8")
    out = tmp_path / "out.tfrecord"
    out.write_bytes(b"previous run")
    for mode in (f"--output_file={out}", f"--output_dir={tmp_path / 'shards'}"):
        result = run_cli("create_data", f"--input_file={corpus}", f"--vocab_file={vocab}", mode, "--dupe_factor=1")
        assert_clean_failure(result, str(vocab), "no [UNK] token")
    assert out.read_bytes() == b"previous run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.txt", "out.tfrecord", "vocab.txt"]


def test_sizes_past_this_machines_memory_fail_cleanly(tmp_path, uncased_vocab):
    import resource
    import subprocess
    import sys

    from conftest import ROOT

    corpus = tmp_path / "c.txt"
    corpus.write_text("One sentence here.\nAnother one.\n\nA second document.\nIt ends.\n", encoding="utf-8")
    out = tmp_path / "out.tfrecord"
    out.write_bytes(b"previous run")
    limit = 1 << 30
    result = subprocess.run(
        [sys.executable, "-m", "bert.create_data", f"--input_file={corpus}", f"--vocab_file={uncased_vocab}",
         f"--output_file={out}", "--max_seq_length=2000000000"],
        capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=600,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
    assert_clean_failure(result, "out of memory", "sequence length")
    assert out.read_bytes() == b"previous run"


def test_unwritable_output_location(tmp_path, uncased_vocab):
    corpus = tmp_path / "c.txt"
    corpus.write_text("One sentence here.\nAnother one.\n", encoding="utf-8")
    if os.geteuid() == 0:
        target = "/proc/x.tfrecord"  # even root cannot create files in /proc
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = locked / "x.tfrecord"
    result = run_cli("create_data", f"--input_file={corpus}", f"--vocab_file={uncased_vocab}", f"--output_file={target}")
    assert_clean_failure(result, "x.tfrecord")


def test_output_dir_with_records_is_refused_unless_overwrite(tmp_path, uncased_vocab):
    corpus = tmp_path / "c.txt"
    corpus.write_text("One sentence here.\nAnother one.\n\nA new document.\nWith two lines.\n", encoding="utf-8")
    out = tmp_path / "records [v1]"  # a name that is a glob pattern too
    args = ("create_data", f"--input_file={corpus}", f"--vocab_file={uncased_vocab}", f"--output_dir={out}")
    assert run_cli(*args, "--num_output_shards=2").returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert_clean_failure(run_cli(*args, "--random_seed=3"), "--output_dir", "--overwrite")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert run_cli(*args, "--overwrite").returncode == 0
    assert sorted(p.name for p in out.iterdir()) == [".lock", "manifest.json", "part-00000-of-00001.tfrecord"]


def test_a_full_disk_names_the_shard_and_leaves_the_records_already_there(tmp_path, wikitext_docs, uncased_vocab):
    out = tmp_path / "records"
    args = ("create_data", f"--input_file={wikitext_docs}", f"--vocab_file={uncased_vocab}", f"--output_dir={out}",
            "--num_output_shards=2", "--dupe_factor=1")
    assert run_cli(*args).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert min(len(data) for name, data in before.items() if name.endswith(".tfrecord")) > 1 << 16
    # Each write past 64 KiB fails as on a full disk.
    result = run_cli(*args, "--overwrite", "--random_seed=7", max_file_size=1 << 16)
    assert_clean_failure(result, f"cannot write {out / 'part-0000'}", "-of-00002.tfrecord: File too large")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_shard_that_fails_as_it_is_finished_leaves_every_shard_as_it_was(tmp_path, wikitext_docs, uncased_vocab):
    out = tmp_path / "records"
    args = ("create_data", f"--input_file={wikitext_docs}", f"--vocab_file={uncased_vocab}", "--num_output_shards=2",
            "--dupe_factor=1")
    assert run_cli(*args, f"--output_dir={out}").returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    # Another seed's last shard is its largest: a disk that fills at its last byte fails it as it is finished,
    # after the first shard is complete.
    sizes = tmp_path / "sizes"
    assert run_cli(*args, f"--output_dir={sizes}", "--random_seed=2").returncode == 0
    first, last = (p.stat().st_size for p in sorted(sizes.glob("*.tfrecord")))
    assert first < last
    result = run_cli(*args, f"--output_dir={out}", "--random_seed=2", "--overwrite", max_file_size=last - 1)
    assert_clean_failure(result, f"cannot write {out / 'part-00001-of-00002.tfrecord'}: File too large")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_manifest_that_cannot_be_written_leaves_the_records_already_there(tmp_path, uncased_vocab):
    # Records smaller than their manifest (long input names, short sequences): a disk that fills at the manifest.
    inputs = []
    for i in range(3):
        inputs.append(tmp_path / f"doc{i}-{'x' * 200}.txt")
        inputs[-1].write_text(f"Sentence number {i} is here.\nAnd one more.\n", encoding="utf-8")
    out = tmp_path / "records"
    args = ("create_data", f"--input_file={','.join(map(str, inputs))}", f"--vocab_file={uncased_vocab}", f"--output_dir={out}",
            "--dupe_factor=1", "--max_seq_length=32", "--max_predictions_per_seq=5")
    assert run_cli(*args).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    record_bytes, manifest_bytes = len(before["part-00000-of-00001.tfrecord"]), len(before["manifest.json"])
    assert record_bytes < manifest_bytes
    result = run_cli(*args, "--overwrite", "--random_seed=7", "--num_output_shards=2",
                     max_file_size=(record_bytes + manifest_bytes) // 2)
    assert_clean_failure(result, f"cannot write {out / 'manifest.json'}: File too large")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_ctrl_c_in_scale_mode_is_one_line_from_the_parent_and_no_worker_traceback(tmp_path, wikitext_docs, uncased_vocab):
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil
    from conftest import ROOT, message_lines

    out = tmp_path / "records"
    # A terminal's Ctrl-C reaches every process of the job: the command and its workers.
    proc = subprocess.Popen(
        [sys.executable, "-m", "bert.create_data", f"--input_file={wikitext_docs}", f"--vocab_file={uncased_vocab}",
         "--dupe_factor=100", "--num_workers=2", "--block_size_kb=64", f"--output_dir={out}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    deadline = time.time() + 60
    while len(psutil.Process(proc.pid).children()) < 2:
        assert proc.poll() is None and time.time() < deadline, "the workers did not start"
        time.sleep(0.05)
    def ignores_sigint(pid):
        with open(f"/proc/{pid}/status") as status:
            ignored = next(line for line in status if line.startswith("SigIgn:")).split()[1]
        return bool(int(ignored, 16) & (1 << (signal.SIGINT - 1)))

    # Until each worker has set its signals up (or 5 s: the workers of a run that does not, never do).
    deadline = time.time() + 5
    while time.time() < deadline and not all(ignores_sigint(c.pid) for c in psutil.Process(proc.pid).children()):
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert [line for line in message_lines(stderr)] == ["bert-create-data: error: interrupted; no output was finalised"]
    assert not out.exists()  # the run made it, and nothing of the run is left in it, its lock included


def scale_run_with_records_coming(out, docs, vocab):
    """A long bert-create-data run in scale mode (2 workers) into `out`, once its first records are written: the
    workers are at their blocks."""
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "bert.create_data", f"--input_file={docs}", f"--vocab_file={vocab}",
         "--dupe_factor=100", "--num_workers=2", "--block_size_kb=64", f"--output_dir={out}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    deadline = time.time() + 60
    while not any(p.stat().st_size for p in out.glob(".part-*.tmp-*")):
        assert proc.poll() is None and time.time() < deadline, "no records came within 60 s"
        time.sleep(0.05)
    return proc


def test_scale_mode_workers_end_silently_with_a_parent_killed_by_sigkill(tmp_path, wikitext_docs, uncased_vocab):
    import psutil

    # Records coming in: the workers are at their blocks, whose records they would send to a parent no longer there.
    proc = scale_run_with_records_coming(tmp_path / "records", wikitext_docs, uncased_vocab)
    workers = psutil.Process(proc.pid).children()
    assert len(workers) == 2
    proc.send_signal(signal.SIGKILL)
    # The workers' stderr is the pipe read here: it ends once they have all ended.
    _, stderr = proc.communicate(timeout=60)
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive
    assert "Traceback" not in stderr, stderr


def test_a_scale_mode_worker_killed_in_its_task_is_one_line_not_a_wait_for_ever(tmp_path, wikitext_docs, uncased_vocab):
    import psutil
    from conftest import message_lines

    out = tmp_path / "records"
    proc = scale_run_with_records_coming(out, wikitext_docs, uncased_vocab)
    try:
        # As the kernel's out-of-memory killer ends the largest process.
        victim = psutil.Process(proc.pid).children()[0]
        victim.send_signal(signal.SIGKILL)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1, stderr
    assert message_lines(stderr) == ["bert-create-data: error: a worker process ended before it finished its task "
                                     "(killed: out of memory? the kernel's out-of-memory killer sends SIGKILL)"]
    assert not out.exists()


def test_interrupted_run_leaves_no_finished_looking_file(tmp_path, wikitext_docs, uncased_vocab):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "out.tfrecord"
    out.write_bytes(b"previous run")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bert.create_data", f"--input_file={wikitext_docs}", f"--vocab_file={uncased_vocab}",
         "--dupe_factor=40", f"--output_file={out}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    deadline = time.time() + 120
    while not list(tmp_path.glob(".out.tfrecord.tmp-*")):  # its output opened (records come at the end, in reference mode)
        assert proc.poll() is None, "the run finished before it could be interrupted"
        assert time.time() < deadline, "the run wrote no temporary file within 120 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert out.read_bytes() == b"previous run"
    assert not (tmp_path / "out.tfrecord.manifest.json").exists()
    # The next run into the same place deletes what the killed one left, as large as its records.
    create(tmp_path, f"--input_file={wikitext_docs}", f"--vocab_file={uncased_vocab}", "--dupe_factor=1")
    assert not list(tmp_path.glob(".out.tfrecord*.tmp-*"))


def test_sigterm_in_scale_mode_removes_the_output_in_progress_and_says_so(tmp_path, wikitext_docs, uncased_vocab):
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil
    from conftest import ROOT, message_lines

    out = tmp_path / "records"
    args = (f"--input_file={wikitext_docs}", f"--vocab_file={uncased_vocab}", "--num_workers=2", "--block_size_kb=64",
            f"--output_dir={out}")
    assert run_cli("create_data", *args, "--dupe_factor=1").returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bert.create_data", *args, "--dupe_factor=100", "--overwrite"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    deadline = time.time() + 60
    while len(psutil.Process(proc.pid).children()) < 2 or not list(out.glob(".part-*.tmp-*")):
        assert proc.poll() is None and time.time() < deadline, "the workers did not start"
        time.sleep(0.05)
    workers = psutil.Process(proc.pid).children()
    # As `docker stop` does: SIGTERM to the command alone.
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert message_lines(stderr) == ["bert-create-data: error: terminated; no output was finalised"]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    psutil.wait_procs(workers, timeout=30)
    assert not any(worker.is_running() for worker in workers)


SIGNALLED_WHILE_RENAMING = """\
import os, runpy, signal

from bert import fileio

# SIGTERM (or Ctrl-C: SIGINT) comes as the second shard is renamed into place, the first already replaced.
signal_number, commit, renamed = int(os.environ["SIGNAL_NUMBER"]), fileio.AtomicFile.commit, []


def signalled_commit(self):
    if self._destination.endswith(".tfrecord"):
        renamed.append(self._destination)
        if len(renamed) == 2:
            os.kill(os.getpid(), signal_number)
    return commit(self)


fileio.AtomicFile.commit = signalled_commit
runpy.run_module("bert.create_data", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_while_the_records_are_put_in_place_waits_for_them_and_the_manifest(tmp_path, uncased_vocab,
                                                                                    wikitext_docs, signal_number):
    script = tmp_path / "signalled_create_data.py"
    script.write_text(SIGNALLED_WHILE_RENAMING)
    out = tmp_path / "records"
    args = (f"--input_file={wikitext_docs}", f"--vocab_file={uncased_vocab}", f"--output_dir={out}", "--dupe_factor=1",
            "--num_output_shards=3")
    assert run_cli("create_data", *args).returncode == 0
    result = subprocess.run([sys.executable, str(script), *args, "--random_seed=7", "--overwrite"], capture_output=True,
                            text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT), SIGNAL_NUMBER=str(signal_number)),
                            timeout=600)
    assert result.returncode == 0, result.stderr
    assert (f"bert-create-data: warning: {signal.Signals(signal_number).name} came while the records were put in place; "
            "they are complete, and the command finished") in result.stderr.splitlines()
    # Every shard is the new run's, and the manifest is the new run's: as a run left alone writes them.
    clean = tmp_path / "clean"
    assert run_cli("create_data", *args[:2], f"--output_dir={clean}", *args[3:], "--random_seed=7").returncode == 0
    shards = sorted(p.name for p in clean.glob("*.tfrecord"))
    assert sorted(p.name for p in out.glob("*.tfrecord")) == shards
    for name in shards:
        assert read_records([out / name]) == read_records([clean / name]), name
    manifests = [json.loads((where / "manifest.json").read_text()) for where in (out, clean)]
    assert manifests[0]["files"] == manifests[1]["files"] and manifests[0]["flags"] == manifests[1]["flags"]


def test_output_dir_with_records_of_another_origin_is_refused_even_with_overwrite(tmp_path, uncased_vocab):
    corpus = tmp_path / "c.txt"
    corpus.write_text("One sentence here.\nAnother one.\n\nA new document.\nWith two lines.\n", encoding="utf-8")
    out = tmp_path / "records"
    out.mkdir()
    (out / "my_eval.tfrecord").write_bytes(b"someone's records")
    args = ("create_data", f"--input_file={corpus}", f"--vocab_file={uncased_vocab}", f"--output_dir={out}")
    for extra in ((), ("--overwrite",)):
        assert_clean_failure(run_cli(*args, *extra), f"{out} holds my_eval.tfrecord, which bert-create-data did not write")
        assert sorted(p.name for p in out.iterdir()) == ["my_eval.tfrecord"]
    assert (out / "my_eval.tfrecord").read_bytes() == b"someone's records"


def test_output_dir_leftovers_of_a_killed_run_are_removed_and_nothing_else(tmp_path, uncased_vocab):
    corpus = tmp_path / "c.txt"
    corpus.write_text("One sentence here.\nAnother one.\n\nA new document.\nWith two lines.\n", encoding="utf-8")
    out = tmp_path / "records"
    out.mkdir()
    leftovers = [".part-00001-of-00004.tfrecord.tmp-k3j2", ".manifest.json.tmp-x81"]
    kept = [".part-00001-of-00004.tfrecord.keep", "notes.txt"]
    for name in leftovers + kept:
        (out / name).write_bytes(b"x" * 100)
    result = run_cli("create_data", f"--input_file={corpus}", f"--vocab_file={uncased_vocab}", f"--output_dir={out}")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(kept + [".lock", "manifest.json", "part-00000-of-00001.tfrecord"])


def test_a_second_run_into_an_output_dir_in_use_is_refused_and_touches_nothing(tmp_path, uncased_vocab):
    import fcntl

    corpus = tmp_path / "c.txt"
    corpus.write_text("One sentence here.\nAnother one.\n\nA new document.\nWith two lines.\n", encoding="utf-8")
    out = tmp_path / "records"
    out.mkdir()
    staged = out / ".part-00000-of-00001.tfrecord.tmp-r2d2"  # as the run in progress there is writing
    staged.write_bytes(b"its records so far")
    with open(out / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as that run holds it
        result = run_cli("create_data", f"--input_file={corpus}", f"--vocab_file={uncased_vocab}", f"--output_dir={out}")
    assert_clean_failure(result, f"--output_dir: {out} is in use by another bert-create-data run (it holds {out / '.lock'})")
    assert sorted(p.name for p in out.iterdir()) == [".lock", staged.name]
    assert staged.read_bytes() == b"its records so far"


def test_shards_numbered_past_five_digits_are_the_commands_own(tmp_path):
    from bert import create_data

    for name in ("part-000001-of-100000.tfrecord", "my_eval.tfrecord", "part-1-of-2.tfrecord"):
        (tmp_path / name).write_bytes(b"")
    ours, others = create_data._existing_outputs(str(tmp_path))
    assert ours == [str(tmp_path / "part-000001-of-100000.tfrecord")]
    assert others == ["my_eval.tfrecord", "part-1-of-2.tfrecord"]

