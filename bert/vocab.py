"""bert-vocab: learn a vocabulary from text.

`--model_type=wordpiece` writes a BERT vocab.txt: `[PAD]` (id 0, which the reference's padding
assumes), `[UNK]`, `[CLS]`, `[SEP]`, `[MASK]`, `--num_unused` `[unusedN]` slots, then the learned
pieces. Text is first split by this package's own BasicTokenizer (the reference's rules), and the
Hugging Face `tokenizers` WordPiece trainer learns the pieces from those words, so every piece is one
that FullTokenizer can produce. Each learned character also gets its `##` continuation form, so a
character seen only at word starts in training does not turn a whole later word into [UNK].

`--model_type=sentencepiece` trains a SentencePiece model (`<output_file>` is the model file, a
`.vocab` is written beside it) with `[PAD]`=0, `[UNK]`=1 and `[CLS]`, `[SEP]`, `[MASK]` as control
symbols, which text never produces (as ALBERT's), for `bert-create-data --spm_model_file`. Sampling is
seeded and the model holds no path, so the same text gives the same model bytes on every run.

    bert-vocab --input_file=corpus/*.txt --output_file=vocab.txt --vocab_size=30522
"""

import collections
import contextlib
import io
import os
import random
import re
import tempfile
import time

from absl import flags

from bert import cli, fileio, progress, tokenization
from bert.errors import InputError

FLAGS = flags.FLAGS

# Four times the largest vocabularies in use (XLM-V's million pieces): the trainers allocate for every piece asked
# for before they learn any, and past this a typing slip (--vocab_size=2147483647) ran out of memory or hung.
MAX_VOCAB_SIZE = 2**22
# Lines SentencePiece's trainer takes at least (its default max_sentence_length, in bytes): it skips longer ones.
SPM_MIN_SENTENCE_BYTES = 4192
# Lines longer than this are read in pieces (see bounded_lines).
MAX_LINE_BYTES = 1 << 20
# A warning names --limit_alphabet when the characters it leaves out are more of the text than this.
ALPHABET_LOSS_WARNING = 0.001
# The seed of the sampling of --spm_max_sentences.
SAMPLE_SEED = 12345


def define_flags():
    flags.DEFINE_string("input_file", None, "Text to learn from (comma list or globs), e.g. bert-prepare-wiki output.")
    flags.DEFINE_string(
        "output_file", None, "The vocab.txt to write (wordpiece), or the .model file (sentencepiece)."
    )
    flags.DEFINE_enum("model_type", "wordpiece", ["wordpiece", "sentencepiece"], "What to learn.")
    flags.DEFINE_integer("vocab_size", 30522, "Size of the vocabulary, special tokens and [unusedN] slots included.")
    flags.DEFINE_bool(
        "do_lower_case", True,
        "For uncased models. wordpiece: lower-case and strip accents first; sentencepiece: case-fold (NFKC) only.",
    )
    flags.DEFINE_integer(
        "num_unused", 100, "wordpiece: [unusedN] slots after the special tokens, for tokens added later."
    )
    flags.DEFINE_integer("min_frequency", 2, "wordpiece: minimum count of a pair to be merged into a piece.")
    flags.DEFINE_integer(
        "limit_alphabet", 1000,
        "wordpiece: the most frequent characters kept, at most (Chinese or Japanese text needs thousands); the others "
        "become [UNK].",
    )
    flags.DEFINE_enum(
        "spm_model_type", "unigram", ["unigram", "bpe", "char", "word"], "sentencepiece: the model type."
    )
    flags.DEFINE_integer(
        "spm_max_sentences", 10_000_000, "sentencepiece: sentences sampled for training (bounds memory; 0: all)."
    )


def special_tokens(num_unused):
    return [*tokenization.SPECIAL_TOKENS, *(f"[unused{i}]" for i in range(num_unused))]


