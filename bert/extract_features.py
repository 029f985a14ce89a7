"""bert-extract-features: the encoder's activations for lines of text, as JSON lines (SPEC §8).

    bert-extract-features --input_file=sentences.txt --output_file=features.jsonl \\
        --vocab_file=uncased_L-12_H-768_A-12/vocab.txt \\
        --bert_config_file=uncased_L-12_H-768_A-12/bert_config.json \\
        --init_checkpoint=uncased_L-12_H-768_A-12/bert_model.ckpt --layers=-1,-2,-3,-4

One input line is one example; `first ||| second` is a sentence pair. Each output line is
`{"linex_index": i, "features": [{"token": t, "layers": [{"index": -1, "values": [...]}, ...]}, ...]}`,
the reference's schema (its key spelling included), one entry per token of `[CLS] ... [SEP]`, values
rounded to 6 decimals.
"""

import glob
import json
import os
import re
import time

import numpy as np
from bert.tf import tf
from absl import flags

from bert import checkpoints, cli, features, fileio, modeling, progress
from bert.config import resolve_config_path
from bert.errors import InputError

FLAGS = flags.FLAGS
_PAIR = re.compile(r"^(.*) \|\|\| (.*)$")


def define_flags():
    flags.DEFINE_string("input_file", None, "Text, one example a line; 'a ||| b' is a sentence pair.")
    flags.DEFINE_string("output_file", None, "The JSON-lines file to write.")
    flags.DEFINE_string("layers", "-1,-2,-3,-4", "Encoder layers to output, comma-separated; -1 is the last.")
    cli.define_model_flags("The checkpoint to read the weights from (required).")
    cli.define_tokenizer_flags()
    flags.DEFINE_integer("max_seq_length", 128, "Maximum sequence length after WordPiece, [CLS]/[SEP] included.")
    flags.DEFINE_integer("batch_size", 32, "Examples per forward pass.")
    cli.define_tpu_flags()


def parse_layers(text, num_layers):
    """The --layers value as a list of ints, each a valid index into the model's layers."""
    try:
        layers = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InputError(f"--layers: expected comma-separated integers, got '{text}'") from None
    if not layers:
        raise InputError("--layers: no layer given")
    for layer in layers:
        if not -num_layers <= layer < num_layers:
            raise InputError(f"--layers: layer {layer} does not exist in a model of {num_layers} layers")
    return layers


def one_input_file(pattern):
    """The one file --input_file names: the reference reads a single file, and line numbers index the output."""
    if os.path.isfile(pattern) or (fileio.is_stream(pattern) and os.path.exists(pattern)):
        return pattern
    files = fileio.expand_inputs(pattern)
    if len(files) > 1:
        raise InputError(f"--input_file: '{pattern}' names {len(files)} files ({files[0]}, {files[1]}, ...); "
                         f"bert-extract-features reads one")
    return files[0]


def read_examples(path):
    """(text_a, text_b or None) per line of `path`, read as the reference reads it.

    Lines end at "\n" only and every "\r" is dropped, wherever it is, as TensorFlow's GFile.readline
    drops it for the reference; each line is stripped; a blank line is an example too, so `linex_index`
    is always the line number. Text that is not UTF-8 is refused, naming the byte and line.
    """
    lines = fileio.read_lines_as_gfile(path)
    examples = []
    for line in lines:
        line = line.strip()
        match = _PAIR.match(line)
        examples.append((match.group(1), match.group(2)) if match else (line, None))
    return examples


def load_encoder(config, checkpoint):
    """The encoder of `config` with the checkpoint's weights, and the names of the checkpoint's variables it does
    not use (the pre-training heads, say)."""
    encoder = modeling.BertModel(config)
    # The features never read the pooler, so a checkpoint without one serves, as in the reference.
    unused, _ = checkpoints.load_weights(encoder.weights, checkpoint, optional=modeling.POOLER_NAMES)
    return encoder, unused


# Python's round(x, 6) and "%.6f" choose the same correctly rounded six decimals (both are dtoa's mode 3),
# and below 1e9 in magnitude the shortest repr of the rounded float is those decimals without trailing
# zeros, in exponent form below 1e-4. So a whole array is printed by one %-format and two regex passes
# over its text instead of a round and a repr per float, which took most of the time of a small model's
# run. Larger values, NaN and infinities are printed float by float.
_FAST_FORMAT_LIMIT = 1e9
_TRAILING_ZEROS = re.compile(r"0+,")
_BELOW_1E4 = re.compile(r"0\.0000(\d)(\d?),")


def _exponent_form(match):
    start = match.start()
    if start and match.string[start - 1].isdigit():
        return match.group(0)
    first, second = match.groups()
    if first == "0":
        return f"{second}e-06,"
    return f"{first}.{second}e-05," if second else f"{first}e-05,"


def format_rows(values):
    """Each row of the [N, H] `values` as the reference writes it: the JSON list of round(float(x), 6), unbracketed."""
    values = np.asarray(values, np.float64)
    rows, width = values.shape
    if rows == 0:
        return []
    if not np.all(np.abs(values) < _FAST_FORMAT_LIMIT):
        return [json.dumps([round(x, 6) for x in row])[1:-1] for row in values.tolist()]
    text = "\n".join(["%.6f, " * width] * rows) % tuple(values.ravel().tolist())
    text = _BELOW_1E4.sub(_exponent_form, _TRAILING_ZEROS.sub(",", text).replace(".,", ".0,"))
    return [row[:-2] for row in text.split("\n")]


