"""VQA metrics: the llava_med family against an independent re-statement of LLaVA-Med's evaluation (its three closed
rules: run_eval.py at v1.0.0 and before #35, run_eval_batch.py), and the strict family against hand-worked cases."""

from __future__ import annotations

import math
import re

import pytest

from radtune.common.metrics.vqa import (
    LLAVA_MED_CONTRACTIONS,
    llava_med_closed_hit,
    llava_med_closed_hit_batch,
    llava_med_closed_hit_pre35,
    llava_med_f1,
    llava_med_normalize,
    strict_closed_match,
    strict_normalize,
    strict_token_scores,
    vqa_item_scores,
    vqa_metrics,
)

# --- an oracle written from LLaVA-Med's eval_metrics/glossary.py normalize_word, step by step ---------------------
_MARKS = ';/[]"{}()=+\\_-><@`,?!'
_NUMBERS = dict(
    zip("none zero one two three four five six seven eight nine ten".split(), [0, 0, *range(1, 11)], strict=True)
)


def oracle_normalize(text: str) -> str:
    digit_comma = re.search(r"\d,\d", text) is not None
    out = text
    for mark in _MARKS:
        delete = digit_comma or (mark + " ") in text or (" " + mark) in text
        out = out.replace(mark, "" if delete else " ")
    # Their period regex removes a '.' not followed by a digit, at most 32 times (re.UNICODE lands in `count`).
    chars, removed = [], 0
    for i, ch in enumerate(out):
        if ch == "." and removed < 32 and not (i + 1 < len(out) and out[i + 1].isdecimal()):  # \d = Unicode Nd
            removed += 1
            continue
        chars.append(ch)
    words = []
    for word in "".join(chars).lower().split():
        word = str(_NUMBERS[word]) if word in _NUMBERS else word
        if word in ("a", "an", "the"):
            continue
        words.append(LLAVA_MED_CONTRACTIONS.get(word, word))
    return " ".join(words).replace(",", "")


def oracle_closed(prediction: str, answer: str) -> dict:
    """The three closed rules, restated from the scripts' `elif gt_item['answer_type'] == 'CLOSED'` branches."""
    pred, gt = oracle_normalize(prediction.lower()), oracle_normalize(answer.lower())
    mentions_yes_no = "yes" in pred or "no" in pred
    return {
        # run_eval.py at v1.0.0: `if yes/no in pred: (1 if gt in pred else 0) else: 0`
        "v1.0.0": 1 if mentions_yes_no and gt in pred else 0,
        # run_eval.py before #35: the inner `else` is missing, a miss that mentions yes/no is not recorded at all
        "pre35": (1 if gt in pred else None) if mentions_yes_no else 0,
        # run_eval_batch.py: `1 if gt in pred else 0`, the yes/no test commented out
        "batch": 1 if gt in pred else 0,
    }


def oracle_recall(prediction: str, answer: str) -> float:
    pred = oracle_normalize(oracle_normalize(prediction.lower())).split()
    gt = oracle_normalize(oracle_normalize(answer.lower())).split()
    if not pred or not gt:
        return 0.0
    tp = sum(pred.count(w) for w in set(pred) if w in gt)  # the prediction's counts, unclipped
    fn = sum(gt.count(w) for w in set(gt) if w not in pred)
    return tp / (tp + fn) if tp else 0.0


TRICKY = [
    "No, there is a nodule.",
    "nodule",
    "Yes!",
    "yes, the lesion is two cm.",
    "There are three (3) lesions; one is 1,000 mm.",
    "The answer is: left-lung/right_lung.",
    "a.b.c. 3.5 cm . . end.",
    "It isnt an effusion, dont worry",
    "[ct] {mri} <x-ray> @home `quoted`",
    'He said "none" + zero = ten',
    "." * 40 + "tail",
    "  spaced   out  ",
    "",
    "×≥– unicode — stays",
    "Not sure; maybe.",
    "ten... eleven",
    "2.² and .٣ and 4.x",
]


