"""bert-create-data: text + vocabulary -> pre-training TFRecords (SPEC §4, §5).

Default mode reproduces google-research/bert's create_pretraining_data.py record for record;
`--num_workers N` switches to scale mode (parallel, flat memory; see bert.pretraining_data).

    bert-create-data --input_file=corpus/*.txt --vocab_file=vocab.txt \\
        --output_dir=records --num_output_shards=4 --num_workers=2
"""

import functools
import glob
import os
import re
import time

from absl import flags

from bert import __version__, cli, fileio, pretraining_data, progress, records, tokenization
from bert.errors import InputError

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string(
        "input_file", None, "Input text: one sentence a line, a blank line between documents. Comma list or globs."
    )
    flags.DEFINE_string(
        "output_file", None, "Output TFRecord file(s), comma-separated; instances are written round-robin, and one "
        "manifest for them all beside the first (FIRST.manifest.json)."
    )
    flags.DEFINE_string(
        "output_dir",
        None,
        "Instead of --output_file: a directory for --num_output_shards shards part-*.tfrecord and manifest.json.",
    )
    flags.DEFINE_integer("num_output_shards", 1, "Number of shards written under --output_dir.")
    cli.define_tokenizer_flags()
    flags.DEFINE_bool(
        "do_whole_word_mask", False, "Mask whole words: all WordPiece pieces of a word are masked together."
    )
    flags.DEFINE_integer("max_seq_length", 128, "Maximum sequence length, [CLS] and [SEP]s included.")
    flags.DEFINE_integer("max_predictions_per_seq", 20, "Maximum number of masked LM predictions per sequence.")
    flags.DEFINE_integer("random_seed", 12345, "Random seed for data generation.")
    flags.DEFINE_integer("dupe_factor", 10, "Number of times to duplicate the input data (with different masks).")
    flags.DEFINE_float("masked_lm_prob", 0.15, "Masked LM probability.")
    flags.DEFINE_float(
        "short_seq_prob", 0.1, "Probability of creating sequences shorter than the maximum length."
    )
    flags.DEFINE_integer(
        "num_workers",
        0,
        "0: reference mode, exactly the reference's records. N >= 1: scale mode with N worker processes.",
    )
    flags.DEFINE_integer(
        "block_size_kb",
        256,
        "Scale mode: the input is cut at document boundaries into blocks of about this much text (small files "
        "share a block; a file's end ends a document); each block has its own seed and draws its random next "
        "sentences from its own documents, or from a neighbouring block's when it holds only one. A document longer "
        f"than {pretraining_data.LONGEST_DOCUMENT_BLOCKS} blocks is cut at a line end.",
    )
    flags.DEFINE_integer(
        "shuffle_buffer_size", 10000, "Scale mode: records held in the shuffle buffer in front of the writers."
    )
    flags.DEFINE_bool(
        "overwrite", False, "Replace the records and manifest already in --output_dir instead of refusing."
    )


