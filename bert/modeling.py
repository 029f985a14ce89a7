"""The BERT encoder and its pre-training heads, in plain TensorFlow 2, exactly as the reference computes them.

Every weight is a `tf.Variable` registered under the reference's TF1 checkpoint name
(`bert/encoder/layer_3/attention/self/query/kernel`), kernels laid out [in, out], so loading a
released `bert_model.ckpt` or exporting one is a dictionary lookup (see `bert/checkpoints.py`).

Numerics follow the reference: post-LayerNorm layers, LayerNorm epsilon 1e-12, -10000 added to the
attention scores of padded keys, "gelu" as the tanh approximation, the masked-LM logits computed only
at the masked positions against the tied word-embedding matrix. Weights stay float32; with a
`compute_dtype` of float16 or bfloat16 they are cast at use, while LayerNorm, softmax and the losses
run in float32.

Dropout is stateless: every call takes a `seed` (a shape-[2] integer tensor) and each dropout site
folds its own index into it; an example's mask is drawn from its place in the step's global batch
(counter-based, by Threefry-2x32). So a step's randomness depends only on the run's seed, the step and
the examples, never on how many steps this process has run (a killed run resumes bit for bit), nor on
how the global batch is split among ranks and micro-batches (accumulating k micro-batches draws the
masks of one k-times larger batch).
"""

import hashlib
import math

from bert.tf import tf

LAYER_NORM_EPSILON = 1e-12
MASK_ADDER = -10000.0


def _fused(function):
    """`function` (float32 tensors in, one tensor out) as one XLA kernel forwards and one backwards.

    TensorFlow runs each elementwise op as its own pass over memory: the tanh GELU is seven passes
    forwards and a dozen backwards, LayerNorm about as many, which on a CPU costs more than the
    matmuls they follow. XLA fuses each direction into one pass. The backward pass is TensorFlow's
    own derivative of the same expression, differentiated inside the compiled function, so nothing
    is hand-derived. Inputs of other dtypes are computed in float32 and the result cast back to the
    first input's dtype, as the mixed-precision policy wants for LayerNorm and GELU alike.
    """

    def as_float32(tensors):
        return [tf.cast(t, tf.float32) for t in tensors]

    @tf.function(jit_compile=True, autograph=False)
    def forward(*inputs):
        return tf.cast(function(*as_float32(inputs)), inputs[0].dtype)

    @tf.function(jit_compile=True, autograph=False)
    def backward(upstream, *inputs):
        inputs32 = as_float32(inputs)
        with tf.GradientTape() as tape:
            tape.watch(inputs32)
            output = function(*inputs32)
        gradients = tape.gradient(output, inputs32, output_gradients=tf.cast(upstream, tf.float32))
        return [tf.cast(g, t.dtype) for g, t in zip(gradients, inputs)]

    @tf.custom_gradient
    def apply(*inputs):
        return forward(*inputs), lambda upstream: backward(upstream, *inputs)

    return apply


def _gelu(x):
    return tf.nn.gelu(x, approximate=True)


def _gelu_exact(x):
    return tf.nn.gelu(x, approximate=False)


def _layer_norm(x, gamma, beta):
    mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
    # The reference's layer_norm is tf.nn.batch_normalization's arithmetic, kept in its order so that the
    # rounding follows the reference's as far as XLA's own order of summation allows.
    scale = tf.math.rsqrt(variance + LAYER_NORM_EPSILON) * gamma
    return x * scale + (beta - mean * scale)


fused_gelu = _fused(_gelu)
fused_gelu_exact = _fused(_gelu_exact)
fused_layer_norm = _fused(_layer_norm)


def activation(name):
    """The function for a config's `hidden_act`."""
    return {
        "gelu": fused_gelu, "gelu_exact": fused_gelu_exact, "relu": tf.nn.relu, "tanh": tf.tanh, "linear": tf.identity,
    }[name]


def _name_seed(seed, name):
    """A stateless-RNG seed for one variable: its initial value depends on the run seed and its name only."""
    digest = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little") & 0x7FFFFFFF
    return tf.constant([seed & 0x7FFFFFFF, digest], tf.int32)


