"""SQuAD v1.1 / v2.0 fine-tuning data without TensorFlow: examples, features, predictions, scores.

Each step gives the output of Google's reference `run_squad.py`, and the scores those of the official
`evaluate-v1.1.py` and `evaluate-v2.0.py`, so that results compare with published ones:

* `read_squad_examples(path, is_training, version_2_with_negative)` -> `(examples, skipped)`. A
  context is split into words on space, tab, CR, LF and U+202F only (the reference's rule; other
  Unicode spaces stay inside words). In training every question needs exactly one answer (or, in
  v2.0, `is_impossible: true`, which gives positions -1 and answer text ""); an answer whose text
  is not found in the words its character offsets cover is skipped and counted in `skipped`, where
  the reference logs a warning, and so is an answer of whitespace alone (which the reference "finds"
  at the start of its span and trains on that word). Outside training no answer is read for
  positions: they are None and `is_impossible` is False, as in the reference, and `answers` keeps
  the gold texts.
* `convert_examples_to_features(...)` -> `SquadFeature`s, one per window ("doc span") of the
  WordPiece-tokenised context: `[CLS] question [SEP] window [SEP]`, zero-padded; windows start
  `doc_stride` sub-tokens apart and each sub-token is "max context" in exactly one of them. Unique
  ids count up from 1000000000 across all examples. Training targets are sub-token positions in the
  window, or 0, 0 (`[CLS]`) when the answer is not wholly inside it or the question is impossible;
  outside training they are None. A question whose tokens (cut to `max_query_length`) leave no room
  for context in `max_seq_length`, on which the reference would loop forever, is refused naming it.
* `postprocess_predictions(...)` turns the model's `RawResult`s into the reference's three JSON
  objects (predictions, n-best lists, v2.0 null-odds) as dicts of plain Python values; the caller
  writes them.
* `evaluate_v1`, `evaluate_v2` score predictions against the parsed dataset file.

Bad input raises `InputError` with one line naming the file (or the dataset) and the key or value
that is wrong. Where the reference would crash on input it accepts (a v2.0 example left with no
valid span, a prediction missing in v2.0 scoring), the behaviour chosen is documented where it
happens.
"""

import collections
import heapq
import json
import math
import os
import re
import string
from dataclasses import dataclass

from bert import progress, tokenization
from bert.errors import InputError

FIRST_UNIQUE_ID = 1_000_000_000
# The reference's word separators for contexts. Any other whitespace (e.g. U+00A0) stays inside a
# word and is dropped by the tokenizer later, so answer offsets map to the same words as there.
_CONTEXT_WHITESPACE = frozenset(" \t\r\n\u202f")
# The reference starts the search for the lowest null score here; an example without features (an
# empty context) keeps it, which makes its null-odds huge and its prediction "". In v2.0 an example with no
# span left at all gets these null odds too: no answer is the only one it has.
_NULL_SCORE_START = 1_000_000
# The reference's stand-in answer in v1.1 when no candidate span survives filtering.
_NO_CANDIDATE_TEXT = "empty"

RawResult = collections.namedtuple("RawResult", ["unique_id", "start_logits", "end_logits"])


@dataclass
class SquadExample:
    qas_id: str
    question_text: str
    doc_tokens: list[str]
    orig_answer_text: str | None
    start_position: int | None
    end_position: int | None
    is_impossible: bool
    answers: list[str]


@dataclass
class SquadFeature:
    unique_id: int
    example_index: int
    doc_span_index: int
    tokens: list[str]
    token_to_orig_map: dict[int, int]
    token_is_max_context: dict[int, bool]
    input_ids: list[int]
    input_mask: list[int]
    segment_ids: list[int]
    start_position: int | None
    end_position: int | None
    is_impossible: bool


# ---------------------------------------------------------------------------------------------------
# Reading


def read_squad_json(path):
    """The parsed SQuAD file at `path`: a JSON object whose 'data' is a list; InputError otherwise."""
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as f:
            dataset = json.load(f)
    except OSError as e:
        raise InputError(f"{source}: cannot read SQuAD file: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{source}: not UTF-8 text: {e.reason} at byte {e.start}") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{source}: not JSON: line {e.lineno}, column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise InputError(f"{source}: not a SQuAD file: its JSON nests deeper than Python's parser goes") from None
    _field(dataset, "data", list, source)
    return dataset


