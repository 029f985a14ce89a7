"""Tokenization equals the reference's rules (SPEC §3), case by case and over real text."""

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import oracle
from bert import tokenization
from conftest import shared_file


@pytest.fixture(scope="module")
def uncased(uncased_vocab):
    return tokenization.FullTokenizer(str(uncased_vocab), do_lower_case=True)


@pytest.fixture(scope="module")
def cased(cased_vocab):
    return tokenization.FullTokenizer(str(cased_vocab), do_lower_case=False)


def basic(text, lower=True):
    return tokenization.BasicTokenizer(do_lower_case=lower).tokenize(text)


def test_lower_case_splits_whitespace_and_punctuation():
    assert basic(" \tHeLLo!how  \n Are yoU?  ") == ["hello", "!", "how", "are", "you", "?"]


def test_lower_case_strips_accents_after_nfd():
    assert basic("H\u00e9llo na\u00efve \u00c5ngstr\u00f6m") == ["hello", "naive", "angstrom"]
    # Already decomposed input: the combining mark (Mn) is dropped too.
    assert basic("e\u0301t\u00e9") == ["ete"]


def test_cased_keeps_case_and_accents():
    assert basic("H\u00e4LLo!", lower=False) == ["H\u00e4LLo", "!"]


def test_control_and_zero_width_characters_are_dropped():
    # NUL, U+FFFD, BEL (Cc), zero-width space and joiner, soft hyphen, BOM (Cf)
    assert basic("a\x00b\ufffdc\x07d\u200be\u200df\u00adg\ufeffh") == ["abcdefgh"]


def test_private_use_and_unassigned_characters_are_kept():
    # Only Cc and Cf count as control characters: Co (private use) and Cn (unassigned) survive.
    assert basic("x\ue000y") == ["x\ue000y"]
    assert unicodedata.category("\U000e0080") == "Cn"
    assert basic("p\U000e0080q") == ["p\U000e0080q"]


@pytest.mark.parametrize("space", [" ", "\t", "\n", "\r", "\u00a0", "\u2003", "\u3000", "\u202f", "\u2028", "\u2029"])
def test_every_whitespace_kind_separates_words(space):
    assert basic(f"one{space}two") == ["one", "two"]


def test_cjk_ideographs_become_single_tokens():
    assert basic("ah\u535a\u63a8zz") == ["ah", "\u535a", "\u63a8", "zz"]
    assert basic("\U00020000x") == ["\U00020000", "x"]
    # Hiragana and Hangul are not CJK ideographs: they stay within their word.
    assert basic("\u3042\u3044\uac00", lower=False) == ["\u3042\u3044\uac00"]
    # Lower-casing NFD-decomposes the Hangul syllable into its jamo, as the reference does.
    assert basic("\uac00") == ["\u1100\u1161"]


def test_unicode_and_ascii_punctuation():
    assert basic("a$b^c`d") == ["a", "$", "b", "^", "c", "`", "d"]  # ASCII, not Unicode P*
    assert basic("\u00bfqu\u00e9?\u2014no\u3002") == ["\u00bf", "que", "?", "\u2014", "no", "\u3002"]
    assert basic("5\u20ac") == ["5\u20ac"]  # a currency sign (Sc) is not punctuation


def test_wordpiece_greedy_longest_match():
    vocab = {t: i for i, t in enumerate(["[UNK]", "[CLS]", "[SEP]", "want", "##want", "##ed", "wa", "un", "runn", "##ing"])}
    wordpiece = tokenization.WordpieceTokenizer(vocab)
    assert wordpiece.tokenize("unwanted running") == ["un", "##want", "##ed", "runn", "##ing"]
    assert wordpiece.tokenize("unwantedX running") == ["[UNK]", "runn", "##ing"]
    assert wordpiece.tokenize("") == []


