"""Scores per subgroup of the evaluation items: answer type, question category, imaging modality, view.

A headline number can hide a model that only does well on the easy part of a split (closed questions, PA
views, CT). `subgroup_metrics` splits result rows by each field the rows carry and reports, per group, the number
of scored items, the mean of a per-item score and its bootstrap interval:

    {"view": {"PA": {"n": 40, "metric": 0.80, "ci": [0.68, 0.90]}, "AP": {...}}, "category": {...}}

A field is left out when no row has a value for it; a row without a value is left out of that field's groups
(so the groups of a field need not add up to every item).

Where the values come from (`group_value`):
- `answer_type`: `closed` / `open` (`yes/no` counts as closed).
- `category`: the `category` column radtune's QA generators write (`presence`, `location`, `severity`,
  `device`, `comparison`, `other`), lower-cased.
- `modality`: a `modality` column (SLAKE-style `CT`, `MRI`, `X-Ray`), else ROCOv2's modality concepts among the
  row's `concepts` (UMLS CUIs) or `labels` (their canonical names); an image with several modality concepts is
  `multiple`.
- `view`: a `view` column: `PA`, `AP`, `lateral` (MIMIC-CXR's `LATERAL`/`LL`, CheXpert's `Lateral`); other
  values are kept, lower-cased.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from radtune.common.metrics.bootstrap import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, mean_ci

SUBGROUP_FIELDS = ("answer_type", "category", "modality", "view")

# ROCOv2's imaging-modality concepts (UMLS CUI → short name), matched by CUI or by canonical name.
MODALITY_CONCEPTS = {
    "C0040405": "CT",  # X-Ray Computed Tomography
    "C1306645": "X-ray",  # Plain x-ray
    "C0024485": "MRI",  # Magnetic Resonance Imaging
    "C0041618": "ultrasound",  # Ultrasonography
    "C0002978": "angiography",  # Angiogram
    "C0032743": "PET",  # Positron-Emission Tomography
}
MODALITY_NAMES = {
    "x-ray computed tomography": "CT",
    "computed tomography": "CT",
    "ct": "CT",
    "plain x-ray": "X-ray",
    "x-ray": "X-ray",
    "xray": "X-ray",
    "radiograph": "X-ray",
    "magnetic resonance imaging": "MRI",
    "mri": "MRI",
    "mr": "MRI",
    "ultrasonography": "ultrasound",
    "ultrasound": "ultrasound",
    "us": "ultrasound",
    "angiogram": "angiography",
    "angiography": "angiography",
    "positron-emission tomography": "PET",
    "pet": "PET",
}
VIEWS = {"pa": "PA", "ap": "AP", "lateral": "lateral", "lat": "lateral", "ll": "lateral", "rl": "lateral"}

# Per-item VQA scores reported by subgroup, and the fields each is split by: a closed-only or open-only metric
# split by answer type would only repeat the overall number.
VQA_SUBGROUP_METRICS = {
    "strict/accuracy": SUBGROUP_FIELDS,
    "strict/closed_accuracy": tuple(f for f in SUBGROUP_FIELDS if f != "answer_type"),
    "strict/open_recall": tuple(f for f in SUBGROUP_FIELDS if f != "answer_type"),
}


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, float) and math.isnan(value):
        return None
    text = str(value).strip()
    return text or None


def modality_of(row: Mapping[str, Any]) -> str | None:
    """The imaging modality of a row: its `modality` column, else ROCOv2 modality concepts (see module docstring)."""
    value = _text(row.get("modality"))
    if value is not None:
        return MODALITY_NAMES.get(value.lower(), value)
    found = set()
    for key in ("concepts", "labels"):
        entries = row.get(key)
        if not isinstance(entries, list | tuple):
            continue  # CheXpert-style label dicts say nothing about the modality
        for entry in entries:
            if isinstance(entry, str):
                name = MODALITY_CONCEPTS.get(entry.strip().upper()) or MODALITY_NAMES.get(entry.strip().lower())
                if name:
                    found.add(name)
    if not found:
        return None
    return found.pop() if len(found) == 1 else "multiple"


def subgroup_fields(row: Mapping[str, Any]) -> dict[str, str]:
    """The `category`, `view` and `modality` of a dataset row that it has, as text for `evaluation_results.csv`
    (the modality read as `modality_of` does, so ROCOv2 rows get theirs from their concepts)."""
    fields = {}
    for name in ("category", "view"):
        value = row.get(name)
        if isinstance(value, str) and value.strip():
            fields[name] = value.strip()
    modality = modality_of(row)
    if modality is not None:
        fields["modality"] = modality
    return fields


def group_value(row: Mapping[str, Any], field: str) -> str | None:
    """The group of `row` for `field` (one of `SUBGROUP_FIELDS`), or `None` when the row does not say."""
    if field == "modality":
        return modality_of(row)
    value = _text(row.get(field))
    if value is None:
        return None
    if field == "answer_type":
        from radtune.common.metrics.vqa import normalize_answer_type

        try:
            return normalize_answer_type(value)
        except ValueError:
            return value.lower()
    if field == "view":
        return VIEWS.get(value.lower(), value.lower())
    if field == "category":
        return value.lower()
    raise ValueError(f"unknown subgroup field {field!r}; choose from {SUBGROUP_FIELDS}")


def subgroup_metrics(
    rows: Iterable[Mapping[str, Any]],
    scorer: Callable[[Mapping[str, Any]], float | None],
    fields: Sequence[str] = SUBGROUP_FIELDS,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Mean of a per-item score per subgroup, with its bootstrap interval.

    Args:
        rows (`Iterable[Mapping]`): evaluation result rows (`evaluation_results.csv` rows, or dataset rows with
            the prediction added).
        scorer (`Callable[[Mapping], float | None]`): the score of one row; `None` leaves the row out (e.g. an open
            question for a closed-question accuracy).
        fields (`Sequence[str]`, *optional*, defaults to `SUBGROUP_FIELDS`): the fields to split by.
        n_resamples, confidence, seed: of the bootstrap (`radtune.common.metrics.bootstrap.mean_ci`).

    Returns:
        `{field: {value: {"n": int, "metric": float, "ci": [low, high]}}}`, values sorted by name; a field no
        scored row has a value for is left out. The interval of a one-item group is `[nan, nan]`.
    """
    scored = []
    for row in rows:
        score = scorer(row)
        if score is not None:
            scored.append((row, float(score)))
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for field in fields:
        groups: dict[str, list[float]] = {}
        for row, score in scored:
            value = group_value(row, field)
            if value is not None:
                groups.setdefault(value, []).append(score)
        if not groups:
            continue
        out[field] = {}
        for value in sorted(groups):
            scores = groups[value]
            low, high = mean_ci(scores, n_resamples=n_resamples, confidence=confidence, seed=seed)
            out[field][value] = {"n": len(scores), "metric": sum(scores) / len(scores), "ci": [low, high]}
    return out


