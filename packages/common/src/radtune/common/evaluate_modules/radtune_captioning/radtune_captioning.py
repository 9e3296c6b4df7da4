"""radtune captioning metrics as an `evaluate` module: BLEU-1..4, METEOR, ROUGE-L and CIDEr-D (pycocoevalcap)."""

import datasets
import evaluate

from radtune.common.metrics.captioning import caption_metrics

_DESCRIPTION = """Corpus-level BLEU-1..4, METEOR, ROUGE-L and CIDEr-D after pycocoevalcap's PTB tokenizer, equal to
calling pycocoevalcap's scorers directly. SPICE is not computed (it needs downloads). Without Java, METEOR is
left out and the other metrics use a fallback tokenizer (`tokenizer` in the output says which)."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of generated captions.
    references: list of lists of reference captions (one or more per prediction).
    tokenizer: "auto" (default), "ptb" or "fallback-regex".
    meteor: compute METEOR (default True; starting its JVM takes 10-30 s).
Returns:
    bleu_1, bleu_2, bleu_3, bleu_4, meteor, rouge_l, cider (floats), tokenizer ("ptb" or "fallback-regex"),
    unavailable (metric -> reason).
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RadtuneCaptioning(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": datasets.Sequence(datasets.Value("string")),
                }
            ),
        )

    def _compute(self, predictions, references, tokenizer="auto", meteor=True):
        result = caption_metrics(predictions, references, tokenizer=tokenizer, meteor=meteor)
        return {**result.metrics, "tokenizer": result.tokenizer, "unavailable": result.unavailable}
