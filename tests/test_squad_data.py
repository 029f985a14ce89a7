"""bert.squad_data: SQuAD reading, windowing, post-processing and scoring on hand-built cases.

The fixtures are two paragraphs written for these tests: a short one full of punctuation, accents and
mixed case, and one of 328 word pieces that needs eight windows at max_seq_length 128, doc_stride 32.
"""

import json
import math
import re
import subprocess
import sys

import numpy as np
import pytest

from bert.errors import InputError
from bert.squad_data import (
    FIRST_UNIQUE_ID,
    RawResult,
    SquadExample,
    convert_examples_to_features,
    evaluate_v1,
    evaluate_v2,
    normalize_answer,
    postprocess_predictions,
    read_squad_examples,
)
from bert.tokenization import FullTokenizer
from tests.conftest import ROOT

OBSERVATORY = (
    "The Kestrel Observatory opened in 1897 on a ridge above Zürich, and its first director, "
    "Anna-Lena Brückner, catalogued 4,210 variable stars before she retired in 1921."
)
CANAL = (
    "The Varnholt Canal was dug between 1764 and 1771 to carry slate from the quarries of the upper valley "
    "down to the harbour at Elsmere. Its engineer, a former clockmaker named Tobias Quenby, had never built "
    "anything larger than a church tower, yet he designed eleven locks that raised boats a total of "
    "sixty-two metres. Each lock was lined with granite blocks cut on site, and the lock keepers lived in "
    "small stone cottages beside the gates, paid partly in coal and partly in coin. Boatmen complained that "
    "the eighth lock leaked so badly that crossing it took twice as long as any other. For almost a century "
    "the canal was busy from dawn to dusk: horses towed narrow boats loaded with roofing slate, timber, lime "
    "and, in autumn, barrels of cider pressed in the orchards near Hollin Bridge. Trade declined after the "
    "railway reached the valley in 1858, because a train could move in one afternoon what a boat carried "
    "in a week. The last commercial cargo, a load of fence posts, passed through the locks in the winter of "
    "1903. The water was then drained from the upper section, and parts of the towpath disappeared beneath "
    "brambles and fallen trees. In 1968 a group of volunteers, led by a retired schoolteacher called "
    "Margaret Ashdown, began clearing the channel with shovels, wheelbarrows and a borrowed pump. Their "
    "work took twenty-six years. Today the restored canal is used by hire boats, kayakers and anglers, and "
    "the old lock keepers' cottage at Lock Seven houses a small museum whose most prized exhibit is "
    "Quenby's own brass surveying level."
)
# Every word is one word piece of the uncased vocabulary, so sub-token positions are word positions.
FOX = "the red fox ran to the old mill and ate a small pear"

# (id, question, gold answer text, found at its first occurrence in the context)
OBSERVATORY_QUESTIONS = [
    ("obs-start", "What opened on the ridge in 1897?", "The Kestrel Observatory"),
    ("obs-city", "Above which city does the observatory stand?", "Zürich"),
    ("obs-director", "Who was the observatory's first director?", "Anna-Lena Brückner"),
    ("obs-count", "How many variable stars were catalogued?", "4,210"),
    ("obs-end", "In which year did the director retire?", "1921"),
]
CANAL_QUESTIONS = [
    ("canal-leader", "Who led the volunteers who cleared the channel?", "Margaret Ashdown"),
    ("canal-start", "Which canal carried slate down to Elsmere?", "The Varnholt Canal"),
    ("canal-railway", "In what year did the railway reach the valley?", "1858"),
    ("canal-end", "What is the museum's most prized exhibit?", "Quenby's own brass surveying level"),
    ("canal-trade", "What was Quenby's trade before the canal?", "clock"),
    ("canal-rise", "How many tens of metres did the locks raise boats?", "sixty"),
]
GOLD = {qid: text for qid, _, text in OBSERVATORY_QUESTIONS + CANAL_QUESTIONS}
# Its text is not at its answer_start: training skips it.
MISPLACED = {"id": "obs-misplaced", "question": "What is the ridge called?",
             "answers": [{"text": "Kestrel Ridge", "answer_start": 4}]}
UNANSWERABLE = [
    ("obs-closed", "In which year did the observatory close?", OBSERVATORY, "1921"),
    ("canal-founder", "Who founded the canal museum?", CANAL, "Margaret Ashdown"),
]


def question(qid, text, context, answer):
    return {"id": qid, "question": text, "answers": [{"text": answer, "answer_start": context.index(answer)}]}


