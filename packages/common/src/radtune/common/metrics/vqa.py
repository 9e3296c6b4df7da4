"""Medical VQA metrics in two named families, per answer type (closed / open) and overall.

`strict` (the one radtune recommends)
    Answers are normalised (Unicode NFKC, lower case, punctuation to spaces except inside numbers such as
    `3.5` or `1,000`, number words zero..twenty to digits, articles a/an/the dropped, whitespace collapsed).
    - closed: exact match of the normalised answer. When the reference is `yes` or `no`, the prediction's
      verdict is its first word if that is `yes`/`no` (so "Yes, there is an effusion." matches "yes"),
      otherwise the whole normalised prediction.
    - open: exact match, and token precision / recall / F1 with clipped counts (a token counts at most as
      often as it appears in the reference), averaged over items.
    - overall: `strict/accuracy` = exact match (closed rule for closed items) over all items.

`llava_med` (comparable with the LLaVA-Med paper)
    Transcriptions of LLaVA-Med's evaluation (microsoft/LLaVA-Med, `llava/eval/`) with `eval_metrics/glossary.py`
    (`normalize_word`), `eval_metrics/evaluate_metrics.py` and `eval_metrics/utils.py` (transcribed from commit
    ad758b6). Both texts are lower-cased and passed through `normalize_word`, then the closed ("yes/no accuracy"
    in the paper) and open ("recall" in the paper) rules below. Their closed rule exists in three versions, each
    its own metric; all three are substring tests on the normalised strings:
    - `llava_med/closed_accuracy`: `run_eval.py` at tag v1.0.0, i.e. after PR #35 "fix closed accuracy
      calculation", which adds the missing `else: hit 0` under the yes/no test: a hit when the prediction
      contains "yes" or "no" *and* the answer; every other closed item is a miss, so every closed item is in the
      denominator.
    - `llava_med/closed_accuracy_pre35` (with `llava_med/closed_counted_pre35`): `run_eval.py` before #35
      (commit ad758b6): a prediction that contains "yes" or "no" but not the answer adds neither a hit nor a
      miss and leaves the denominator; `closed_counted_pre35` is how many closed items that rule kept.
    - `llava_med/closed_accuracy_batch`: `run_eval_batch.py` (commit ad758b6, the script that walks a folder
      of answer files): a hit when the prediction contains the answer, without the yes/no test, so a closed
      question answered "left" for the reference "left" is a hit here and a miss in `run_eval.py`.
    - open: `calculate_f1score(pred, gt)`'s recall (`llava_med/open_recall`), which normalises both again.
    Which to quote beside the paper's table: `llava_med/closed_accuracy`. It is the released (v1.0.0) scorer;
    it divides by every closed question, so it is a proportion of the test set that two models share (the
    pre-#35 number drops exactly the answers that contradict the reference, so a model that answers "no" where
    the answer is "yes" loses nothing, and its denominator differs from model to model). LLaVA-Med's code does
    not say which version produced the paper's Table 4, so the other two are reported beside it: the spread
    between them is how much the protocol alone moves the number.
    Known quirks, all kept so that the numbers match theirs:
    1. The tests are substring tests: "no" matches inside "nodule", "not", "normal", "know"; the answer "no"
       is "in" the prediction "nodule", and a prediction holding both "yes" and "no" hits either answer.
    2. In `run_eval.py` (both versions) a closed answer that is not yes/no ("left") can never be a hit unless
       the prediction also contains "yes" or "no".
    3. Open recall = tp / (tp + fn) where tp adds the prediction's counts of every shared token (not clipped),
       so repeating a correct word raises recall: "left left" vs "left lung" gives 2/3.
    4. `normalize_word`: a punctuation mark is deleted when the text has it next to a space (or the text has
       a digit,digit group) and replaced by a space otherwise; the period regex `(?!<=\\d)(\\.)(?!\\d)` is a
       mistyped look-behind (it removes every period not followed by a digit), and `re.UNICODE` is passed as
       its `count`, so at most 32 periods are removed. Number words zero..ten (and "none") become digits;
       a/an/the are dropped; contraction keys such as "dont" become "don't" (only lower-case keys can match).
       Apostrophes, colons, asterisks, '#', '%', '&', '|' and non-ASCII punctuation are left as they are.
    5. Nothing is averaged per answer type beyond the above; an empty family divides by zero in their script
       (here: NaN). "overall" is radtune's addition: the item-weighted mean of the v1.0.0 closed hits and the
       open recalls.
    Their script also reports open exact match, F1, precision and nltk BLEU; radtune reports exact match, F1
    and precision (`llava_med/open_*`), and "open accuracy" (closest candidate answer equals the reference)
    only when a candidate answer list is given.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Sequence

CLOSED, OPEN = "closed", "open"
FAMILIES = ("strict", "llava_med")

# --- LLaVA-Med v1.0.0 eval_metrics/glossary.py, transcribed -------------------------------------------------
LLAVA_MED_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's",
    "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll",
    "let's": "let's", "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've",
    "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at",
    "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've",
    "she'dve": "she'd've", "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've", "somebodyll": "somebody'll",
    "somebodys": "somebody's", "someoned": "someone'd", "someoned've": "someone'd've",
    "someone'dve": "someone'd've", "someonell": "someone'll", "someones": "someone's",
    "somethingd": "something'd", "somethingd've": "something'd've", "something'dve": "something'd've",
    "somethingll": "something'll", "thats": "that's", "thered": "there'd", "thered've": "there'd've",
    "there'dve": "there'd've", "therere": "there're", "theres": "there's", "theyd": "they'd",
    "theyd've": "they'd've", "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're",
    "theyve": "they've", "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've",
    "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're", "whats": "what's",
    "whatve": "what've", "whens": "when's", "whered": "where'd", "wheres": "where's", "whereve": "where've",
    "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've", "wholl": "who'll", "whos": "who's",
    "whove": "who've", "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't",
    "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've",
    "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll", "yall'd've": "y'all'd've",
    "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd", "youd've": "you'd've",
    "you'dve": "you'd've", "youll": "you'll", "youre": "you're", "youve": "you've",
}  # fmt: skip
LLAVA_MED_NUMBERS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
LLAVA_MED_ARTICLES = ("a", "an", "the")
_LLAVA_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_LLAVA_COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")
LLAVA_MED_PUNCT = (";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")  # fmt: skip


def llava_med_normalize(text: str) -> str:
    """LLaVA-Med's `normalize_word`, quirks included (see the module docstring)."""
    _token = text
    for p in LLAVA_MED_PUNCT:
        # The test looks at the original text, the replacement works on the running copy (as theirs does).
        if (p + " " in text or " " + p in text) or (re.search(_LLAVA_COMMA_STRIP, text) is not None):
            _token = _token.replace(p, "")
        else:
            _token = _token.replace(p, " ")
    # Theirs: period_strip.sub("", _token, re.UNICODE) -> re.UNICODE (32) is the `count` argument.
    text = _LLAVA_PERIOD_STRIP.sub("", _token, count=int(re.UNICODE))
    words = []
    for word in text.lower().split():
        word = LLAVA_MED_NUMBERS.get(word, word)  # theirs: manual_map.setdefault(word, word), same result
        if word not in LLAVA_MED_ARTICLES:
            words.append(word)
    words = [LLAVA_MED_CONTRACTIONS.get(word, word) for word in words]
    return " ".join(words).replace(",", "")


