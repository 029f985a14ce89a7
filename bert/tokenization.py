"""Tokenization with the exact rules of Google's BERT reference (SPEC §3).

The API is the reference's: `FullTokenizer`, `BasicTokenizer`, `WordpieceTokenizer`, `load_vocab`,
`convert_to_unicode`. The output equals the reference token for token on any text; it is faster
because the character rules run as one `str.translate` per text and everything after the whitespace
split is a pure function of one whitespace-separated word, so it is computed once per distinct word
and cached.

`SentencePieceTokenizer` is the second tokenizer of the pipeline (`--spm_model_file`).
"""

import os
import unicodedata

from bert import fileio
from bert.errors import InputError

UNK_TOKEN = "[UNK]"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MAX_INPUT_CHARS_PER_WORD = 200
# Distinct words kept in a tokenizer's cache before it is emptied: bounds memory on unbounded corpora.
WORD_CACHE_LIMIT = 1_000_000


# Google's released models, by the directory their bert_model.ckpt ships in, and whether their vocabulary
# is lower-cased: the list the reference's validate_case_matches_checkpoint checks.
RELEASED_MODEL_LOWER_CASED = {
    "uncased_L-24_H-1024_A-16": True,
    "uncased_L-12_H-768_A-12": True,
    "multilingual_L-12_H-768_A-12": True,
    "chinese_L-12_H-768_A-12": True,
    "cased_L-12_H-768_A-12": False,
    "cased_L-24_H-1024_A-16": False,
    "multi_cased_L-12_H-768_A-12": False,
}


class VocabError(InputError):
    """A vocabulary or SentencePiece model file that cannot be used."""


def validate_case_matches_checkpoint(do_lower_case, init_checkpoint, use="fine-tune on"):
    """Refuses a `do_lower_case` that contradicts the casing of the released model `init_checkpoint` names.

    As in the reference, the model is recognised by the name of the directory holding its
    bert_model.ckpt; here that directory may also be given as the checkpoint itself. Fine-tuning a cased
    model on lower-cased text (or the reverse) runs, but maps many words to other pieces than the model
    was pre-trained on. `use` says what the command does with the text, in the message.
    """
    if not init_checkpoint:
        return
    path = os.path.normpath(os.fspath(init_checkpoint))
    if os.path.basename(path).startswith("bert_model.ckpt"):
        path = os.path.dirname(path)
    elif not os.path.isdir(path):
        return
    model_name = os.path.basename(path)
    lower_cased = RELEASED_MODEL_LOWER_CASED.get(model_name)
    if lower_cased is not None and lower_cased != bool(do_lower_case):
        kind = "an uncased" if lower_cased else "a cased"
        raise InputError(
            f"--do_lower_case={bool(do_lower_case)} with --init_checkpoint={init_checkpoint}: {model_name} is "
            f"{kind} model, so pass --do_lower_case={lower_cased} to {use} text cased as it was pre-trained"
        )


def convert_to_unicode(text):
    """Returns `text` as str; bytes are decoded as UTF-8, dropping invalid bytes as the reference does."""
    if isinstance(text, str):
        return text
    if isinstance(text, bytes):
        return text.decode("utf-8", "ignore")
    raise ValueError(f"Unsupported string type: {type(text)}")


def load_vocab(vocab_file):
    """Reads a vocab.txt with the reference's semantics.

    One token a line, stripped; the id is the line number. A token that appears twice keeps its
    last line number but its first place in the key order, exactly as the reference's OrderedDict.
    """
    try:
        lines = fileio.read_lines_as_gfile(vocab_file)
    except OSError as e:
        raise VocabError(f"vocab file {vocab_file}: {e.strerror or e}") from None
    except InputError as e:
        raise VocabError(f"vocab file {e}") from None
    vocab = {}
    for index, line in enumerate(lines):
        vocab[line.strip()] = index
    if not vocab:
        raise VocabError(f"vocab file {vocab_file}: empty")
    return vocab


def whitespace_tokenize(text):
    """Strips and splits on whitespace (Python's notion, as the reference)."""
    return text.split()


def _is_whitespace(char):
    """Space, tab, newline, carriage return and Unicode category Zs."""
    return char in " \t\n\r" or unicodedata.category(char) == "Zs"


def _is_control(char):
    """Unicode categories Cc and Cf, except tab, newline and carriage return (counted as whitespace)."""
    if char in "\t\n\r":
        return False
    return unicodedata.category(char) in ("Cc", "Cf")


def _is_punctuation(char):
    """Unicode category P*, plus every non-alphanumeric printable ASCII character."""
    cp = ord(char)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(char).startswith("P")


_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)


def _is_chinese_char(cp):
    """Code points of the CJK Unified Ideographs blocks, as the reference defines them."""
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


class _CleanTable(dict):
    """`str.translate` table that cleans text and spaces out CJK ideographs in one pass.

    Entries are computed the first time a code point is seen: dropped (None) for NUL, U+FFFD and
    control characters, " " for whitespace, " X " for CJK ideographs; any other character maps to
    itself.
    """

    def __missing__(self, cp):
        char = chr(cp)
        if cp == 0 or cp == 0xFFFD or _is_control(char):
            value = None
        elif _is_whitespace(char):
            value = " "
        elif _is_chinese_char(cp):
            value = f" {char} "
        else:
            value = cp
        self[cp] = value
        return value