def squad_dataset(version_2):
    observatory_qas = [question(qid, q, OBSERVATORY, a) for qid, q, a in OBSERVATORY_QUESTIONS] + [MISPLACED]
    canal_qas = [question(qid, q, CANAL, a) for qid, q, a in CANAL_QUESTIONS]
    if version_2:
        for qa in observatory_qas + canal_qas:
            qa["is_impossible"] = False
        for qid, q, context, plausible in UNANSWERABLE:
            qas = observatory_qas if context is OBSERVATORY else canal_qas
            qas.append({"id": qid, "question": q, "answers": [], "is_impossible": True,
                        "plausible_answers": [{"text": plausible, "answer_start": context.index(plausible)}]})
    return {"version": "2.0" if version_2 else "1.1", "data": [
        {"title": "Kestrel_Observatory", "paragraphs": [{"context": OBSERVATORY, "qas": observatory_qas}]},
        {"title": "Varnholt_Canal", "paragraphs": [{"context": CANAL, "qas": canal_qas}]},
    ]}


def write_json(path, data):
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def squad_files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("squad")
    return {
        "v1": write_json(directory / "v1.json", squad_dataset(version_2=False)),
        "v2": write_json(directory / "v2.json", squad_dataset(version_2=True)),
    }


@pytest.fixture(scope="module")
def tokenizer(uncased_vocab):
    return FullTokenizer(uncased_vocab, do_lower_case=True)


def by_id(examples):
    return {example.qas_id: example for example in examples}


def prediction_example(qas_id, question_text, context):
    return SquadExample(qas_id=qas_id, question_text=question_text, doc_tokens=context.split(),
                        orig_answer_text=None, start_position=None, end_position=None,
                        is_impossible=False, answers=[])


def flat_result(feature, value=-5.0):
    return RawResult(feature.unique_id, [value] * len(feature.input_ids), [value] * len(feature.input_ids))


def peaked_result(feature, start, end, peak, floor=-5.0):
    result = flat_result(feature, floor)
    result.start_logits[start] = peak
    result.end_logits[end] = peak
    return result


def find_span(feature, pieces):
    """Positions of the first occurrence of `pieces` in the window whose start is max-context there."""
    for i in feature.token_to_orig_map:
        if feature.tokens[i:i + len(pieces)] == pieces and feature.token_is_max_context[i]:
            return i, i + len(pieces) - 1
    return None


def doc_offset(feature):
    return feature.tokens.index("[SEP]") + 1


# ---------------------------------------------------------------------------------------------------
# Reading


def test_training_examples_map_character_offsets_to_words_and_skip_misplaced_answers(squad_files):
    examples, skipped = read_squad_examples(squad_files["v1"], is_training=True, version_2_with_negative=False)
    assert skipped == 1
    assert [e.qas_id for e in examples] == [qid for qid, _, _ in OBSERVATORY_QUESTIONS + CANAL_QUESTIONS]
    observatory = by_id(examples)["obs-city"]
    assert observatory.doc_tokens[:12] == ["The", "Kestrel", "Observatory", "opened", "in", "1897", "on", "a",
                                           "ridge", "above", "Zürich,", "and"]
    assert len(observatory.doc_tokens) == 26
    positions = {e.qas_id: (e.start_position, e.end_position) for e in examples}
    assert positions["obs-start"] == (0, 2)
    assert positions["obs-city"] == (10, 10)  # the word "Zürich," holds the answer "Zürich"
    assert positions["obs-director"] == (15, 16)
    assert positions["obs-count"] == (18, 18)
    assert positions["obs-end"] == (25, 25)  # "1921."
    assert positions["canal-start"] == (0, 2)
    assert positions["canal-end"] == (262, 266)
    assert positions["canal-trade"] == (29, 29)  # "clock" is part of the word "clockmaker"
    assert by_id(examples)["obs-director"].orig_answer_text == "Anna-Lena Brückner"
    assert all(not e.is_impossible for e in examples)


def test_a_training_answer_of_whitespace_alone_is_skipped_and_counted(tmp_path):
    context = "The capital of France is Paris ."
    path = write_json(tmp_path / "blank.json", {"data": [{"paragraphs": [{"context": context, "qas": [
        {"id": "blank", "question": "Capital?", "answers": [{"text": " ", "answer_start": 3}]},
        question("paris", "Capital?", context, "Paris"),
    ]}]}]})
    examples, skipped = read_squad_examples(path, is_training=True, version_2_with_negative=False)
    assert skipped == 1
    assert [e.qas_id for e in examples] == ["paris"]


def test_context_splits_only_on_the_reference_whitespace(tmp_path):
    context = "Alpha\tbeta  gamma\u202fdelta\u00a0epsilon\nzeta"
    path = write_json(tmp_path / "spaces.json", {"data": [{"paragraphs": [{"context": context, "qas": [
        question("q-gamma", "Third?", context, "gamma"),
        question("q-epsilon", "Fifth?", context, "epsilon"),
    ]}]}]})
    examples, skipped = read_squad_examples(path, is_training=True, version_2_with_negative=False)
    assert skipped == 0
    # U+202F separates words; U+00A0 does not.
    assert examples[0].doc_tokens == ["Alpha", "beta", "gamma", "delta\u00a0epsilon", "zeta"]
    assert (examples[0].start_position, examples[0].end_position) == (2, 2)
    assert (examples[1].start_position, examples[1].end_position) == (3, 3)