def _llava_split_sentence(sentence: str) -> dict[str, int]:
    """`eval_metrics/utils.py` split_sentence(sentence, 1)."""
    words: dict[str, int] = defaultdict(int)
    for word in sentence.lower().strip().split():
        words[word] += 1
    return words


def llava_med_f1(candidate: str, reference: str) -> tuple[float, float, float]:
    """`calculate_f1score(candidate, reference)` → (f1, precision, recall), normalising both again as theirs."""
    candidate_words = _llava_split_sentence(llava_med_normalize(candidate))
    reference_words = _llava_split_sentence(llava_med_normalize(reference))
    tp = fp = fn = 0
    for word in set(candidate_words) | set(reference_words):
        if word in candidate_words and word in reference_words:
            tp += candidate_words[word]
        elif word in candidate_words:
            fp += candidate_words[word]
        else:
            fn += reference_words[word]
    if not candidate_words or not reference_words or tp == 0:
        return 0.0, 0.0, 0.0
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    return 2 * precision * recall / (precision + recall), precision, recall


def llava_med_exact_match(candidate: str, reference: str) -> float:
    """`calculate_exactmatch`: share of the candidate's words that appear in the reference (despite its name)."""
    candidate_words = _llava_split_sentence(llava_med_normalize(candidate))
    reference_words = _llava_split_sentence(llava_med_normalize(reference))
    count = sum(1 for word in reference_words if word in candidate_words)
    total = sum(candidate_words.values())
    return count / total if total else 0.0