def test_word_length_limit_is_200_characters(uncased):
    assert uncased.tokenize("a" * 200) != ["[UNK]"]
    assert uncased.tokenize("a" * 201) == ["[UNK]"]
    assert uncased.tokenize("x " + "b" * 201 + " y") == ["x", "[UNK]", "y"]


def test_unknown_characters_make_the_word_unknown(uncased):
    assert uncased.tokenize("good x\ue000y day") == ["good", "[UNK]", "day"]


def test_full_tokenizer_on_real_vocab(uncased, cased):
    # The example in the reference's README.
    assert uncased.tokenize("John Johanson's house") == ["john", "johan", "##son", "'", "s", "house"]
    assert cased.tokenize("Hello Wörld") == ["Hello", "W", "##ö", "##rl", "##d"]
    ids = uncased.convert_tokens_to_ids(["[CLS]", "the", "[SEP]"])
    assert ids == [101, 1996, 102]
    assert uncased.convert_ids_to_tokens(ids) == ["[CLS]", "the", "[SEP]"]
    assert uncased.vocab["[PAD]"] == 0 and uncased.inv_vocab[100] == "[UNK]"
    assert len(uncased.vocab) == 30522 and len(cased.vocab) == 28996


def test_vocab_semantics_match_the_reference(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("[PAD]\n  a  \nb\na\n\nc", encoding="utf-8")
    vocab = tokenization.load_vocab(path)
    assert vocab == oracle.read_vocab(path) == {"[PAD]": 0, "a": 3, "b": 2, "": 4, "c": 5}
    assert list(vocab) == ["[PAD]", "a", "b", "", "c"]  # a repeat keeps its first place, last id
    # Carriage returns, which the reference's reader drops wherever they are: Windows line ends, and one inside a token.
    path.write_bytes(b"[PAD]\r\n  a  \r\nb\r\n\r\nc\rd\n##e")
    assert tokenization.load_vocab(path) == oracle.read_vocab(path) == {"[PAD]": 0, "a": 1, "b": 2, "": 3, "cd": 4, "##e": 5}


def test_bad_vocab_files(tmp_path):
    with pytest.raises(tokenization.VocabError, match="missing.txt"):
        tokenization.load_vocab(tmp_path / "missing.txt")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"[PAD]\n\xff\xfe\n")
    with pytest.raises(tokenization.VocabError, match="bad.txt: not UTF-8"):
        tokenization.load_vocab(bad)


def test_bytes_input_drops_invalid_utf8(uncased):
    assert uncased.tokenize(b"caf\xc3\xa9 \xff\xfeok") == uncased.tokenize("caf\u00e9 ok")


@pytest.mark.parametrize("lower", [True, False])
def test_equals_the_reference_rules_on_all_of_wikitext2_valid(lower, uncased_vocab, cased_vocab):
    vocab_path = uncased_vocab if lower else cased_vocab
    tokenizer = tokenization.FullTokenizer(str(vocab_path), do_lower_case=lower)
    vocab = oracle.read_vocab(vocab_path)
    lines = shared_file("corpus", "wikitext2_valid.raw.txt").read_text(encoding="utf-8").split("\n")
    assert len(lines) > 3000
    for line in lines:
        assert tokenizer.tokenize(line) == oracle.full_tokens(line, vocab, lower), line


mixed_text = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from("\x00\ufffd\u200b\u00ad\t\n\r \u00a0\u3000\u2028.,!?'\"-$^`\u00bf\u3002\u535a\ue000\u0301aZ\u00e9"),
    ),
    max_size=60,
)


@settings(max_examples=400, deadline=None)
@given(text=mixed_text, lower=st.booleans())
def test_equals_the_reference_rules_on_arbitrary_unicode(text, lower, uncased_vocab):
    tokenizer = _tokenizers(str(uncased_vocab), lower)
    assert tokenizer.tokenize(text) == oracle.full_tokens(text, tokenizer.vocab, lower)
    assert tokenization.BasicTokenizer(lower).tokenize(text) == oracle.basic_tokens(text, lower)


