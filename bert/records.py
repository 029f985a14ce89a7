"""The pre-training record format (SPEC §4): encoding, TFRecord files, and the manifest.

Records are serialized `tf.train.Example` protos written without TensorFlow: the schema is fixed, so
each field is assembled from precomputed varint bytes, which is many times faster than building
protos, and lets the data stage start without importing TensorFlow. Tests parse every field back with
TensorFlow itself. The frames are read back here too, for the pre-flight check of pre-training's input.
"""

import hashlib
import json
import os
import struct

import google_crc32c
import numpy as np

from bert import fileio

FEATURES = (
    "input_ids",
    "input_mask",
    "segment_ids",
    "masked_lm_positions",
    "masked_lm_ids",
    "masked_lm_weights",
    "next_sentence_labels",
)
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "bert-pretraining-records"
MANIFEST_VERSION = 1


def _varint(value):
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag, payload):
    return tag + _varint(len(payload)) + payload


class ExampleEncoder:
    """Serializes pre-training instances as `tf.train.Example` bytes, the reference's field order."""

    def __init__(self, vocab_size, max_seq_length, max_predictions_per_seq):
        self.max_seq_length = max_seq_length
        self.max_predictions_per_seq = max_predictions_per_seq
        self._varints = [_varint(i) for i in range(max(vocab_size, max_seq_length, 2))]
        # Everything in front of a feature's packed values depends only on the feature and the length
        # of its packed values: cache those prefixes.
        self._prefixes = {name: {} for name in FEATURES}

    def _feature(self, name, packed):
        prefixes = self._prefixes[name]
        prefix = prefixes.get(len(packed))
        if prefix is None:
            if name == "masked_lm_weights":
                # Feature.float_list (field 2) -> FloatList.value (field 1, packed float32)
                feature = _field(b"\x12", _field(b"\x0a", packed))
            else:
                # Feature.int64_list (field 3) -> Int64List.value (field 1, packed varints)
                feature = _field(b"\x1a", _field(b"\x0a", packed))
            # Features.feature map entry: key (field 1), value (field 2)
            entry = _field(b"\x0a", _field(b"\x0a", name.encode()) + _field(b"\x12", feature))
            prefix = prefixes[len(packed)] = entry[: len(entry) - len(packed)]
        return prefix + packed

    def encode(self, input_ids, num_segment_a_tokens, masked_lm_positions, masked_lm_ids, is_random_next):
        """`input_ids` holds [CLS] A [SEP] B [SEP]; `num_segment_a_tokens` counts [CLS] A [SEP]."""
        varints = self._varints
        length = len(input_ids)
        pad = self.max_seq_length - length
        num_masked = len(masked_lm_positions)
        pad_masked = self.max_predictions_per_seq - num_masked
        if pad < 0 or pad_masked < 0:
            raise ValueError("instance longer than max_seq_length or max_predictions_per_seq")
        zeros = b"\x00" * pad
        zeros_masked = b"\x00" * pad_masked
        feature = self._feature
        features = b"".join(
            (
                feature("input_ids", b"".join(map(varints.__getitem__, input_ids)) + zeros),
                feature("input_mask", b"\x01" * length + zeros),
                feature(
                    "segment_ids",
                    b"\x00" * num_segment_a_tokens + b"\x01" * (length - num_segment_a_tokens) + zeros,
                ),
                feature("masked_lm_positions", b"".join(map(varints.__getitem__, masked_lm_positions)) + zeros_masked),
                feature("masked_lm_ids", b"".join(map(varints.__getitem__, masked_lm_ids)) + zeros_masked),
                feature("masked_lm_weights", b"\x00\x00\x80\x3f" * num_masked + b"\x00" * (4 * pad_masked)),
                feature("next_sentence_labels", b"\x01" if is_random_next else b"\x00"),
            )
        )
        return _field(b"\x0a", features)


