"""Pre-training instances from text (SPEC §5): the reference algorithm, exactly, and a scale mode.

Reference mode reproduces google-research/bert's create_pretraining_data.py record for record: one
`random.Random(seed)` drives every decision in the reference's order, and every document and
instance is held in memory, as there. Instances are built on token ids instead of token strings
(the mapping is one-to-one, so every comparison and draw is the same) and encoded to their record
bytes at once, which is what makes this mode fast.

Scale mode cuts the input at document boundaries into blocks of about `block_size_kb` of text (a
document of more than LONGEST_DOCUMENT_BLOCKS blocks at a line end too); small files share a block,
and a file's end ends a document. Each block is an independent unit processed in a worker process,
with its own seed derived from the run's seed and the block's index; its random next sentences come
from its own documents, or from its neighbour block's when it holds a single one. Records stream
through a bounded shuffle buffer into the output files, so memory stays flat in corpus size, and
the result depends on the seed and block size, not on the number of workers.
"""

import collections
import itertools
import os
import random
from dataclasses import dataclass

from bert import fileio, records
from bert.errors import InputError

REQUIRED_TOKENS = ("[CLS]", "[SEP]", "[MASK]")


@dataclass(frozen=True)
class InstanceOptions:
    max_seq_length: int = 128
    max_predictions_per_seq: int = 20
    masked_lm_prob: float = 0.15
    short_seq_prob: float = 0.1
    dupe_factor: int = 10
    do_whole_word_mask: bool = False

    def validate(self):
        """Raises InputError naming the first nonsensical flag."""
        if self.max_seq_length < 8:
            raise InputError(f"--max_seq_length must be at least 8, got {self.max_seq_length}")
        if not 0.0 < self.masked_lm_prob < 1.0:
            raise InputError(f"--masked_lm_prob must be in (0, 1), got {self.masked_lm_prob}")
        if self.max_predictions_per_seq < 1:
            raise InputError(f"--max_predictions_per_seq must be at least 1, got {self.max_predictions_per_seq}")
        if not 0.0 <= self.short_seq_prob <= 1.0:
            raise InputError(f"--short_seq_prob must be in [0, 1], got {self.short_seq_prob}")
        if self.dupe_factor < 1:
            raise InputError(f"--dupe_factor must be at least 1, got {self.dupe_factor}")


class InputStats:
    """Counts over the text read: lines, documents kept, invalid UTF-8 bytes dropped, documents cut (see
    iter_blocks)."""

    def __init__(self):
        self.lines = 0
        self.documents = 0
        self.invalid_bytes = 0
        self.documents_cut = 0

    def add(self, other):
        self.lines += other.lines
        self.documents += other.documents
        self.invalid_bytes += other.invalid_bytes
        self.documents_cut += other.documents_cut


def documents_from_lines(raw_lines, tokenizer, stats, documents=None):
    """Tokenized documents from raw byte lines, with the reference's rules.

    Carriage returns are dropped wherever they are. A line blank after `str.strip()` closes a document;
    other lines become a segment of token ids, unless they tokenize to nothing. Invalid UTF-8 is dropped
    and counted. Passing the previous call's `documents` continues its last document, as the reference
    continues one across input files. Empty documents are removed by `finish_documents`.
    """
    if documents is None:
        documents = [[]]
    vocab = tokenizer.vocab
    tokenize = tokenizer.tokenize
    for raw in raw_lines:
        stats.lines += 1
        # As the reference's reader, TensorFlow's GFile, does.
        if b"\r" in raw:
            raw = raw.replace(b"\r", b"")
        line, dropped = fileio.decode_dropping_invalid(raw)
        stats.invalid_bytes += dropped
        line = line.strip()
        if not line:
            documents.append([])
            continue
        tokens = tokenize(line)
        if tokens:
            documents[-1].append(list(map(vocab.__getitem__, tokens)))
    return documents