@pytest.mark.parametrize("text", TRICKY)
def test_llava_med_normalisation_matches_the_oracle(text):
    assert llava_med_normalize(text) == oracle_normalize(text)
    assert llava_med_normalize(text.lower()) == oracle_normalize(text.lower())


def test_llava_med_normalisation_quirks():
    assert llava_med_normalize("The answer is Two.") == "answer is 2"
    assert llava_med_normalize("left-lung") == "left lung"  # no space next to '-': replaced by a space
    assert llava_med_normalize("left - lung") == "left lung"  # next to a space: deleted
    assert llava_med_normalize("1,000 mm, left") == "1000 mm left"  # a digit,digit group deletes every mark
    assert llava_med_normalize("." * 40) == "." * 8  # only 32 periods go
    assert llava_med_normalize("dont") == "don't"
    assert llava_med_normalize("3.5 cm.") == "3.5 cm"


@pytest.mark.parametrize(
    ("prediction", "answer"),
    [(p, a) for p in TRICKY for a in ("yes", "no", "No", "two", "left lung", "1,000")],
)
def test_llava_med_closed_and_open_match_the_oracle(prediction, answer):
    oracle = oracle_closed(prediction, answer)
    assert llava_med_closed_hit(prediction, answer) == oracle["v1.0.0"]
    assert llava_med_closed_hit_pre35(prediction, answer) == oracle["pre35"]
    assert llava_med_closed_hit_batch(prediction, answer) == oracle["batch"]
    pred, gt = llava_med_normalize(prediction.lower()), llava_med_normalize(answer.lower())
    assert llava_med_f1(pred, gt)[2] == pytest.approx(oracle_recall(prediction, answer))


def test_llava_med_closed_quirks():
    assert llava_med_closed_hit("nodule", "no") == 1  # "no" is a substring of "nodule"
    assert llava_med_closed_hit("No.", "yes") == 0  # v1.0.0: a wrong yes/no answer is a miss
    assert llava_med_closed_hit_pre35("No.", "yes") is None  # before #35: not counted at all
    assert llava_med_closed_hit("The image is a CT", "yes") == 0  # no yes/no substring: a counted miss
    assert llava_med_closed_hit("yes and no", "no") == llava_med_closed_hit("yes and no", "yes") == 1


# Closed rows that separate the three rules, each worked by hand through normalize_word (lower case, ", " deletes the
# comma, the period regex removes the final '.', a/an/the dropped) and the scripts' branches:
#   prediction           reference  normalised    v1.0.0 run_eval      pre-#35 run_eval        run_eval_batch
#   "No."                "yes"      "no"          yes/no, gt not in: 0  yes/no, gt not in: —    gt not in: 0
#   "left"               "left"     "left"        no yes/no: 0          no yes/no: 0            gt in: 1
#   "Yes, it is."        "yes"      "yes it is"   1                     1                       1
#   "nodule"             "no"       "nodule"      "no" in it: 1         1                       1
#   "The image is a CT"  "yes"      "image is ct" no yes/no: 0          no yes/no: 0            0
SEPARATING = [("No.", "yes"), ("left", "left"), ("Yes, it is.", "yes"), ("nodule", "no"), ("The image is a CT", "yes")]


def test_the_three_llava_med_closed_rules_on_separating_rows():
    predictions, answers = zip(*SEPARATING, strict=True)
    scores = vqa_metrics(list(predictions), list(answers), ["closed"] * 5, families=["llava_med"])
    assert scores["llava_med/closed_accuracy"] == pytest.approx(2 / 5)  # hits: "Yes, it is.", "nodule"
    assert scores["llava_med/closed_counted_pre35"] == 4  # "No." vs "yes" leaves the denominator
    assert scores["llava_med/closed_accuracy_pre35"] == pytest.approx(2 / 4)
    assert scores["llava_med/closed_accuracy_batch"] == pytest.approx(3 / 5)  # + "left" vs "left"
    assert "llava_med/closed_counted" not in scores
    # The per-item scores (intervals, comparisons, subgroups) average to the same three numbers.
    per_item = [vqa_item_scores(p, a, "closed") for p, a in SEPARATING]
    for name in ("llava_med/closed_accuracy", "llava_med/closed_accuracy_pre35", "llava_med/closed_accuracy_batch"):
        values = [item[name] for item in per_item if name in item]
        assert sum(values) / len(values) == pytest.approx(scores[name])
    assert "llava_med/closed_accuracy_pre35" not in per_item[0]
    # radtune's overall: the v1.0.0 closed hits with the open recalls, item-weighted.
    mixed = vqa_metrics(["No.", "left lung"], ["yes", "left lung"], ["closed", "open"], families=["llava_med"])
    assert mixed["llava_med/overall"] == pytest.approx((0 + 1) / 2)