class NamedWeights(tf.Module):
    """A module whose variables are kept in creation order under their reference checkpoint names."""

    def __init__(self, seed, initializer_range):
        super().__init__()
        self.weights = {}
        self._seed = seed
        self._initializer_range = initializer_range

    def _variable(self, name, initial):
        variable = tf.Variable(initial, name=name.replace("/", "_"), dtype=tf.float32)
        self.weights[name] = variable
        return variable

    def normal(self, name, shape):
        """A weight drawn like the reference's: truncated normal (2 stddevs), stddev initializer_range."""
        initial = tf.random.stateless_truncated_normal(
            shape, seed=_name_seed(self._seed, name), stddev=self._initializer_range
        )
        return self._variable(name, initial)

    def zeros(self, name, shape):
        return self._variable(name, tf.zeros(shape))

    def ones(self, name, shape):
        return self._variable(name, tf.ones(shape))

    def dense(self, name, fan_in, fan_out):
        return self.normal(f"{name}/kernel", [fan_in, fan_out]), self.zeros(f"{name}/bias", [fan_out])

    def layer_norm(self, name, size):
        return self.ones(f"{name}/gamma", [size]), self.zeros(f"{name}/beta", [size])


_THREEFRY_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_THREEFRY_PARITY = 0x1BD11BDA


def threefry2x32(key, x0, x1):
    """Random123's Threefry-2x32, 20 rounds: two random uint32 words for each counter (x0, x1), under a key of
    two uint32 words. Counter-based: any counter's words are drawn alone, in any batch, on any device."""

    def u32(value):
        return tf.constant(value, tf.uint32)

    schedule = (key[0], key[1], tf.bitwise.bitwise_xor(tf.bitwise.bitwise_xor(key[0], key[1]), u32(_THREEFRY_PARITY)))
    x0, x1 = x0 + schedule[0], x1 + schedule[1]
    for group in range(5):
        for rotation in _THREEFRY_ROTATIONS[group % 2]:
            x0 = x0 + x1
            x1 = tf.bitwise.bitwise_or(tf.bitwise.left_shift(x1, u32(rotation)),
                                       tf.bitwise.right_shift(x1, u32(32 - rotation)))
            x1 = tf.bitwise.bitwise_xor(x1, x0)
        x0 = x0 + schedule[(group + 1) % 3]
        x1 = x1 + schedule[(group + 2) % 3] + u32(group + 1)
    return x0, x1


@tf.function(jit_compile=True, autograph=False)
def _dropout_mask(shape, examples, seed, first_example, rate, dtype):
    # tf.nn.dropout's arithmetic (keep with probability 1 - rate, scale by 1 / (1 - rate)) as a
    # multiplication by a scaled mask, whose gradient is the same multiplication. Each example draws the
    # words of the counters (its index in the global batch, 0, 1, ...), two values a counter. The mask
    # depends on the seed and the examples alone, so it is drawn while the layers before it still run.
    # In int64: attention probabilities of a large micro-batch can hold 2^31 values or more.
    examples = tf.cast(examples, tf.int64)
    per_example = tf.reduce_prod(tf.cast(shape, tf.int64)) // examples
    pairs = (per_example + 1) // 2
    rows = tf.cast(tf.cast(first_example, tf.int64) + tf.range(examples), tf.uint32)
    words = threefry2x32(tf.bitcast(seed, tf.uint32), tf.broadcast_to(rows[:, tf.newaxis], [examples, pairs]),
                         tf.broadcast_to(tf.cast(tf.range(pairs), tf.uint32)[tf.newaxis], [examples, pairs]))
    bits = tf.reshape(tf.stack(words, axis=-1), [examples, 2 * pairs])[:, :per_example]
    keep = bits >= tf.constant(min(int(rate * 2**32), 2**32 - 1), tf.uint32)
    return tf.reshape(tf.cast(keep, dtype) * tf.cast(1.0 / (1.0 - rate), dtype), shape)