def llava_med_open_accuracy(prediction: str, reference: str, candidates: Sequence[str | int]) -> float:
    """`calculate_appearance_with_normalization`: the candidate answer closest to the prediction equals the answer."""
    prediction_words = _llava_split_sentence(llava_med_normalize(prediction))
    reference = llava_med_normalize(reference)
    normalized, similarity = [], []
    for candidate in candidates:
        candidate = llava_med_normalize(str(candidate))
        normalized.append(candidate)
        candidate_words = _llava_split_sentence(candidate)
        count = sum(1 for word in prediction_words if word in candidate_words)
        similarity.append(count / len(candidate_words) if candidate_words else 0.0)
    return 1.0 if normalized[similarity.index(max(similarity))] == reference else 0.0


def _llava_med_closed_pair(prediction: str, answer: str) -> tuple[str, str]:
    return llava_med_normalize(prediction.lower()), llava_med_normalize(answer.lower())


def llava_med_closed_hit(prediction: str, answer: str) -> int:
    """`run_eval.py` at v1.0.0 (after #35): 1 when the normalised prediction contains "yes" or "no" and the
    answer, else 0 (a counted miss)."""
    pred, gt = _llava_med_closed_pair(prediction, answer)
    return int(("yes" in pred or "no" in pred) and gt in pred)


def llava_med_closed_hit_pre35(prediction: str, answer: str) -> int | None:
    """`run_eval.py` before #35 (commit ad758b6): 1, 0, or `None` when the prediction contains "yes" or "no" but
    not the answer (not counted at all)."""
    pred, gt = _llava_med_closed_pair(prediction, answer)
    if "yes" in pred or "no" in pred:
        return 1 if gt in pred else None
    return 0


def llava_med_closed_hit_batch(prediction: str, answer: str) -> int:
    """`run_eval_batch.py` (commit ad758b6): 1 when the normalised prediction contains the answer, else 0."""
    pred, gt = _llava_med_closed_pair(prediction, answer)
    return int(gt in pred)


# --- strict ---------------------------------------------------------------------------------------------------
_NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen twenty".split()
    )
}
_STRICT_ARTICLES = frozenset({"a", "an", "the"})
# Separators inside numbers ("3.5", "1,000") survive; every other non-word character becomes a space.
_STRICT_PUNCT = re.compile(r"(?!(?<=\d)[.,](?=\d))[^\w\s]|_")


def strict_normalize(text: str) -> str:
    """radtune's strict answer normalisation (see the module docstring)."""
    text = unicodedata.normalize("NFKC", str(text)).lower()
    text = _STRICT_PUNCT.sub(" ", text)
    words = [_NUMBER_WORDS.get(w, w) for w in text.split()]
    return " ".join(w for w in words if w not in _STRICT_ARTICLES)


def strict_closed_match(prediction: str, answer: str) -> float:
    pred, gt = strict_normalize(prediction), strict_normalize(answer)
    if gt in ("yes", "no"):
        first = pred.split(" ", 1)[0]
        if first in ("yes", "no"):
            pred = first
    return float(pred == gt)


