"""One rank of a data-parallel test run: three steps on its half of a fixed batch, then its weights saved.

    python tests/distributed_worker.py ENGINE RECORDS_DIR OUT_DIR      (ENGINE: horovod, multi_worker_mirrored)

Each rank starts from different random weights (rank 1 with a NaN word embedding), so the test also shows
that rank 0's are broadcast.
Dropout is on: each rank must draw the masks of its examples' places in the global batch.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from bert import distributed, modeling, pretraining, training  # noqa: E402
from bert.config import BertConfig  # noqa: E402
from tests.pretrain_fixtures import PREDICTIONS, SEQ, SMALL_MODEL  # noqa: E402

HALF_BATCH = 4
STEPS = 3


def make_trainer(replicas, seed, micro_batch_size=HALF_BATCH):
    model = modeling.BertPretrainer(BertConfig.from_dict(SMALL_MODEL), seed=seed)
    options = training.TrainOptions(output_dir="unused", num_train_steps=10, num_warmup_steps=0, learning_rate=1e-3,
                                    optimizer_type="lamb", micro_batch_size=micro_batch_size)
    return training.Trainer(pretraining.PretrainingTask(model), options, replicas)


def fixed_batch(records_dir):
    files = sorted(os.path.join(records_dir, name) for name in os.listdir(records_dir) if name.endswith(".tfrecord"))
    return next(iter(pretraining.evaluation_dataset(files, 2 * HALF_BATCH, SEQ, PREDICTIONS)))


def main():
    engine, records_dir, out_dir = sys.argv[1:4]
    replicas = distributed.make_replicas(engine)
    trainer = make_trainer(replicas, seed=100 + replicas.rank)
    # Rank 0's values replace whatever the others hold, in several collectives even for this small model.
    distributed.BROADCAST_GROUP_BYTES = 64 << 10
    if replicas.rank:
        embeddings = trainer.variables_by_name["bert/embeddings/word_embeddings"]
        embeddings.assign(np.full(embeddings.shape, np.nan, np.float32))
    replicas.broadcast(trainer.state_variables())
    batch = fixed_batch(records_dir)
    mine = {k: v[replicas.rank * HALF_BATCH : (replicas.rank + 1) * HALF_BATCH] for k, v in batch.items()}
    for _ in range(STEPS):
        trainer.train_step(mine)
    np.savez(os.path.join(out_dir, f"rank-{replicas.rank}.npz"),
             **{name.replace("/", "|"): v.numpy() for name, v in trainer.variables_by_name.items()})


if __name__ == "__main__":
    main()