def _masked_crc(data):
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame_record(data):
    """One TFRecord: length, masked CRC32C of the length, data, masked CRC32C of the data."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", _masked_crc(length)) + data + struct.pack("<I", _masked_crc(data))


class CorruptRecordError(ValueError):
    """A TFRecord file that ends inside a record or whose checksums do not match."""


class CompressedRecordsError(CorruptRecordError):
    """A compressed TFRecord file, read as an uncompressed one; `kind` names the compression."""

    def __init__(self, kind):
        super().__init__(f"the file is {kind}-compressed")
        self.kind = kind


class NotRecordsError(CorruptRecordError):
    """A file that does not start with a TFRecord: another kind of file, most likely."""


_GZIP_MAGIC = b"\x1f\x8b"
# TensorFlow's ZLIB compression: a zlib header (deflate, a 32K window) at any of its levels.
_ZLIB_HEADERS = (b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda")


def read_records(stream):
    """The data of each TFRecord in a binary stream, both checksums of each frame verified.

    Raises CorruptRecordError saying which record and byte offset is damaged, or at the stream's first bytes its
    CompressedRecordsError (gzip or zlib) or NotRecordsError; a file cut inside a length field is damaged too
    (TensorFlow's reader takes it for the end of the file).
    """
    index = 0
    offset = 0
    while True:
        header = stream.read(12)
        if not header:
            return
        if len(header) < 12:
            raise CorruptRecordError(f"record {index} at byte {offset}: the file ends inside its length")
        length, length_crc = struct.unpack("<QI", header)
        if _masked_crc(header[:8]) != length_crc:
            if offset == 0 and header.startswith(_GZIP_MAGIC):
                raise CompressedRecordsError("gzip")
            if offset == 0 and header.startswith(_ZLIB_HEADERS):
                raise CompressedRecordsError("zlib")
            if offset == 0:
                raise NotRecordsError("not a TFRecord file (or its first record is damaged): its first bytes are not a "
                                      "record's length and checksum")
            raise CorruptRecordError(f"record {index} at byte {offset}: the checksum of its length does not match")
        body = stream.read(length + 4)
        if len(body) < length + 4:
            raise CorruptRecordError(f"record {index} at byte {offset}: the file ends inside its {length} bytes")
        data, (data_crc,) = body[:length], struct.unpack("<I", body[length:])
        if _masked_crc(data) != data_crc:
            raise CorruptRecordError(f"record {index} at byte {offset}: the checksum of its data does not match")
        yield data
        index += 1
        offset += 12 + length + 4


# How far from its end a file is searched for the start of its last record: the first span holds a pre-training
# record of any sequence length; the second is searched only where the first holds none.
TAIL_SPANS = (1 << 16, 1 << 24)


def ends_on_record(stream, size):
    """Whether the `size`-byte binary stream ends with a whole TFRecord, found from the end, in one or two reads.

    A file cut short ends inside a record nearly always (a cut between two records is whole records,
    fewer of them); checking that needs no walk from its start, as the last record's length field says how
    far it is from the end: a start is any place holding that length, its length's checksum and its data's.
    False where none is found within TAIL_SPANS' last span: a cut file, or a record larger than that span.
    """
    if size == 0:
        return True
    for span in TAIL_SPANS:
        span = min(span, size)
        stream.seek(size - span)
        tail = stream.read(span)
        if _ends_with_record(tail):
            return True
        if span == size:
            return False
    return False


def _ends_with_record(tail):
    """Whether a TFRecord reaches exactly to the end of the bytes `tail`, starting anywhere in them."""
    if len(tail) < 16:
        return False
    candidates = []
    for alignment in range(8):
        values = np.frombuffer(tail, dtype="<u8", count=(len(tail) - alignment) // 8, offset=alignment)
        starts = alignment + 8 * np.arange(len(values), dtype=np.int64)
        lengths = len(tail) - 16 - starts
        fits = lengths >= 0
        candidates.extend(starts[fits][values[fits] == lengths[fits].astype(np.uint64)].tolist())
    return any(_masked_crc(tail[start:start + 8]) == struct.unpack("<I", tail[start + 8:start + 12])[0]
               and _masked_crc(tail[start + 12:-4]) == struct.unpack("<I", tail[-4:])[0] for start in candidates)


class RecordSink(fileio.CommitOrAbort):
    """Writes records round-robin over several TFRecord files, atomically.

    Each file is written under a temporary name in its destination directory and renamed only by
    `commit()`; `abort()` (or an exception inside the `with` block) removes the temporary files, so an
    interrupted run never leaves a file that looks finished and never touches an existing one.
    """

    def __init__(self, paths):
        self.paths = list(paths)
        self.counts = [0] * len(self.paths)
        self.sizes = [0] * len(self.paths)
        self._files = []
        self._next = 0
        try:
            for path in self.paths:
                self._files.append(fileio.AtomicFile(path, "wb"))
        except BaseException:
            self.abort()
            raise

    def write(self, record):
        self.write_framed(frame_record(record))

    def write_framed(self, framed_record):
        """Writes a record already passed through `frame_record` (e.g. by a worker process)."""
        index = self._next
        self._files[index].write(framed_record)
        self.counts[index] += 1
        self.sizes[index] += len(framed_record)
        self._next = (index + 1) % len(self._files)

    def sync(self):
        """Puts every file on disk, the slow part of `commit()`, which then only renames; aborts if one fails."""
        try:
            for f in self._files:
                f.sync()
        except BaseException:
            self.abort()
            raise

    def commit(self):
        # Every file on disk before any is renamed: a full disk or a kill during the long part leaves the files
        # that were there before, not some replaced and some not.
        self.sync()
        for f in self._files:
            f.commit()

    def abort(self):
        for f in self._files:
            f.abort()


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_path_for(output_files, output_dir=None):
    """`DIR/manifest.json` for a shard directory, else `<first output file>.manifest.json`."""
    if output_dir:
        return os.path.join(output_dir, MANIFEST_NAME)
    return output_files[0] + ".manifest.json"


def staged_manifest(path, manifest):
    """The manifest written to disk under a temporary name: its `commit()` only renames it to `path`, so that the
    records it names and it can be put in place together, after every slow or failing write."""
    body = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, **manifest}
    staged = fileio.AtomicFile(path, "w")
    try:
        json.dump(body, staged, indent=2, sort_keys=True)
        staged.write("\n")
        staged.sync()
    except BaseException:
        staged.abort()
        raise
    return staged