def read_squad_examples(path, is_training, version_2_with_negative):
    """(examples, number of training answers skipped because their text is not where they point)."""
    source = os.fspath(path)
    articles = read_squad_json(path)["data"]
    examples = []
    skipped = 0
    first_with_id = {}
    for paragraph, paragraph_where in _paragraphs(articles, f"{source}: data"):
        context = _field(paragraph, "context", str, paragraph_where)
        doc_tokens, char_to_word = _split_context(context)
        for qa, where in _questions(paragraph, paragraph_where):
            # Predictions are written, and scored, by id: a second question of one id would replace the first's.
            if not is_training and first_with_id.setdefault(qa["id"], where) != where:
                raise InputError(f"{where}: id {qa['id']!r} is {first_with_id[qa['id']].removeprefix(source + ': ')}'s "
                                 f"too; each question needs its own, as predictions are written by id")
            question_text = _field(qa, "question", str, where)
            answers = _gold_texts(qa, where) if "answers" in qa else []
            example = SquadExample(
                qas_id=qa["id"], question_text=question_text, doc_tokens=doc_tokens,
                orig_answer_text=None, start_position=None, end_position=None,
                is_impossible=False, answers=answers,
            )
            if is_training and not _set_training_answer(example, qa, where, version_2_with_negative,
                                                        context, char_to_word):
                skipped += 1
                continue
            examples.append(example)
    return examples, skipped


def _set_training_answer(example, qa, where, version_2_with_negative, context, char_to_word):
    """Fills the example's answer and word positions; False when the reference would skip it."""
    if version_2_with_negative:
        example.is_impossible = _field(qa, "is_impossible", bool, where)
    if example.is_impossible:
        example.orig_answer_text = ""
        example.start_position = example.end_position = -1
        return True
    answers = _field(qa, "answers", list, where)
    if len(answers) != 1:
        hint = ("; is this SQuAD 2.0 data? give --version_2_with_negative"
                if not answers and not version_2_with_negative and qa.get("is_impossible") is True else "")
        raise InputError(f"{where}: a training question needs exactly 1 answer, got {len(answers)}{hint}")
    answer_where = f"{where}.answers[0]"
    answer_text = _answer_text(answers[0], answer_where)
    answer_start = _field(answers[0], "answer_start", int, answer_where)
    cleaned_answer = " ".join(tokenization.whitespace_tokenize(answer_text))
    if not cleaned_answer:
        return False  # an answer of whitespace alone is no answer to find in the context
    answer_end = answer_start + len(answer_text) - 1
    if not (0 <= answer_start and answer_end < len(context)):
        raise InputError(
            f"{answer_where}: answer_start {answer_start} with a text of {len(answer_text)} characters "
            f"lies outside its context of {len(context)} characters"
        )
    start_word, end_word = char_to_word[answer_start], char_to_word[answer_end]
    # A substring test, as the reference: the answer may cover only part of its first or last word.
    if " ".join(example.doc_tokens[start_word:end_word + 1]).find(cleaned_answer) == -1:
        return False
    example.orig_answer_text = answer_text
    example.start_position, example.end_position = start_word, end_word
    return True


def _split_context(text):
    """(words, index of the word each character belongs to); whitespace belongs to the word before it."""
    words = []
    char_to_word = []
    after_whitespace = True
    for char in text:
        if char in _CONTEXT_WHITESPACE:
            after_whitespace = True
        else:
            if after_whitespace:
                words.append(char)
            else:
                words[-1] += char
            after_whitespace = False
        char_to_word.append(len(words) - 1)
    return words, char_to_word


def _answer_text(answer, where):
    return _field(answer, "text", str, where)


def _gold_texts(qa, where):
    answers = _field(qa, "answers", list, where)
    return [_answer_text(answer, f"{where}.answers[{i}]") for i, answer in enumerate(answers)]


def _paragraphs(articles, where):
    """(paragraph, its location for messages) for every paragraph of the 'data' list."""
    for i, article in enumerate(articles):
        article_where = f"{where}[{i}]"
        for j, paragraph in enumerate(_field(article, "paragraphs", list, article_where)):
            paragraph_where = f"{article_where}.paragraphs[{j}]"
            if not isinstance(paragraph, dict):
                raise InputError(f"{paragraph_where}: expected a JSON object, got {_json_type(paragraph)}")
            yield paragraph, paragraph_where