def test_prediction_examples_keep_every_question_without_positions(squad_files, tmp_path):
    examples, skipped = read_squad_examples(squad_files["v2"], is_training=False, version_2_with_negative=True)
    assert skipped == 0
    examples = by_id(examples)
    assert len(examples) == 11 + 1 + 2  # answerable, misplaced, unanswerable
    closed = examples["obs-closed"]
    # Outside training the reference reads neither answers nor is_impossible.
    assert (closed.start_position, closed.end_position, closed.orig_answer_text) == (None, None, None)
    assert closed.is_impossible is False
    assert closed.answers == []
    assert examples["obs-misplaced"].answers == ["Kestrel Ridge"]

    context = OBSERVATORY
    dev = {"data": [{"paragraphs": [{"context": context, "qas": [{"id": "d1", "question": "Where?", "answers": [
        {"text": "Zürich", "answer_start": context.index("Zürich")},
        {"text": "above Zürich", "answer_start": context.index("above")},
    ]}]}]}]}
    examples, _ = read_squad_examples(write_json(tmp_path / "dev.json", dev), False, False)
    assert examples[0].answers == ["Zürich", "above Zürich"]


def test_questions_to_predict_sharing_an_id_are_refused_naming_both(tmp_path):
    asked = {"question": "How high?", "answers": [{"text": "2,310", "answer_start": 14}]}
    path = paragraph_file(tmp_path, [{**asked, "id": "q1"}, {**asked, "id": "q2"}, {**asked, "id": "q1"}])
    with pytest.raises(InputError) as error:
        read_squad_examples(path, is_training=False, version_2_with_negative=False)
    assert str(error.value) == (f"{path}: data[0].paragraphs[0].qas[2]: id 'q1' is data[0].paragraphs[0].qas[0]'s too; "
                                "each question needs its own, as predictions are written by id")
    # Training reads no id.
    examples, _ = read_squad_examples(path, is_training=True, version_2_with_negative=False)
    assert len(examples) == 3


def test_v2_training_marks_unanswerable_questions(squad_files):
    examples, skipped = read_squad_examples(squad_files["v2"], is_training=True, version_2_with_negative=True)
    assert skipped == 1
    examples = by_id(examples)
    for qid in ("obs-closed", "canal-founder"):
        assert examples[qid].is_impossible is True
        assert (examples[qid].start_position, examples[qid].end_position) == (-1, -1)
        assert examples[qid].orig_answer_text == ""
    assert examples["obs-city"].is_impossible is False
    assert (examples["obs-city"].start_position, examples["obs-city"].end_position) == (10, 10)


def paragraph_file(tmp_path, qas, context="Mount Orla is 2,310 metres high."):
    return write_json(tmp_path / "bad.json", {"data": [{"paragraphs": [{"context": context, "qas": qas}]}]})


@pytest.mark.parametrize("content, fragments", [
    ("{not json", ["not JSON", "line 1"]),
    ('{"version": "1.1"}', ["missing key 'data'"]),
    ('[1, 2]', ["expected a JSON object, got array"]),
    ('{"data": [{"paragraphs": [{"qas": []}]}]}', ["data[0].paragraphs[0]: missing key 'context'"]),
    ('{"data": [{"title": "x"}]}', ["data[0]: missing key 'paragraphs'"]),
    ('{"data": ' + "[" * 100_000 + "]" * 100_000 + "}", ["its JSON nests deeper than Python's parser goes"]),
])
def test_unreadable_files_raise_one_line_naming_the_file(tmp_path, content, fragments):
    path = tmp_path / "broken.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError) as error:
        read_squad_examples(path, is_training=False, version_2_with_negative=False)
    message = str(error.value)
    assert message.startswith(str(path)) and "\n" not in message
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize("qa, version_2, fragment", [
    ({"id": "a", "question": "How high?", "answers": [{"text": "2,310 metres", "answer_start": 40}]}, False,
     "answer_start 40"),
    ({"id": "a", "question": "How high?", "answers": [{"text": "2,310", "answer_start": 14},
                                                       {"text": "2,310 metres", "answer_start": 14}]}, False,
     "exactly 1 answer, got 2"),
    ({"id": "a", "question": "How high?", "answers": [{"text": "2,310", "answer_start": "14"}]}, False,
     "key 'answer_start' must be an integer, got string"),
    ({"id": "a", "question": "How high?", "answers": [{"text": "2,310", "answer_start": 14}]}, True,
     "qas[0]: missing key 'is_impossible'"),
    ({"question": "How high?", "answers": []}, False, "qas[0]: missing key 'id'"),
    ({"id": "a", "question": "How high?", "answers": [], "is_impossible": True}, False,
     "qas[0]: a training question needs exactly 1 answer, got 0; is this SQuAD 2.0 data? give --version_2_with_negative"),
])
def test_bad_training_questions_raise(tmp_path, qa, version_2, fragment):
    path = paragraph_file(tmp_path, [qa])
    with pytest.raises(InputError, match=re.escape(fragment)) as error:
        read_squad_examples(path, is_training=True, version_2_with_negative=version_2)
    assert str(error.value).startswith(str(path))