def format_example(index, tokens, layer_values, layers):
    """One output line, byte for byte the reference's json.dumps of it.

    `layer_values[j]` is [S, H] for `layers[j]`; only the rows of the real tokens are written.
    """
    rows_by_layer = [format_rows(values[: len(tokens)]) for values in layer_values]
    entries = []
    for position, token in enumerate(tokens):
        token_layers = ", ".join(
            f'{{"index": {layer}, "values": [{rows[position]}]}}' for layer, rows in zip(layers, rows_by_layer)
        )
        entries.append(f'{{"token": {json.dumps(token)}, "layers": [{token_layers}]}}')
    return f'{{"linex_index": {index}, "features": [{", ".join(entries)}]}}\n'


_LENGTH_MULTIPLE = 16


def make_forward(encoder, layers):
    """The encoder's outputs at `layers` for a batch of any length, traced once."""
    spec = tf.TensorSpec([None, None], tf.int32)

    @tf.function(input_signature=[spec, spec, spec], autograph=False)
    def forward(input_ids, input_mask, segment_ids):
        all_layers, _ = encoder(input_ids, input_mask, segment_ids, modeling.Context())
        return [all_layers[layer] for layer in layers]

    return forward


def extract(examples, tokenizer, forward, layers, max_seq_length, batch_size, write):
    """Passes each example's output line to `write`, in input order.

    Each batch runs only as long as its longest input, rounded up to a multiple of
    `_LENGTH_MULTIPLE`: a padding position's attention weight is exactly zero, so it adds nothing to a
    real position's output (beyond the kernels' order of summation), and the reference's padding to
    --max_seq_length would only add work. The rounding bounds the number of distinct shapes, each of
    which costs an XLA compilation of the fused GELU and LayerNorm (about half a second).
    """
    for begin in progress.bar(range(0, len(examples), batch_size), desc="extract", unit="batch"):
        batch = [
            features.encode_pair(tokenizer, tokenizer.tokenize(a), tokenizer.tokenize(b) if b is not None else None,
                                 max_seq_length)
            for a, b in examples[begin : begin + batch_size]
        ]
        longest = max(len(f.tokens) for f in batch)
        length = min(max_seq_length, -(-longest // _LENGTH_MULTIPLE) * _LENGTH_MULTIPLE)
        outputs = forward(*(np.stack([getattr(f, name)[:length] for f in batch])
                            for name in ("input_ids", "input_mask", "segment_ids")))
        outputs = [o.numpy() for o in outputs]
        for row, feature in enumerate(batch):
            write(format_example(begin + row, feature.tokens, [o[row] for o in outputs], layers))


def main(argv):
    cli.warn_ignored_tpu_flags()
    if FLAGS.max_seq_length < 3:
        raise InputError(f"--max_seq_length must be at least 3, got {FLAGS.max_seq_length}")
    if FLAGS.batch_size < 1:
        raise InputError(f"--batch_size must be at least 1, got {FLAGS.batch_size}")
    cli.check_case_matches_checkpoint(use="read")
    input_path = one_input_file(FLAGS.input_file)
    checkpoint = checkpoints.resolve_checkpoint(FLAGS.init_checkpoint)
    checkpoint_files = [path for suffix in (".index", ".data-*", ".meta")
                        for path in glob.glob(glob.escape(checkpoint) + suffix)]
    # The `checkpoint` file too, through which a directory names it.
    checkpoint_files.append(os.path.join(os.path.dirname(checkpoint), checkpoints.STATE_FILE))
    fileio.check_output_file(FLAGS.output_file, "--output_file",
                             [input_path, resolve_config_path(FLAGS.bert_config_file), *cli.tokenizer_files(),
                              *checkpoint_files])
    log = cli.rank_log()
    # The model's flags are checked before the input is read: a large file takes a while.
    config, tokenizer = cli.load_config_and_tokenizer(log)
    layers = parse_layers(FLAGS.layers, config.num_hidden_layers)
    examples = read_examples(input_path)
    if not examples:
        raise InputError(f"--input_file: {input_path} is empty; there are no lines to extract features from")
    encoder, unused = load_encoder(config, checkpoint)
    checkpoints.report_initialisation(FLAGS.init_checkpoint, unused, log, encoder.weights)

    forward = make_forward(encoder, layers)
    start = time.time()
    with fileio.sigterm_interrupts(), fileio.AtomicFile(FLAGS.output_file) as out:
        extract(examples, tokenizer, forward, layers, FLAGS.max_seq_length, FLAGS.batch_size, out.write)
    if not fileio.is_stream(FLAGS.output_file):
        # What runs killed by SIGKILL left (any other end removes its own): as large as the output.
        real = os.path.realpath(FLAGS.output_file)
        fileio.remove_leftover_temporaries(os.path.dirname(real), glob.escape(os.path.basename(real)))
    elapsed = time.time() - start
    cli.print_summary(
        f"bert-extract-features: {len(examples)} examples, layers {','.join(map(str, layers))} -> "
        f"{FLAGS.output_file} ({elapsed:.1f}s)", FLAGS.output_file
    )


def run():
    define_flags()
    cli.run_command(main, required=("input_file", "output_file", "bert_config_file", "init_checkpoint"))


if __name__ == "__main__":
    run()
