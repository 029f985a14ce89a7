"""Independent, deliberately plain restatements of the reference's rules (SPEC §3, §5), for tests.

Written step by step from the specification, character by character and token string by token
string, sharing no code with the package; the fast implementation must agree with them exactly.
"""

import random
import unicodedata


def is_whitespace(ch):
    return ch in (" ", "\t", "\n", "\r") or unicodedata.category(ch) == "Zs"


def is_control(ch):
    if ch in ("\t", "\n", "\r"):
        return False
    return unicodedata.category(ch) in ("Cc", "Cf")


def is_punctuation(ch):
    cp = ord(ch)
    ascii_punct = (33 <= cp <= 47) or (58 <= cp <= 64) or (91 <= cp <= 96) or (123 <= cp <= 126)
    return ascii_punct or unicodedata.category(ch)[0] == "P"


CJK = [(0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
       (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)]


def is_cjk(ch):
    cp = ord(ch)
    for lo, hi in CJK:
        if lo <= cp <= hi:
            return True
    return False


def basic_tokens(text, lower):
    cleaned = ""
    for ch in text:
        if ord(ch) == 0 or ord(ch) == 0xFFFD or is_control(ch):
            continue
        cleaned += " " if is_whitespace(ch) else ch
    spaced = ""
    for ch in cleaned:
        spaced += (" " + ch + " ") if is_cjk(ch) else ch
    pieces = []
    for token in spaced.split():
        if lower:
            token = token.lower()
            token = "".join(c for c in unicodedata.normalize("NFD", token) if unicodedata.category(c) != "Mn")
        current = None
        for ch in token:
            if is_punctuation(ch):
                if current is not None:
                    pieces.append(current)
                    current = None
                pieces.append(ch)
            else:
                current = ch if current is None else current + ch
        if current is not None:
            pieces.append(current)
    return " ".join(pieces).split()


def wordpiece(word, vocab, max_chars=200):
    if len(word) > max_chars:
        return ["[UNK]"]
    out = []
    start = 0
    while start < len(word):
        found = None
        for end in range(len(word), start, -1):
            candidate = word[start:end]
            if start > 0:
                candidate = "##" + candidate
            if candidate in vocab:
                found = (candidate, end)
                break
        if found is None:
            return ["[UNK]"]
        out.append(found[0])
        start = found[1]
    return out


def full_tokens(text, vocab, lower):
    out = []
    for word in basic_tokens(text, lower):
        out.extend(wordpiece(word, vocab))
    return out


def read_vocab(path):
    """Line number -> id, each line as TensorFlow's GFile reads it, stripped; a repeated token keeps its last id."""
    import tensorflow as tf

    vocab = {}
    with tf.io.gfile.GFile(str(path), "r") as f:
        for index, line in enumerate(iter(f.readline, "")):
            vocab[line.strip()] = index
    return vocab


def reference_instances(lines_per_file, vocab, lower, seed, max_seq_length=128, max_predictions_per_seq=20,
                        masked_lm_prob=0.15, short_seq_prob=0.1, dupe_factor=10, whole_word=False, tokenize=None):
    """The reference run on token strings: a list of dicts with the seven record features. `tokenize` (a line ->
    its tokens) stands in for WordPiece, as a SentencePiece model does in ALBERT's fork of the reference; `vocab`
    is then its pieces, in id order."""
    rng = random.Random(seed)
    documents = [[]]
    for lines in lines_per_file:
        for line in lines:
            line = line.strip()
            if not line:
                documents.append([])
                continue
            tokens = tokenize(line) if tokenize else full_tokens(line, vocab, lower)
            if tokens:
                documents[-1].append(tokens)
    documents = [d for d in documents if d]
    rng.shuffle(documents)
    words = list(vocab.keys())
    instances = []
    for _ in range(dupe_factor):
        for doc_index in range(len(documents)):
            instances.extend(_document_instances(documents, doc_index, rng, words, max_seq_length,
                                                 max_predictions_per_seq, masked_lm_prob, short_seq_prob,
                                                 whole_word))
    rng.shuffle(instances)
    return [_features(inst, vocab, max_seq_length, max_predictions_per_seq) for inst in instances]


def _document_instances(documents, doc_index, rng, words, max_seq_length, max_predictions, masked_lm_prob,
                        short_seq_prob, whole_word):
    doc = documents[doc_index]
    limit = max_seq_length - 3
    target = limit
    if rng.random() < short_seq_prob:
        target = rng.randint(2, limit)
    result = []
    chunk, length, i = [], 0, 0
    while i < len(doc):
        chunk.append(doc[i])
        length += len(doc[i])
        if i == len(doc) - 1 or length >= target:
            a_end = 1
            if len(chunk) >= 2:
                a_end = rng.randint(1, len(chunk) - 1)
            a = []
            for seg in chunk[:a_end]:
                a += seg
            b = []
            if len(chunk) == 1 or rng.random() < 0.5:
                random_next = True
                for _ in range(10):
                    other = rng.randint(0, len(documents) - 1)
                    if other != doc_index:
                        break
                other_doc = documents[other]
                start = rng.randint(0, len(other_doc) - 1)
                for seg in other_doc[start:]:
                    b += seg
                    if len(b) >= target - len(a):
                        break
                i -= len(chunk) - a_end
            else:
                random_next = False
                for seg in chunk[a_end:]:
                    b += seg
            while len(a) + len(b) > limit:
                victim = a if len(a) > len(b) else b
                if rng.random() < 0.5:
                    victim.pop(0)
                else:
                    victim.pop()
            tokens = ["[CLS]"] + a + ["[SEP]"] + b + ["[SEP]"]
            segments = [0] * (len(a) + 2) + [1] * (len(b) + 1)
            result.append(_mask(tokens, segments, random_next, rng, words, max_predictions, masked_lm_prob,
                                whole_word))
            chunk, length = [], 0
        i += 1
    return result


def _mask(tokens, segments, random_next, rng, words, max_predictions, masked_lm_prob, whole_word):
    groups = []
    for pos, tok in enumerate(tokens):
        if tok in ("[CLS]", "[SEP]"):
            continue
        if whole_word and groups and tok.startswith("##"):
            groups[-1].append(pos)
        else:
            groups.append([pos])
    rng.shuffle(groups)
    output = list(tokens)
    n = min(max_predictions, max(1, int(round(len(tokens) * masked_lm_prob))))
    masked = []
    covered = set()
    for group in groups:
        if len(masked) >= n:
            break
        if len(masked) + len(group) > n:
            continue
        if any(p in covered for p in group):
            continue
        for p in group:
            covered.add(p)
            if rng.random() < 0.8:
                replacement = "[MASK]"
            elif rng.random() < 0.5:
                replacement = tokens[p]
            else:
                replacement = words[rng.randint(0, len(words) - 1)]
            output[p] = replacement
            masked.append((p, tokens[p]))
    masked.sort()
    return output, segments, masked, random_next


def _features(instance, vocab, max_seq_length, max_predictions):
    tokens, segments, masked, random_next = instance
    ids = [vocab[t] for t in tokens]
    pad = max_seq_length - len(ids)
    pad_m = max_predictions - len(masked)
    return {
        "input_ids": ids + [0] * pad,
        "input_mask": [1] * len(ids) + [0] * pad,
        "segment_ids": segments + [0] * pad,
        "masked_lm_positions": [p for p, _ in masked] + [0] * pad_m,
        "masked_lm_ids": [vocab[t] for _, t in masked] + [0] * pad_m,
        "masked_lm_weights": [1.0] * len(masked) + [0.0] * pad_m,
        "next_sentence_labels": [1 if random_next else 0],
    }