# ---------------------------------------------------------------------------------------------------
# Features


def test_short_context_features_target_the_answer_pieces(squad_files, tokenizer):
    examples, _ = read_squad_examples(squad_files["v1"], is_training=True, version_2_with_negative=False)
    features = convert_examples_to_features(examples, tokenizer, max_seq_length=128, doc_stride=32,
                                            max_query_length=64, is_training=True)
    assert [f.unique_id for f in features] == list(range(FIRST_UNIQUE_ID, FIRST_UNIQUE_ID + len(features)))
    by_question = {examples[f.example_index].qas_id: f for f in features if f.doc_span_index == 0}

    city = by_question["obs-city"]
    query = tokenizer.tokenize("Above which city does the observatory stand?")
    assert city.tokens[:len(query) + 2] == ["[CLS]", *query, "[SEP]"]
    assert city.tokens[-1] == "[SEP]" and len(city.tokens) == len(query) + 3 + 38
    assert city.input_ids[0] == 101 and city.input_ids[len(city.tokens) - 1] == 102  # uncased [CLS], [SEP]
    assert city.input_ids[len(city.tokens):] == [0] * (128 - len(city.tokens))
    assert city.input_mask == [1] * len(city.tokens) + [0] * (128 - len(city.tokens))
    assert city.segment_ids == [0] * (len(query) + 2) + [1] * 39 + [0] * (128 - len(city.tokens))

    # Narrowed from the whole words to the answer's own pieces: no "," after zurich, 1921, brückner.
    expected = {
        "obs-start": (["the", "ke", "##strel", "observatory"], ["The", "Kestrel", "Observatory"]),
        "obs-city": (["zurich"], ["Zürich,"]),
        "obs-director": (["anna", "-", "lena", "br", "##uck", "##ner"], ["Anna-Lena", "Brückner,"]),
        "obs-count": (["4", ",", "210"], ["4,210"]),
        "obs-end": (["1921"], ["1921."]),
    }
    for qid, (pieces, words) in expected.items():
        feature = by_question[qid]
        example = examples[feature.example_index]
        assert feature.tokens[feature.start_position:feature.end_position + 1] == pieces, qid
        first_word = feature.token_to_orig_map[feature.start_position]
        last_word = feature.token_to_orig_map[feature.end_position]
        assert example.doc_tokens[first_word:last_word + 1] == words, qid


def test_answers_inside_hyphenated_and_compound_words(squad_files, tokenizer):
    examples, _ = read_squad_examples(squad_files["v1"], is_training=True, version_2_with_negative=False)
    examples = [e for e in examples if e.qas_id in ("canal-trade", "canal-rise")]
    features = convert_examples_to_features(examples, tokenizer, 128, 32, 64, is_training=True)
    targets = {(examples[f.example_index].qas_id, tuple(f.tokens[f.start_position:f.end_position + 1]))
               for f in features if f.start_position}
    # "sixty" out of "sixty-two" and "clock" out of "clock ##maker": the pieces match the answer exactly.
    assert ("canal-rise", ("sixty",)) in targets
    assert ("canal-trade", ("clock",)) in targets


def test_long_context_windows_stride_and_max_context(squad_files, tokenizer):
    examples, _ = read_squad_examples(squad_files["v1"], is_training=True, version_2_with_negative=False)
    leader = by_id(examples)["canal-leader"]
    features = convert_examples_to_features([leader], tokenizer, 128, 32, 64, is_training=True)
    pieces = [p for word in leader.doc_tokens for p in tokenizer.tokenize(word)]
    assert len(pieces) == 328
    assert len(tokenizer.tokenize(leader.question_text)) == 9
    # 128 - 9 - 3 = 116 pieces a window; starts 32 apart until a window reaches piece 327.
    starts = [0, 32, 64, 96, 128, 160, 192, 224]
    assert [f.doc_span_index for f in features] == list(range(8))
    for feature, start in zip(features, starts):
        assert doc_offset(feature) == 11
        assert feature.tokens[11:-1] == pieces[start:start + 116]
    assert len(features[-1].tokens) == 11 + 104 + 1

    covered_words = set()
    max_context_windows = [[] for _ in pieces]
    for feature, start in zip(features, starts):
        covered_words.update(feature.token_to_orig_map.values())
        for position, is_max in feature.token_is_max_context.items():
            if is_max:
                max_context_windows[start + position - 11].append(feature.doc_span_index)
    assert covered_words == set(range(len(leader.doc_tokens)))
    assert all(len(windows) == 1 for windows in max_context_windows)
    # Piece 100 lies in windows 0-3 with min(left, right) context 15, 47, 36, 4: window 1.
    assert max_context_windows[100] == [1]
    assert max_context_windows[0] == [0] and max_context_windows[327] == [7]

    # "Margaret Ashdown" is pieces 253-255, wholly inside windows 5, 6, 7 only.
    positions = [(f.start_position, f.end_position) for f in features]
    assert positions == [(0, 0)] * 5 + [(253 - 160 + 11, 255 - 160 + 11), (253 - 192 + 11, 255 - 192 + 11),
                                        (253 - 224 + 11, 255 - 224 + 11)]
    for feature in features[5:]:
        words = {feature.token_to_orig_map[i] for i in range(feature.start_position, feature.end_position + 1)}
        assert [leader.doc_tokens[w] for w in sorted(words)] == ["Margaret", "Ashdown,"]


