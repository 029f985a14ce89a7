"""Benchmark bert-pretrain's training step: sequences/s, tokens/s and model FLOPs utilisation.

    .venv/bin/python bench/pretrain.py                        # tiny, mini, small; float32 and bfloat16
    .venv/bin/python bench/pretrain.py --sizes=mini --xla      # with XLA
    .venv/bin/python bench/pretrain.py --compare               # also keras-hub and transformers, same run
    .venv/bin/python bench/pretrain.py --compare --threads=8   # each framework computing on 8 threads

Each case times full optimizer steps (forward, backward, adam update; the median of --steps) at seq 128, batch 32,
20 masked positions, after warm-up steps, on batches of random token ids (throughput does not depend on
the values). Cases are measured in --rounds interleaved rounds and each keeps its fastest round, so a
slow stretch on a shared machine does not decide a ratio. Model FLOPs utilisation = useful FLOPs (3x
the forward matmuls the losses need: the last layer and the MLM head at the masked positions only) /
the peak of a large matmul measured here in the same run and dtype. On a virtual machine each figure
also carries the CPU steal of its round (the share of the CPU the hypervisor gave other tenants), printed
when above 5%: a ratio between figures taken under different steal is not a property of the code.

--compare runs, each in its own process, the peers a user would pick instead: keras-hub's
BertMaskedLM (Keras 3 on TensorFlow, with TensorFlow's oneDNN kernels on, as ours; timed with and without
XLA, the faster kept) and transformers' BertForPreTraining (PyTorch CPU, with the `mkl_serv_intel_cpu_true`
shim preloaded so MKL takes its fast path on AMD CPUs). Both clip gradients at global norm 1.0, as ours
does, and the JSON records, for each case, their versions and settings. Install them with
`.venv/bin/pip install keras-hub transformers torch`, or point --keras_hub_python/--transformers_python
at another environment's interpreter (torch need not share ours); a missing peer is reported as skipped.
Each framework computes on as many threads as it takes by default, unless --threads pins all three to one
count; the JSON records that count (null for the defaults) and the count transformers' torch ran with.
Results are printed and written to bench/results/pretrain.json.
"""

import argparse
import json
import sys
import time

from common import (ROOT, check_positive, comma_list, fastest_of_rounds, machine, run_peer, steal_note, time_steps,
                    write_results)

sys.path.insert(0, str(ROOT))

SEQ, BATCH, PREDICTIONS = 128, 32, 20
SIZES = {"tiny": (2, 128), "mini": (4, 256), "small": (4, 512), "medium": (8, 512), "base": (12, 768)}
VOCAB = 30522


def model_flops_per_sequence(layers, hidden):
    """Training FLOPs one sequence's losses need: 3x the forward matmuls (attention scores and context included).

    The losses read the last layer only at the masked positions and the first token (its keys and
    values see every position) and project only the masked positions onto the vocabulary; what an
    implementation computes beyond that (the peers compute the whole last layer) earns no credit.
    """
    inter = 4 * hidden

    def layer(queries):
        keys_values = 2 * SEQ * 2 * hidden * hidden
        query_and_output = 2 * queries * 2 * hidden * hidden
        attention = 2 * 2 * queries * SEQ * hidden
        return keys_values + query_and_output + attention + 2 * queries * 2 * hidden * inter

    head = 2 * PREDICTIONS * (hidden * hidden + hidden * VOCAB) + 2 * hidden * hidden
    return 3 * ((layers - 1) * layer(SEQ) + layer(PREDICTIONS + 1) + head)


PEAK_SIZE = 2048


def matmul_seconds(dtype_name):
    """Seconds of one PEAK_SIZE^3 matmul in TensorFlow: the machine's peak for the MFU figures."""
    from bert.tf import tf

    dtype = getattr(tf, dtype_name)
    a = tf.cast(tf.random.normal([PEAK_SIZE, PEAK_SIZE]), dtype)
    b = tf.cast(tf.random.normal([PEAK_SIZE, PEAK_SIZE]), dtype)
    f = tf.function(lambda: tf.matmul(a, b)[0, 0])
    for _ in range(3):
        f().numpy()
    start, n = time.perf_counter(), 10
    for _ in range(n):
        f().numpy()
    return (time.perf_counter() - start) / n