def finish_documents(documents, stats):
    kept = [d for d in documents if d]
    stats.documents += len(kept)
    return kept


def _shuffle_like_random(rng, items):
    """`rng.shuffle(items)` with the same draws, minus one Python call per element.

    Fisher-Yates from the end: position i swaps with j = randbelow(i + 1), drawn as `getrandbits(k)`
    with k = (i + 1).bit_length(), rejecting j > i. The loop runs band by band of equal k.
    """
    getrandbits = rng.getrandbits
    i = len(items) - 1
    while i > 0:
        k = (i + 1).bit_length()
        band_end = (1 << (k - 1)) - 2
        for i in range(i, band_end, -1):
            j = getrandbits(k)
            while j > i:
                j = getrandbits(k)
            items[i], items[j] = items[j], items[i]
        i = band_end


def _pick_shuffle():
    # The inlined loop mirrors CPython's Random.shuffle; it is used only if it draws exactly as the
    # running interpreter's does, so record equality never depends on the Python version.
    for seed in range(4):
        for n in (0, 1, 2, 3, 17, 128, 1000):
            expected, actual = list(range(n)), list(range(n))
            rng_expected, rng_actual = random.Random(seed), random.Random(seed)
            rng_expected.shuffle(expected)
            _shuffle_like_random(rng_actual, actual)
            if expected != actual or rng_expected.random() != rng_actual.random():
                return lambda rng, items: rng.shuffle(items)
    return _shuffle_like_random


shuffle = _pick_shuffle()


class SpecialIds:
    """The ids the algorithm needs from a tokenizer's vocabulary."""

    def __init__(self, tokenizer, vocab_name="the vocabulary"):
        vocab = tokenizer.vocab
        missing = [t for t in (*REQUIRED_TOKENS, tokenizer.unk_token) if t not in vocab]
        if missing:
            raise InputError(f"{vocab_name} has no {missing[0]} token")
        self.cls_id = vocab["[CLS]"]
        self.sep_id = vocab["[SEP]"]
        self.mask_id = vocab["[MASK]"]
        # Random replacements pick any vocab entry in file order (the reference's vocab_words).
        self.random_word_ids = [vocab[word] for word in vocab]
        self.continuation_ids = frozenset(i for word, i in vocab.items() if tokenizer.is_continuation(word))
        self.vocab_size = tokenizer.vocab_size


Instance = collections.namedtuple(
    "Instance", ["input_ids", "num_segment_a_tokens", "masked_lm_positions", "masked_lm_ids", "is_random_next"]
)


