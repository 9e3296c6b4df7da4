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


class ImageTokensKeptCollator:
    """Cut `collator`'s right-padded batches to `max_length` tokens after they are built whole, and refuse a cut that
    would fall on an image: the model needs as many image tokens as the vision tower gives features (LLaVA's,
    Gemma 3's soft tokens, Idefics3's tiles, LLaVA-NeXT's size-dependent count), so only text after the last image
    (and the token that closes it: `<end_of_image>`, `<fake_token_around_image>`, …) may go.

    Args:
        collator: the collator to wrap, already building whole rows (TRL's `DataCollatorForVisionLanguageModeling`
            with `max_length=None`).
        max_length (`int`): longest row kept.
        image_token_ids (`list[int]`): the ids of the image tokens (`processor.image_token_ids`).

    Raises:
        `ValueError` (when called): a row whose image tokens reach past `max_length - 2`.
    """

    def __init__(self, collator, max_length: int, image_token_ids: list[int]):
        self.collator = collator
        self.max_length = max_length
        self.image_token_ids = [index for index in image_token_ids if index is not None]

    def __call__(self, examples):
        import torch

        batch = self.collator(examples)
        input_ids = batch["input_ids"]
        shape = input_ids.shape
        if shape[1] <= self.max_length:
            return batch
        is_image = torch.isin(input_ids, torch.tensor(self.image_token_ids, device=input_ids.device))
        positions = torch.arange(shape[1], device=input_ids.device).expand(shape)
        needed = int(torch.where(is_image, positions, -2).max()) + 2  # the last image token and the one after it
        if needed > self.max_length:
            raise ValueError(f"--max_length {self.max_length} would cut the image tokens of a training example (its "
                             f"image ends at token {needed}); raise --max_length to at least {needed} or leave it "
                             "unset (None: no cut)")  # fmt: skip
        for name, value in list(batch.items()):
            if isinstance(value, torch.Tensor) and value.shape == shape:
                batch[name] = value[:, : self.max_length]
        return batch


class VQASFTTrainer(CheckpointLoadingMixin, GenerationEvalMixin, SFTTrainer):
    """`SFTTrainer` + `generation_eval=GenerationEval(...)` (see `vqa_generation_eval`); a full fine-tuning resumes
    its weights exactly (`CheckpointLoadingMixin`).

    TRL's collator is wrapped twice. With `max_length` set, rows are built whole and cut after their images
    (`ImageTokensKeptCollator`: a cut through image tokens is an error, not a silent mismatch). Then every row starts
    with one BOS, as the model's own sequences do: TRL's collator tokenizes the rendered conversation with
    `add_special_tokens=False`, so where the family's template leaves the BOS to the tokenizer (LLaVA-1.5,
    LLaVA-NeXT) `chat_template.BOSFirstCollator` puts it first; where the template writes it (Gemma 3, Idefics3)
    the rows already start with it and are left alone.
    """

    def __init__(self, *args, **kwargs):
        from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

        from radtune.llava_vqa.chat_template import BOSFirstCollator

        super().__init__(*args, **kwargs)
        processor = self.processing_class
        if isinstance(self.data_collator, DataCollatorForVisionLanguageModeling) and self.args.max_length is not None:
            self.data_collator.max_length = None
            self.data_collator = ImageTokensKeptCollator(self.data_collator, self.args.max_length,
                                                         processor.image_token_ids)  # fmt: skip
        bos_token_id = processor.tokenizer.bos_token_id
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