def _questions(paragraph, paragraph_where):
    """(qa, its location for messages) for every question of a paragraph, each with a string 'id'."""
    for k, qa in enumerate(_field(paragraph, "qas", list, paragraph_where)):
        where = f"{paragraph_where}.qas[{k}]"
        _field(qa, "id", str, where)
        yield qa, where


def _field(container, key, expected_type, where):
    """`container[key]`, checked to exist and to be of `expected_type`; InputError naming it otherwise."""
    if not isinstance(container, dict):
        raise InputError(f"{where}: expected a JSON object, got {_json_type(container)}")
    if key not in container:
        raise InputError(f"{where}: missing key {key!r}")
    value = container[key]
    # JSON `true` is a Python int too; it is never a valid offset.
    if not isinstance(value, expected_type) or (expected_type is int and isinstance(value, bool)):
        raise InputError(
            f"{where}: key {key!r} must be {_JSON_TYPE_NAMES[expected_type]}, got {_json_type(value)}"
        )
    return value


_JSON_TYPE_NAMES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "an integer"}


def _json_type(value):
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


# ---------------------------------------------------------------------------------------------------
# Features


def check_questions_fit(examples, tokenizer, max_seq_length, max_query_length):
    """Raises InputError for the first question that leaves its context no room in a window.

    The questions alone, in a fraction of the time the whole conversion takes: a run checks them before its
    training, and converts the predict file after it.
    """
    for example in examples:
        _query_tokens(example, tokenizer, max_seq_length, max_query_length)


def _query_tokens(example, tokenizer, max_seq_length, max_query_length):
    query_tokens = tokenizer.tokenize(example.question_text)[:max_query_length]
    # As the reference, a window holds what the question leaves; only a question that leaves nothing is refused.
    if len(query_tokens) + 3 >= max_seq_length:
        raise InputError(
            f"question {example.qas_id}: its {len(query_tokens)} tokens (--max_query_length={max_query_length}) "
            f"leave no room for its context in --max_seq_length={max_seq_length}; raise --max_seq_length or "
            f"lower --max_query_length")
    return query_tokens


def convert_examples_to_features(examples, tokenizer, max_seq_length, doc_stride, max_query_length,
                                 is_training, show_progress=True):
    """The model inputs of every window of every example, in order; see the module docstring.

    Ranks other than the chief pass show_progress=False.
    """
    if doc_stride < 1:
        raise InputError(f"--doc_stride must be at least 1, got {doc_stride}")
    features = []
    unique_id = FIRST_UNIQUE_ID
    shown = progress.bar(examples, desc="windows", unit="ex", disable=not show_progress)
    for example_index, example in enumerate(shown):
        query_tokens = _query_tokens(example, tokenizer, max_seq_length, max_query_length)
        sub_tokens, sub_token_to_word, word_to_first_sub_token = _tokenize_words(example.doc_tokens, tokenizer)
        if is_training and not example.is_impossible:
            answer_start, answer_end = _answer_sub_token_span(
                example, tokenizer, sub_tokens, word_to_first_sub_token)
        doc_spans = _doc_spans(len(sub_tokens), max_seq_length - len(query_tokens) - 3, doc_stride)
        max_context_span = _max_context_spans(doc_spans, len(sub_tokens))
        doc_offset = len(query_tokens) + 2  # [CLS] and the first [SEP]

        for span_index, (span_start, span_length) in enumerate(doc_spans):
            span_end = span_start + span_length - 1
            tokens = ["[CLS]", *query_tokens, "[SEP]", *sub_tokens[span_start:span_end + 1], "[SEP]"]
            token_to_orig_map = {}
            token_is_max_context = {}
            for i in range(span_start, span_end + 1):
                token_to_orig_map[doc_offset + i - span_start] = sub_token_to_word[i]
                token_is_max_context[doc_offset + i - span_start] = max_context_span[i] == span_index
            padding = [0] * (max_seq_length - len(tokens))
            input_ids = tokenizer.convert_tokens_to_ids(tokens) + padding
            input_mask = [1] * len(tokens) + padding
            segment_ids = [0] * doc_offset + [1] * (span_length + 1) + padding

            start_position = end_position = None
            if is_training:
                if example.is_impossible or not (span_start <= answer_start and answer_end <= span_end):
                    start_position = end_position = 0
                else:
                    start_position = answer_start - span_start + doc_offset
                    end_position = answer_end - span_start + doc_offset

            features.append(SquadFeature(
                unique_id=unique_id, example_index=example_index, doc_span_index=span_index,
                tokens=tokens, token_to_orig_map=token_to_orig_map,
                token_is_max_context=token_is_max_context, input_ids=input_ids, input_mask=input_mask,
                segment_ids=segment_ids, start_position=start_position, end_position=end_position,
                is_impossible=example.is_impossible,
            ))
            unique_id += 1
    return features