_cache = {}


def _tokenizers(path, lower):
    if (path, lower) not in _cache:
        _cache[path, lower] = tokenization.FullTokenizer(path, do_lower_case=lower)
    return _cache[path, lower]


@pytest.mark.parametrize("do_lower_case,init_checkpoint,refused", [
    (True, "models/cased_L-12_H-768_A-12/bert_model.ckpt", True),
    (False, "/data/multilingual_L-12_H-768_A-12/bert_model.ckpt.index", True),
    (True, "multi_cased_L-12_H-768_A-12/bert_model.ckpt", True),
    (False, "cased_L-24_H-1024_A-16/bert_model.ckpt", False),
    (True, "uncased_L-12_H-768_A-12/bert_model.ckpt", False),
    (False, "run/multi_cased_L-12_H-768_A-12/ckpt-100", False),  # not a released file: no claim on its casing
    (True, "my_cased_L-12_H-768_A-12/bert_model.ckpt", False),  # not one of the released names
    (True, None, False),
])
def test_case_must_match_a_released_checkpoint_as_the_reference_checks(do_lower_case, init_checkpoint, refused):
    if not refused:
        tokenization.validate_case_matches_checkpoint(do_lower_case, init_checkpoint)
        return
    with pytest.raises(tokenization.InputError) as error:
        tokenization.validate_case_matches_checkpoint(do_lower_case, init_checkpoint)
    message = str(error.value)
    assert f"--do_lower_case={do_lower_case}" in message and f"--do_lower_case={not do_lower_case}" in message
    assert init_checkpoint in message and "\n" not in message


def test_case_check_recognises_a_released_model_directory(tmp_path):
    released = tmp_path / "uncased_L-24_H-1024_A-16"
    released.mkdir()
    with pytest.raises(tokenization.InputError, match="uncased_L-24_H-1024_A-16 is an uncased model"):
        tokenization.validate_case_matches_checkpoint(False, str(released) + "/")
    tokenization.validate_case_matches_checkpoint(True, released)


def test_whole_word_masking_reads_sentencepiece_words_as_albert_does():
    # ALBERT's _is_start_piece: a piece opening a word (▁) or a <symbol>, or one of its punctuation pieces, starts
    # a word; any other piece (an apostrophe among them) continues the one before.
    pieces = ["▁word", "ing", ",", ".", "<unk>", "'", "s", "▁", "-", "=", "\\", "[UNK]", "[", "]"]
    continues = [tokenization.SentencePieceTokenizer.is_continuation(piece) for piece in pieces]
    assert continues == [False, True, False, False, False, True, True, False, False, True, False, False, False, False]


def test_a_vocabulary_s_casing_is_told_by_its_pieces_with_case_alone(uncased, cased):
    assert tokenization.vocabulary_casing(uncased.vocab) == "uncased"
    assert tokenization.vocabulary_casing(cased.vocab) == "cased"
    # Pieces of scripts without case say nothing: lower-casing would strip their marks (हिन्दी -> हिनदी).
    arabic = [chr(0x0621 + i % 26) + chr(0x0621 + i // 26 % 26) + chr(0x064B + i // 676) for i in range(3000)]
    assert tokenization.vocabulary_casing(["[UNK]", *arabic]) is None
    # A Chinese vocabulary: ideographs, lower-case Latin pieces and a few capitals (A to Z) is neither.
    latin = [f"{a}{b}" for a in "abcdefghijklmnopqrstuvwxyz" for b in "abcdefghijklmnopqrstuvwxyz"] * 2
    chinese = [chr(0x4E00 + i) for i in range(3000)] + latin + list("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    assert tokenization.vocabulary_casing(chinese) is None
    # A cased vocabulary of mostly caseless pieces is cased still.
    assert tokenization.vocabulary_casing(arabic + ["Paris", "London", "the", "of", "Berlin"]) == "cased"
