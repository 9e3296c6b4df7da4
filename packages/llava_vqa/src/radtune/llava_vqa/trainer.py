"""TRL's `SFTTrainer` with VQA metrics of generated answers at each evaluation (`eval_strategy`/`eval_steps`).

At each evaluation the trainer answers the questions of the first `generation_eval_samples` rows of the eval split
in batches, as the final evaluation does (`radtune.llava_vqa.inference.generate_answers`), keeps only the answer
strings, and logs radtune's VQA metrics beside the eval loss: `eval_strict_closed_accuracy`,
`eval_strict_open_recall`, `eval_llava_med_closed_accuracy`, … (`/` in the metric names becomes `_`), usable as
`metric_for_best_model` (`strict_closed_accuracy`). No logits are gathered (see `radtune.common.generation_eval`).
"""

from __future__ import annotations

from trl import SFTTrainer

from radtune.common.checkpoints import CheckpointLoadingMixin
from radtune.common.generation_eval import GenerationEval, GenerationEvalMixin


class VQASFTTrainer(CheckpointLoadingMixin, GenerationEvalMixin, SFTTrainer):
    """`SFTTrainer` + `generation_eval=GenerationEval(...)` (see `vqa_generation_eval`); a full fine-tuning resumes
    its weights exactly (`CheckpointLoadingMixin`). Training batches start with one BOS, as LLaVA-1.5's own
    sequences do: TRL's collator tokenizes the rendered conversation with `add_special_tokens=False` and radtune's
    template leaves the BOS to the tokenizer, so the collator is wrapped in `chat_template.BOSFirstCollator`."""

    def __init__(self, *args, **kwargs):
        from radtune.llava_vqa.chat_template import BOSFirstCollator

        super().__init__(*args, **kwargs)
        bos_token_id = self.processing_class.tokenizer.bos_token_id
        if bos_token_id is not None and not isinstance(self.data_collator, BOSFirstCollator):
            self.data_collator = BOSFirstCollator(self.data_collator, bos_token_id)


def vqa_generation_eval(processor, dataset, max_samples: int = 64, batch_size: int = 8, max_new_tokens: int = 32,
                        image_column: str = "image") -> GenerationEval:  # fmt: skip
    """The `GenerationEval` of a QA split in radtune's export format: answers scored with `vqa_metrics`.

    Args:
        processor: the LLaVA processor (with the training chat template).
        dataset (`datasets.Dataset`): the eval split (rows of `messages` + `images`, or `question`/`answer`).
        max_samples (`int`, *optional*, defaults to `64`): rows per evaluation (a multi-turn row gives one question
            per turn).
        batch_size (`int`, *optional*, defaults to `8`): rows per generation call.
        max_new_tokens (`int`, *optional*, defaults to `32`): longest answer.
        image_column (`str`, *optional*, defaults to `"image"`): the image column, else the first of `images`.
    """
    from radtune.common.metrics.vqa import vqa_metrics
    from radtune.common.vqa_evaluation import vqa_items
    from radtune.llava_vqa.inference import generate_answers

    def generate(model, rows) -> list[list[tuple[str, str, str]]]:
        per_row = [vqa_items(rows.select([index]), image_column) for index in range(len(rows))]
        items = [item for row_items in per_row for item in row_items]
        answers = iter(generate_answers(model, processor, [item.image for item in items],
                                        [item.question for item in items], batch_size=max(len(items), 1),
                                        max_new_tokens=max_new_tokens, progress=False))  # fmt: skip
        return [[(next(answers), item.answer, item.answer_type) for item in row_items] for row_items in per_row]

    def score(records) -> dict[str, float]:
        triples = [triple for row in records for triple in row]
        return vqa_metrics([t[0] for t in triples], [t[1] for t in triples], [t[2] for t in triples])

    return GenerationEval(dataset, generate, score, max_samples=max_samples, batch_size=batch_size)
