"""Benchmark bert-extract-features: examples/s on real text, --layers=-1,-2,-3,-4, seq 128, batch 32.

    .venv/bin/python bench/extract_features.py                 # mini and base; MRPC pairs and WikiText-2

Two inputs from ../shared/data: MRPC dev pairs written as `a ||| b` lines (about 50 tokens each) and
WikiText-2 paragraphs (most run past --max_seq_length and are cut there); without ../shared/data, the
lines of data/sample_corpus.txt with a vocabulary built from them. Each case runs the command's own loop
(`extract_features.extract`: tokenize, encode, forward pass, JSON lines) over --examples lines of a
randomly initialised model, writing into a byte counter, and keeps the fastest of --rounds interleaved
rounds (a round also pays the one-off XLA compilation of each batch shape it meets first; warm-up runs
one batch). The "reference algorithm" case runs the same model and tokenizer the way google-research/bert's
extract_features.py does: every batch padded to --max_seq_length, every value rounded and printed by
json.dumps one float at a time; ours over it is what cutting batches to their longest input and printing
whole arrays at once gain. Results are printed and written to bench/results/extract_features.json.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, check_positive, comma_list, fastest_of_rounds, machine, steal_note, write_results

sys.path.insert(0, str(ROOT))

LAYERS = [-1, -2, -3, -4]
SHARED = ROOT.parent / "shared" / "data"


def inputs(count):
    """{name: lines} of real text and the vocabulary file to tokenize it with."""
    import csv

    vocab = SHARED / "vocab" / "uncased_vocab.txt"
    mrpc = SHARED / "glue" / "MRPC" / "dev.tsv"
    wikitext = SHARED / "corpus" / "wikitext2_valid.raw.txt"
    if vocab.exists() and mrpc.exists() and wikitext.exists():
        with open(mrpc, encoding="utf-8-sig") as f:
            rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
        paragraphs = [line.strip() for line in wikitext.read_text(encoding="utf-8").splitlines()]
        paragraphs = [p for p in paragraphs if p and not p.startswith("=")]
        return {"MRPC pairs": [f"{row[3]} ||| {row[4]}" for row in rows[:count]],
                "WikiText-2": paragraphs[:count]}, vocab
    from bert import tokenization

    lines = [line.strip() for line in (ROOT / "data" / "sample_corpus.txt").read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if line][:count]
    words = sorted({piece for line in lines for piece in tokenization.BasicTokenizer().tokenize(line)})
    vocab = Path(tempfile.mkdtemp()) / "vocab.txt"
    vocab.write_text("\n".join([*tokenization.SPECIAL_TOKENS, *words]) + "\n", encoding="utf-8")
    return {"sample corpus": lines}, vocab


class ByteCounter:
    def __init__(self):
        self.bytes = 0

    def write(self, text):
        self.bytes += len(text)  # json.dumps writes ASCII


def reference_algorithm(examples, tokenizer, forward, layers, max_seq_length, batch_size, write):
    """google-research/bert's extract_features.py loop: padded batches, values rounded and printed one by one."""
    import numpy as np

    from bert import features

    for begin in range(0, len(examples), batch_size):
        batch = [features.encode_pair(tokenizer, tokenizer.tokenize(a), tokenizer.tokenize(b) if b is not None else None,
                                      max_seq_length)
                 for a, b in examples[begin : begin + batch_size]]
        outputs = forward(*(np.stack([getattr(f, name) for f in batch]) for name in ("input_ids", "input_mask", "segment_ids")))
        outputs = [o.numpy() for o in outputs]
        for row, feature in enumerate(batch):
            entries = [{"token": token, "layers": [{"index": layer, "values": [round(float(x), 6) for x in o[row][position]]}
                                                   for layer, o in zip(layers, outputs)]}
                       for position, token in enumerate(feature.tokens)]
            write(json.dumps({"linex_index": begin + row, "features": entries}) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="mini,base", help="model aliases (tiny, mini, small, medium, base, large)")
    parser.add_argument("--examples", type=int, default=64, help="input lines of each kind")
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2, help="times each case is measured; the fastest round counts")
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "extract_features.json"))
    args = parser.parse_args()
    from bert import config as bert_config

    sizes = comma_list(parser, args.sizes, "--sizes", list(bert_config.ALIASES))
    check_positive(parser, args, "examples", "max_seq_length", "batch_size", "rounds")

    from bert import extract_features, features, modeling, tokenization

    texts, vocab = inputs(args.examples)
    tokenizer = tokenization.FullTokenizer(str(vocab), do_lower_case=True)
    datasets = {}
    with tempfile.TemporaryDirectory() as directory:
        for name, lines in texts.items():
            path = Path(directory) / "input.txt"
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
            examples = extract_features.read_examples(path)
            tokens = sum(len(features.encode_pair(tokenizer, tokenizer.tokenize(a),
                                                  tokenizer.tokenize(b) if b is not None else None,
                                                  args.max_seq_length).tokens)
                         for a, b in examples)
            datasets[name] = examples, tokens

    results = {"machine": machine(), "seq": args.max_seq_length, "batch": args.batch_size, "rounds": args.rounds,
               "cases": []}
    for size in sizes:
        config = bert_config.load_config(size)
        if config.vocab_size < tokenizer.vocab_size:
            config = bert_config.BertConfig(**{**config.__dict__, "vocab_size": tokenizer.vocab_size})
        layers = LAYERS[: config.num_hidden_layers]
        forward = extract_features.make_forward(modeling.BertModel(config), layers)
        for name, (examples, tokens) in datasets.items():
            runs = {
                "ours": lambda lines, sink: extract_features.extract(lines, tokenizer, forward, layers,
                                                                     args.max_seq_length, args.batch_size, sink.write),
                "reference algorithm": lambda lines, sink: reference_algorithm(lines, tokenizer, forward, layers,
                                                                               args.max_seq_length, args.batch_size, sink.write),
            }
            for run in runs.values():  # traces the forward pass
                run(examples[: args.batch_size], ByteCounter())
            written = {}

            def measure(algorithm):
                sink, start = ByteCounter(), time.perf_counter()
                runs[algorithm](examples, sink)
                written[algorithm] = sink.bytes
                return time.perf_counter() - start

            def report(round_index, algorithm, seconds, steal):
                print(f"round {round_index + 1}/{args.rounds} {size:6s} {name:12s} {algorithm:20s} "
                      f"{len(examples) / seconds:8.2f} examples/s{steal_note(steal)}", flush=True)

            cases = [(algorithm, lambda a=algorithm: measure(a)) for algorithm in runs]
            best, steals = fastest_of_rounds(cases, args.rounds, report)
            row = {"size": size, "input": name, "layers": layers, "examples": len(examples), "tokens": tokens}
            for algorithm, seconds in best.items():
                row[algorithm] = {"examples_per_second": len(examples) / seconds, "tokens_per_second": tokens / seconds,
                                  "output_megabytes": written[algorithm] / 1e6, "cpu_steal": steals[algorithm]}
            row["ours_over_reference_algorithm"] = best["reference algorithm"] / best["ours"]
            print(f"{size:6s} {name:12s} ours {row['ours']['examples_per_second']:8.2f} examples/s "
                  f"({row['ours']['tokens_per_second']:.0f} tokens/s), reference algorithm "
                  f"{row['reference algorithm']['examples_per_second']:8.2f}: {row['ours_over_reference_algorithm']:.2f}x")
            results["cases"].append(row)
    write_results(args.output, results)
    print(f"bench/extract_features.py: wrote {args.output}")


if __name__ == "__main__":
    main()
