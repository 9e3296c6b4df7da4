"""Clinical label metrics for generated reports, in the spirit of CheXbert-F1.

Both the generated and the reference reports are labelled with radtune's rule-based CheXpert-style labeler
(`radtune.common.labeler`); an observation counts as predicted/present when its label is positive (1), and
uncertain, negative and blank all count as "not positive" (CheXbert-F1's usual binarisation). Reported:
per-observation F1 (`clinical_f1/<Observation>`, NaN when neither side has a positive), macro F1 over the
observations where it is defined, micro F1 / precision / recall pooled over all 14, and the macro F1 over the
five CheXpert competition observations (`clinical_f1/macro_5`). CheXbert itself needs a downloaded model;
numbers from this labeler are comparable with each other, not with papers' CheXbert-F1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from radtune.common.labeler import OBSERVATIONS, POSITIVE, label_reports

COMPETITION_5 = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else math.nan
    recall = tp / (tp + fn) if tp + fn else math.nan
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else math.nan
    return precision, recall, f1


def clinical_label_metrics(generated: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Label-based F1 of generated reports against reference reports.

    Args:
        generated (`Sequence[str]`): generated reports.
        references (`Sequence[str]`): the reference report of each.

    Returns:
        `dict[str, float]` with `clinical_f1/<Observation>` for the 14 observations, `clinical_f1/macro`,
        `clinical_f1/macro_5`, `clinical_f1/micro`, `clinical_precision/micro`, `clinical_recall/micro`.
    """
    if len(generated) != len(references):
        raise ValueError(f"got {len(generated)} generated reports but {len(references)} references")
    if not generated:
        raise ValueError("no reports to score")
    predicted, truth = label_reports(generated), label_reports(references)
    out: dict[str, float] = {}
    totals = [0, 0, 0]
    for name in OBSERVATIONS:
        tp = fp = fn = 0
        for p, t in zip(predicted, truth, strict=True):
            is_p, is_t = p[name] == POSITIVE, t[name] == POSITIVE
            tp += is_p and is_t
            fp += is_p and not is_t
            fn += is_t and not is_p
        out[f"clinical_f1/{name}"] = _prf(tp, fp, fn)[2]
        totals = [totals[0] + tp, totals[1] + fp, totals[2] + fn]
    defined = [out[f"clinical_f1/{n}"] for n in OBSERVATIONS if not math.isnan(out[f"clinical_f1/{n}"])]
    defined_5 = [out[f"clinical_f1/{n}"] for n in COMPETITION_5 if not math.isnan(out[f"clinical_f1/{n}"])]
    out["clinical_f1/macro"] = sum(defined) / len(defined) if defined else math.nan
    out["clinical_f1/macro_5"] = sum(defined_5) / len(defined_5) if defined_5 else math.nan
    precision, recall, f1 = _prf(*totals)
    out["clinical_f1/micro"], out["clinical_precision/micro"], out["clinical_recall/micro"] = f1, precision, recall
    return out
