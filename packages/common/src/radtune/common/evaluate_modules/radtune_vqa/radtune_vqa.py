"""radtune medical VQA metrics as an `evaluate` module: the `strict` and `llava_med` families."""

import datasets
import evaluate

from radtune.common.metrics.vqa import FAMILIES, vqa_metrics

_DESCRIPTION = """Medical VQA scores per answer type (closed/open) and overall. `strict`: normalised exact match,
token precision/recall/F1 with clipped counts. `llava_med`: LLaVA-Med v1.0.0's run_eval.py protocol, quirks
included (see radtune.common.metrics.vqa)."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of model answers.
    references: list of reference answers.
    answer_types: list of "closed" / "open" (case-insensitive), one per item.
    families: optional subset of ("strict", "llava_med").
    candidates: optional LLaVA-Med candidate answer list (adds llava_med/open_accuracy).
Returns:
    a dict of floats named "<family>/<metric>" plus n_closed and n_open.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RadtuneVqa(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references, answer_types=None, families=FAMILIES, candidates=None):
        if answer_types is None:
            raise ValueError("radtune_vqa needs answer_types=[...] ('closed' or 'open' per item)")
        return vqa_metrics(predictions, references, answer_types, families=families, candidates=candidates)