class Context:
    """What one forward pass needs besides the inputs: training or not, the dtype, the dropout seed, and the
    index of the batch's first example in the step's global batch (where a micro-batch's masks start)."""

    def __init__(self, compute_dtype=tf.float32, training=False, seed=None, first_example=0):
        self.dtype = compute_dtype
        self.training = training
        self._seed = seed
        self._first_example = first_example
        self._site = 0

    def dropout(self, x, rate, examples=None):
        """x with dropout at `rate`; x's rows are example-major, `examples` of them (x's first dimension if None)."""
        if not self.training or rate == 0.0:
            return x
        self._site += 1
        site_seed = tf.random.experimental.stateless_fold_in(self._seed, self._site)
        examples = tf.shape(x)[0] if examples is None else examples
        return x * _dropout_mask(tf.shape(x), examples, site_seed, self._first_example, rate, x.dtype)

    def dense(self, x, weights, act=None):
        kernel, bias = weights
        y = tf.nn.bias_add(tf.matmul(x, tf.cast(kernel, self.dtype)), tf.cast(bias, self.dtype))
        return act(y) if act is not None else y

    def layer_norm(self, x, weights):
        gamma, beta = weights
        return tf.cast(fused_layer_norm(x, gamma, beta), self.dtype)


@tf.function(jit_compile=True, autograph=False)
def _biased_logits(logits, bias):
    return tf.cast(logits, tf.float32) + bias


def _vocabulary_softmax(logits, bias, labels):
    logits = _biased_logits(logits, bias)
    probabilities = tf.nn.softmax(logits)
    # argmax, as the reference: a label tied with an earlier index for the top logit is not a hit.
    first_top = tf.argmax(logits, -1, output_type=labels.dtype)
    top = tf.gather(logits, first_top, batch_dims=1)
    # At the top logit the softmax is exp(0) / total, so log(total) comes back from one gathered value.
    log_total = -tf.math.log(tf.gather(probabilities, first_top, batch_dims=1))
    loss = (top - tf.gather(logits, labels, batch_dims=1)) + log_total
    hits = tf.cast(first_top == labels, tf.float32)
    return loss, hits, probabilities


@tf.function(jit_compile=True, autograph=False)
def _logits_gradient(upstream, probabilities, labels, dtype):
    vocab_size = tf.shape(probabilities)[-1]
    return tf.cast(upstream[:, tf.newaxis] * (probabilities - tf.one_hot(labels, vocab_size)), dtype)


def _vocabulary_softmax_gradient(upstream, probabilities, labels, dtype):
    # The bias gradient, sum(gradient, 0), expanded: summing `gradient` itself would materialise it in
    # float32 beside the 16-bit copy returned, one more write and read of the largest tensor of a step.
    # It is TensorFlow's matrix-vector product, which runs beside the compiled logits gradient.
    vocab_size = tf.shape(probabilities)[-1]
    bias_gradient = tf.linalg.matvec(probabilities, upstream, transpose_a=True) - tf.math.unsorted_segment_sum(
        upstream, labels, vocab_size)
    return _logits_gradient(upstream, probabilities, labels, dtype), bias_gradient


def _cross_entropy_and_hits(logits, bias, labels):
    """Per-row softmax cross-entropy of `logits` + `bias` (float32) and whether the label has the top logit.

    The same numbers as sparse_softmax_cross_entropy_with_logits and argmax == label, with the
    fewest passes over the logits, the largest tensor of a step with a 30k vocabulary: TensorFlow's
    own ops take a dozen (cast, bias, max, exp, sum, the gradient's scaling, its scatter, its cast
    back, the bias gradient), together several times as long as the bfloat16 matmul that made them.
    Elementwise work is compiled by XLA, one pass each way; the reductions (softmax, argmax, the bias
    gradient's matrix-vector product) are TensorFlow's kernels, which on a CPU run several times as
    fast as XLA's. The forward keeps the probabilities for the gradient; the gradient comes back in
    the logits' dtype, the bias gradient in float32.
    """
    loss, hits, probabilities = _vocabulary_softmax(logits, bias, labels)

    @tf.custom_gradient
    def cross_entropy(logits, bias):
        def gradient(upstream):
            return _vocabulary_softmax_gradient(upstream, probabilities, labels, logits.dtype)

        return tf.identity(loss), gradient

    return cross_entropy(logits, bias), hits


# The pooler's weights: some converted models lack them, and only the classifier and NSP heads read them.
POOLER_NAMES = ("bert/pooler/dense/kernel", "bert/pooler/dense/bias")