class InstanceMaker:
    """Builds the instances of one document (reference steps 3-8), drawing from the given rng."""

    def __init__(self, special_ids, options):
        self.ids = special_ids
        self.options = options

    def from_document(self, documents, document_index, rng):
        document = documents[document_index]
        max_num_tokens = self.options.max_seq_length - 3
        target_length = max_num_tokens
        if rng.random() < self.options.short_seq_prob:
            target_length = rng.randint(2, max_num_tokens)

        instances = []
        chunk = []
        chunk_length = 0
        i = 0
        while i < len(document):
            segment = document[i]
            chunk.append(segment)
            chunk_length += len(segment)
            if i == len(document) - 1 or chunk_length >= target_length:
                a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
                tokens_a = [t for segment in chunk[:a_end] for t in segment]
                if len(chunk) == 1 or rng.random() < 0.5:
                    is_random_next = True
                    target_b_length = target_length - len(tokens_a)
                    for _ in range(10):
                        random_index = rng.randint(0, len(documents) - 1)
                        if random_index != document_index:
                            break
                    random_document = documents[random_index]
                    tokens_b = []
                    for j in range(rng.randint(0, len(random_document) - 1), len(random_document)):
                        tokens_b.extend(random_document[j])
                        if len(tokens_b) >= target_b_length:
                            break
                    # The segments of the chunk not used for A are read again for the next instance.
                    i -= len(chunk) - a_end
                else:
                    is_random_next = False
                    tokens_b = [t for segment in chunk[a_end:] for t in segment]
                truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng)
                instances.append(self._masked(tokens_a, tokens_b, is_random_next, rng))
                chunk = []
                chunk_length = 0
            i += 1
        return instances

    def _masked(self, tokens_a, tokens_b, is_random_next, rng):
        ids = self.ids
        cls_id, sep_id = ids.cls_id, ids.sep_id
        input_ids = [cls_id, *tokens_a, sep_id, *tokens_b, sep_id]
        num_to_predict = min(
            self.options.max_predictions_per_seq,
            max(1, int(round(len(input_ids) * self.options.masked_lm_prob))),
        )
        if self.options.do_whole_word_mask:
            chosen = self._whole_word_positions(input_ids, num_to_predict, rng)
        else:
            candidates = [i for i, t in enumerate(input_ids) if t != cls_id and t != sep_id]
            shuffle(rng, candidates)
            chosen = candidates[:num_to_predict]

        original = list(input_ids)
        random_draw = rng.random
        random_word_ids = ids.random_word_ids
        for index in chosen:
            if random_draw() < 0.8:
                input_ids[index] = ids.mask_id
            elif random_draw() >= 0.5:
                input_ids[index] = random_word_ids[rng.randint(0, len(random_word_ids) - 1)]
        positions = sorted(chosen)
        return Instance(input_ids, len(tokens_a) + 2, positions, [original[p] for p in positions], is_random_next)

    def _whole_word_positions(self, input_ids, num_to_predict, rng):
        """Positions to mask, whole words at a time, in the order the reference draws for them."""
        cls_id, sep_id = self.ids.cls_id, self.ids.sep_id
        continuation_ids = self.ids.continuation_ids
        groups = []
        for i, t in enumerate(input_ids):
            if t == cls_id or t == sep_id:
                continue
            if groups and t in continuation_ids:
                groups[-1].append(i)
            else:
                groups.append([i])
        shuffle(rng, groups)
        chosen = []
        covered = set()
        for group in groups:
            if len(chosen) >= num_to_predict:
                break
            if len(chosen) + len(group) > num_to_predict:
                continue
            if any(i in covered for i in group):
                continue
            covered.update(group)
            chosen.extend(group)
        return chosen

    def records_for_documents(self, documents, dupe_factor, encoder, rng, on_document=None, others=()):
        """Encoded records of every document, `dupe_factor` passes, in the reference's order; random next
        sentences are drawn from `documents` and `others`."""
        out = []
        pool = [*documents, *others] if others else documents
        for _ in range(dupe_factor):
            for document_index in range(len(documents)):
                for instance in self.from_document(pool, document_index, rng):
                    out.append(encoder.encode(*instance))
                if on_document is not None:
                    on_document()
        return out


def truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng):
    """Trims the longer list (B on a tie) from a random end until the pair fits, in place.

    One draw per token removed, as the reference; the draws move the lists' ends and each list is cut once,
    since deleting a list's first token one at a time is quadratic in a long line.
    """
    a_start, a_end, b_start, b_end = 0, len(tokens_a), 0, len(tokens_b)
    while (a_end - a_start) + (b_end - b_start) > max_num_tokens:
        from_front = rng.random() < 0.5
        if a_end - a_start > b_end - b_start:
            a_start, a_end = (a_start + 1, a_end) if from_front else (a_start, a_end - 1)
        else:
            b_start, b_end = (b_start + 1, b_end) if from_front else (b_start, b_end - 1)
    tokens_a[:] = tokens_a[a_start:a_end]
    tokens_b[:] = tokens_b[b_start:b_end]