def _tokenize_words(words, tokenizer):
    """(sub-tokens, word of each sub-token, first sub-token of each word) of whitespace-split words."""
    sub_tokens = []
    sub_token_to_word = []
    word_to_first_sub_token = []
    for word_index, word in enumerate(words):
        word_to_first_sub_token.append(len(sub_tokens))
        for piece in tokenizer.tokenize(word):
            sub_tokens.append(piece)
            sub_token_to_word.append(word_index)
    return sub_tokens, sub_token_to_word, word_to_first_sub_token


def _answer_sub_token_span(example, tokenizer, sub_tokens, word_to_first_sub_token):
    """First and last sub-token of the training answer, narrowed to its own tokens where possible."""
    start = word_to_first_sub_token[example.start_position]
    if example.end_position < len(example.doc_tokens) - 1:
        end = word_to_first_sub_token[example.end_position + 1] - 1
    else:
        end = len(sub_tokens) - 1
    # The words an answer's characters fall in often carry punctuation around it ("(1895-1943)."
    # for "1895"); the first, then longest, sub-span that tokenises exactly as the answer is the
    # better target. None matches when the answer is part of a single sub-token ("Japan" in
    # "Japanese"), and the whole words stay.
    answer_tokens = " ".join(tokenizer.tokenize(example.orig_answer_text))
    for new_start in range(start, end + 1):
        for new_end in range(end, new_start - 1, -1):
            if " ".join(sub_tokens[new_start:new_end + 1]) == answer_tokens:
                return new_start, new_end
    return start, end


def _doc_spans(num_sub_tokens, max_doc_tokens, doc_stride):
    """(start, length) of each window: as long as allowed, `doc_stride` apart, the last one at the end."""
    spans = []
    start = 0
    while start < num_sub_tokens:
        length = min(num_sub_tokens - start, max_doc_tokens)
        spans.append((start, length))
        if start + length == num_sub_tokens:
            break
        start += min(length, doc_stride)
    return spans


def _max_context_spans(doc_spans, num_sub_tokens):
    """For each sub-token, the index of the window in which it has the most context.

    A token's context in a window is the smaller of its left and right neighbour counts, plus
    0.01 * the window's length so that a longer window wins a tie; on a remaining tie the first
    window wins. This is the reference's score, with its floating-point sum.
    """
    best_span = [None] * num_sub_tokens
    best_score = [None] * num_sub_tokens
    for span_index, (start, length) in enumerate(doc_spans):
        end = start + length - 1
        for position in range(start, end + 1):
            score = min(position - start, end - position) + 0.01 * length
            if best_score[position] is None or score > best_score[position]:
                best_score[position] = score
                best_span[position] = span_index
    return best_span


# ---------------------------------------------------------------------------------------------------
# Predictions

_Candidate = collections.namedtuple(
    "_Candidate", ["feature", "start_index", "end_index", "start_logit", "end_logit"])