class Progress:
    """Progress bars (bert.progress) for the stages of a run."""

    def __init__(self, input_files):
        self.total_bytes = sum(os.path.getsize(p) for p in input_files)
        self.bar = None
        self.instances = 0

    def _bar(self, **kwargs):
        if self.bar is not None:
            self.bar.close()
        self.bar = progress.bar(**kwargs)

    def read_lines(self, path):
        """pretraining_data.read_lines(path), counted on the reading bar each MiB: one file may be most of the input."""
        if self.bar is None:
            self._bar(total=self.total_bytes, desc="reading", unit="B", unit_scale=True)
        unreported = 0
        for line in pretraining_data.read_lines(path):
            yield line
            unreported += len(line)
            if unreported >= 2**20:
                self.bar.update(unreported)
                unreported = 0
        self.bar.update(unreported)

    def start_instances(self, total_documents):
        self._bar(total=total_documents, desc="instances", unit="doc")

    def document_done(self):
        self.bar.update(1)

    def block_done(self, size, num_records):
        if self.bar is None:
            self._bar(total=self.total_bytes, desc="creating", unit="B", unit_scale=True)
        self.instances += num_records
        self.bar.update(size)
        self.bar.set_postfix(instances=self.instances, refresh=False)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _output_paths(input_files):
    """(paths to write, output_dir or None), after checking the destination can be written safely."""
    if bool(FLAGS.output_file) == bool(FLAGS.output_dir):
        raise InputError("give exactly one of --output_file and --output_dir")
    if FLAGS.output_file:
        if FLAGS["num_output_shards"].present:
            raise InputError("--num_output_shards applies to --output_dir; with --output_file, name each file in a "
                             "comma list")
        paths = [p.strip() for p in FLAGS.output_file.split(",") if p.strip()]
        if not paths:
            raise InputError(f"--output_file: no file named in '{FLAGS.output_file}'")
        stream = next((path for path in paths if fileio.is_stream(path)), None)
        if stream:
            raise InputError(f"--output_file: {stream} is a stream; records are files, read back by bert-pretrain with "
                             f"their manifest beside them: name a file")
        for path in [*paths, records.manifest_path_for(paths)]:
            fileio.check_output_file(path, "--output_file", [*input_files, *cli.tokenizer_files()])
        named = [os.path.realpath(path) for path in paths]
        twice = next((path for path, real in zip(paths, named) if named.count(real) > 1), None)
        if twice:
            raise InputError(f"--output_file: {twice} is named twice; each file gets its own share of the records")
        return paths, None
    if FLAGS.num_output_shards < 1:
        raise InputError(f"--num_output_shards must be at least 1, got {FLAGS.num_output_shards}")
    directory = FLAGS.output_dir
    fileio.make_output_dir(directory, "--output_dir")
    existing, others = _existing_outputs(directory)
    if others:
        raise InputError(
            f"--output_dir: {directory} holds {others[0]}, which bert-create-data did not write; records read from the "
            "directory would include it, and --overwrite replaces only part-*-of-*.tfrecord and manifest.json: move "
            "it or choose another directory"
        )
    if existing and not FLAGS.overwrite:
        raise InputError(
            f"--output_dir: {directory} already holds records ({os.path.basename(existing[0])}); "
            "pass --overwrite to replace them"
        )
    count = FLAGS.num_output_shards
    paths = [os.path.join(directory, f"part-{i:05d}-of-{count:05d}.tfrecord") for i in range(count)]
    for path in [*paths, records.manifest_path_for(paths, directory)]:
        fileio.check_output_file(path, "--output_dir", [*input_files, *cli.tokenizer_files()])
    # After the checks, so that a refused command leaves no lock file: another run writing here would sweep up this
    # one's temporary shards as a killed run's, and the two would replace each other's records.
    fileio.lock_directory(directory, "--output_dir", holder="bert-create-data run")
    return paths, directory


SHARD_NAME = re.compile(r"part-\d{5,}-of-\d{5,}\.tfrecord")


def _existing_outputs(directory):
    """(the manifest and shards an earlier run left in `directory`, the names of its other TFRecord files)."""
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(glob.escape(directory), "*.tfrecord")))
    ours = [os.path.join(directory, name) for name in names if SHARD_NAME.fullmatch(name)]
    manifest = os.path.join(directory, records.MANIFEST_NAME)
    return ([manifest] if os.path.exists(manifest) else []) + ours, [n for n in names if not SHARD_NAME.fullmatch(n)]


def _remove_leftovers(output_paths, output_dir):
    """Deletes what killed runs writing here left under temporary names (see fileio.AtomicFile)."""
    if output_dir:
        fileio.remove_leftover_temporaries(output_dir, "part-*-of-*.tfrecord")
        fileio.remove_leftover_temporaries(output_dir, records.MANIFEST_NAME)
        return
    for path in [*output_paths, records.manifest_path_for(output_paths)]:
        real = os.path.realpath(path)
        fileio.remove_leftover_temporaries(os.path.dirname(real), glob.escape(os.path.basename(real)))


def main(argv):
    del argv
    with fileio.sigterm_interrupts():
        _create_records()