class Corpus:
    """The non-blank lines of the input files, read with a progress bar over bytes; invalid UTF-8 bytes are
    dropped, as bert-create-data drops them, and counted."""

    def __init__(self, input_files):
        self.files = input_files
        self.invalid_bytes = 0

    def __iter__(self):
        streams = any(fileio.is_stream(p) for p in self.files)
        total = None if streams else sum(os.path.getsize(p) for p in self.files)
        with progress.bar(total=total, desc="reading", unit="B", unit_scale=True) as bar:
            for path in self.files:
                with open(path, "rb") as f:
                    for raw in bounded_lines(f):
                        bar.update(len(raw))
                        line, dropped = fileio.decode_dropping_invalid(raw)
                        self.invalid_bytes += dropped
                        line = line.strip()
                        if line:
                            yield line

    def no_text_error(self):
        return InputError(f"--input_file: no text to learn from in {', '.join(self.files)}")


def bounded_lines(stream):
    """The lines of a binary stream, each longer than MAX_LINE_BYTES cut into pieces at whitespace, where the basic
    tokenizer splits the text anyway (a piece is cut elsewhere only where it holds none, then between characters).

    A file of one huge line (old Mac text, its lines ended by \\r alone, or text with no line ends) was held whole,
    and taken apart into words, at 80 times its size.
    """
    tail = b""
    for raw in iter(lambda: stream.readline(MAX_LINE_BYTES), b""):
        piece, tail = tail + raw, b""
        # A whole line, or the stream's last, unended: as it is.
        if raw.endswith(b"\n") or len(raw) < MAX_LINE_BYTES:
            yield piece
            continue
        cut = max(piece.rfind(space) for space in (b" ", b"\t", b"\r")) + 1
        if not cut:
            # Not inside a UTF-8 character: the last one, whole or not, goes on with the next piece.
            cut = len(piece) - 1
            while cut > 0 and piece[cut] & 0xC0 == 0x80:
                cut -= 1
            if piece[cut] < 0x80:
                cut += 1
            cut = cut or len(piece)
        tail = piece[cut:]
        yield piece[:cut]
    if tail:
        yield tail