def postprocess_predictions(examples, features, results, n_best_size, max_answer_length, do_lower_case,
                            version_2_with_negative, null_score_diff_threshold):
    """(predictions, nbest, null_odds) keyed by qas_id, as the reference's write_predictions.

    For each example, the `n_best_size` highest start and end logits of every window pair into
    candidate spans; a span is dropped when it leaves the window's context tokens, ends before it
    starts, is longer than `max_answer_length` sub-tokens, or starts on a token whose max-context
    window is another one (its end is not checked). Candidates are ranked by start + end logit,
    their sub-tokens mapped back to the original words, and distinct texts kept up to `n_best_size`,
    each with its softmax probability over the kept list.

    In v2.0 the null answer ("") competes with the score start_logits[0] + end_logits[0] of the
    window where that is lowest, and is added to the n-best list if not already in it (so the list
    can hold `n_best_size` + 1 entries). null_odds is that null score minus the best non-null
    entry's; the prediction is "" when it exceeds `null_score_diff_threshold`. Where no span is left
    (the reference crashes there: every window's top starts and ends pair into none, and a window
    whose top start and end make one scores it above its own null score, so a span left is always
    in the list), the prediction is "" and null_odds _NULL_SCORE_START.
    For v1.1 null_odds is empty and the prediction is the top entry, the reference's "empty" where
    no span is left.
    """
    features_by_example = collections.defaultdict(list)
    for feature in features:
        features_by_example[feature.example_index].append(feature)
    result_by_unique_id = {result.unique_id: result for result in results}
    basic_tokenizer = tokenization.BasicTokenizer(do_lower_case=do_lower_case)

    predictions = {}
    nbest_by_id = {}
    null_odds = {}
    for example_index, example in enumerate(examples):
        candidates = []
        score_null = _NULL_SCORE_START
        null_start_logit = null_end_logit = 0.0
        for feature in features_by_example[example_index]:
            if feature.unique_id not in result_by_unique_id:
                raise ValueError(f"no model result for feature {feature.unique_id}")
            result = result_by_unique_id[feature.unique_id]
            start_logits = [float(x) for x in result.start_logits]
            end_logits = [float(x) for x in result.end_logits]
            if version_2_with_negative and start_logits[0] + end_logits[0] < score_null:
                score_null = start_logits[0] + end_logits[0]
                null_start_logit, null_end_logit = start_logits[0], end_logits[0]
            candidates.extend(_span_candidates(feature, start_logits, end_logits, n_best_size,
                                               max_answer_length))
        if version_2_with_negative:
            candidates.append(_Candidate(None, 0, 0, null_start_logit, null_end_logit))
        # sorted(reverse=True) is stable, so equal scores keep the reference's order.
        candidates = sorted(candidates, key=lambda c: c.start_logit + c.end_logit, reverse=True)

        nbest = []  # (text, start_logit, end_logit)
        seen_texts = set()
        for candidate in candidates:
            if len(nbest) >= n_best_size:
                break
            if candidate.start_index > 0:
                text = _candidate_text(candidate, example, basic_tokenizer)
                if text in seen_texts:
                    continue
            else:
                text = ""
            seen_texts.add(text)
            nbest.append((text, candidate.start_logit, candidate.end_logit))
        if version_2_with_negative and "" not in seen_texts:
            nbest.append(("", null_start_logit, null_end_logit))
        if not nbest:
            nbest.append((_NO_CANDIDATE_TEXT, 0.0, 0.0))

        probabilities = _softmax([start + end for _, start, end in nbest])
        nbest_by_id[example.qas_id] = [
            {"text": text, "probability": probability, "start_logit": start, "end_logit": end}
            for (text, start, end), probability in zip(nbest, probabilities)
        ]
        if version_2_with_negative:
            best_non_null = next((entry for entry in nbest if entry[0]), None)
            if best_non_null is None:
                null_odds[example.qas_id] = float(_NULL_SCORE_START)
                predictions[example.qas_id] = ""
            else:
                score_diff = score_null - best_non_null[1] - best_non_null[2]
                null_odds[example.qas_id] = score_diff
                predictions[example.qas_id] = "" if score_diff > null_score_diff_threshold else best_non_null[0]
        else:
            predictions[example.qas_id] = nbest[0][0]
    return predictions, nbest_by_id, null_odds


def _span_candidates(feature, start_logits, end_logits, n_best_size, max_answer_length):
    """The valid spans among the window's top `n_best_size` starts x top `n_best_size` ends."""
    candidates = []
    for start_index in _top_indexes(start_logits, n_best_size):
        for end_index in _top_indexes(end_logits, n_best_size):
            # Positions beyond the tokens (padding) are never in token_to_orig_map either.
            if start_index not in feature.token_to_orig_map or end_index not in feature.token_to_orig_map:
                continue
            if not feature.token_is_max_context.get(start_index, False):
                continue
            if end_index < start_index or end_index - start_index + 1 > max_answer_length:
                continue
            candidates.append(_Candidate(feature, start_index, end_index, start_logits[start_index],
                                         end_logits[end_index]))
    return candidates


def _top_indexes(logits, n):
    """Indexes of the `n` largest logits, largest first; equal logits in index order."""
    # nlargest is documented to equal sorted(..., reverse=True)[:n], ties included, as the reference.
    return heapq.nlargest(n, range(len(logits)), key=logits.__getitem__)


