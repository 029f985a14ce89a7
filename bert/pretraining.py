"""Pre-training: the masked-LM + next-sentence task, its input pipeline, record checks and evaluation.

The input is the records of `bert-create-data` or of the reference's create_pretraining_data.py
(SPEC §4). Before anything runs they are checked against the flags, the model config and, where
`bert-create-data` wrote one, the manifest: a wrong sequence length, a vocabulary larger than the
model's, a corrupt or truncated file is reported naming the file, instead of failing deep in a
training step or, as in the reference, silently training into NaN.
"""

import contextlib
import functools
import glob
import itertools
import json
import math
import os

from google.protobuf.message import DecodeError

from bert import progress, records
from bert.errors import DamagedRecordError, InputError
from bert.tf import tf

# How many records the pre-flight check reads: many from the first files, a few from every other one,
# so that thousands of shards are checked in seconds.
CHECKED_RECORDS_FIRST_FILES = 256
CHECKED_RECORDS_OTHER_FILES = 8
FIRST_FILES = 4
CHECKED_CHUNK_RECORDS = 1024
LONG_CHECK_BYTES = 2**30
READ_BUFFER_BYTES = 1 << 20
_LENGTH_FLAGS = {
    "input_ids": "max_seq_length",
    "input_mask": "max_seq_length",
    "segment_ids": "max_seq_length",
    "masked_lm_positions": "max_predictions_per_seq",
    "masked_lm_ids": "max_predictions_per_seq",
    "masked_lm_weights": "max_predictions_per_seq",
    "next_sentence_labels": None,
}


class PretrainingTask:
    """The loss of SPEC §6: weighted mean masked-LM loss plus mean next-sentence loss."""

    loss_terms = {"mlm_loss": "masked_positions", "nsp_loss": "examples"}
    metrics = {
        "masked_lm_loss": ("mlm_loss", "masked_positions"),
        "masked_lm_accuracy": ("mlm_correct", "masked_positions"),
        "next_sentence_loss": ("nsp_loss", "examples"),
        "next_sentence_accuracy": ("nsp_correct", "examples"),
    }
    # The reference divides the weighted masked-LM loss by sum(weights) + 1e-5.
    count_epsilon = {"masked_positions": 1e-5}

    def __init__(self, model):
        self.model = model
        self.variables_by_name = model.variables_by_name

    def counts(self, features):
        return {
            "masked_positions": tf.reduce_sum(features["masked_lm_weights"]),
            "examples": tf.cast(tf.shape(features["input_ids"])[0], tf.float32),
        }

    def sums(self, features, ctx):
        out = self.model(features, ctx)
        weights = features["masked_lm_weights"]
        return {
            "mlm_loss": tf.reduce_sum(out["mlm_loss"] * weights),
            "mlm_correct": tf.reduce_sum(out["mlm_correct"] * weights),
            "nsp_loss": tf.reduce_sum(out["nsp_loss"]),
            "nsp_correct": tf.reduce_sum(out["nsp_correct"]),
        }


def feature_spec(max_seq_length, max_predictions_per_seq):
    ints = tf.io.FixedLenFeature
    return {
        "input_ids": ints([max_seq_length], tf.int64),
        "input_mask": ints([max_seq_length], tf.int64),
        "segment_ids": ints([max_seq_length], tf.int64),
        "masked_lm_positions": ints([max_predictions_per_seq], tf.int64),
        "masked_lm_ids": ints([max_predictions_per_seq], tf.int64),
        "masked_lm_weights": ints([max_predictions_per_seq], tf.float32),
        "next_sentence_labels": ints([1], tf.int64),
    }


