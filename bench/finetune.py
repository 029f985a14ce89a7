"""Benchmark bert-classify's training step on MRPC: training examples/s at seq 128, batch 32.

    .venv/bin/python bench/finetune.py                     # mini and MiniLM-L6-H384 shapes; float32 and bfloat16
    .venv/bin/python bench/finetune.py --compare --transformers_python=/path/to/python

Each case times full optimizer steps (forward, backward, adam update; the median of --steps, after
warm-up steps; each case keeps the fastest of --rounds interleaved rounds) of the classifier on the
first 32 MRPC training pairs, encoded with Google's uncased vocabulary (from ../shared/data; random
token ids when it is absent: throughput does not depend on them). --compare also times transformers'
BertForSequenceClassification with torch.optim.AdamW on the same batch, in its own process (MKL's
fast-path shim preloaded). Each figure also carries the CPU steal of its round (the share of a virtual
machine's CPU the hypervisor gave other tenants), printed when above 5%. Results are printed and written
to bench/results/finetune.json.
"""

import argparse
import json
import sys

from common import (ROOT, check_positive, comma_list, fastest_of_rounds, machine, run_peer, steal_note, time_steps,
                    write_results)

sys.path.insert(0, str(ROOT))

SEQ, BATCH, LABELS = 128, 32, 2
VOCAB = 30522
# name: (layers, hidden, heads)
SIZES = {"mini": (4, 256, 4), "minilm": (6, 384, 12), "small": (4, 512, 8), "base": (12, 768, 12)}


def mrpc_batch():
    import numpy as np

    mrpc = ROOT.parent / "shared" / "data" / "glue" / "MRPC" / "train.tsv"
    vocab = ROOT.parent / "shared" / "data" / "vocab" / "uncased_vocab.txt"
    if not (mrpc.exists() and vocab.exists()):
        rng = np.random.default_rng(0)
        return {"input_ids": rng.integers(1000, VOCAB, (BATCH, SEQ)).astype(np.int32),
                "input_mask": np.ones((BATCH, SEQ), np.int32), "segment_ids": np.zeros((BATCH, SEQ), np.int32),
                "label_ids": rng.integers(0, LABELS, BATCH).astype(np.int32)}, "random ids"
    # No TensorFlow here: the transformers peer builds its batch with this too.
    from bert import features, glue, tokenization

    task = glue.get_task("mrpc")
    examples, _ = glue.read_examples(task, mrpc, "train")
    tokenizer = tokenization.FullTokenizer(str(vocab), do_lower_case=True)
    encoded = [features.encode_pair(tokenizer, tokenizer.tokenize(e.text_a), tokenizer.tokenize(e.text_b), SEQ)
               for e in examples[:BATCH]]
    batch = {key: np.stack([getattr(f, key) for f in encoded]) for key in ("input_ids", "input_mask", "segment_ids")}
    batch["label_ids"] = np.array([task.labels.index(e.label) for e in examples[:BATCH]], np.int32)
    return batch, "MRPC train"


def config_of(size):
    from bert.config import BertConfig

    layers, hidden, heads = SIZES[size]
    return BertConfig(vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                      intermediate_size=4 * hidden, max_position_embeddings=512, type_vocab_size=2)


def ours(size, dtype, xla, warmup, steps):
    from bert import classifier, distributed, training
    from bert.tf import tf

    options = training.TrainOptions(output_dir="unused", num_train_steps=10**6, num_warmup_steps=10, learning_rate=2e-5,
                                    micro_batch_size=BATCH, compute_dtype=dtype, use_xla=xla)
    task = classifier.ClassificationTask(classifier.BertClassifier(config_of(size), LABELS), regression=False)
    trainer = training.Trainer(task, options, distributed.Single())
    batch = {k: tf.constant(v) for k, v in mrpc_batch()[0].items()}
    return time_steps(lambda: trainer.train_step(batch)["loss"].numpy(), warmup, steps)


