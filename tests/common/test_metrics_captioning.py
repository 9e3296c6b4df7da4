"""radtune's caption metrics equal direct pycocoevalcap calls on a generated, deliberately awkward set."""

from __future__ import annotations

import random
import warnings

import pytest

from radtune.common.metrics import captioning
from radtune.common.metrics.captioning import (
    CAPTION_METRICS,
    JAVA_FREE_METRICS,
    CaptionScorer,
    caption_metrics,
    fallback_tokenize,
    ptb_tokenize,
)

WORDS = (
    "no pleural effusion pneumothorax consolidation the heart is enlarged mild cardiomegaly left right lower "
    "upper lobe opacity nodule mass stable chest radiograph lungs are clear of focal atelectasis edema "
    "there a small large with without catheter tube tip in SVC"
).split()
ODDITIES = [
    "3×4 cm",
    "≥ 5 mm",
    "2–3 cm",
    "12.5 mm²",
    "40%",
    "T7–T8",
    "(unchanged)",
    "5mm",
    "1,000 mL",
    "x-ray",
    "don't",
]
PUNCT = [".", ",", ";", ":", "!", "?", "...", " -", " --", "''", "``"]


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(1, 14))]
    for _ in range(rng.randint(0, 2)):
        words.insert(rng.randrange(len(words) + 1), rng.choice(ODDITIES))
    text = " ".join(words)
    if rng.random() < 0.5:
        text = text[0].upper() + text[1:]
    return text + rng.choice(PUNCT + ["", ""])


def generated_set(seed: int = 0, n: int = 60) -> tuple[list[str], list[list[str]]]:
    """Predictions and 1-4 references per item, with empty and punctuation-only predictions mixed in."""
    rng = random.Random(seed)
    predictions, references = [], []
    for i in range(n):
        if i % 15 == 3:
            prediction = ""
        elif i % 15 == 7:
            prediction = rng.choice(["...", "!", "- -", "?!", ";"])
        elif i % 15 == 11:
            prediction = "   "
        else:
            prediction = _sentence(rng)
        predictions.append(prediction)
        references.append([_sentence(rng) for _ in range(rng.randint(1, 4))])
    # An exact match and a prediction that shares nothing with its references.
    predictions[0], references[0] = references[0][0], references[0]
    predictions[1] = "zzz qqq"
    return predictions, references


def _pycocoevalcap_direct(predictions, references, meteor):
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": r} for r in refs] for i, refs in enumerate(references)})
    res = tokenizer.tokenize({i: [{"caption": p}] for i, p in enumerate(predictions)})
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    return (
        {
            **{f"bleu_{k + 1}": bleu[k] for k in range(4)},
            "meteor": meteor.compute_score(gts, res)[0],
            "rouge_l": Rouge().compute_score(gts, res)[0],
            "cider": Cider().compute_score(gts, res)[0],
        },
        gts,
        res,
    )


@pytest.fixture(scope="module")
def compared(module_meteor):
    """(radtune's result, pycocoevalcap's numbers, pycocoevalcap's tokens) on the generated set."""
    predictions, references = generated_set()
    expected, gts, res = _pycocoevalcap_direct(predictions, references, module_meteor)
    result = caption_metrics(predictions, references)
    return result, expected, (predictions, references, gts, res)


@pytest.mark.usefixtures("java")
@pytest.mark.parametrize("name", CAPTION_METRICS)
def test_each_metric_equals_pycocoevalcap(compared, name):
    result, expected, _ = compared
    tolerance = 1e-4 if name == "meteor" else 1e-6
    assert result.metrics[name] == pytest.approx(expected[name], abs=tolerance)


@pytest.mark.usefixtures("java")
def test_result_names_its_tokenizer_and_spice(compared):
    result, _, _ = compared
    assert list(result.metrics) == list(CAPTION_METRICS)
    assert result.tokenizer == "ptb"
    assert "spice" in result.unavailable and "offline" in result.unavailable["spice"]
    assert result.n == 60


@pytest.mark.usefixtures("java")
def test_ptb_tokens_equal_pycocoevalcap_tokenizer(compared):
    _, _, (predictions, references, gts, res) = compared
    flat = predictions + [r for refs in references for r in refs]
    expected = [res[i][0] for i in range(len(predictions))] + [t for i in range(len(references)) for t in gts[i]]
    assert ptb_tokenize(flat) == expected


@pytest.mark.usefixtures("java")
def test_carriage_return_does_not_shift_later_captions():
    # pycocoevalcap only replaces "\n": a "\r" there splits the line and shifts every later caption.
    assert ptb_tokenize(["Small effusion.\rNo pneumothorax.", "Clear lungs."]) == [
        "small effusion no pneumothorax",
        "clear lungs",
    ]


@pytest.mark.usefixtures("java")
def test_scorer_keeps_one_meteor_across_calls(borrowed_meteor):
    predictions, references = generated_set(seed=1, n=8)
    with CaptionScorer() as scorer:
        first = scorer.compute(predictions, references)
        second = scorer.compute(predictions[:4], references[:4])
    assert first.metrics["meteor"] > 0 and second.n == 4


def test_without_java_warns_once_and_reports_java_free_metrics(monkeypatch):
    monkeypatch.setattr(captioning, "java_available", lambda: False)
    monkeypatch.setattr(captioning, "_warned_no_java", False)
    predictions, references = generated_set(seed=2, n=10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = caption_metrics(predictions, references)
        caption_metrics(predictions, references)
    java_warnings = [w for w in caught if "Java was not found" in str(w.message)]
    assert len(java_warnings) == 1
    assert "default-jre-headless" in str(java_warnings[0].message)
    assert first.tokenizer == "fallback-regex"
    assert tuple(first.metrics) == JAVA_FREE_METRICS
    assert set(first.unavailable) == {"meteor", "spice"}
    with pytest.raises(RuntimeError, match="Java"):
        caption_metrics(predictions, references, tokenizer="ptb")


def test_fallback_tokenizer_drops_ptb_punctuation_only():
    assert fallback_tokenize(["Lesion 3×4 cm, ≥5 mm -- stable...", "", "?!"]) == [
        "lesion 3 × 4 cm ≥ 5 mm stable",
        "",
        "",
    ]


@pytest.mark.parametrize(
    ("predictions", "references", "error"),
    [
        (["a", "b"], [["a"]], ValueError),
        (["a"], [[]], ValueError),
        (["a"], [[1]], ValueError),
        ([None], [["a"]], TypeError),
        ("a", [["a"]], TypeError),
        ([], [], ValueError),
    ],
)
def test_malformed_inputs_raise(predictions, references, error):
    with pytest.raises(error):
        caption_metrics(predictions, references, tokenizer="fallback-regex", meteor=False)


@pytest.mark.usefixtures("java")
def test_evaluate_module_equals_direct_function():
    import evaluate

    from radtune.common.evaluate_modules import module_path

    predictions, references = generated_set(seed=3, n=12)
    module = evaluate.load(module_path("radtune_captioning"))
    via_evaluate = module.compute(predictions=predictions, references=references, meteor=False)
    direct = caption_metrics(predictions, references, meteor=False)
    assert via_evaluate["tokenizer"] == "ptb"
    for name, value in direct.metrics.items():
        assert via_evaluate[name] == pytest.approx(value, abs=1e-12)