def _parser(max_seq_length, max_predictions_per_seq, config=None):
    """Parses a batch of serialized records; with `config`, fails on any id the model cannot take.

    The ids are checked here, on the CPU beside the training step, because on a GPU an id past the
    end of a table gathers zeros and a label out of range makes a NaN loss instead of an error.
    """
    spec = feature_spec(max_seq_length, max_predictions_per_seq)
    limits = _value_limits(config, max_seq_length) if config else ()

    def parse(serialized):
        parsed = tf.io.parse_example(serialized, spec)
        checks = []
        for name, what, limit, _ in limits:
            checks.append(tf.debugging.assert_non_negative(parsed[name], message=f"{name}: negative {what}"))
            checks.append(tf.debugging.assert_less(parsed[name], tf.constant(limit, tf.int64),
                                                   message=f"{name}: {what} too large"))
        if limits:
            weights = parsed["masked_lm_weights"]
            checks.append(tf.debugging.Assert(tf.reduce_all(tf.math.is_finite(weights) & (weights >= 0.0)),
                                              ["masked_lm_weights: a negative or non-finite weight"]))
        with tf.control_dependencies(checks):
            return {k: tf.identity(v) if v.dtype == tf.float32 else tf.cast(v, tf.int32) for k, v in parsed.items()}

    return parse


