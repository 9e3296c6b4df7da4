"""radtune clinical label F1 as an `evaluate` module (rule-based CheXpert-style labeler on both sides)."""

import datasets
import evaluate

from radtune.common.metrics.clinical import clinical_label_metrics

_DESCRIPTION = """Per-observation, macro and micro F1 of positive CheXpert labels between generated and reference
reports, both labelled with radtune's rule-based labeler (not CheXbert)."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of generated reports.
    references: list of reference reports.
Returns:
    clinical_f1/<Observation>, clinical_f1/macro, clinical_f1/macro_5, clinical_f1/micro,
    clinical_precision/micro, clinical_recall/micro.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RadtuneClinical(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references):
        return clinical_label_metrics(predictions, references)
