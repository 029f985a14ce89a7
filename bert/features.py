"""Text -> model inputs for the stages that feed single sentences or sentence pairs to the encoder.

A pair becomes `[CLS] a [SEP] b [SEP]` with segment ids 0 for `[CLS] a [SEP]` and 1 for `b [SEP]`,
a single text `[CLS] a [SEP]`; pairs too long are truncated longest-first, one token at a time from the
end, as the reference does.
"""

from dataclasses import dataclass

import numpy as np


def truncate_seq_pair(tokens_a, tokens_b, max_length):
    """Trims the longer of the two token lists (b on ties) from the end until they fit, in place."""
    while len(tokens_a) + len(tokens_b) > max_length:
        if len(tokens_a) > len(tokens_b):
            tokens_a.pop()
        else:
            tokens_b.pop()


@dataclass
class PairFeatures:
    tokens: list
    input_ids: np.ndarray
    input_mask: np.ndarray
    segment_ids: np.ndarray


def encode_pair(tokenizer, tokens_a, tokens_b, max_seq_length):
    """The padded model inputs of a tokenised text (`tokens_b` None or empty) or pair; truncates copies."""
    tokens_a = list(tokens_a)
    # As in the reference, a second text that tokenizes to nothing makes a single-text input.
    tokens_b = list(tokens_b) if tokens_b else None
    if tokens_b:
        truncate_seq_pair(tokens_a, tokens_b, max_seq_length - 3)
    else:
        tokens_a = tokens_a[: max_seq_length - 2]
    tokens = ["[CLS]", *tokens_a, "[SEP]"]
    segment_ids = [0] * len(tokens)
    if tokens_b:
        tokens += [*tokens_b, "[SEP]"]
        segment_ids += [1] * (len(tokens_b) + 1)
    input_ids = np.zeros(max_seq_length, np.int32)
    input_mask = np.zeros(max_seq_length, np.int32)
    segments = np.zeros(max_seq_length, np.int32)
    input_ids[: len(tokens)] = tokenizer.convert_tokens_to_ids(tokens)
    input_mask[: len(tokens)] = 1
    segments[: len(tokens)] = segment_ids
    return PairFeatures(tokens, input_ids, input_mask, segments)