def training_dataset(files, batch_size, max_seq_length, max_predictions_per_seq, seed, rank=0, size=1,
                     shuffle_buffer_size=1000, config=None):
    """An endless, shuffled stream of batches for one rank, deterministic given `seed`.

    With at least as many files as ranks each rank reads its own files; otherwise each reads every
    size-th record. Files are visited in a fresh seeded order each epoch, four at a time interleaved.
    With `config`, a batch holding an id the model cannot take is an error (see `_parser`).
    """
    # Absolute: the saved input position holds the names of files waiting their turn, which a run resumed from
    # another working directory must find.
    read = [os.path.abspath(path) for path in rank_files(files, rank, size)]
    d = tf.data.Dataset.from_tensor_slices(read)
    num_files = len(read)
    d = d.shuffle(num_files, seed=seed, reshuffle_each_iteration=True).repeat()
    d = d.interleave(
        lambda path: tf.data.TFRecordDataset(path, buffer_size=READ_BUFFER_BYTES), cycle_length=min(4, num_files), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    if ranks_share_records(files, size):
        d = d.shard(size, rank)
    d = d.shuffle(shuffle_buffer_size, seed=seed + rank)
    d = d.batch(batch_size, drop_remainder=True)
    d = d.map(_parser(max_seq_length, max_predictions_per_seq, config), num_parallel_calls=tf.data.AUTOTUNE)
    return d.prefetch(2)


def ranks_share_records(files, size):
    """Whether `size` ranks read one stream of `files` each taking every size-th record of it (there are fewer files
    than ranks), rather than files of their own: their records are then disjoint only if their streams are the same."""
    return len(files) < size


def rank_files(files, rank, size):
    """The files rank `rank` of `size` reads: every size-th, or all of them when there are fewer files than ranks."""
    return files if ranks_share_records(files, size) else files[rank::size]


def uneven_files_warning(files, size):
    """A warning when `files` do not share evenly among `size` ranks (None when they do, or when every rank reads
    them all): in number, or in bytes (over a quarter more on one rank than on another), which with records of a
    size (a padded sequence) count the records. Ranks with less go round theirs more often, so their records weigh
    more."""
    if size > len(files) or size == 1:
        return None
    if len(files) % size:
        return (f"warning: --input_file: {len(files)} files do not divide among {size} ranks; the records of the "
                f"ranks with fewer files are seen more often (a multiple of {size} files evens it)")
    shares = [sum(os.path.getsize(path) for path in rank_files(files, rank, size)) for rank in range(size)]
    if max(shares) > 1.25 * min(shares):
        smallest, largest = shares.index(min(shares)), shares.index(max(shares))
        return (f"warning: --input_file: the ranks' files differ in size (rank {smallest}: {min(shares) / 1e6:.1f} MB, "
                f"rank {largest}: {max(shares) / 1e6:.1f} MB); the records of the ranks with less are seen more often "
                f"(files of one size, as bert-create-data's shards, even it)")
    return None


def evaluation_dataset(files, batch_size, max_seq_length, max_predictions_per_seq, config=None):
    """The reference's evaluation stream: the records in order, over and over, in full batches.

    Evaluation reads --max_eval_steps batches of it, so like the reference's it scores exactly
    max_eval_steps * eval_batch_size records, starting again from the first when the files hold fewer.
    """
    d = tf.data.TFRecordDataset(files, buffer_size=READ_BUFFER_BYTES).repeat().batch(batch_size, drop_remainder=True)
    return d.map(_parser(max_seq_length, max_predictions_per_seq, config)).prefetch(2)


@functools.lru_cache(maxsize=None)
def _read_manifest(path):
    """A bert-create-data manifest's entries by file (basename) and its body, or None if `path` is not one."""
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (FileNotFoundError, IsADirectoryError):
        return None
    except OSError as e:
        # Passed over, every check it speaks for would be skipped without a word.
        raise InputError(f"{path}: cannot read this manifest of records: {e.strerror}") from None
    except ValueError:
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != records.MANIFEST_FORMAT:
        return None
    files = manifest.get("files", [])
    # A hand-edited manifest of another shape is not one of ours: the records are checked without it.
    if not (isinstance(files, list) and all(isinstance(entry, dict) and isinstance(entry.get("path"), str) for entry in files)
            and isinstance(manifest.get("vocab", {}), dict)):
        return None
    return {entry["path"]: entry for entry in files}, manifest


def _manifests_in(directory):
    """Every bert-create-data manifest in `directory`: (its mtime in ns, its path, its entries by file, its body)."""
    candidates = [os.path.join(directory, records.MANIFEST_NAME),
                  *glob.glob(os.path.join(glob.escape(directory), "*.manifest.json"))]
    found = []
    for candidate in candidates:
        manifest = _read_manifest(candidate) if os.path.isfile(candidate) else None
        if manifest:
            found.append((os.stat(candidate).st_mtime_ns, candidate, *manifest))
    return found


def _manifest_for(path, manifests_in):
    """The bert-create-data manifest that speaks for `path`, if any: the newest beside it that lists it.

    None when the file is no longer the one it lists: the records were made again since, by the reference's
    script (which writes no manifest) or over a manifest of their own, and are checked without it. The file's
    size tells, where the manifest gives it; an older manifest, without sizes, speaks only for files no newer
    than itself (records copied without their times after it, as `cp -r` may, are then checked all the same,
    only the manifest's shorter message is lost). `manifests_in` lists a directory's manifests; a caching one
    lets thousands of shards in one directory list it once.
    """
    return _speaking_manifest(path, _newest_listing(path, manifests_in))


def _newest_listing(path, manifests_in):
    """(mtime, path, entry of `path`, body) of the newest bert-create-data manifest beside `path` listing it, or None."""
    name = os.path.basename(path)
    listing = [(written, candidate, entries[name], manifest)
               for written, candidate, entries, manifest in manifests_in(os.path.dirname(os.path.abspath(path)))
               if name in entries]
    return max(listing, key=lambda listed: listed[:2]) if listing else None


def _speaking_manifest(path, listing):
    """(path, body) of the manifest of `listing` (a _newest_listing) if it speaks for `path`, else (None, None)."""
    if listing is None:
        return None, None
    written, candidate, entry, manifest = listing
    size = _listed_size(entry)
    if size is not None:
        if size != os.path.getsize(path):
            return None, None
    elif written < os.stat(path).st_mtime_ns:
        return None, None
    return candidate, manifest


def _listed_size(entry):
    size = entry.get("bytes")
    return size if isinstance(size, int) and not isinstance(size, bool) else None


def _listed_larger(path, listing):
    """The size the manifest of `listing` (a _newest_listing) gives `path` where the file is smaller, else None:
    cut short (an interrupted copy), or made again since."""
    size = _listed_size(listing[2]) if listing else None
    return size if size is not None and os.path.getsize(path) < size else None


def _manifest_vocabularies(files):
    """(record file, the "vocab" entry of the manifest speaking for it, {} if none) for each of `files`."""
    manifests_in = functools.lru_cache(maxsize=None)(_manifests_in)
    for path in files:
        yield path, (_manifest_for(path, manifests_in)[1] or {}).get("vocab", {})


def records_vocabulary(files):
    """(the vocabulary file, its kind) the records in `files` were all made with, as their manifests say,
    while that file still holds what it held then; else None (records of the reference's script, a
    vocabulary since changed or moved, records of several)."""
    try:
        named = {(vocab.get("file"), vocab.get("kind"), vocab.get("sha256")) for _, vocab in _manifest_vocabularies(files)}
    except OSError:
        # A record file deleted since training read it.
        return None
    if len(named) != 1:
        return None
    ((source, kind, digest),) = named
    if not (isinstance(source, str) and kind in ("wordpiece", "sentencepiece") and os.path.isfile(source)):
        return None
    try:
        unchanged = records.file_sha256(source) == digest
    except OSError:
        # Another user's, private: the records are still good, only their vocabulary is not exported.
        return None
    return (source, kind) if unchanged else None


def vocabulary_mix_warning(files):
    """A warning when the manifests of `files` name vocabularies of different contents, else None.

    Only a warning, as for a checkpoint's vocabulary: records made again after [unused] tokens were given
    domain words keep every other id. By mistake (cased and uncased records), an id means two words.
    """
    first_by_digest = {}
    for path, vocab in _manifest_vocabularies(files):
        digest = vocab.get("sha256")
        if isinstance(digest, str):
            first_by_digest.setdefault(digest, (path, vocab.get("file")))
    if len(first_by_digest) < 2:
        return None
    (path_a, vocab_a), (path_b, vocab_b) = list(first_by_digest.values())[:2]
    return (f"warning: --input_file: {path_a} and {path_b} were made with vocabularies of different contents "
            f"({vocab_a} and {vocab_b}, as their manifests say): a token id means other words in each, unless only "
            f"[unused] tokens changed")


def _is_manifest(path):
    """Whether `path` is a manifest bert-create-data wrote beside its records (judged by name first: records are large)."""
    name = os.path.basename(path)
    return (name == records.MANIFEST_NAME or name.endswith(".manifest.json")) and _read_manifest(path) is not None


def check_records(files, max_seq_length, max_predictions_per_seq, config, every_record=False, log=None):
    """Checks the input files against the flags and the model before training; returns those holding records.

    Reads each file's manifest if it has one, and its first records (more of the first files), or all
    of them with `every_record`, where the file is smaller than the newest manifest listing it says (then
    `log` gets a warning if they check out), or where it does not end with a whole record: every frame's
    checksums, every feature present with the length the flags say, and every id within what the model has
    (vocabulary, segments, positions, the two next-sentence labels). An empty file is passed over, as the
    reference's create_pretraining_data.py writes them for a small corpus; no records at all is an error.
    bert-create-data's manifests are passed over too, as a glob like 'records/*' matches them beside the
    records. Raises InputError naming the file.
    """
    manifests = [path for path in files if _is_manifest(path)]
    if manifests and len(manifests) == len(files):
        raise InputError(f"{files[0]}: a bert-create-data manifest, not records; name the records it lists")
    files = [path for path in files if path not in manifests]
    spec = feature_spec(max_seq_length, max_predictions_per_seq)
    limits = _value_limits(config, max_seq_length)
    parse = _parser(max_seq_length, max_predictions_per_seq, config)
    holding_records = []
    manifests_in = functools.lru_cache(maxsize=None)(_manifests_in)
    shown = progress.bar(files, desc="checking records", unit="file", leave=False, disable=not every_record)
    for index, path in enumerate(shown):
        listing = _newest_listing(path, manifests_in)
        if every_record:
            sample = None
        else:
            sample = CHECKED_RECORDS_FIRST_FILES if index < FIRST_FILES else CHECKED_RECORDS_OTHER_FILES
        manifest_path, manifest = _speaking_manifest(path, listing)
        if manifest:
            for key, want in (("max_seq_length", max_seq_length), ("max_predictions_per_seq", max_predictions_per_seq)):
                if manifest.get(key) != want:
                    raise InputError(
                        f"{path}: records were made with {key}={manifest.get(key)} ({manifest_path}), "
                        f"but --{key}={want}"
                    )
            size = manifest.get("vocab", {}).get("size")
            if isinstance(size, int) and size > config.vocab_size:
                raise InputError(
                    f"{path}: records use a vocabulary of {size} tokens ({manifest_path}), but the model "
                    f"config's key 'vocab_size' is {config.vocab_size}"
                )
        count = _checked_records(path, sample, parse, spec, limits)
        # A file cut short (an interrupted copy) is read to its end where the sample stopped short of it:
        # TensorFlow's reader takes a cut inside a record's length for the end of the file, so the records lost
        # would go unnoticed. Cut short: smaller than its manifest lists, or, manifest or none, not ending with a
        # whole record (its last record found from the end in one or two reads).
        listed_size = _listed_larger(path, listing)
        if sample is not None and count == sample and (listed_size or not _ends_on_record(path)):
            if log and os.path.getsize(path) > LONG_CHECK_BYTES:
                why = f"is smaller than {listing[1]} lists" if listed_size else "does not end with a whole record"
                log(f"{path} {why}: checking every record of it")
            count = _checked_records(path, None, parse, spec, limits)
        if listed_size and log:
            listed_records = listing[2].get("num_instances")
            log(f"warning: {path} holds {count} records in {os.path.getsize(path)} bytes, where {listing[1]} lists "
                f"{listed_records} in {listed_size}: cut short (an interrupted copy), or made again since? its records "
                f"check out and are used")
        if count:
            holding_records.append(path)
    if not holding_records:
        raise InputError(f"{files[0]}: no records" if len(files) == 1 else f"--input_file: none of its {len(files)} files holds a record")
    return holding_records


@contextlib.contextmanager
def damage_located(files, max_seq_length, max_predictions_per_seq, config, log, read=None):
    """Names the file and record when tf.data stops at a damaged or mismatched record past the checked ones.

    TensorFlow's error gives a byte offset at best, never a file; every record of every file is then
    checked, and the first fault in file order is raised instead, in the files `read` by this rank first
    (where a rank's own share is a fraction of the input, the fault is there). Checking runs at about
    50 MB/s, so above LONG_CHECK_BYTES it is announced with `log` first.
    """
    try:
        yield
    except DamagedRecordError as e:
        first = read or files
        own = set(first)
        ordered = first + [path for path in files if path not in own]
        total = sum(os.path.getsize(path) for path in first)
        if total > LONG_CHECK_BYTES:
            log(f"{e}; checking every record of {len(first)} file(s) ({total / 2**30:.1f} GiB) to name it")
        check_records(ordered, max_seq_length, max_predictions_per_seq, config, every_record=True)
        raise InputError(f"{e} (yet every record of the {len(files)} input file(s) checks out now: did one change "
                         "while the run read it?)") from None


def _checked_records(path, limit, parse, spec, limits):
    """How many records `path` holds, up to `limit` (None: all), each checked as check_records says; raises
    InputError naming the file (and the record, where one is damaged or does not match)."""
    count = 0
    # Read in Python, not through tf.data: TensorFlow's runtime can log its own line about a damaged
    # file beside the one this check raises, and its errors do not say which file is damaged.
    try:
        with open(path, "rb", buffering=READ_BUFFER_BYTES) as stream:
            for chunk in _chunks(itertools.islice(records.read_records(stream), limit), CHECKED_CHUNK_RECORDS):
                # The training input's own parser judges a chunk in bulk, many times faster than one
                # record at a time in Python; only a chunk it refuses is gone through for the message.
                try:
                    parse(tf.constant(chunk))
                # A record that is not a tf.train.Example can make TensorFlow's message itself not UTF-8.
                except (tf.errors.InvalidArgumentError, UnicodeDecodeError):
                    for offset, serialized in enumerate(chunk):
                        _check_record(path, count + offset, serialized, spec, limits)
                count += len(chunk)
    except records.CompressedRecordsError as e:
        raise InputError(f"{path}: {e.kind}-compressed; TFRecords are read uncompressed, as the reference reads them: "
                         f"decompress it into a file of its own") from None
    except records.NotRecordsError as e:
        raise InputError(f"{path}: {e}") from None
    except records.CorruptRecordError as e:
        raise InputError(f"{path}: corrupt or truncated TFRecord file: {e}") from None
    return count


def _ends_on_record(path):
    with open(path, "rb") as stream:
        return records.ends_on_record(stream, os.fstat(stream.fileno()).st_size)


def _value_limits(config, max_seq_length):
    """(feature, what its values are, the bound they must stay under, the complaint) for each checked feature."""
    vocabulary = (f"is outside the model's vocabulary: the config's key 'vocab_size' is {config.vocab_size} "
                  "(the reference would train into NaN)")
    return (
        ("input_ids", "token id", config.vocab_size, vocabulary),
        ("masked_lm_ids", "token id", config.vocab_size, vocabulary),
        ("segment_ids", "segment id", config.type_vocab_size,
         f"is outside the config's key 'type_vocab_size' ({config.type_vocab_size}); such tokens would get no "
         "token-type embedding (the reference trains on regardless)"),
        ("masked_lm_positions", "masked position", max_seq_length, f"is outside --max_seq_length={max_seq_length}"),
        ("next_sentence_labels", "next-sentence label", 2, "is neither 0 nor 1"),
        ("input_mask", "input mask value", 2, "is neither 0 nor 1 (the attention mask would add to the scores)"),
    )


def _is_weight(value):
    """Whether `value` can weigh a masked position's loss: finite and not negative (NaN is neither)."""
    return math.isfinite(value) and value >= 0


def _chunks(iterable, size):
    iterator = iter(iterable)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _check_record(path, index, serialized, spec, limits):
    """One serialized record against `spec` and `limits` (see _value_limits); raises InputError naming it."""
    try:
        feature = tf.train.Example.FromString(serialized).features.feature
    except DecodeError as e:
        raise InputError(f"{path}: record {index} is not a tf.train.Example: {e}") from None
    values = {}
    for name, fixed in spec.items():
        if name not in feature:
            raise InputError(f"{path}: record {index} has no feature '{name}'; is it a pre-training record?")
        values[name] = feature[name].float_list.value if fixed.dtype == tf.float32 else feature[name].int64_list.value
        kind, expected = feature[name].WhichOneof("kind"), "float_list" if fixed.dtype == tf.float32 else "int64_list"
        if kind not in (None, expected):
            raise InputError(f"{path}: record {index}: feature '{name}' holds {kind.split('_')[0]} values, expected "
                             f"{expected.split('_')[0]}")
        if len(values[name]) != fixed.shape[0]:
            flag = _LENGTH_FLAGS[name]
            raise InputError(
                f"{path}: record {index}: feature '{name}' has {len(values[name])} values, expected "
                f"{fixed.shape[0]}" + (f" (--{flag})" if flag else "")
            )
    for name, what, limit, complaint in limits:
        low, high = min(values[name]), max(values[name])
        if low < 0 or high >= limit:
            raise InputError(f"{path}: record {index}: {what} {low if low < 0 else high} {complaint}")
    bad_weight = next((value for value in values["masked_lm_weights"] if not _is_weight(value)), None)
    if bad_weight is not None:
        raise InputError(f"{path}: record {index}: masked-LM weight {bad_weight} is not a finite, non-negative number "
                         "(it would make the loss NaN or reward wrong predictions)")
