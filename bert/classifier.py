"""Sentence (pair) classification and regression on the pooled output, as the reference's run_classifier.

The head is the reference's: dropout 0.1 on the pooled `[CLS]` vector (training only), then
`output_weights` [num_labels, H] and `output_bias` [num_labels] (top-level names, as its checkpoints
have them), softmax cross-entropy; a regression task (STS-B) has one output and a squared-error loss.
Examples become fixed-length arrays once (`encode_examples`), which the shared training loop serves
as step-indexed batches and which evaluation and prediction run over in order.
"""

import numpy as np

from bert import features, modeling, progress
from bert.tf import tf

# The reference's fixed dropout on the pooled output, whatever the config's hidden_dropout_prob.
CLASSIFIER_DROPOUT = 0.1
HEAD_NAMES = ("output_weights", "output_bias")
# Weights a fine-tuning run may start fresh: the new head, and the pooler some converted models lack.
OPTIONAL_INIT = (*HEAD_NAMES, *modeling.POOLER_NAMES)


class BertClassifier(modeling.NamedWeights):
    """The encoder and a dense layer on its pooled output."""

    def __init__(self, config, num_labels, seed=0, dropout=CLASSIFIER_DROPOUT):
        super().__init__(seed, config.initializer_range)
        self.config = config
        self.dropout = dropout
        self.bert = modeling.BertModel(config, seed)
        self.output_weights = self.normal("output_weights", [num_labels, config.hidden_size])
        self.output_bias = self.zeros("output_bias", [num_labels])

    @property
    def variables_by_name(self):
        return {**self.bert.weights, **self.weights}

    def __call__(self, batch, ctx):
        """Logits [B, num_labels], float32."""
        # The pooler reads the last layer at the first token only, so no other position is computed there.
        no_positions = tf.zeros([tf.shape(batch["input_ids"])[0], 0], tf.int32)
        _, pooled = self.bert(batch["input_ids"], batch["input_mask"], batch["segment_ids"], ctx,
                              last_layer_positions=no_positions)
        pooled = ctx.dropout(pooled, self.dropout)
        return tf.matmul(tf.cast(pooled, tf.float32), self.output_weights, transpose_b=True) + self.output_bias


class ClassificationTask:
    """The training loop's view of a classifier: mean loss over the examples, and accuracy."""

    loss_terms = {"example_loss": "examples"}
    count_epsilon = {}

    def __init__(self, model, regression):
        self.model = model
        self.regression = regression
        self.variables_by_name = model.variables_by_name
        self.metrics = {} if regression else {"accuracy": ("correct", "examples")}

    def counts(self, batch):
        return {"examples": tf.cast(tf.shape(batch["input_ids"])[0], tf.float32)}

    def sums(self, batch, ctx):
        logits = self.model(batch, ctx)
        labels = batch["label_ids"]
        if self.regression:
            return {"example_loss": tf.reduce_sum(tf.square(logits[:, 0] - labels))}
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32)
        return {"example_loss": tf.reduce_sum(losses), "correct": tf.reduce_sum(correct)}


def encode_examples(examples, tokenizer, max_seq_length, labels, description="encode", show_progress=True):
    """Examples -> {input_ids, input_mask, segment_ids [N, S] int32, label_ids [N]} (float32 labels for regression).

    `labels` is the task's label list, or None for regression; examples without a label get 0. Ranks other
    than the chief pass show_progress=False.
    """
    n = len(examples)
    arrays = {name: np.zeros((n, max_seq_length), np.int32) for name in ("input_ids", "input_mask", "segment_ids")}
    label_ids = np.zeros(n, np.float32 if labels is None else np.int32)
    label_index = {label: i for i, label in enumerate(labels or [])}
    for i, example in enumerate(progress.bar(examples, desc=description, unit="ex", disable=not show_progress)):
        tokens_b = tokenizer.tokenize(example.text_b) if example.text_b else None
        encoded = features.encode_pair(tokenizer, tokenizer.tokenize(example.text_a), tokens_b, max_seq_length)
        arrays["input_ids"][i] = encoded.input_ids
        arrays["input_mask"][i] = encoded.input_mask
        arrays["segment_ids"][i] = encoded.segment_ids
        if example.label is not None:
            label_ids[i] = float(example.label) if labels is None else label_index[example.label]
    arrays["label_ids"] = label_ids
    return arrays


def make_logits_function(model, max_seq_length, compute_dtype):
    spec = tf.TensorSpec([None, max_seq_length], tf.int32)

    @tf.function(input_signature=[spec, spec, spec], autograph=False)
    def logits(input_ids, input_mask, segment_ids):
        batch = {"input_ids": input_ids, "input_mask": input_mask, "segment_ids": segment_ids}
        return model(batch, modeling.Context(compute_dtype))

    return logits


def predict_logits(logits_function, arrays, batch_size, description="predict"):
    """The logits of every example, in order, batch by batch."""
    n = len(arrays["input_ids"])
    out = []
    for begin in progress.bar(range(0, n, batch_size), desc=description, unit="batch"):
        end = begin + batch_size
        out.append(logits_function(arrays["input_ids"][begin:end], arrays["input_mask"][begin:end],
                                   arrays["segment_ids"][begin:end]).numpy())
    return np.concatenate(out)


def example_losses(logits, label_ids, regression):
    """Per-example losses of float32 logits, as the training loss computes them."""
    if regression:
        return np.square(logits[:, 0] - label_ids)
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    return -log_probs[np.arange(len(label_ids)), label_ids]


def softmax(logits):
    shifted = logits - logits.max(-1, keepdims=True)
    exps = np.exp(shifted)
    return (exps / exps.sum(-1, keepdims=True)).astype(np.float32)