_CLEAN_TABLE = _CleanTable()


def _clean_and_space_cjk(text):
    return text.translate(_CLEAN_TABLE)


def _strip_accents(text):
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


def _split_on_punctuation(text):
    pieces = []
    start_new_word = True
    for char in text:
        if _is_punctuation(char):
            pieces.append(char)
            start_new_word = True
        else:
            if start_new_word:
                pieces.append(char)
            else:
                pieces[-1] += char
            start_new_word = False
    return pieces


def _tokenize_cached(text, cache, tokenize_word):
    """Cleans `text`, splits it on whitespace, and maps each word through a cached `tokenize_word`."""
    tokens = []
    for word in whitespace_tokenize(_clean_and_space_cjk(convert_to_unicode(text))):
        pieces = cache.get(word)
        if pieces is None:
            pieces = tokenize_word(word)
            if len(cache) >= WORD_CACHE_LIMIT:
                cache.clear()
            cache[word] = pieces
        tokens.extend(pieces)
    return tokens


class BasicTokenizer:
    """Cleans text, splits on whitespace and punctuation, optionally lower-cases and strips accents."""

    def __init__(self, do_lower_case=True):
        self.do_lower_case = do_lower_case
        self._cache = {}

    def tokenize(self, text):
        return _tokenize_cached(text, self._cache, self._tokenize_word)

    def _tokenize_word(self, word):
        if self.do_lower_case:
            word = _strip_accents(word.lower())
        return tuple(whitespace_tokenize(" ".join(_split_on_punctuation(word))))


class WordpieceTokenizer:
    """Greedy longest-match-first WordPiece; continuation pieces carry the `##` prefix."""

    def __init__(self, vocab, unk_token=UNK_TOKEN, max_input_chars_per_word=MAX_INPUT_CHARS_PER_WORD):
        self.vocab = vocab
        self.unk_token = unk_token
        self.max_input_chars_per_word = max_input_chars_per_word

    def tokenize(self, text):
        tokens = []
        for word in whitespace_tokenize(convert_to_unicode(text)):
            tokens.extend(self.tokenize_word(word))
        return tokens

    def tokenize_word(self, word):
        """The pieces of one whitespace-free word, or `[unk_token]` if it cannot be fully matched."""
        if len(word) > self.max_input_chars_per_word:
            return [self.unk_token]
        vocab = self.vocab
        pieces = []
        start = 0
        while start < len(word):
            end = len(word)
            while start < end:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in vocab:
                    pieces.append(piece)
                    break
                end -= 1
            else:
                return [self.unk_token]
            start = end
        return pieces


class FullTokenizer:
    """BasicTokenizer followed by WordpieceTokenizer, with the reference's vocabulary semantics."""

    def __init__(self, vocab_file, do_lower_case=True):
        self.vocab = load_vocab(vocab_file)
        self.inv_vocab = {v: k for k, v in self.vocab.items()}
        # Ids are line numbers: a token repeated in the file leaves fewer tokens than ids.
        self.vocab_size = max(self.vocab.values()) + 1
        self.basic_tokenizer = BasicTokenizer(do_lower_case=do_lower_case)
        self.lower_cases = do_lower_case
        self.wordpiece_tokenizer = WordpieceTokenizer(vocab=self.vocab)
        self.unk_token = self.wordpiece_tokenizer.unk_token
        self._cache = {}

    def tokenize(self, text):
        return _tokenize_cached(text, self._cache, self._tokenize_word)

    def _tokenize_word(self, word):
        pieces = []
        for token in self.basic_tokenizer._tokenize_word(word):
            pieces.extend(self.wordpiece_tokenizer.tokenize_word(token))
        return tuple(pieces)

    def convert_tokens_to_ids(self, tokens):
        return [self.vocab[token] for token in tokens]

    def convert_ids_to_tokens(self, ids):
        return [self.inv_vocab[i] for i in ids]

    @staticmethod
    def is_continuation(token):
        """Whether a piece continues the previous word (whole-word masking groups them)."""
        return token.startswith("##")