def transformers_peer(size, warmup, steps):
    import torch
    from transformers import BertConfig as HFConfig
    from transformers import BertForSequenceClassification

    layers, hidden, heads = SIZES[size]
    model = BertForSequenceClassification(HFConfig(vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=layers,
                                                   num_attention_heads=heads, intermediate_size=4 * hidden,
                                                   num_labels=LABELS))
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5)
    batch = mrpc_batch()[0]
    inputs = dict(input_ids=torch.as_tensor(batch["input_ids"], dtype=torch.long),
                  attention_mask=torch.as_tensor(batch["input_mask"], dtype=torch.long),
                  token_type_ids=torch.as_tensor(batch["segment_ids"], dtype=torch.long),
                  labels=torch.as_tensor(batch["label_ids"], dtype=torch.long))

    def step():
        optimizer.zero_grad()
        model(**inputs).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    import transformers

    return time_steps(step, warmup, steps), {"transformers": transformers.__version__, "torch": torch.__version__,
                                             "threads": torch.get_num_threads()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="mini,minilm")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--xla", action="store_true", help="compile our step with XLA")
    parser.add_argument("--compare", action="store_true", help="also time transformers' BertForSequenceClassification")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per case and round (the median counts)")
    parser.add_argument("--rounds", type=int, default=3, help="times each case is measured; the fastest round counts")
    parser.add_argument("--transformers_python", help="interpreter with transformers and torch (default: this one)")
    parser.add_argument("--peer", help=argparse.SUPPRESS)
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "finetune.json"))
    args = parser.parse_args()
    sizes = comma_list(parser, args.sizes, "--sizes", list(SIZES))
    dtypes = comma_list(parser, args.dtypes, "--dtypes", ["float32", "bfloat16", "float16"])
    check_positive(parser, args, "steps", "rounds")
    if args.peer:
        seconds, details = transformers_peer(sizes[0], args.warmup, args.steps)
        print(json.dumps({"seconds": seconds, "details": details}))
        return

    data = mrpc_batch()[1]
    results = {"machine": machine(), "task": "MRPC", "data": data, "seq": SEQ, "batch": BATCH, "xla": args.xla,
               "rounds": args.rounds, "cases": []}
    peer_details = {size: {} for size in sizes}
    cases = []
    for size in sizes:
        cases += [((size, dtype), lambda s=size, d=dtype: ours(s, d, args.xla, args.warmup, args.steps))
                  for dtype in dtypes]
        if args.compare:
            cases.append(((size, "transformers"), lambda s=size: run_peer(__file__, "transformers", s, args.warmup,
                                                                          args.steps, args.transformers_python,
                                                                          peer_details[s])))

    def report(round_index, key, measured, steal):
        print(f"round {round_index + 1}/{args.rounds} {key[0]:7s} {key[1]:12s} {BATCH / measured:8.1f} examples/s"
              f"{steal_note(steal)}", flush=True)

    seconds, steals = fastest_of_rounds(cases, args.rounds, report)
    for size in sizes:
        layers, hidden, heads = SIZES[size]
        row = {"size": size, "layers": layers, "hidden": hidden, "heads": heads}
        for dtype in dtypes:
            rate = BATCH / seconds[size, dtype]
            row[dtype] = {"examples_per_second": rate, "cpu_steal": steals[size, dtype]}
            print(f"{size:7s} {dtype:8s} {rate:8.1f} examples/s ({data}){steal_note(steals[size, dtype])}")
        if "float32" in row and "bfloat16" in row:
            row["bfloat16_over_float32"] = row["bfloat16"]["examples_per_second"] / row["float32"]["examples_per_second"]
        if (size, "transformers") in seconds:
            rate = BATCH / seconds[size, "transformers"]
            row["transformers"] = {"examples_per_second": rate, "cpu_steal": steals[size, "transformers"],
                                   **peer_details[size]}
            if "float32" in row:
                row["ours_over_transformers"] = row["float32"]["examples_per_second"] / rate
            print(f"{size:7s} transformers {rate:8.1f} examples/s  (ours fp32 / transformers: {row.get('ours_over_transformers', 0):.2f}x)")
        results["cases"].append(row)
    write_results(args.output, results)
    print(f"bench/finetune.py: wrote {args.output}")


if __name__ == "__main__":
    main()