def test_max_context_ties_go_to_the_earlier_window(tokenizer):
    example = SquadExample("fox", "where", FOX.split(), "small pear", 11, 12, False, [])
    # One query piece: 9 - 1 - 3 = 5 pieces a window, starting 0, 2, 4, 6, 8.
    features = convert_examples_to_features([example], tokenizer, max_seq_length=9, doc_stride=2,
                                            max_query_length=4, is_training=True)
    assert [f.tokens[3:-1] for f in features] == [FOX.split()[s:s + 5] for s in (0, 2, 4, 6, 8)]
    # Piece 3 has context 1 in windows 0 and 1 (tie: window 0); piece 4 has 2 in window 1.
    flags = [[f.token_is_max_context[p] for p in range(3, 8)] for f in features]
    assert flags == [
        [True, True, True, True, False],
        [False, False, True, True, False],
        [False, False, True, True, False],
        [False, False, True, True, False],
        [False, False, True, True, True],
    ]
    assert [(f.start_position, f.end_position) for f in features] == [(0, 0)] * 4 + [(6, 7)]


def test_impossible_and_prediction_features(squad_files, tokenizer):
    examples, _ = read_squad_examples(squad_files["v2"], is_training=True, version_2_with_negative=True)
    founder = by_id(examples)["canal-founder"]
    features = convert_examples_to_features([founder], tokenizer, 128, 32, 64, is_training=True)
    assert len(features) == 8
    assert all((f.start_position, f.end_position, f.is_impossible) == (0, 0, True) for f in features)

    examples, _ = read_squad_examples(squad_files["v2"], is_training=False, version_2_with_negative=True)
    features = convert_examples_to_features(examples, tokenizer, 128, 32, 64, is_training=False)
    assert all(f.start_position is None and f.end_position is None for f in features)


def test_window_arguments_are_checked(tokenizer):
    example = prediction_example("fox", "where does the quick brown fox jump", FOX)
    # As the reference, the room a question leaves counts, not --max_query_length: 7 tokens and 3 markers leave 2.
    features = convert_examples_to_features([example], tokenizer, 12, 32, 64, is_training=False)
    assert max(len(f.tokens) for f in features) == 12 and {len(f.input_ids) for f in features} == {12}
    with pytest.raises(InputError, match=r"question fox: its 7 tokens \(--max_query_length=64\) leave no room for its "
                                         r"context in --max_seq_length=10"):
        convert_examples_to_features([example], tokenizer, 10, 32, 64, is_training=False)
    assert len(convert_examples_to_features([example], tokenizer, 10, 32, 6, is_training=False)) > 1
    with pytest.raises(InputError, match="--doc_stride must be at least 1"):
        convert_examples_to_features([example], tokenizer, 128, 0, 64, is_training=False)


# ---------------------------------------------------------------------------------------------------
# Post-processing


def test_predictions_recover_the_original_text(squad_files, tokenizer):
    examples, _ = read_squad_examples(squad_files["v1"], is_training=False, version_2_with_negative=False)
    features = convert_examples_to_features(examples, tokenizer, 128, 32, 64, is_training=False)
    results = []
    for feature in features:
        example = examples[feature.example_index]
        answer = GOLD.get(example.qas_id)
        span = find_span(feature, tokenizer.tokenize(answer)) if answer else None
        # float32 arrays, as the model gives them.
        result = peaked_result(feature, *span, peak=10.0) if span else flat_result(feature)
        results.append(RawResult(result.unique_id, np.array(result.start_logits, np.float32),
                                 np.array(result.end_logits, np.float32)))
    predictions, nbest, null_odds = postprocess_predictions(
        examples, features, results, n_best_size=20, max_answer_length=30, do_lower_case=True,
        version_2_with_negative=False, null_score_diff_threshold=0.0)
    assert null_odds == {}
    assert {qid: predictions[qid] for qid in GOLD} == GOLD
    for entries in nbest.values():
        assert 1 <= len(entries) <= 20
        assert math.isclose(sum(e["probability"] for e in entries), 1.0)
        scores = [e["start_logit"] + e["end_logit"] for e in entries]
        assert scores == sorted(scores, reverse=True)
        assert len({e["text"] for e in entries}) == len(entries)
        for entry in entries:
            assert {type(value) for value in entry.values()} <= {str, float}
    top = nbest["obs-city"][0]
    assert (top["text"], top["start_logit"], top["end_logit"]) == ("Zürich", 10.0, 10.0)