def test_llava_med_open_recall_counts_repeats():
    f1, precision, recall = llava_med_f1("left left", "left lung")
    assert recall == pytest.approx(2 / 3) and precision == 1.0


def test_strict_family():
    assert strict_normalize("The lesion is Two cm, 3.5 mm; 1,000!") == "lesion is 2 cm 3.5 mm 1,000"
    assert strict_closed_match("Yes, there is an effusion.", "yes") == 1.0
    assert strict_closed_match("nodule", "no") == 0.0
    assert strict_closed_match("No.", "yes") == 0.0
    assert strict_closed_match("CT", "ct") == 1.0
    assert strict_closed_match("a CT scan", "CT") == 0.0
    assert strict_token_scores("left left lung", "left lung") == pytest.approx((2 / 3, 1.0, 0.8))
    assert strict_token_scores("", "") == (1.0, 1.0, 1.0)
    assert strict_token_scores("right", "left lung") == (0.0, 0.0, 0.0)


def test_vqa_metrics_per_type_and_overall():
    predictions = ["Yes, small.", "no", "nodule", "left lung", "the left lung", "three"]
    answers = ["yes", "yes", "no", "left lung", "Left lung", 3]
    types = ["CLOSED", "closed", "closed", "OPEN", "open", "open"]
    scores = vqa_metrics(predictions, answers, types)
    assert scores["n_closed"] == 3 and scores["n_open"] == 3
    assert scores["strict/closed_accuracy"] == pytest.approx(1 / 3)
    assert scores["strict/open_exact_match"] == 1.0
    assert scores["strict/accuracy"] == pytest.approx(4 / 6)
    # v1.0.0: "no" vs "yes" a miss, "nodule" a hit ("no" in it), "Yes, small." a hit; before #35 the miss is dropped.
    assert scores["llava_med/closed_accuracy"] == pytest.approx(2 / 3)
    assert scores["llava_med/closed_counted_pre35"] == 2 and scores["llava_med/closed_accuracy_pre35"] == 1.0
    assert scores["llava_med/open_recall"] == 1.0


def test_empty_answer_type_family_is_nan_not_zero():
    scores = vqa_metrics(["yes"], ["yes"], ["closed"])
    assert math.isnan(scores["strict/open_f1"]) and math.isnan(scores["llava_med/open_recall"])


@pytest.mark.parametrize(
    ("predictions", "answers", "types", "match"),
    [
        (["a"], ["a", "b"], ["open"], "1 predictions, 2 answers"),
        (["a"], ["a"], ["multiple"], "answer_type"),
        ([None], ["a"], ["open"], "item 0"),
        (["a"], [None], ["open"], "item 0"),
    ],
)
def test_malformed_inputs_raise(predictions, answers, types, match):
    with pytest.raises((ValueError, TypeError), match=match):
        vqa_metrics(predictions, answers, types)


def test_evaluate_module_equals_direct_function():
    import evaluate

    from radtune.common.evaluate_modules import module_path

    predictions, answers, types = (
        ["Yes.", "no", "left lung", "right"],
        ["yes", "yes", "left lung", "left"],
        [
            "closed",
            "closed",
            "open",
            "open",
        ],
    )
    module = evaluate.load(module_path("radtune_vqa"))
    via_evaluate = module.compute(predictions=predictions, references=answers, answer_types=types)
    assert via_evaluate == pytest.approx(vqa_metrics(predictions, answers, types), nan_ok=True)