def _candidate_text(candidate, example, basic_tokenizer):
    """The original context text of a span: its sub-tokens re-joined, then aligned to the raw words."""
    feature = candidate.feature
    pieces = feature.tokens[candidate.start_index:candidate.end_index + 1]
    piece_text = " ".join(pieces).replace(" ##", "").replace("##", "")
    piece_text = " ".join(piece_text.split())
    first_word = feature.token_to_orig_map[candidate.start_index]
    last_word = feature.token_to_orig_map[candidate.end_index]
    original_text = " ".join(example.doc_tokens[first_word:last_word + 1])
    return _project_to_original(piece_text, original_text, basic_tokenizer)


def _project_to_original(predicted_text, original_text, basic_tokenizer):
    """The part of `original_text` that `predicted_text` (normalised sub-tokens) comes from.

    `original_text` holds whole words, so it may carry punctuation the span left out ("Zürich,"),
    and `predicted_text` has lost case and accents. Basic tokenisation of the original differs from
    it only by spaces when lower-casing and accent stripping keep every character count, so once
    spaces are removed the two align character for character. When that does not hold, or the
    prediction is not found, the whole original text is the answer, as in the reference.
    """
    # The reference finds "" at 0 and then fails to map its end, position -1.
    if not predicted_text:
        return original_text
    tokenized_text = " ".join(basic_tokenizer.tokenize(original_text))
    start = tokenized_text.find(predicted_text)
    if start == -1:
        return original_text
    end = start + len(predicted_text) - 1
    original_compact_to_full = [i for i, char in enumerate(original_text) if char != " "]
    tokenized_compact_to_full = [i for i, char in enumerate(tokenized_text) if char != " "]
    if len(original_compact_to_full) != len(tokenized_compact_to_full):
        return original_text
    # Both ends are characters of `predicted_text`, never spaces, so both are in the map.
    tokenized_full_to_compact = {full: compact for compact, full in enumerate(tokenized_compact_to_full)}
    original_start = original_compact_to_full[tokenized_full_to_compact[start]]
    original_end = original_compact_to_full[tokenized_full_to_compact[end]]
    return original_text[original_start:original_end + 1]


def _softmax(scores):
    """The reference's softmax, summed in the same order, so probabilities match it to the bit."""
    max_score = max(scores)
    exp_scores = [math.exp(score - max_score) for score in scores]
    total = 0.0
    for value in exp_scores:
        total += value
    return [value / total for value in exp_scores]