class BertModel(NamedWeights):
    """The encoder: embeddings, `num_hidden_layers` Transformer layers, and the pooler."""

    def __init__(self, config, seed=0):
        super().__init__(seed, config.initializer_range)
        self.config = config
        h, i = config.hidden_size, config.intermediate_size
        self.word_embeddings = self.normal("bert/embeddings/word_embeddings", [config.vocab_size, h])
        self.token_type_embeddings = self.normal("bert/embeddings/token_type_embeddings", [config.type_vocab_size, h])
        self.position_embeddings = self.normal("bert/embeddings/position_embeddings", [config.max_position_embeddings, h])
        self.embeddings_norm = self.layer_norm("bert/embeddings/LayerNorm", h)
        self.layers = []
        for n in range(config.num_hidden_layers):
            prefix = f"bert/encoder/layer_{n}"
            self.layers.append({
                "query": self.dense(f"{prefix}/attention/self/query", h, h),
                "key": self.dense(f"{prefix}/attention/self/key", h, h),
                "value": self.dense(f"{prefix}/attention/self/value", h, h),
                "attention_output": self.dense(f"{prefix}/attention/output/dense", h, h),
                "attention_norm": self.layer_norm(f"{prefix}/attention/output/LayerNorm", h),
                "intermediate": self.dense(f"{prefix}/intermediate/dense", h, i),
                "output": self.dense(f"{prefix}/output/dense", i, h),
                "output_norm": self.layer_norm(f"{prefix}/output/LayerNorm", h),
            })
        self.pooler = self.dense("bert/pooler/dense", h, h)

    def __call__(self, input_ids, input_mask, token_type_ids, ctx, last_layer_positions=None):
        """Returns (the output of every layer [B, S, H] each, the pooled first token [B, H]).

        With `last_layer_positions` [B, P] the last layer is computed only where a caller reads it:
        its keys and values still see every position, but its queries, attention output, feed-forward
        and LayerNorms run on those P positions and the first token (for the pooler) alone, and its
        entry in the list is [B, P, H]. Pre-training reads the last layer only at the masked positions
        and a classifier only at the first token (P = 0), so both get the same outputs while skipping
        most of a layer.
        """
        config = self.config
        batch, seq = tf.shape(input_ids)[0], tf.shape(input_ids)[1]
        h = config.hidden_size

        # Gathering from the word table's value rather than from the variable: a gather on a variable
        # (ResourceGather) switches it to copy-on-read, after which every dense read of the word
        # embeddings, as the tied masked-LM projection makes each step, copies the whole table.
        # Token types are looked up as the reference does, by a one-hot product: a segment id beyond
        # type_vocab_size (a pair fed to a model with one token type) adds zeros, as there, not an error.
        token_types = tf.one_hot(token_type_ids, config.type_vocab_size, dtype=self.token_type_embeddings.dtype)
        embeddings = (
            tf.gather(tf.convert_to_tensor(self.word_embeddings), input_ids)
            + tf.einsum("bst,th->bsh", token_types, self.token_type_embeddings)
            + self.position_embeddings[:seq][tf.newaxis]
        )
        x = ctx.dropout(ctx.layer_norm(tf.cast(embeddings, ctx.dtype), self.embeddings_norm), config.hidden_dropout_prob)
        x = tf.reshape(x, [-1, h])
        mask_adder = (1.0 - tf.cast(input_mask[:, tf.newaxis, tf.newaxis, :], tf.float32)) * MASK_ADDER

        query_positions = None
        if last_layer_positions is not None:
            first_token = tf.zeros([batch, 1], last_layer_positions.dtype)
            query_positions = tf.concat([first_token, last_layer_positions], axis=1)

        all_layers = []
        for n, weights in enumerate(self.layers):
            last = n == len(self.layers) - 1
            x = self._layer(x, weights, batch, seq, mask_adder, ctx, query_positions if last else None)
            all_layers.append(tf.reshape(x, [batch, -1, h]))

        pooled = ctx.dense(all_layers[-1][:, 0], self.pooler, tf.tanh)
        if query_positions is not None:
            all_layers[-1] = all_layers[-1][:, 1:]
        return all_layers, pooled

    def _layer(self, x, weights, batch, seq, mask_adder, ctx, query_positions=None):
        """One Transformer layer on x [B*S, H]; with query_positions [B, Q], its output there [B*Q, H]."""
        config = self.config
        h = config.hidden_size
        heads = config.num_attention_heads
        head_size = h // heads

        def heads_first(projected, parts):
            split = tf.reshape(projected, [batch, -1, parts, heads, head_size])
            return tf.unstack(tf.transpose(split, [2, 0, 3, 1, 4]))

        def joined(*names):
            return [tf.concat(parts, axis=-1) for parts in zip(*(weights[name] for name in names))]

        # Projections share one wide matmul ([H, 3H] or [H, 2H]) instead of three [H, H] ones: the
        # same dot products, but a wider matmul runs nearer the machine's peak, forwards and backwards.
        if query_positions is None:
            queries_from = x
            q, k, v = heads_first(ctx.dense(x, joined("query", "key", "value")), 3)
        else:
            rows = tf.gather(tf.reshape(x, [batch, seq, h]), query_positions, batch_dims=1)
            queries_from = tf.reshape(rows, [-1, h])
            (q,) = heads_first(ctx.dense(queries_from, weights["query"]), 1)
            k, v = heads_first(ctx.dense(x, joined("key", "value")), 2)

        scores = tf.cast(tf.matmul(q, k, transpose_b=True), tf.float32) * (1.0 / math.sqrt(head_size)) + mask_adder
        probs = ctx.dropout(tf.cast(tf.nn.softmax(scores), ctx.dtype), config.attention_probs_dropout_prob)
        context = tf.reshape(tf.transpose(tf.matmul(probs, v), [0, 2, 1, 3]), [-1, h])
        attention = ctx.dropout(ctx.dense(context, weights["attention_output"]), config.hidden_dropout_prob, batch)
        x = ctx.layer_norm(attention + queries_from, weights["attention_norm"])
        intermediate = ctx.dense(x, weights["intermediate"], activation(config.hidden_act))
        output = ctx.dropout(ctx.dense(intermediate, weights["output"]), config.hidden_dropout_prob, batch)
        return ctx.layer_norm(output + x, weights["output_norm"])


