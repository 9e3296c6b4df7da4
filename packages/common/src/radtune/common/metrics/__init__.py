"""radtune's evaluation metrics and the one writer of evaluation outputs.

Modules (import what you need; heavy dependencies load inside the functions):
- `captioning`: BLEU-1..4, METEOR, ROUGE-L, CIDEr-D exactly as pycocoevalcap computes them.
- `vqa`: the `strict` and `llava_med` VQA families.
- `classification`: multi-label ROC AUC and F1 with undefined classes reported as such.
- `retrieval`: image↔text Recall@K and median rank.
- `clinical`: label-based F1 of generated reports (radtune's CheXpert-style labeler).
- `io`: `metrics.json` and `evaluation_results.csv` writers and readers.
- `bootstrap`: bootstrap intervals (one run, and paired differences of two runs).
- `subgroups`: scores per answer type, question category, modality and view.
- `compare`: B − A between two evaluation runs on the same items, with a paired bootstrap interval.
"""

from radtune.common.metrics.captioning import CAPTION_METRICS, CaptionMetrics, caption_metrics
from radtune.common.metrics.classification import ClassificationMetrics, multilabel_metrics
from radtune.common.metrics.clinical import clinical_label_metrics
from radtune.common.metrics.io import (
    EvaluationFileError,
    read_metrics,
    read_results,
    write_metrics,
    write_results,
)
from radtune.common.metrics.retrieval import retrieval_metrics
from radtune.common.metrics.vqa import vqa_metrics

__all__ = [
    "CAPTION_METRICS",
    "CaptionMetrics",
    "ClassificationMetrics",
    "EvaluationFileError",
    "caption_metrics",
    "clinical_label_metrics",
    "multilabel_metrics",
    "read_metrics",
    "read_results",
    "retrieval_metrics",
    "vqa_metrics",
    "write_metrics",
    "write_results",
]