def test_cased_predictions_keep_accents(cased_vocab):
    cased = FullTokenizer(cased_vocab, do_lower_case=False)
    example = prediction_example("city", "Which city?", OBSERVATORY)
    feature, = convert_examples_to_features([example], cased, 128, 32, 64, is_training=False)
    span = find_span(feature, cased.tokenize("Zürich"))
    predictions, _, _ = postprocess_predictions([example], [feature], [peaked_result(feature, *span, 10.0)],
                                                20, 30, False, False, 0.0)
    assert predictions == {"city": "Zürich"}


def fox_feature(tokenizer, max_seq_length=32):
    example = prediction_example("fox", "where", FOX)
    features = convert_examples_to_features([example], tokenizer, max_seq_length, 2, 4, is_training=False)
    return example, features


def fox_result(feature, starts, ends, floor=-10.0):
    """Logits at word positions (the doc starts at position 3); every other position gets `floor`."""
    result = flat_result(feature, floor)
    for word, logit in starts.items():
        result.start_logits[3 + word] = logit
    for word, logit in ends.items():
        result.end_logits[3 + word] = logit
    return result


def test_nbest_probabilities_and_limits(tokenizer):
    example, (feature,) = fox_feature(tokenizer)
    # Starts "red" 2, "a" 1; ends "fox" 2, "pear" 1.
    result = fox_result(feature, {1: 2.0, 10: 1.0}, {2: 2.0, 12: 1.0})

    _, nbest, _ = postprocess_predictions([example], [feature], [result], 2, 5, True, False, 0.0)
    # "red ... pear" is 12 pieces long, over max_answer_length 5; "a ... fox" ends before it starts.
    entries = nbest["fox"]
    assert [e["text"] for e in entries] == ["red fox", "a small pear"]
    assert entries[0]["probability"] == pytest.approx(1 / (1 + math.exp(-2)))
    assert entries[1]["probability"] == pytest.approx(math.exp(-2) / (1 + math.exp(-2)))
    assert (entries[1]["start_logit"], entries[1]["end_logit"]) == (1.0, 1.0)

    predictions, nbest, _ = postprocess_predictions([example], [feature], [result], 2, 30, True, False, 0.0)
    # The long span (score 3) now beats "a small pear" (2), which n_best_size 2 then leaves out.
    assert [e["text"] for e in nbest["fox"]] == ["red fox", "red fox ran to the old mill and ate a small pear"]
    assert predictions == {"fox": "red fox"}

    _, nbest, _ = postprocess_predictions([example], [feature], [result], 1, 30, True, False, 0.0)
    assert nbest["fox"] == [{"text": "red fox", "probability": 1.0, "start_logit": 2.0, "end_logit": 2.0}]


def test_only_the_start_must_be_in_its_max_context_window(tokenizer):
    example = prediction_example("fox", "where", FOX)
    features = convert_examples_to_features([example], tokenizer, 9, 2, 4, is_training=False)
    # Window 0 covers words 0-4 and is max-context for words 0-3 only.
    span_from_3 = fox_result(features[0], {3: 5.0}, {4: 5.0})
    rest = [flat_result(f, -10.0) for f in features[1:]]
    predictions, _, _ = postprocess_predictions([example], features, [span_from_3, *rest], 20, 30, True, False, 0.0)
    assert predictions == {"fox": "ran to"}  # ends on word 4, whose max context is window 1

    # Starting on word 4 in window 0 is dropped despite its score 10. Next come the spans ending there
    # (-10 + 5) from the starts that are max-context in window 0, equal scores in start order.
    span_from_4 = fox_result(features[0], {4: 5.0}, {4: 5.0})
    predictions, nbest, _ = postprocess_predictions([example], features, [span_from_4, *rest], 20, 30, True,
                                                    False, 0.0)
    assert predictions == {"fox": "the red fox ran to"}
    assert [(e["text"], e["start_logit"], e["end_logit"]) for e in nbest["fox"][:4]] == [
        ("the red fox ran to", -10.0, 5.0), ("red fox ran to", -10.0, 5.0),
        ("fox ran to", -10.0, 5.0), ("ran to", -10.0, 5.0),
    ]