def random_batch(batch=BATCH):
    import numpy as np

    rng = np.random.default_rng(0)
    return {
        "input_ids": rng.integers(1000, VOCAB, (batch, SEQ)).astype(np.int32),
        "input_mask": np.ones((batch, SEQ), np.int32),
        "segment_ids": (np.arange(SEQ)[None].repeat(batch, 0) >= SEQ // 2).astype(np.int32),
        # Distinct positions in each row, as in real records, so every peer predicts the same PREDICTIONS tokens.
        "masked_lm_positions": np.sort(rng.permuted(np.tile(np.arange(1, SEQ), (batch, 1)), axis=1)[:, :PREDICTIONS],
                                       -1).astype(np.int32),
        "masked_lm_ids": rng.integers(1000, VOCAB, (batch, PREDICTIONS)).astype(np.int32),
        "masked_lm_weights": np.ones((batch, PREDICTIONS), np.float32),
        "next_sentence_labels": rng.integers(0, 2, (batch, 1)).astype(np.int32),
    }


def pin_tensorflow_threads(tf, threads):
    """Runs TensorFlow's ops on `threads` threads (each op's own pool and the pool running ops side by side); its
    default where None. Only before TensorFlow has run an op."""
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def our_step(size, dtype="float32", xla=False, micro_batch_size=BATCH, accumulation=1):
    """A function taking one of our optimizer steps, of `accumulation` micro-batches, on random token ids; the
    model and its trainer are built, nothing is run yet."""
    from bert import distributed, modeling, pretraining, training
    from bert.config import BertConfig
    from bert.tf import tf

    layers, hidden = SIZES[size]
    config = BertConfig(vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=hidden // 64,
                        intermediate_size=4 * hidden, max_position_embeddings=512, type_vocab_size=2)
    options = training.TrainOptions(output_dir="unused", num_train_steps=10**6, num_warmup_steps=100, learning_rate=1e-4,
                                    micro_batch_size=micro_batch_size, num_accumulation_steps=accumulation,
                                    compute_dtype=dtype, use_xla=xla)
    trainer = training.Trainer(pretraining.PretrainingTask(modeling.BertPretrainer(config)), options, distributed.Single())
    features = {k: tf.constant(v) for k, v in random_batch(micro_batch_size * accumulation).items()}
    return lambda: trainer.train_step(features)["loss"].numpy()


def ours(size, dtype, xla, warmup, steps):
    return time_steps(our_step(size, dtype, xla), warmup, steps)


def keras_hub_peer(size, warmup, steps, threads=None):
    """keras-hub at its faster on this machine: Keras leaves XLA off on a CPU-only machine, where it speeds up tiny
    and slows mini and small; both are timed and the faster is kept."""
    import tensorflow as tf

    pin_tensorflow_threads(tf, threads)
    import keras
    import keras_hub
    import numpy as np

    layers, hidden = SIZES[size]
    batch = random_batch()
    x = {"token_ids": batch["input_ids"], "padding_mask": batch["input_mask"].astype(bool),
         "segment_ids": batch["segment_ids"], "mask_positions": batch["masked_lm_positions"]}
    y = batch["masked_lm_ids"]
    timed = {}
    for jit_compile in (False, True):
        backbone = keras_hub.models.BertBackbone(vocabulary_size=VOCAB, num_layers=layers, num_heads=hidden // 64,
                                                 hidden_dim=hidden, intermediate_dim=4 * hidden, max_sequence_length=512)
        model = keras_hub.models.BertMaskedLM(backbone=backbone, preprocessor=None)
        # Clipped at global norm 1.0, as ours is.
        model.compile(optimizer=keras.optimizers.AdamW(1e-4, global_clipnorm=1.0), jit_compile=jit_compile,
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        timed[jit_compile] = time_steps(lambda: model.train_on_batch(x, y, sample_weight=np.ones_like(y, np.float32)),
                                        warmup, steps)
    xla = timed[True] < timed[False]
    return timed[xla], {"keras_hub": keras_hub.__version__, "keras": keras.__version__, "xla": xla,
                        "seconds_without_xla": timed[False], "seconds_with_xla": timed[True]}


def transformers_peer(size, warmup, steps, threads=None):
    import torch
    from transformers import BertConfig as HFConfig
    from transformers import BertForPreTraining

    if threads:
        torch.set_num_threads(threads)
    layers, hidden = SIZES[size]
    model = BertForPreTraining(HFConfig(vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=layers,
                                        num_attention_heads=hidden // 64, intermediate_size=4 * hidden))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = random_batch()
    labels = torch.full((BATCH, SEQ), -100, dtype=torch.long)
    rows = torch.arange(BATCH)[:, None]
    labels[rows, torch.as_tensor(batch["masked_lm_positions"], dtype=torch.long)] = torch.as_tensor(batch["masked_lm_ids"], dtype=torch.long)
    inputs = dict(input_ids=torch.as_tensor(batch["input_ids"], dtype=torch.long),
                  attention_mask=torch.as_tensor(batch["input_mask"], dtype=torch.long),
                  token_type_ids=torch.as_tensor(batch["segment_ids"], dtype=torch.long), labels=labels,
                  next_sentence_label=torch.as_tensor(batch["next_sentence_labels"][:, 0], dtype=torch.long))

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
    parser.add_argument("--sizes", default="tiny,mini,small")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--xla", action="store_true", help="compile our step with XLA")
    parser.add_argument("--allow_tf32", action="store_true", help="float32 matmuls in TF32 (Ampere and later GPUs)")
    parser.add_argument("--compare", action="store_true", help="also time keras-hub and transformers")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per case and round (the median counts)")
    parser.add_argument("--rounds", type=int, default=3, help="times each case is measured; the fastest round counts")
    parser.add_argument("--threads", type=int, help="threads each framework computes on (default: each its own)")
    parser.add_argument("--keras_hub_python", help="interpreter with keras-hub installed (default: this one)")
    parser.add_argument("--transformers_python", help="interpreter with transformers and torch (default: this one)")
    parser.add_argument("--peer", help=argparse.SUPPRESS)
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "pretrain.json"))
    args = parser.parse_args()
    sizes = comma_list(parser, args.sizes, "--sizes", list(SIZES))
    dtypes = comma_list(parser, args.dtypes, "--dtypes", ["float32", "bfloat16", "float16"])
    check_positive(parser, args, "steps", "rounds", *(["threads"] if args.threads is not None else []))
    if args.peer:
        peer = keras_hub_peer if args.peer == "keras_hub" else transformers_peer
        seconds, details = peer(sizes[0], args.warmup, args.steps, args.threads)
        print(json.dumps({"seconds": seconds, "details": details}))
        return

    from bert.tf import tf

    pin_tensorflow_threads(tf, args.threads)
    if args.allow_tf32:
        tf.config.experimental.enable_tensor_float_32_execution(True)
    results = {"machine": machine(), "seq": SEQ, "batch": BATCH, "predictions": PREDICTIONS, "xla": args.xla,
               "allow_tf32": args.allow_tf32, "rounds": args.rounds, "threads": args.threads, "cases": []}
    peers = ("keras_hub", "transformers") if args.compare else ()
    peer_python = {"keras_hub": args.keras_hub_python, "transformers": args.transformers_python}
    peer_details = {(size, peer): {} for size in sizes for peer in peers}
    cases = [(("peak", dtype), lambda d=dtype: matmul_seconds(d)) for dtype in dtypes]
    for size in sizes:
        cases += [((size, dtype), lambda s=size, d=dtype: ours(s, d, args.xla, args.warmup, args.steps))
                  for dtype in dtypes]
        pinned = [f"--threads={args.threads}"] if args.threads else []
        cases += [((size, peer), lambda s=size, p=peer: run_peer(__file__, p, s, args.warmup, args.steps, peer_python[p],
                                                                  peer_details[s, p], pinned))
                  for peer in peers]

    def report(round_index, key, measured, steal):
        if key[0] != "peak":
            print(f"round {round_index + 1}/{args.rounds} {key[0]:6s} {key[1]:12s} {BATCH / measured:8.1f} seq/s"
                  f"{steal_note(steal)}", flush=True)

    seconds, steals = fastest_of_rounds(cases, args.rounds, report)
    peaks = {dtype: 2 * PEAK_SIZE**3 / seconds["peak", dtype] for dtype in dtypes}
    results["matmul_peak_gflops"] = {k: v / 1e9 for k, v in peaks.items()}
    for dtype in dtypes:
        print(f"matmul peak ({dtype}, {PEAK_SIZE}^3 in TensorFlow, best round): {peaks[dtype] / 1e9:.0f} GFLOP/s")
    for size in sizes:
        layers, hidden = SIZES[size]
        flops = model_flops_per_sequence(layers, hidden)
        row = {"size": size, "layers": layers, "hidden": hidden}
        for dtype in dtypes:
            rate = BATCH / seconds[size, dtype]
            row[dtype] = {"sequences_per_second": rate, "tokens_per_second": rate * SEQ,
                          "mfu": rate * flops / peaks[dtype], "cpu_steal": steals[size, dtype]}
            print(f"{size:6s} {dtype:8s} {rate:8.1f} seq/s {rate * SEQ:9.0f} tok/s  MFU {row[dtype]['mfu']:.1%}"
                  f"{steal_note(steals[size, dtype])}")
        if "float32" in row and "bfloat16" in row:
            row["bfloat16_over_float32"] = row["bfloat16"]["sequences_per_second"] / row["float32"]["sequences_per_second"]
            print(f"{size:6s} bfloat16 / float32: {row['bfloat16_over_float32']:.2f}x")
        for peer in peers:
            if (size, peer) not in seconds:
                continue
            rate = BATCH / seconds[size, peer]
            row[peer] = {"sequences_per_second": rate, "cpu_steal": steals[size, peer], **peer_details[size, peer]}
            ratio = ""
            # The peers run in float32: their utilisation and our ratio to them need our float32 case.
            if "float32" in row:
                row[peer]["mfu"] = rate * flops / peaks["float32"]
                row[f"ours_over_{peer}"] = row["float32"]["sequences_per_second"] / rate
                ratio = f"  (ours fp32 / {peer}: {row[f'ours_over_{peer}']:.2f}x)"
            print(f"{size:6s} {peer:12s} {rate:8.1f} seq/s{ratio}{steal_note(steals[size, peer])}")
        results["cases"].append(row)
    write_results(args.output, results)
    print(f"bench/pretrain.py: wrote {args.output}")


if __name__ == "__main__":
    main()