def read_lines(path):
    """Raw lines of a file, split on b"\\n" only, as the reference's file reader splits them."""
    with open(path, "rb") as f:
        for raw in f:
            # GFile drops carriage returns before it looks for the end of the file: after the last newline,
            # carriage returns alone are the end, not an empty line (which would end a document).
            if not raw.endswith(b"\n") and not raw.strip(b"\r"):
                return
            yield raw


def create_reference_records(input_files, tokenizer, options, random_seed, progress=None):
    """The reference run: (records in output order, InputStats)."""
    special_ids = SpecialIds(tokenizer)
    encoder = records.ExampleEncoder(special_ids.vocab_size, options.max_seq_length, options.max_predictions_per_seq)
    rng = random.Random(random_seed)
    stats = InputStats()
    documents = None
    for path in input_files:
        lines = read_lines(path) if progress is None else progress.read_lines(path)
        documents = documents_from_lines(lines, tokenizer, stats, documents)
    documents = finish_documents(documents, stats)
    if not documents:
        raise InputError(f"--input_file: no text to make instances from in {', '.join(input_files)}")
    rng.shuffle(documents)
    maker = InstanceMaker(special_ids, options)
    on_document = progress.document_done if progress is not None else None
    if progress is not None:
        progress.start_instances(len(documents) * options.dupe_factor)
    out = maker.records_for_documents(documents, options.dupe_factor, encoder, rng, on_document)
    rng.shuffle(out)
    return out, stats


# A document this many blocks long is cut at a line end: one worker would otherwise hold all of it (and
# its records) in memory, and a corpus without blank lines would be one block, made by one worker.
LONGEST_DOCUMENT_BLOCKS = 16


class Block(collections.namedtuple("Block", "chunks continues")):
    """Raw text: `chunks`, one per input file it holds part of; `continues`: whether it begins with the rest of
    a document cut at the end of the block before it."""


def iter_blocks(input_files, block_size, on_cut=None):
    """The input as Blocks of about `block_size` bytes.

    A block ends at a blank line or a file end once it holds `block_size` bytes, so small files share blocks;
    the end of a file ends a document. A document that runs to LONGEST_DOCUMENT_BLOCKS blocks is cut at a
    line end, and `on_cut()` is told of each cut that splits it (one at the file's last line splits nothing).
    """
    chunks, lines, size, continues = [], [], 0, False
    for path in input_files:
        cut_pending = False
        for raw in read_lines(path):
            if cut_pending:
                cut_pending = False
                if raw.strip():
                    continues = True
                    if on_cut:
                        on_cut()
            lines.append(raw)
            size += len(raw)
            if size >= block_size:
                blank = not raw.strip()
                if blank or size >= LONGEST_DOCUMENT_BLOCKS * block_size:
                    cut_pending = not blank
                    yield Block([*chunks, b"".join(lines)], continues)
                    chunks, lines, size, continues = [], [], 0, False
        if lines:
            chunks.append(b"".join(lines))
            lines = []
        if chunks and size >= block_size:
            yield Block(chunks, continues)
            chunks, size, continues = [], 0, False
    if chunks:
        yield Block(chunks, continues)


def with_neighbours(blocks, block_size):
    """(chunks, neighbour) for each Block: the neighbour is about `block_size` bytes (cut at a line end) of the
    latest block before it that holds none of its document, or for the first block, of the next block if that
    does not continue it; None when there is none. A block of a single document draws its random next
    sentences from its neighbour's documents."""
    blocks = iter(blocks)
    first = next(blocks, None)
    if first is None:
        return
    second = next(blocks, None)
    yield first.chunks, _head(second.chunks, block_size) if second is not None and not second.continues else None
    if second is None:
        return
    outside, previous = None, first
    # Chained, not unpacked: unpacking would read every block of the corpus before the second is made.
    for block in itertools.chain((second,), blocks):
        if not block.continues:
            outside = previous
        yield block.chunks, _head(outside.chunks, block_size) if outside is not None else None
        previous = block