def test_spans_starting_outside_their_max_context_window_are_dropped(squad_files, tokenizer):
    examples, _ = read_squad_examples(squad_files["v1"], is_training=False, version_2_with_negative=False)
    leader = by_id(examples)["canal-leader"]
    features = convert_examples_to_features([leader], tokenizer, 128, 32, 64, is_training=False)
    # "margaret" (piece 253) is max-context in window 6 only; "1968" (piece 240) too.
    margaret_in_5 = (253 - 160 + 11, 255 - 160 + 11)
    assert not features[5].token_is_max_context[margaret_in_5[0]]
    assert features[5].tokens[margaret_in_5[0]:margaret_in_5[1] + 1] == ["margaret", "ash", "##down"]
    year_in_6 = 240 - 192 + 11
    assert features[6].tokens[year_in_6] == "1968" and features[6].token_is_max_context[year_in_6]
    results = [flat_result(f) for f in features]
    results[5] = peaked_result(features[5], *margaret_in_5, peak=20.0)
    results[6] = peaked_result(features[6], year_in_6, year_in_6, peak=10.0)
    predictions, _, _ = postprocess_predictions([leader], features, results, 20, 30, True, False, 0.0)
    assert predictions == {"canal-leader": "1968"}


def test_v2_null_answer_uses_the_lowest_null_score_and_the_threshold(tokenizer):
    example = prediction_example("fox", "where", FOX)
    features = convert_examples_to_features([example], tokenizer, 9, 2, 4, is_training=False)
    results = []
    for index, (feature, null_start) in enumerate(zip(features, [4.0, 3.0, 0.25, 5.0, 1.0])):
        result = fox_result(feature, {}, {})
        if index == 4:  # window 4 covers words 8-12: "small pear" is words 11-12
            result = fox_result(feature, {11 - 8: 2.0}, {12 - 8: 2.0})
        result.start_logits[0], result.end_logits[0] = null_start, 0.5
        results.append(result)

    predictions, nbest, null_odds = postprocess_predictions([example], features, results, 20, 30, True, True, 0.0)
    assert null_odds == {"fox": 0.75 - 4.0}  # lowest null score (window 2) minus the best span's
    assert predictions == {"fox": "small pear"}
    null_entry, = [e for e in nbest["fox"] if e["text"] == ""]
    assert (null_entry["start_logit"], null_entry["end_logit"]) == (0.25, 0.5)
    assert nbest["fox"][0]["text"] == "small pear"

    predictions, _, _ = postprocess_predictions([example], features, results, 20, 30, True, True, -3.5)
    assert predictions == {"fox": ""}  # -3.25 > -3.5
    predictions, _, _ = postprocess_predictions([example], features, results, 20, 30, True, True, -3.25)
    assert predictions == {"fox": "small pear"}  # not strictly greater

    # The null answer joins the list even when n_best_size is already reached.
    _, nbest, _ = postprocess_predictions([example], features, results, 1, 30, True, True, 0.0)
    assert [e["text"] for e in nbest["fox"]] == ["small pear", ""]
    assert sum(e["probability"] for e in nbest["fox"]) == pytest.approx(1.0)
    assert nbest["fox"][1]["probability"] == pytest.approx(1 / (1 + math.exp(4.0 - 0.75)))


def test_no_valid_span_is_empty_in_v1_and_no_answer_in_v2(tokenizer):
    example, (feature,) = fox_feature(tokenizer)
    # n_best_size 1 keeps only position 0 ([CLS]), never a valid span.
    result = fox_result(feature, {}, {})
    result.start_logits[0] = result.end_logits[0] = -1.0

    predictions, nbest, _ = postprocess_predictions([example], [feature], [result], 1, 30, True, False, 0.0)
    assert predictions == {"fox": "empty"}  # the reference's stand-in
    assert nbest["fox"] == [{"text": "empty", "probability": 1.0, "start_logit": 0.0, "end_logit": 0.0}]

    # In v2.0 (where the reference crashes) no answer is the only answer, whatever the threshold: not a made-up
    # "empty" outscoring a null score below 0.
    for threshold in (0.0, 1e3):
        predictions, nbest, null_odds = postprocess_predictions([example], [feature], [result], 1, 30, True, True,
                                                                threshold)
        assert predictions == {"fox": ""}
        assert nbest["fox"] == [{"text": "", "probability": 1.0, "start_logit": -1.0, "end_logit": -1.0}]
        assert null_odds == {"fox": 1e6}


# ---------------------------------------------------------------------------------------------------
# Evaluation


def test_normalization_matches_the_official_scripts():
    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert normalize_answer("an apple a day, the end") == "apple day end"
    # Punctuation is deleted, not replaced by a space; accents stay.
    assert normalize_answer("Anna-Lena Brückner") == "annalena brückner"
    assert normalize_answer("theatre") == "theatre"


def evaluation_dataset(questions):
    """`questions`: (id, [gold texts]) pairs, all in one paragraph."""
    return {"version": "x", "data": [{"title": "t", "paragraphs": [{"context": "unused", "qas": [
        {"id": qid, "question": "?", "answers": [{"text": text, "answer_start": 0} for text in golds]}
        for qid, golds in questions
    ]}]}]}