def learn_wordpiece(corpus, scratch_dir, vocab_size, do_lower_case, num_unused, min_frequency, limit_alphabet):
    """(the vocabulary as a list of tokens in id order, the same list for the same input every run;
    (how many distinct characters the alphabet left out, their share of the text's characters))."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    reserved = special_tokens(num_unused)
    basic = tokenization.BasicTokenizer(do_lower_case=do_lower_case)
    # The basic tokens go to a scratch file (beside the output; in the system's temporary directory where
    # there is none): the trainer reads them after the alphabet is known, and the corpus need not fit in memory.
    with _scratch_file(scratch_dir) as (words, words_path):
        characters = collections.Counter()
        for line in corpus:
            text = " ".join(basic.tokenize(line))
            characters.update(text)
            try:
                words.write(text + "\n")
            except OSError as e:
                raise _scratch_error(scratch_dir, e) from None
        try:
            words.flush()
        except OSError as e:
            raise _scratch_error(scratch_dir, e) from None
        characters.pop(" ", None)
        if not characters:
            raise corpus.no_text_error()
        alphabet = _alphabet(characters, min(limit_alphabet, (vocab_size - len(reserved)) // 2))
        left_out = set(characters).difference(alphabet)
        share = sum(characters[c] for c in left_out) / sum(characters.values())
        # The trainer numbers characters (and their ## forms) in hash order and breaks ties between
        # equally frequent pairs by those numbers, so the same text gave a different vocabulary on
        # every run. Handing it the whole alphabet, in a fixed order, ahead of training fixes every
        # number it breaks ties by. The alphabet is also its initial_alphabet, so its own
        # --limit_alphabet cut (ties in hash order) keeps exactly these characters and drops the rest
        # from the words.
        tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            initial_alphabet=alphabet,
            limit_alphabet=len(alphabet),
            special_tokens=reserved + alphabet + [f"##{c}" for c in alphabet],
            continuing_subword_prefix="##",
            show_progress=False,
        )
        progress.in_background(lambda: tokenizer.train([words_path], trainer=trainer), "learning the pieces")
    by_id = [t for t, _ in sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])]
    return by_id[:vocab_size], (len(left_out), share)


@contextlib.contextmanager
def _scratch_file(directory):
    """(a text file open for writing, a path the trainer can open it by). On Linux the file has no name, and the
    kernel frees it when the process ends, however it ends: a killed run left a scratch copy of its corpus behind."""
    named = not os.path.isdir("/proc/self/fd")
    try:
        scratch = (tempfile.NamedTemporaryFile if named else tempfile.TemporaryFile)(
            "w+", encoding="utf-8", dir=directory, prefix=".vocab-")
    except OSError as e:
        raise InputError(f"cannot make a scratch file in {directory or tempfile.gettempdir()}: {e.strerror or e}") from None
    with scratch:
        yield scratch, scratch.name if named else f"/proc/self/fd/{scratch.fileno()}"


def _scratch_error(directory, error):
    return InputError(f"cannot write the text's words to a scratch file in {directory or tempfile.gettempdir()}: "
                      f"{error.strerror or error}")


def _alphabet(characters, limit):
    """The `limit` most frequent characters (ties by code point), in code point order."""
    kept = sorted(characters.items(), key=lambda item: (-item[1], item[0]))[:limit]
    return sorted(c for c, _ in kept)


def learn_sentencepiece(corpus, output_file, vocab_size, do_lower_case, model_type, max_sentences):
    import sentencepiece

    # Sampled here: SentencePiece's own sampling differs from one process to the next, whatever its seed.
    sentences = collections.deque(sample_lines(corpus, max_sentences, random.Random(SAMPLE_SEED)) if max_sentences
                                  else corpus)
    count = len(sentences)
    # The trainer skips, without a word, lines longer than its max_sentence_length: a corpus of one paragraph a
    # line lost its long paragraphs, and one of long lines failed with nothing to learn from.
    longest = max((len(line.encode("utf-8")) for line in sentences), default=0)
    # Written to a stream, the model holds no path (a model_prefix would differ on every run).
    model = io.BytesIO()

    def train():
        sentencepiece.SentencePieceTrainer.train(
            # Each line is let go as the trainer, which keeps its own copy, takes it.
            sentence_iterator=(sentences.popleft() for _ in range(count)),
            model_writer=model,
            vocab_size=vocab_size,
            model_type=model_type,
            max_sentence_length=max(SPM_MIN_SENTENCE_BYTES, longest),
            normalization_rule_name="nmt_nfkc_cf" if do_lower_case else "nmt_nfkc",
            pad_id=0,
            pad_piece="[PAD]",
            unk_id=1,
            unk_piece="[UNK]",
            bos_id=-1,
            eos_id=-1,
            control_symbols=["[CLS]", "[SEP]", "[MASK]"],
            minloglevel=2,
        )

    try:
        progress.in_background(train, "learning the pieces")
    except RuntimeError as e:
        if not count:
            raise corpus.no_text_error() from None
        raise InputError(f"sentencepiece training failed: {_trainer_message(e)}") from None
    processor = sentencepiece.SentencePieceProcessor(model_proto=model.getvalue())
    pieces = "".join(f"{processor.IdToPiece(i)}\t{processor.GetScore(i):g}\n" for i in range(processor.GetPieceSize()))
    with fileio.AtomicFile(output_file, "wb") as f:
        f.write(model.getvalue())
    with fileio.AtomicFile(sentencepiece_vocab_path(output_file), "w") as f:
        f.write(pieces)
    return processor.GetPieceSize()


def sample_lines(lines, size, rng):
    """`size` of the lines drawn uniformly (reservoir sampling, holding only the sample), in input order."""
    sample = []
    for index, line in enumerate(lines):
        if index < size:
            sample.append((index, line))
        else:
            slot = rng.randrange(index + 1)
            if slot < size:
                sample[slot] = (index, line)
    return [line for _, line in sorted(sample)]


def _trainer_message(error):
    """The trainer's last line without its source location, in the words of bert-vocab's flags."""
    last_line = str(error).strip().splitlines()[-1]
    message = re.sub(r"^(\w+: )?\S+\.cc\(\d+\) \[.*?\]\s*", "", last_line) or last_line
    return message.replace(" or decrease character_coverage with --character_coverage option", "")


def sentencepiece_vocab_path(model_file):
    """Where the piece list (`.vocab`) of a SentencePiece model written to `model_file` goes, beside it."""
    return os.path.splitext(model_file)[0] + ".vocab"


def main(argv):
    del argv
    with fileio.sigterm_interrupts():
        _learn()


def _learn():
    input_files = fileio.expand_inputs(FLAGS.input_file, streams=True)
    fileio.warn_if_named_twice(input_files, cli.rank_log())
    fileio.check_text_files(input_files, "--input_file")
    outputs = [FLAGS.output_file]
    if FLAGS.model_type != "wordpiece":
        if fileio.is_stream(FLAGS.output_file):
            raise InputError(f"--output_file: {FLAGS.output_file} is a stream; a SentencePiece model is a file with its "
                             f"piece list beside it: name a file")
        if sentencepiece_vocab_path(FLAGS.output_file) == FLAGS.output_file:
            raise InputError(f"--output_file: {FLAGS.output_file} is where the model's piece list goes; name the model "
                             f"file .model")
        outputs.append(sentencepiece_vocab_path(FLAGS.output_file))
    for path in outputs:
        fileio.check_output_file(path, "--output_file", input_files)
    if not 8 <= FLAGS.vocab_size <= MAX_VOCAB_SIZE:
        raise InputError(f"--vocab_size must be in [8, {MAX_VOCAB_SIZE}], got {FLAGS.vocab_size}")
    if FLAGS.min_frequency < 0:
        raise InputError(f"--min_frequency must be 0 or more, got {FLAGS.min_frequency}")
    if FLAGS.num_unused < 0:
        raise InputError(f"--num_unused must be 0 or more, got {FLAGS.num_unused}")
    if FLAGS.limit_alphabet < 1:
        raise InputError(f"--limit_alphabet must be at least 1, got {FLAGS.limit_alphabet}")
    if FLAGS.spm_max_sentences < 0:
        raise InputError(f"--spm_max_sentences must be 0 (all) or more, got {FLAGS.spm_max_sentences}")
    reserved = len(tokenization.SPECIAL_TOKENS) + FLAGS.num_unused
    if FLAGS.model_type == "wordpiece" and FLAGS.vocab_size < reserved + 2:
        raise InputError(f"--vocab_size ({FLAGS.vocab_size}) leaves no room for a character (and its ## form) after "
                         f"the {reserved} special and unused tokens (--num_unused={FLAGS.num_unused})")
    corpus = Corpus(input_files)
    start = time.perf_counter()
    notes = []
    if FLAGS.model_type == "wordpiece":
        # A vocabulary written to a pipe or /dev/stdout has no directory of its own to work in.
        scratch_dir = None if fileio.is_stream(FLAGS.output_file) else os.path.dirname(os.path.realpath(FLAGS.output_file))
        tokens, (left_out, share) = learn_wordpiece(
            corpus, scratch_dir, FLAGS.vocab_size,
            FLAGS.do_lower_case, FLAGS.num_unused, FLAGS.min_frequency, FLAGS.limit_alphabet,
        )
        with fileio.AtomicFile(FLAGS.output_file, "w") as f:
            f.write("".join(f"{token}\n" for token in tokens))
        size = len(tokens)
        if left_out:
            limit = "--limit_alphabet" if FLAGS.limit_alphabet <= (FLAGS.vocab_size - reserved) // 2 else "--vocab_size"
            notes.append(f"{left_out} rarer characters ({share:.2%} of the text's) left out by {limit}")
            if share > ALPHABET_LOSS_WARNING:
                cli.rank_log()(f"warning: {share:.2%} of the text's characters ({left_out} distinct ones) are in no "
                               f"piece and become [UNK]: raise {limit} (now {getattr(FLAGS, limit[2:])})")
        if size < FLAGS.vocab_size:
            notes.append(f"short of --vocab_size={FLAGS.vocab_size}: the text holds no more pieces seen "
                         f"--min_frequency={FLAGS.min_frequency} times")
    else:
        size = learn_sentencepiece(
            corpus, FLAGS.output_file, FLAGS.vocab_size, FLAGS.do_lower_case, FLAGS.spm_model_type,
            FLAGS.spm_max_sentences,
        )
    if corpus.invalid_bytes:
        notes.insert(0, f"dropped {corpus.invalid_bytes} invalid UTF-8 bytes")
    cli.print_summary(
        f"bert-vocab: {FLAGS.model_type} vocabulary of {size} tokens -> {FLAGS.output_file} "
        f"({', '.join([f'{time.perf_counter() - start:.1f}s', *notes])})", FLAGS.output_file
    )


def run():
    define_flags()
    cli.run_command(main, required=("input_file", "output_file"))


if __name__ == "__main__":
    run()