class SentencePieceTokenizer:
    """A SentencePiece model as a drop-in for FullTokenizer; its pieces are its vocabulary.

    The model's normalizer cases text (bert-vocab's nmt_nfkc_cf folds case). `lower_case` True lower-cases the
    text first for a model that does not fold case itself, as ALBERT's tokenizer does for its models; False keeps
    case, which a case-folding model cannot; None leaves the casing to the model, reading a model none of whose
    text pieces holds an upper-case letter (ALBERT's, trained on lower-cased text) as one that needs it lower-cased.
    """

    WORD_START = "\u2581"
    # As ALBERT's whole-word masking reads SentencePiece pieces: these, and pieces opening a word or a symbol
    # (<unk> there, [UNK] here), start a word of their own.
    WORD_PIECES = frozenset('!"#$%&()*+,-./:;?@[\\]^_`{|}~')

    def __init__(self, model_file, lower_case=None):
        import sentencepiece

        self.processor = sentencepiece.SentencePieceProcessor()
        try:
            loaded = self.processor.Load(str(model_file))
        except (OSError, RuntimeError) as e:
            raise VocabError(f"SentencePiece model {model_file}: {e}") from None
        if not loaded:
            raise VocabError(f"SentencePiece model {model_file}: cannot be loaded")
        self.vocab = {self.processor.IdToPiece(i): i for i in range(self.processor.GetPieceSize())}
        self.inv_vocab = {v: k for k, v in self.vocab.items()}
        self.vocab_size = self.processor.GetPieceSize()
        self.unk_token = self.processor.IdToPiece(self.processor.unk_id())
        folds_case = self.processor.Normalize("BERT \u00c9T\u00c9") == self.processor.Normalize("bert \u00e9t\u00e9")
        if lower_case is False and folds_case:
            raise VocabError(f"SentencePiece model {model_file}: it folds case itself, so it cannot keep case "
                             f"(--do_lower_case=False)")
        if lower_case is None and not folds_case:
            lower_case = not _has_upper_case_pieces(self.processor)
        self.lower_input = bool(lower_case) and not folds_case
        self.lower_cases = folds_case or self.lower_input

    def tokenize(self, text):
        text = convert_to_unicode(text)
        if self.lower_input:
            text = text.lower()
        # Characters the model never saw come back as themselves; they are its unknown piece.
        vocab, unknown = self.vocab, self.unk_token
        return [p if p in vocab else unknown for p in self.processor.EncodeAsPieces(text)]

    def convert_tokens_to_ids(self, tokens):
        return [self.vocab[token] for token in tokens]

    def convert_ids_to_tokens(self, ids):
        return [self.inv_vocab[i] for i in ids]

    @classmethod
    def is_continuation(cls, token):
        """Whether a piece continues the previous word (whole-word masking groups them), by ALBERT's rule."""
        symbol = len(token) > 2 and token[0] == "[" and token[-1] == "]"
        return not (token.startswith((cls.WORD_START, "<")) or token in cls.WORD_PIECES or symbol)


def _has_upper_case_pieces(processor):
    """Whether a text piece of the model (not a control, user-defined or unknown symbol) has an upper-case letter."""
    from sentencepiece import sentencepiece_model_pb2

    model = sentencepiece_model_pb2.ModelProto.FromString(processor.serialized_model_proto())
    normal = sentencepiece_model_pb2.ModelProto.SentencePiece.NORMAL
    return any(piece.type == normal and any(c.isupper() for c in piece.piece) for piece in model.pieces)


def vocabulary_casing(tokens):
    """"cased" or "uncased" where a WordPiece vocabulary's pieces say which (None where they do not).

    Counted over the pieces holding a letter that has case: Arabic, Devanagari or CJK pieces say nothing. Of
    such pieces Google's uncased vocabulary has no capitalised one in 26930, its cased one 8366 in 26955, its
    Chinese one some 28 (A to Z, <S>, <T>) in a few thousand, which is neither. An uncased verdict needs a
    thousand such pieces; a cased one needs only the share.
    """
    with_case = [token for token in tokens if not (token.startswith("[") and token.endswith("]"))
                 and any(c.lower() != c.upper() for c in token)]
    capitalised = sum(any(c.isupper() for c in token) for token in with_case)
    if capitalised >= 0.1 * len(with_case) and with_case:
        return "cased"
    # Too few pieces with case (a vocabulary of some other script) to tell a cased vocabulary from an uncased one.
    if len(with_case) >= 1000 and capitalised < 0.001 * len(with_case):
        return "uncased"
    return None


def casing_warning(tokenizer, vocab_file):
    """A warning where the lower-casing of a WordPiece `tokenizer` does not suit its vocabulary's casing, else
    None. The reference takes either without a word: an uncased vocabulary makes every capitalised word of
    cased text [UNK] or lower-case pieces, and a cased one loses every piece with a capital to lower-casing."""
    if not isinstance(tokenizer, FullTokenizer):
        return None
    casing = vocabulary_casing(tokenizer.vocab)
    if tokenizer.lower_cases and casing == "cased":
        return (f"warning: {vocab_file} looks cased (many of its pieces hold a capital letter, which lower-cased text "
                f"never matches): pass --do_lower_case=False unless lower-casing is meant")
    if not tokenizer.lower_cases and casing == "uncased":
        return (f"warning: {vocab_file} looks uncased (next to none of its pieces holds a capital letter): with "
                f"--do_lower_case=False a capitalised word becomes [UNK] or other pieces; pass --do_lower_case=True "
                f"unless that is meant")
    return None


def make_tokenizer(vocab_file, spm_model_file=None, do_lower_case=True):
    """The SentencePiece tokenizer of `spm_model_file` if one is given, else the WordPiece one of `vocab_file`
    (`do_lower_case` None: see SentencePieceTokenizer's `lower_case`)."""
    if spm_model_file:
        return SentencePieceTokenizer(spm_model_file, lower_case=do_lower_case)
    return FullTokenizer(vocab_file, do_lower_case=do_lower_case)