def _create_records():
    options = pretraining_data.InstanceOptions(
        max_seq_length=FLAGS.max_seq_length,
        max_predictions_per_seq=FLAGS.max_predictions_per_seq,
        masked_lm_prob=FLAGS.masked_lm_prob,
        short_seq_prob=FLAGS.short_seq_prob,
        dupe_factor=FLAGS.dupe_factor,
        do_whole_word_mask=FLAGS.do_whole_word_mask,
    )
    options.validate()
    if FLAGS.num_workers < 0:
        raise InputError(f"--num_workers must be 0 (reference mode) or more, got {FLAGS.num_workers}")
    if FLAGS.block_size_kb < 1:
        raise InputError(f"--block_size_kb must be at least 1, got {FLAGS.block_size_kb}")
    if FLAGS.shuffle_buffer_size < 1:
        raise InputError(f"--shuffle_buffer_size must be at least 1, got {FLAGS.shuffle_buffer_size}")
    input_files = fileio.expand_inputs(FLAGS.input_file)
    fileio.warn_if_named_twice(input_files, cli.rank_log())
    fileio.check_text_files(input_files, "--input_file")
    cli.check_tokenizer_flags()
    make_tokenizer = functools.partial(tokenization.make_tokenizer, FLAGS.vocab_file, FLAGS.spm_model_file,
                                       cli.tokenizer_lower_case())
    tokenizer = make_tokenizer()
    pretraining_data.SpecialIds(tokenizer, cli.vocabulary_source())
    cli.warn_if_casing_differs(tokenizer, cli.rank_log())
    output_paths, output_dir = _output_paths(input_files)
    _remove_leftovers(output_paths, output_dir)

    start = time.perf_counter()
    progress = Progress(input_files)
    sink = records.RecordSink(output_paths)
    staged = None
    try:
        if FLAGS.num_workers == 0:
            out, stats = pretraining_data.create_reference_records(
                input_files, tokenizer, options, FLAGS.random_seed, progress
            )
            for record in out:
                sink.write(record)
            num_instances = len(out)
        else:
            stats, num_instances = pretraining_data.create_scale_records(
                input_files,
                make_tokenizer,
                options,
                FLAGS.random_seed,
                FLAGS.num_workers,
                FLAGS.block_size_kb * 1024,
                FLAGS.shuffle_buffer_size,
                sink.write_framed,
                progress,
            )
        manifest = _manifest(stats, num_instances, sink, input_files, options, tokenizer)
        manifest_path = records.manifest_path_for(output_paths, output_dir)
        sink.sync()
        # Written before any record is renamed in: a manifest that cannot be written leaves the earlier records.
        staged = records.staged_manifest(manifest_path, manifest)
        with cli.signals_deferred("the records"):
            sink.commit()
            if output_dir:
                for stale in _existing_outputs(output_dir)[0]:
                    if stale not in output_paths and stale.endswith(".tfrecord"):
                        os.unlink(stale)
            staged.commit()
    except BaseException:
        sink.abort()
        if staged is not None:
            staged.abort()
        raise
    finally:
        progress.close()
    elapsed = time.perf_counter() - start
    if stats.documents_cut:
        cli.rank_log()(
            f"warning: {stats.documents_cut} document(s) ran past {pretraining_data.LONGEST_DOCUMENT_BLOCKS} x "
            f"--block_size_kb without a blank line, and were cut at a line end into documents of their own (a "
            f"blank line ends a document)")
    rate = num_instances / elapsed if elapsed > 0 else float("inf")
    dropped = f", dropped {stats.invalid_bytes} invalid UTF-8 bytes" if stats.invalid_bytes else ""
    print(
        f"bert-create-data: {stats.documents} documents -> {num_instances} instances in {len(output_paths)} file(s) "
        f"({elapsed:.1f}s, {rate:.0f} instances/s){dropped}; manifest {manifest_path}"
    )


def _manifest(stats, num_instances, sink, input_files, options, tokenizer):
    """The manifest written beside the records: what they hold and how they were made."""
    vocab_source = cli.vocabulary_source()
    return {
        "created_by": f"bert-create-data {__version__}",
        "mode": "reference" if FLAGS.num_workers == 0 else "scale",
        "num_instances": num_instances,
        "num_documents": stats.documents,
        # Each file's size tells bert-pretrain whether the file is still the one listed, however it was copied.
        "files": [
            {"path": os.path.basename(p), "num_instances": n, "bytes": size}
            for p, n, size in zip(sink.paths, sink.counts, sink.sizes)
        ],
        "input_files": [os.path.abspath(p) for p in input_files],
        "invalid_utf8_bytes_dropped": stats.invalid_bytes,
        "max_seq_length": options.max_seq_length,
        "max_predictions_per_seq": options.max_predictions_per_seq,
        "vocab": {
            "file": os.path.abspath(vocab_source),
            "kind": "sentencepiece" if FLAGS.spm_model_file else "wordpiece",
            "sha256": records.file_sha256(vocab_source),
            "size": tokenizer.vocab_size,
        },
        "flags": {
            "do_lower_case": tokenizer.lower_cases,
            "do_whole_word_mask": options.do_whole_word_mask,
            "dupe_factor": options.dupe_factor,
            "masked_lm_prob": options.masked_lm_prob,
            "short_seq_prob": options.short_seq_prob,
            "random_seed": FLAGS.random_seed,
            "num_workers": FLAGS.num_workers,
            "block_size_kb": FLAGS.block_size_kb,
            "shuffle_buffer_size": FLAGS.shuffle_buffer_size,
        },
    }


def run():
    define_flags()
    cli.run_command(main, required=("input_file",))


if __name__ == "__main__":
    run()