def _head(chunks, size):
    """The first chunks of a block holding at least `size` bytes, the last cut after its first line end past
    `size` (a neighbour only lends a sample of its documents)."""
    head, total = [], 0
    for chunk in chunks:
        if total + len(chunk) > size:
            end = chunk.find(b"\n", size - total)
            head.append(chunk if end < 0 else chunk[:end + 1])
            break
        head.append(chunk)
        total += len(chunk)
    return head


_worker = {}


def _init_worker(make_tokenizer, options, random_seed):
    tokenizer = make_tokenizer()
    special_ids = SpecialIds(tokenizer)
    _worker.update(
        tokenizer=tokenizer,
        maker=InstanceMaker(special_ids, options),
        encoder=records.ExampleEncoder(special_ids.vocab_size, options.max_seq_length, options.max_predictions_per_seq),
        options=options,
        random_seed=random_seed,
    )


def block_seed(random_seed, block_index):
    return f"{random_seed}/{block_index}"


def _block_documents(chunks, stats):
    """The tokenized documents of a block's chunks; each chunk ends a document, as its file ends there."""
    documents = [[]]
    for chunk in chunks:
        lines = chunk.split(b"\n")
        if lines[-1] == b"":
            lines.pop()
        documents = documents_from_lines(lines, _worker["tokenizer"], stats, documents)
        documents.append([])
    return finish_documents(documents, stats)


def _process_block(block_index, chunks, neighbour):
    stats = InputStats()
    documents = _block_documents(chunks, stats)
    if not documents:
        return [], stats
    # The reference draws a random next sentence from another document; a block of one has none of its own.
    others = _block_documents(neighbour, InputStats()) if len(documents) == 1 and neighbour else []
    rng = random.Random(block_seed(_worker["random_seed"], block_index))
    rng.shuffle(documents)
    maker, options = _worker["maker"], _worker["options"]
    block_records = maker.records_for_documents(documents, options.dupe_factor, _worker["encoder"], rng, others=others)
    # Framed here, in parallel, so the parent only shuffles and writes.
    return [records.frame_record(r) for r in block_records], stats


class ShuffleBuffer:
    """Emits records in random order while holding at most `capacity` of them."""

    def __init__(self, capacity, rng):
        self.capacity = capacity
        self.rng = rng
        self.items = []

    def push(self, record):
        items = self.items
        items.append(record)
        if len(items) > self.capacity:
            j = self.rng.randrange(len(items))
            items[j], items[-1] = items[-1], items[j]
            return items.pop()
        return None

    def drain(self):
        self.rng.shuffle(self.items)
        items, self.items = self.items, []
        return items


def create_scale_records(input_files, make_tokenizer, options, random_seed, num_workers, block_size, buffer_size, write,
                         progress=None):
    """Scale mode: calls `write(framed_record)` for every record (TFRecord-framed bytes).

    Returns (InputStats, number of records).
    """
    stats = InputStats()
    buffer = ShuffleBuffer(buffer_size, random.Random(random_seed))
    written = 0
    with fileio.worker_pool(num_workers, os.getpid(), _init_worker, (make_tokenizer, options, random_seed)) as pool:
        def count_cut():
            stats.documents_cut += 1

        blocks = enumerate(with_neighbours(iter_blocks(input_files, block_size, count_cut), block_size))
        tasks = ((index, chunks, neighbour) for index, (chunks, neighbour) in blocks)
        for (_, chunks, _), (block_records, block_stats) in fileio.ordered_results(pool, _process_block, tasks,
                                                                                   2 * num_workers):
            stats.add(block_stats)
            for record in block_records:
                out = buffer.push(record)
                if out is not None:
                    write(out)
                    written += 1
            if progress is not None:
                progress.block_done(sum(map(len, chunks)), len(block_records))
    for record in buffer.drain():
        write(record)
        written += 1
    if stats.documents == 0:
        raise InputError(f"--input_file: no text to make instances from in {', '.join(input_files)}")
    return stats, written
