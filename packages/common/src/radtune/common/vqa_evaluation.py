"""VQA scored in one place: LLaVA, BLIP VQA and `radtune eval vqa` all turn their answers into metrics here.

The task packages generate (each with its own model); this module reads the items of a QA split
(`vqa_items`), scores the answers with both metric families (`radtune.common.metrics.vqa`), adds bootstrap
intervals, the majority-answer baseline, the image-ablation verdict and per-subgroup scores, and writes
`evaluation_results.csv` + `metrics.json` through common's one writer.

    items = vqa_items(dataset["test"])
    answers = my_model_answers([item.image for item in items], [item.question for item in items])
    report = score_vqa(items, answers, train_items=vqa_items(dataset["train"]))
    report.write("runs/x/eval-vqa-test", model="runs/x", dataset="runs/qa", split="test")
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BASELINE_PREFIX = "majority_baseline/"
ABLATION_PREFIX = "ablation/"


@dataclass
class VQAItem:
    """One question about one image, with its reference answer and the fields per-subgroup scores split by."""

    id: str
    image: object
    question: str
    answer: str
    answer_type: str
    category: str | None = None
    view: str | None = None
    modality: str | None = None
    image_id: str | None = None


def _text_of(content) -> str:
    if isinstance(content, str):
        return content
    return " ".join(part.get("text") or "" for part in content if part.get("type") == "text").strip()


def _optional_text(value) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def vqa_items(dataset, image_column: str = "image") -> list[VQAItem]:
    """The (image, question, answer) items of a QA split.

    Rows with `question`/`answer` columns give one item each; rows that only carry `messages` (TRL's format, as
    `radtune data qa` exports) give one item per user/assistant turn pair (multi-turn conversations are evaluated
    turn by turn, each with the image). An item's id is the row's `qa_id` when it has one (the export's `id` is
    the image's, shared by all its questions; it becomes `image_id`), and `category`, `view` and `modality` are kept
    where the row has them.

    Args:
        dataset (`datasets.Dataset`): the split.
        image_column (`str`, *optional*, defaults to `"image"`): the image column, else the first of `images`.

    Raises:
        `ValueError`: a row without an image, or with neither question/answer nor alternating messages.
    """
    items: list[VQAItem] = []
    has_qa = {"question", "answer"} <= set(dataset.column_names)
    for index, row in enumerate(dataset):
        image_id = None if row.get("id") is None else str(row["id"])
        row_id = str(row["qa_id"]) if row.get("qa_id") else (image_id or str(index))
        images = row.get("images") or ([row[image_column]] if row.get(image_column) is not None else [])
        if not images:
            raise ValueError(f"row {row_id} has no image (no {image_column!r} column and no 'images')")
        answer_type = str(row.get("answer_type") or "open").lower()
        view, modality = _optional_text(row.get("view")), _optional_text(row.get("modality"))
        if has_qa and isinstance(row["question"], str):
            items.append(VQAItem(row_id, images[0], row["question"], str(row["answer"]), answer_type,
                                 _optional_text(row.get("category")), view, modality, image_id))  # fmt: skip
            continue
        messages = row.get("messages")
        if not messages:
            raise ValueError(f"row {row_id} has neither question/answer columns nor messages")
        answer_types = row.get("answer_type") if isinstance(row.get("answer_type"), list) else None
        categories = row.get("category") if isinstance(row.get("category"), list) else None
        turn = 0
        for user, assistant in zip(messages[::2], messages[1::2], strict=False):  # a last unanswered turn is left out
            if user["role"] != "user" or assistant["role"] != "assistant":
                raise ValueError(f"row {row_id}: messages must alternate user/assistant")
            kind = str(answer_types[turn]).lower() if answer_types else answer_type
            category = categories[turn] if categories and turn < len(categories) else row.get("category")
            items.append(VQAItem(f"{row_id}-{turn}", images[0], _text_of(user["content"]),
                                 _text_of(assistant["content"]), kind, _optional_text(category), view, modality,
                                 image_id))  # fmt: skip
            turn += 1
    return items


def _most_common(counts: Counter) -> str:
    # Ties go to the alphabetically first answer, so the baseline does not depend on row order.
    return min(counts.items(), key=lambda item: (-item[1], item[0]))[0]


def majority_answers(train_items: Sequence[VQAItem], items: Sequence[VQAItem]) -> list[str]:
    """The trivial baseline: for each item, the most common training answer to the same question.

    A question never seen in training gets the most common training answer of its answer type (closed/open),
    and failing that, of all training items. This is the bar a model must clear to show it uses the image.
    """
    if not train_items:
        raise ValueError("the majority-answer baseline needs training items")
    by_question: dict[str, Counter] = defaultdict(Counter)
    by_type: dict[str, Counter] = defaultdict(Counter)
    overall: Counter = Counter()
    for item in train_items:
        by_question[item.question.strip().lower()][item.answer] += 1
        by_type[item.answer_type][item.answer] += 1
        overall[item.answer] += 1
    return [
        _most_common(by_question.get(item.question.strip().lower()) or by_type.get(item.answer_type) or overall)
        for item in items
    ]


def item_scores(predictions: Sequence[str], items: Sequence[VQAItem]) -> dict[str, list[float]]:
    """Per-item scores whose means are the headline VQA metrics, for bootstrap intervals.

    Keys: `radtune.common.metrics.vqa.ITEM_METRICS`; the mean of each list equals `vqa_metrics`' value of the same
    name (an item a metric does not count, e.g. an open item for closed accuracy, is left out of its list).
    """
    from radtune.common.metrics.vqa import ITEM_METRICS, vqa_item_scores

    scores: dict[str, list[float]] = {name: [] for name in ITEM_METRICS}
    for prediction, item in zip(predictions, items, strict=True):
        for name, value in vqa_item_scores(prediction, item.answer, item.answer_type).items():
            scores[name].append(value)
    return scores


def result_rows(items: Sequence[VQAItem], predictions: Sequence[str]) -> list[dict]:
    """`evaluation_results.csv` rows: the answer with its question, reference and the item's subgroup fields."""
    rows = []
    for item, prediction in zip(items, predictions, strict=True):
        row = {"id": item.id, "prediction": prediction, "references": [item.answer], "question": item.question,
               "answer": item.answer, "answer_type": item.answer_type}  # fmt: skip
        for name in ("category", "image_id", "view", "modality"):
            value = getattr(item, name)
            if value is not None and not (name == "image_id" and value == item.id):
                row[name] = value
        rows.append(row)
    return rows


def headline_metric(metrics: Mapping[str, Any]) -> str:
    """The VQA metric a report leads with: strict closed accuracy, or open recall when there are no closed items."""
    return "strict/closed_accuracy" if metrics.get("n_closed") else "strict/open_recall"


@dataclass
class VQAReport:
    """What `score_vqa` found: the metrics, their intervals, per-subgroup scores, the result rows and meta facts."""

    metrics: dict[str, Any]
    ci: dict[str, list[float]]
    subgroups: dict
    rows: list[dict]
    meta: dict = field(default_factory=dict)

    def write(self, out_dir: str | Path, **meta) -> dict:
        """Write `evaluation_results.csv` and `metrics.json` into `out_dir` (created); returns what
        `radtune.common.metrics.io.read_metrics` reads back. `meta`: `model`, `dataset`, `split`, `seed`, others."""
        from radtune.common.metrics.io import META_KEYS, read_metrics, write_metrics, write_results

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_results(out_dir / "evaluation_results.csv", self.rows)
        extra = {**self.meta, **{key: value for key, value in meta.items() if key not in META_KEYS}}
        known = {key: meta.get(key) for key in ("model", "dataset", "split", "seed")}
        path = write_metrics(out_dir / "metrics.json", self.metrics, task="vqa", n=len(self.rows), ci=self.ci,
                             subgroups=self.subgroups, extra_meta=extra or None, **known)  # fmt: skip
        return read_metrics(path)


def score_vqa(
    items: Sequence[VQAItem],
    predictions: Sequence[str],
    *,
    train_items: Sequence[VQAItem] | None = None,
    ablated: Mapping[str, Sequence[str]] | None = None,
    candidates: Sequence[str] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
) -> VQAReport:
    """Score answers to VQA items: both metric families, intervals, baseline, ablation verdict, subgroups.

    Args:
        items (`Sequence[VQAItem]`): the questions with their reference answers (`vqa_items`).
        predictions (`Sequence[str]`): one answer per item.
        train_items (`Sequence[VQAItem]`, *optional*): the training split's items; when given, the
            majority-answer baseline is scored under `majority_baseline/…`.
        ablated (`Mapping[str, Sequence[str]]`, *optional*): answers given with each ablated image
            (`{"blank": [...], "noise": [...]}`); their metrics go under `ablation/<kind>/…`, `ablation/gap` is the
            headline metric minus its best ablated value, and `meta["image_ablation"]` says whether the model
            ignores the image (its real-image interval reaches a blank or noise score).
        candidates (`Sequence[str]`, *optional*): LLaVA-Med's candidate answer list (`llava_med/open_accuracy`).
        n_resamples (`int`, *optional*, defaults to `1000`): bootstrap resamples for the intervals.
        seed (`int`, *optional*, defaults to `0`): seed of the bootstrap.

    Raises:
        `ValueError`: no items, or not one prediction per item.
    """
    from radtune.common.metrics.bootstrap import image_ablation_verdict, mean_ci
    from radtune.common.metrics.subgroups import vqa_subgroups
    from radtune.common.metrics.vqa import vqa_metrics

    if not items:
        raise ValueError("the evaluation split holds no question/answer items")
    if len(predictions) != len(items):
        raise ValueError(f"{len(predictions)} predictions for {len(items)} questions")
    answers, answer_types = [item.answer for item in items], [item.answer_type for item in items]
    metrics = vqa_metrics(list(predictions), answers, answer_types, candidates=candidates)
    ci = {name: list(mean_ci(values, n_resamples=n_resamples, seed=seed))
          for name, values in item_scores(predictions, items).items() if len(values) >= 2}  # fmt: skip
    meta: dict = {}
    if ablated:
        primary = headline_metric(metrics)
        scores = {}
        for kind, texts in ablated.items():
            kind_metrics = vqa_metrics(list(texts), answers, answer_types)
            metrics.update({f"{ABLATION_PREFIX}{kind}/{name}": value
                            for name, value in kind_metrics.items() if "/" in name})  # fmt: skip
            scores[kind] = kind_metrics[primary]
        verdict = image_ablation_verdict(metrics[primary], ci.get(primary, (float("nan"),) * 2), scores)
        metrics[f"{ABLATION_PREFIX}gap"] = verdict["gap"]
        meta["image_ablation"] = {"metric": primary, **verdict}
    if train_items:
        baseline = vqa_metrics(majority_answers(train_items, items), answers, answer_types)
        metrics.update({BASELINE_PREFIX + name: value for name, value in baseline.items() if "/" in name})
    rows = result_rows(items, predictions)
    subgroups = vqa_subgroups(rows, n_resamples=n_resamples, seed=seed)
    return VQAReport(metrics=metrics, ci=ci, subgroups=subgroups, rows=rows, meta=meta)