def vqa_subgroups(
    rows: Sequence[Mapping[str, Any]],
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """`subgroup_metrics` of the strict VQA scores (`VQA_SUBGROUP_METRICS`) of rows with `prediction`, `answer`
    and `answer_type`: `{metric: {field: {value: {n, metric, ci}}}}`, metrics without any group left out."""
    from radtune.common.metrics.vqa import vqa_item_scores

    scored = [
        {**row, "_scores": vqa_item_scores(row["prediction"], str(row["answer"]), row["answer_type"])} for row in rows
    ]
    out = {}
    for metric, fields in VQA_SUBGROUP_METRICS.items():
        result = subgroup_metrics(scored, lambda row, m=metric: row["_scores"].get(m), fields,
                                  n_resamples=n_resamples, confidence=confidence, seed=seed)  # fmt: skip
        if result:
            out[metric] = result
    return out


def caption_subgroups(
    rows: Sequence[Mapping[str, Any]],
    tokenizer: str = "auto",
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """`subgroup_metrics` of per-item CIDEr-D and ROUGE-L (`caption_item_scores`) of rows with `prediction` and
    `references`, by modality, view and category: `{metric: {field: {value: {n, metric, ci}}}}`.

    An item's CIDEr-D uses document frequencies from the references of all the rows (the pooled corpus), so a
    group's value is its items' share of the corpus score, not CIDEr-D recomputed on the group alone. Rows with
    none of the fields give `{}` without scoring anything.
    """
    fields = ("category", "modality", "view")
    if not any(group_value(row, field) is not None for row in rows for field in fields):
        return {}
    from radtune.common.metrics.captioning import caption_item_scores

    scores, _ = caption_item_scores([r["prediction"] for r in rows], [r["references"] for r in rows],
                                    tokenizer=tokenizer)  # fmt: skip
    out = {}
    for metric in ("cider", "rouge_l"):
        scored = [{**row, "_score": value} for row, value in zip(rows, scores[metric], strict=True)]
        result = subgroup_metrics(scored, lambda row: row["_score"], fields, n_resamples=n_resamples,
                                  confidence=confidence, seed=seed)  # fmt: skip
        if result:
            out[metric] = result
    return out


def _number(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.4f}"


def subgroup_table(subgroups: Mapping[str, Mapping[str, Mapping[str, Mapping[str, Any]]]]) -> str:
    """A compact text table of `{metric: subgroup_metrics(...)}`: one block per metric, one line per group."""
    lines = []
    for metric, fields in subgroups.items():
        labels = [f"{field}={value}" for field, groups in fields.items() for value in groups]
        if not labels:
            continue
        width = max(len(label) for label in labels)
        lines.append(f"{metric} by subgroup")
        for field, groups in fields.items():
            for value, group in groups.items():
                low, high = group["ci"]
                label = f"{field}={value}"
                lines.append(f"  {label.ljust(width)}  n={group['n']:<5d} {_number(group['metric'])} "
                             f"[{_number(low)}, {_number(high)}]")  # fmt: skip
    return "\n".join(lines)