# ---------------------------------------------------------------------------------------------------
# Evaluation

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text):
    """The official scripts' normal form: lower case, no ASCII punctuation, no a/an/the, single spaces."""
    text = "".join(char for char in text.lower() if char not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _token_overlap_f1(prediction_tokens, gold_tokens):
    common = collections.Counter(prediction_tokens) & collections.Counter(gold_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _f1_v1(prediction, gold):
    # v1.1 gives 0 when either side normalises to nothing, even when both do.
    return _token_overlap_f1(normalize_answer(prediction).split(), normalize_answer(gold).split())


def _f1_v2(prediction, gold):
    prediction_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    # v2.0: a no-answer on either side scores 1 only when both are no-answers.
    if not prediction_tokens or not gold_tokens:
        return float(prediction_tokens == gold_tokens)
    return _token_overlap_f1(prediction_tokens, gold_tokens)


def _exact(prediction, gold):
    return float(normalize_answer(prediction) == normalize_answer(gold))


def _dataset_questions(dataset, source):
    """(qa, location) for every question of a parsed dataset file (named `source`) or of its 'data' list."""
    if isinstance(dataset, dict):
        dataset = _field(dataset, "data", list, source)
    elif not isinstance(dataset, list):
        raise InputError(f"{source}: expected the SQuAD JSON object or its 'data' array, got {_json_type(dataset)}")
    for paragraph, paragraph_where in _paragraphs(dataset, f"{source}: data"):
        yield from _questions(paragraph, paragraph_where)


def evaluate_v1(dataset, predictions, source="dataset"):
    """{"exact_match", "f1"} in percent, as evaluate-v1.1.py; a question without prediction scores 0.

    `dataset` is the parsed SQuAD file (named `source` in messages) or its 'data' list; `predictions`
    maps question id to text.
    """
    exact_sum = f1_sum = 0.0
    total = 0
    for qa, where in _dataset_questions(dataset, source):
        total += 1
        golds = _gold_texts(qa, where)
        if not golds:
            raise InputError(f"{where}: question {qa['id']!r} has no answers (SQuAD v2.0 data is scored as v2.0, "
                             f"--version_2_with_negative)")
        if qa["id"] not in predictions:
            continue
        prediction = predictions[qa["id"]]
        exact_sum += max(_exact(prediction, gold) for gold in golds)
        f1_sum += max(_f1_v1(prediction, gold) for gold in golds)
    if total == 0:
        raise InputError(f"{source}: no questions to score")
    return {"exact_match": 100.0 * exact_sum / total, "f1": 100.0 * f1_sum / total}


def evaluate_v2(dataset, predictions, na_probs=None, na_prob_thresh=1.0, source="dataset"):
    """The scores of evaluate-v2.0.py, in percent, with its keys.

    "exact", "f1", "total", then the same three prefixed "HasAns_" and "NoAns_" over the answerable
    and unanswerable questions (each group only when it has questions). A question is unanswerable
    when it has no gold answer; its only gold is "". Where `na_probs[id]` (e.g. the null_odds of
    `postprocess_predictions`) exceeds `na_prob_thresh` the prediction counts as a no-answer. With
    `na_probs`, "best_exact"/"best_f1" are the scores at the best such threshold, reported as
    "best_exact_thresh"/"best_f1_thresh".

    A question without prediction scores 0 and is never counted as a correct no-answer (the
    official script would crash there).
    """
    has_answer = {}
    exact_raw = {}
    f1_raw = {}
    for qa, where in _dataset_questions(dataset, source):
        question_id = qa["id"]
        answers = _gold_texts(qa, where)
        has_answer[question_id] = bool(answers)
        golds = [text for text in answers if normalize_answer(text)] or [""]
        if question_id not in predictions:
            continue
        prediction = predictions[question_id]
        exact_raw[question_id] = max(_exact(prediction, gold) for gold in golds)
        f1_raw[question_id] = max(_f1_v2(prediction, gold) for gold in golds)
    if not has_answer:
        raise InputError(f"{source}: no questions to score")
    search_thresholds = na_probs is not None
    if not search_thresholds:
        # The official default; it matters only with a negative threshold, which makes all no-answers.
        na_probs = {question_id: 0.0 for question_id in predictions}
    for question_id in exact_raw:
        if question_id not in na_probs:
            raise InputError(f"no-answer probabilities: no value for question {question_id!r}")

    def thresholded(raw_scores):
        return {
            question_id: float(not has_answer[question_id]) if na_probs[question_id] > na_prob_thresh else score
            for question_id, score in raw_scores.items()
        }

    exact_scores = thresholded(exact_raw)
    f1_scores = thresholded(f1_raw)

    def summary(question_ids):
        return {
            "exact": 100.0 * sum(exact_scores.get(q, 0.0) for q in question_ids) / len(question_ids),
            "f1": 100.0 * sum(f1_scores.get(q, 0.0) for q in question_ids) / len(question_ids),
            "total": len(question_ids),
        }

    scores = summary(list(has_answer))
    for prefix, wanted in (("HasAns", True), ("NoAns", False)):
        group = [q for q, answerable in has_answer.items() if answerable == wanted]
        if group:
            scores.update({f"{prefix}_{key}": value for key, value in summary(group).items()})
    if search_thresholds:
        for name, raw_scores in (("exact", exact_raw), ("f1", f1_raw)):
            best, threshold = _best_threshold(predictions, raw_scores, na_probs, has_answer)
            scores[f"best_{name}"] = best
            scores[f"best_{name}_thresh"] = threshold
    return scores


def _best_threshold(predictions, raw_scores, na_probs, has_answer):
    """(best score in percent, its threshold): the official search over the na_probs values.

    With a threshold below every value all predictions become no-answers, which scores the
    unanswerable questions; raising it past each value in turn brings that question's own
    prediction back, changing the score by its raw score (answerable) or by -1 if it is a non-empty
    prediction for an unanswerable question.
    """
    score = sum(1 for q, answerable in has_answer.items() if not answerable and q in raw_scores)
    best_score, best_threshold = score, 0.0
    for question_id in sorted(na_probs, key=lambda q: na_probs[q]):
        if question_id not in raw_scores:
            continue
        if has_answer[question_id]:
            score += raw_scores[question_id]
        elif predictions[question_id]:
            score -= 1
        if score > best_score:
            best_score, best_threshold = score, na_probs[question_id]
    return 100.0 * best_score / len(has_answer), best_threshold