class BertPretrainer(NamedWeights):
    """The encoder with the masked-LM and next-sentence heads, and their losses."""

    def __init__(self, config, seed=0):
        super().__init__(seed, config.initializer_range)
        self.config = config
        self.bert = BertModel(config, seed)
        h = config.hidden_size
        self.transform = self.dense("cls/predictions/transform/dense", h, h)
        self.transform_norm = self.layer_norm("cls/predictions/transform/LayerNorm", h)
        self.mlm_bias = self.zeros("cls/predictions/output_bias", [config.vocab_size])
        self.nsp_weights = self.normal("cls/seq_relationship/output_weights", [2, h])
        self.nsp_bias = self.zeros("cls/seq_relationship/output_bias", [2])

    @property
    def variables_by_name(self):
        """Every weight, encoder first, under its reference checkpoint name."""
        return {**self.bert.weights, **self.weights}

    def __call__(self, features, ctx):
        """Per-example outputs of both heads for a batch of pre-training features.

        Returns a dict: mlm_loss [B, P] (negative log-likelihood at each masked position), mlm_correct
        [B, P] (1.0 where the argmax is the label), nsp_loss [B], nsp_correct [B]. The caller weights and
        reduces them, which lets accumulation and data parallelism reduce over the whole global batch.
        """
        all_layers, pooled = self.bert(features["input_ids"], features["input_mask"], features["segment_ids"], ctx,
                                       last_layer_positions=features["masked_lm_positions"])
        act = activation(self.config.hidden_act)

        masked = tf.reshape(all_layers[-1], [-1, self.config.hidden_size])
        transformed = ctx.layer_norm(ctx.dense(masked, self.transform, act), self.transform_norm)
        logits = tf.matmul(transformed, tf.cast(self.bert.word_embeddings, ctx.dtype), transpose_b=True)
        labels = tf.reshape(features["masked_lm_ids"], [-1])
        mlm_loss, mlm_correct = _cross_entropy_and_hits(logits, self.mlm_bias, labels)
        positions_shape = tf.shape(features["masked_lm_positions"])

        nsp_logits = tf.matmul(tf.cast(pooled, tf.float32), self.nsp_weights, transpose_b=True) + self.nsp_bias
        nsp_labels = tf.reshape(features["next_sentence_labels"], [-1])
        nsp_loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=nsp_labels, logits=nsp_logits)
        nsp_correct = tf.cast(tf.equal(tf.argmax(nsp_logits, -1, output_type=tf.int32), nsp_labels), tf.float32)
        return {
            "mlm_loss": tf.reshape(mlm_loss, positions_shape),
            "mlm_correct": tf.reshape(mlm_correct, positions_shape),
            "nsp_loss": nsp_loss,
            "nsp_correct": nsp_correct,
        }