def strict_token_scores(prediction: str, answer: str) -> tuple[float, float, float]:
    """(precision, recall, f1) over normalised tokens with clipped counts; empty vs empty counts as a match."""
    pred, gt = Counter(strict_normalize(prediction).split()), Counter(strict_normalize(answer).split())
    if not pred and not gt:
        return 1.0, 1.0, 1.0
    overlap = sum((pred & gt).values())
    if overlap == 0:
        return 0.0, 0.0, 0.0
    precision, recall = overlap / sum(pred.values()), overlap / sum(gt.values())
    return precision, recall, 2 * precision * recall / (precision + recall)


# --- both -----------------------------------------------------------------------------------------------------
def normalize_answer_type(value: object, where: str = "") -> str:
    """`CLOSED`/`closed`/`yes/no` → `closed`; `OPEN`/`open` → `open`; anything else raises `ValueError`."""
    text = str(value).strip().lower() if isinstance(value, str) else ""
    if text in ("closed", "close", "yes/no", "yesno"):
        return CLOSED
    if text == "open":
        return OPEN
    raise ValueError(f"{where}answer_type must be 'closed' or 'open', got {value!r}")


ITEM_METRICS = (
    "strict/accuracy", "strict/closed_accuracy", "strict/open_recall", "llava_med/closed_accuracy",
    "llava_med/closed_accuracy_pre35", "llava_med/closed_accuracy_batch", "llava_med/open_recall",
)  # fmt: skip