def test_evaluate_v1_on_hand_computed_cases():
    dataset = evaluation_dataset([
        ("q1", ["Eiffel Tower", "the Eiffel Tower in Paris"]),
        ("q2", ["Eiffel Tower"]),
        ("q3", ["1,000 metres"]),
    ])
    predictions = {"q1": "the Eiffel tower", "q2": "Eiffel Tower in Paris"}  # q3 unanswered: 0
    scores = evaluate_v1(dataset, predictions)
    # q2: 2 shared tokens of 4 predicted and 2 gold: precision 1/2, recall 1, F1 2/3.
    assert scores["exact_match"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(100 * (1 + 2 / 3) / 3)
    assert evaluate_v1(dataset["data"], {"q1": "Paris", "q2": "tower", "q3": "1000 metres"}) == pytest.approx({
        # q1: best gold "the Eiffel Tower in Paris" -> "eiffel tower in paris": P 1, R 1/4, F1 0.4.
        # q2: P 1, R 1/2, F1 2/3. q3: "1000 metres" equals "1,000 metres" after punctuation removal.
        "exact_match": 100 / 3, "f1": 100 * (0.4 + 2 / 3 + 1) / 3,
    })
    with pytest.raises(InputError, match="no answers"):
        evaluate_v1(evaluation_dataset([("q", [])]), {"q": ""})


V2_DATASET = evaluation_dataset([
    ("a1", ["Margaret Ashdown"]),
    ("a2", ["eleven locks", "eleven"]),
    ("n1", []),
    ("n2", []),
])
V2_PREDICTIONS = {"a1": "Margaret Ashdown", "a2": "eleven granite locks", "n1": "", "n2": "the quarries"}


def test_evaluate_v2_raw_scores_and_split():
    scores = evaluate_v2(V2_DATASET, V2_PREDICTIONS)
    # a2 vs "eleven locks": 2 shared of 3 predicted, 2 gold: F1 0.8 (vs "eleven": 0.5). n1 "" is right.
    assert scores == pytest.approx({
        "exact": 50.0, "f1": 100 * (1 + 0.8 + 1 + 0) / 4, "total": 4,
        "HasAns_exact": 50.0, "HasAns_f1": 90.0, "HasAns_total": 2,
        "NoAns_exact": 50.0, "NoAns_f1": 50.0, "NoAns_total": 2,
    })
    assert list(scores) == ["exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total",
                            "NoAns_exact", "NoAns_f1", "NoAns_total"]
    only_answerable = evaluate_v2(evaluation_dataset([("a1", ["Margaret Ashdown"])]), {"a1": "Ashdown"})
    # v2.0 F1 for "ashdown" vs "margaret ashdown": P 1, R 1/2.
    assert only_answerable == pytest.approx({"exact": 0.0, "f1": 200 / 3, "total": 1,
                                             "HasAns_exact": 0.0, "HasAns_f1": 200 / 3, "HasAns_total": 1})


def test_evaluate_v2_threshold_and_best_thresholds():
    na_probs = {"a1": -3.0, "a2": 2.0, "n1": 5.0, "n2": 4.0}
    scores = evaluate_v2(V2_DATASET, V2_PREDICTIONS, na_probs=na_probs, na_prob_thresh=1.0)
    # Over 1.0, a2 (answerable) becomes a wrong no-answer; n1, n2 right ones.
    assert scores == pytest.approx({
        "exact": 75.0, "f1": 75.0, "total": 4,
        "HasAns_exact": 50.0, "HasAns_f1": 50.0, "HasAns_total": 2,
        "NoAns_exact": 100.0, "NoAns_f1": 100.0, "NoAns_total": 2,
        # Start with all abstaining: 2 right. By na_prob: a1 +1 (3, thresh -3), a2 +0 / +0.8,
        # n2 -1 (non-empty prediction), n1 +0.
        "best_exact": 75.0, "best_exact_thresh": -3.0,
        "best_f1": 95.0, "best_f1_thresh": 2.0,
    })


def test_evaluate_v2_missing_prediction_scores_zero():
    predictions = {k: v for k, v in V2_PREDICTIONS.items() if k != "n1"}
    scores = evaluate_v2(V2_DATASET, predictions)
    assert (scores["exact"], scores["total"], scores["NoAns_exact"]) == (25.0, 4, 0.0)
    na_probs = {"a1": -3.0, "a2": 2.0, "n2": 4.0}
    scores = evaluate_v2(V2_DATASET, predictions, na_probs=na_probs)
    # Abstaining from n2 alone is right: 1 of 4; a1 adds 1 at -3.0.
    assert (scores["best_exact"], scores["best_exact_thresh"]) == (50.0, -3.0)
    with pytest.raises(InputError, match="no value for question 'a2'"):
        evaluate_v2(V2_DATASET, V2_PREDICTIONS, na_probs={"a1": 0.0})


def test_module_does_not_import_tensorflow():
    code = "import sys, bert.squad_data; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"
