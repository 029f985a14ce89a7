"""An independent NumPy statement of BERT's forward pass (SPEC §6), over a dict of TF1-named weights.

Written from the paper and SPEC formulas, sharing no code with bert.modeling, in float64, to check the
TensorFlow model and every consumer of a loaded checkpoint.
"""

import math

import numpy as np


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def gelu_exact(x):
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


ACTIVATIONS = {
    "gelu": gelu_tanh, "gelu_exact": gelu_exact, "relu": lambda x: np.maximum(x, 0.0), "tanh": np.tanh,
    "linear": lambda x: x,
}


def layer_norm(x, gamma, beta):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-12) * gamma + beta


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def log_softmax(x):
    shifted = x - x.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def encoder(w, num_layers, num_heads, input_ids, input_mask, segment_ids, activation="gelu"):
    """All layer outputs [L][B, S, H] and the pooled output [B, H]."""
    w = {k: np.asarray(v, np.float64) for k, v in w.items()}
    b, s = input_ids.shape
    token_types = w["bert/embeddings/token_type_embeddings"]
    # The reference's one-hot lookup: a segment id past the table adds zeros.
    one_hot = (segment_ids[..., None] == np.arange(len(token_types))).astype(np.float64)
    x = (
        w["bert/embeddings/word_embeddings"][input_ids]
        + one_hot @ token_types
        + w["bert/embeddings/position_embeddings"][:s][None]
    )
    x = layer_norm(x, w["bert/embeddings/LayerNorm/gamma"], w["bert/embeddings/LayerNorm/beta"])
    h = x.shape[-1]
    d = h // num_heads
    adder = (1.0 - input_mask[:, None, None, :].astype(np.float64)) * -10000.0
    layers = []
    for n in range(num_layers):
        p = f"bert/encoder/layer_{n}/"

        def dense(t, name):
            return t @ w[p + name + "/kernel"] + w[p + name + "/bias"]

        def heads(t):
            return t.reshape(b, s, num_heads, d).transpose(0, 2, 1, 3)

        q, k, v = (heads(dense(x, f"attention/self/{name}")) for name in ("query", "key", "value"))
        probs = softmax(q @ k.transpose(0, 1, 3, 2) / math.sqrt(d) + adder)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(b, s, h)
        x = layer_norm(dense(context, "attention/output/dense") + x,
                       w[p + "attention/output/LayerNorm/gamma"], w[p + "attention/output/LayerNorm/beta"])
        inner = ACTIVATIONS[activation](dense(x, "intermediate/dense"))
        x = layer_norm(dense(inner, "output/dense") + x, w[p + "output/LayerNorm/gamma"], w[p + "output/LayerNorm/beta"])
        layers.append(x)
    pooled = np.tanh(layers[-1][:, 0] @ w["bert/pooler/dense/kernel"] + w["bert/pooler/dense/bias"])
    return layers, pooled


def pretraining_log_probs(w, num_layers, num_heads, features, activation="gelu"):
    """(log-probabilities over the vocabulary at each masked position [B * P, V], of next/random [B, 2])."""
    layers, pooled = encoder(w, num_layers, num_heads, features["input_ids"], features["input_mask"],
                             features["segment_ids"], activation)
    w = {k: np.asarray(v, np.float64) for k, v in w.items()}
    seq = layers[-1]
    rows = np.arange(seq.shape[0])[:, None]
    masked = seq[rows, features["masked_lm_positions"]].reshape(-1, seq.shape[-1])
    t = ACTIVATIONS[activation](masked @ w["cls/predictions/transform/dense/kernel"] + w["cls/predictions/transform/dense/bias"])
    t = layer_norm(t, w["cls/predictions/transform/LayerNorm/gamma"], w["cls/predictions/transform/LayerNorm/beta"])
    mlm_logp = log_softmax(t @ w["bert/embeddings/word_embeddings"].T + w["cls/predictions/output_bias"])
    nsp_logp = log_softmax(pooled @ w["cls/seq_relationship/output_weights"].T + w["cls/seq_relationship/output_bias"])
    return mlm_logp, nsp_logp


def pretraining_losses(w, num_layers, num_heads, features, activation="gelu"):
    """(masked LM loss, next-sentence loss) as the reference defines them."""
    mlm_logp, nsp_logp = pretraining_log_probs(w, num_layers, num_heads, features, activation)
    labels = features["masked_lm_ids"].reshape(-1)
    per_position = -mlm_logp[np.arange(len(labels)), labels]
    weights = features["masked_lm_weights"].reshape(-1).astype(np.float64)
    mlm = (weights * per_position).sum() / (weights.sum() + 1e-5)
    nsp = -nsp_logp[np.arange(len(nsp_logp)), features["next_sentence_labels"].reshape(-1)].mean()
    return mlm, nsp