def vqa_item_scores(prediction: str, answer: str, answer_type: str) -> dict[str, float]:
    """The scores of one item whose means over items are `vqa_metrics`' values of the same names.

    Only the metrics that count the item are present: `strict/accuracy` always; `strict/closed_accuracy`,
    `llava_med/closed_accuracy`, `llava_med/closed_accuracy_batch` and `llava_med/closed_accuracy_pre35`
    (unless that rule leaves the item out) for a closed item; `strict/open_recall` and `llava_med/open_recall`
    for an open one. Used for bootstrap intervals, paired comparisons of two runs and per-subgroup scores.
    """
    answer = str(answer)
    if normalize_answer_type(answer_type) == CLOSED:
        hit = strict_closed_match(prediction, answer)
        scores = {
            "strict/accuracy": hit,
            "strict/closed_accuracy": hit,
            "llava_med/closed_accuracy": float(llava_med_closed_hit(prediction, answer)),
            "llava_med/closed_accuracy_batch": float(llava_med_closed_hit_batch(prediction, answer)),
        }
        pre35 = llava_med_closed_hit_pre35(prediction, answer)
        if pre35 is not None:
            scores["llava_med/closed_accuracy_pre35"] = float(pre35)
        return scores
    pair = llava_med_normalize(prediction.lower()), llava_med_normalize(answer.lower())
    return {
        "strict/accuracy": float(strict_normalize(prediction) == strict_normalize(answer)),
        "strict/open_recall": strict_token_scores(prediction, answer)[1],
        "llava_med/open_recall": llava_med_f1(*pair)[2],
    }


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def vqa_metrics(
    predictions: Sequence[str],
    answers: Sequence[str],
    answer_types: Sequence[str],
    *,
    families: Sequence[str] = FAMILIES,
    candidates: Sequence[str | int] | None = None,
) -> dict[str, float]:
    """VQA scores of the `strict` and `llava_med` families, per answer type and overall.

    Args:
        predictions (`Sequence[str]`): the model's answers.
        answers (`Sequence[str]`): the reference answers (ints such as VQA-RAD's are turned into strings).
        answer_types (`Sequence[str]`): `closed` or `open` per item (case-insensitive; `yes/no` = closed).
        families (`Sequence[str]`, *optional*, defaults to both): which families to compute.
        candidates (`Sequence[str]`, *optional*): LLaVA-Med's candidate answer list, for `llava_med/open_accuracy`.

    Returns:
        `dict[str, float]` named `<family>/<metric>`: `strict/closed_accuracy`, `strict/open_exact_match`,
        `strict/open_recall`, `strict/open_precision`, `strict/open_f1`, `strict/accuracy`,
        `llava_med/closed_accuracy`, `llava_med/closed_accuracy_pre35`, `llava_med/closed_counted_pre35`,
        `llava_med/closed_accuracy_batch`, `llava_med/open_recall`,
        `llava_med/open_precision`, `llava_med/open_f1`, `llava_med/open_exact_match`, `llava_med/overall`, and
        `n_closed`, `n_open`. Scores are in 0..1; a score over no items is NaN.
    """
    if not (len(predictions) == len(answers) == len(answer_types)):
        raise ValueError(
            f"got {len(predictions)} predictions, {len(answers)} answers and {len(answer_types)} answer types"
        )
    unknown = set(families) - set(FAMILIES)
    if unknown:
        raise ValueError(f"unknown VQA metric families {sorted(unknown)}; choose from {FAMILIES}")
    items = []
    for i, (prediction, answer, answer_type) in enumerate(zip(predictions, answers, answer_types, strict=True)):
        if not isinstance(prediction, str):
            raise TypeError(f"item {i}: the prediction must be a string, got {type(prediction).__name__}")
        if isinstance(answer, bool) or not isinstance(answer, str | int | float):
            raise TypeError(f"item {i}: the answer must be a string, got {type(answer).__name__}")
        items.append((prediction, str(answer), normalize_answer_type(answer_type, f"item {i}: ")))
    closed = [(p, a) for p, a, t in items if t == CLOSED]
    open_ = [(p, a) for p, a, t in items if t == OPEN]
    out: dict[str, float] = {"n_closed": float(len(closed)), "n_open": float(len(open_))}

    if "strict" in families:
        closed_hits = [strict_closed_match(p, a) for p, a in closed]
        open_exact = [float(strict_normalize(p) == strict_normalize(a)) for p, a in open_]
        token = [strict_token_scores(p, a) for p, a in open_]
        out["strict/closed_accuracy"] = _mean(closed_hits)
        out["strict/open_exact_match"] = _mean(open_exact)
        out["strict/open_precision"] = _mean([t[0] for t in token])
        out["strict/open_recall"] = _mean([t[1] for t in token])
        out["strict/open_f1"] = _mean([t[2] for t in token])
        out["strict/accuracy"] = _mean(closed_hits + open_exact)

    if "llava_med" in families:
        hits = [llava_med_closed_hit(p, a) for p, a in closed]
        hits_pre35 = [h for h in (llava_med_closed_hit_pre35(p, a) for p, a in closed) if h is not None]
        # run_eval.py lower-cases and normalises once, then calculate_* normalise again.
        pairs = [(llava_med_normalize(p.lower()), llava_med_normalize(a.lower())) for p, a in open_]
        f1s = [llava_med_f1(p, a) for p, a in pairs]
        out["llava_med/closed_accuracy"] = _mean(hits)
        out["llava_med/closed_accuracy_pre35"] = _mean(hits_pre35)
        out["llava_med/closed_counted_pre35"] = float(len(hits_pre35))
        out["llava_med/closed_accuracy_batch"] = _mean([llava_med_closed_hit_batch(p, a) for p, a in closed])
        out["llava_med/open_recall"] = _mean([f[2] for f in f1s])
        out["llava_med/open_precision"] = _mean([f[1] for f in f1s])
        out["llava_med/open_f1"] = _mean([f[0] for f in f1s])
        out["llava_med/open_exact_match"] = _mean([llava_med_exact_match(p, a) for p, a in pairs])
        if candidates:
            out["llava_med/open_accuracy"] = _mean([llava_med_open_accuracy(p, a, candidates) for p, a in pairs])
        out["llava_med/overall"] = _mean([float(h) for h in hits] + [f[2] for f in f1s])
    return out
