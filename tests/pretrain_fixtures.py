"""Records and a small model config for the pre-training tests: WikiText-2 through bert-create-data."""

import json

import pytest

from tests.conftest import run_cli, shared_file

SEQ, PREDICTIONS = 64, 10
SMALL_MODEL = {
    "vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
    "intermediate_size": 64, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 64, "type_vocab_size": 2,
    "initializer_range": 0.02,
}


@pytest.fixture(scope="session")
def records_dir(tmp_path_factory, wikitext_docs):
    vocab = shared_file("vocab", "uncased_vocab.txt")
    out = tmp_path_factory.mktemp("records") / "wiki"
    result = run_cli(
        "create_data", f"--input_file={wikitext_docs}", f"--vocab_file={vocab}", f"--output_dir={out}",
        "--num_output_shards=2", "--dupe_factor=1", f"--max_seq_length={SEQ}",
        f"--max_predictions_per_seq={PREDICTIONS}",
    )
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="session")
def small_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("config") / "bert_config.json"
    path.write_text(json.dumps(SMALL_MODEL))
    return path


def pretrain_args(records_dir, config, output_dir, *extra, inputs="part-*.tfrecord"):
    return (
        f"--input_file={records_dir}/{inputs}", f"--output_dir={output_dir}", f"--bert_config_file={config}",
        f"--max_seq_length={SEQ}", f"--max_predictions_per_seq={PREDICTIONS}", "--train_batch_size=8",
        "--learning_rate=1e-3", "--num_warmup_steps=3", "--num_report_steps=5", *extra,
    )
