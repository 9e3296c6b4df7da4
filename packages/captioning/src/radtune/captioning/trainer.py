"""`Seq2SeqTrainer` that generates from the right inputs, with caption (or BLIP VQA) metrics of generated texts at
each evaluation during training, streamed batch by batch (`radtune.common.generation_eval`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import Seq2SeqTrainer

from radtune.common.checkpoints import CheckpointLoadingMixin
from radtune.common.generation_eval import GenerationEval, GenerationEvalMixin


class GenerationTrainer(CheckpointLoadingMixin, GenerationEvalMixin, Seq2SeqTrainer):
    """A `Seq2SeqTrainer` whose evaluation generates from `generation_input_names` only.

    `Seq2SeqTrainer` passes every batch key to `generate`. BLIP reads the caption as `input_ids`, so generation
    would be conditioned on the reference caption it is scored against. Here only the named inputs reach
    `generate`: `("pixel_values",)` for captioning, `("pixel_values", "input_ids", "attention_mask")` for VQA
    (the question), while the loss is still computed on the whole batch.

    Metrics of generated texts during training come from `generation_eval` (see `captioning_generation_eval` and
    `blip_vqa_generation_eval`), not from `compute_metrics`, which would gather every generated id of the eval split
    before scoring.

    Args:
        generation_input_names (`Sequence[str]`): batch keys passed to `generate`.
        generation_kwargs (`dict`, *optional*): defaults for `generate` (`max_new_tokens`, `num_beams`), which
            the model's own generation config may not carry (BLIP's text decoder has its own).
        generation_eval (`GenerationEval`, *optional*): what to generate and score at each evaluation.
        All other arguments go to `Seq2SeqTrainer`.
    """

    def __init__(self, *args, generation_input_names: Sequence[str] = ("pixel_values",),
                 generation_kwargs: dict | None = None, **kwargs):  # fmt: skip
        super().__init__(*args, **kwargs)
        self.generation_input_names = tuple(generation_input_names)
        self.generation_kwargs = dict(generation_kwargs or {})

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None, **gen_kwargs):
        if not self.args.predict_with_generate or prediction_loss_only:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)
        inputs = self._prepare_inputs(inputs)
        gen_kwargs = {**self.generation_kwargs, **gen_kwargs}
        generation_inputs = {name: inputs[name] for name in self.generation_input_names}
        with torch.no_grad():
            generated = self.accelerator.unwrap_model(model).generate(**generation_inputs, **gen_kwargs)
            labels = inputs.get("labels")
            loss = None
            if labels is not None:
                with self.compute_loss_context_manager():
                    loss = self.compute_loss(model, inputs).detach().mean()
        return loss, generated, labels


def generation_trainer(script_args, training_args, model, collator, splits, *, input_names: Sequence[str],
                       generation_eval_of) -> GenerationTrainer:  # fmt: skip
    """The `GenerationTrainer` of a captioning or BLIP VQA run: generation settings from `script_args`
    (`max_new_tokens`, `num_beams`), and generation metrics at each evaluation when there is an eval split.

    Args:
        script_args: the run's `GenerationRunArguments` (with `num_beams`).
        collator: the batch collator; its `tokenizer` is the trainer's processing class.
        splits (`radtune.common.run.RunSplits`): the train and eval splits.
        input_names (`Sequence[str]`): the batch keys `generate` receives.
        generation_eval_of (`Callable`): `captioning_generation_eval` or `blip_vqa_generation_eval` with the model's
            tokenizer and image processor bound; called with the eval split and the generation settings.
    """
    generation_kwargs = {"max_new_tokens": script_args.max_new_tokens, "num_beams": script_args.num_beams}
    generation_eval = None
    if splits.eval is not None and script_args.generation_eval_samples:
        generation_eval = generation_eval_of(
            splits.eval, image_column=script_args.image_column, generation_kwargs=generation_kwargs,
            max_samples=script_args.generation_eval_samples, batch_size=training_args.per_device_eval_batch_size,
        )  # fmt: skip
    return GenerationTrainer(
        model=model,
        args=training_args,
        data_collator=collator,
        train_dataset=splits.train,
        eval_dataset=splits.eval,
        processing_class=collator.tokenizer,
        generation_input_names=input_names,
        generation_kwargs=generation_kwargs,
        generation_eval=generation_eval,
    )


def captioning_generation_eval(
    dataset,
    tokenizer,
    image_processor,
    architecture: str,
    text_columns: Sequence[str] = ("caption",),
    image_column: str = "image",
    generation_kwargs: dict | None = None,
    max_samples: int = 64,
    batch_size: int = 8,
) -> GenerationEval:
    """The `GenerationEval` of a captioning eval split, for `GenerationTrainer(generation_eval=...)`.

    Captions are scored with BLEU-1..4, ROUGE-L and CIDEr-D (no METEOR: it would start a JVM at every evaluation;
    the final evaluation computes it). Each batch goes through `Captioner.generate`, as in the final evaluation.

    Args:
        dataset (`datasets.Dataset`): eval rows with the image and the reference text.
        architecture (`str`): `vit-gpt2` or `blip`.
        text_columns (`Sequence[str]`, *optional*): the columns that make the reference caption.
        image_column (`str`, *optional*, defaults to `"image"`): the image column (else the first of `images`).
        generation_kwargs (`dict`, *optional*): `max_new_tokens`, `num_beams`.
        max_samples (`int`, *optional*, defaults to `64`): rows generated per evaluation.
        batch_size (`int`, *optional*, defaults to `8`): images per `generate` call.
    """
    from radtune.captioning.collators import row_image, row_text
    from radtune.captioning.modeling import Captioner
    from radtune.common.metrics.captioning import caption_metrics

    def generate(model, rows) -> list[tuple[str, str]]:
        rows = list(rows)
        captioner = Captioner(model=model, tokenizer=tokenizer, image_processor=image_processor,
                              architecture=architecture, generation_kwargs=dict(generation_kwargs or {}))  # fmt: skip
        predictions = captioner.generate([row_image(row, image_column) for row in rows])
        return [(prediction, row_text(row, text_columns)) for prediction, row in zip(predictions, rows, strict=True)]

    def score(records) -> dict[str, float]:
        return dict(caption_metrics([r[0] for r in records], [[r[1]] for r in records], meteor=False).metrics)

    return GenerationEval(dataset, generate, score, max_samples=max_samples, batch_size=batch_size)


def blip_vqa_generation_eval(
    dataset,
    tokenizer,
    image_processor,
    image_column: str = "image",
    generation_kwargs: dict | None = None,
    max_samples: int = 64,
    batch_size: int = 8,
) -> GenerationEval:
    """The `GenerationEval` of a BLIP VQA eval split (rows with `question`, `answer`, `answer_type`): answers scored
    with radtune's VQA metrics (`strict/closed_accuracy`, …, logged as `eval_strict_closed_accuracy`, …).

    Args: as `captioning_generation_eval`, without the text columns.
    """
    from radtune.captioning.collators import row_image
    from radtune.captioning.modeling import Captioner
    from radtune.common.metrics.vqa import vqa_metrics

    def generate(model, rows) -> list[tuple[str, str, str]]:
        rows = list(rows)
        captioner = Captioner(model=model, tokenizer=tokenizer, image_processor=image_processor, architecture="blip",
                              vqa=True, generation_kwargs=dict(generation_kwargs or {}))  # fmt: skip
        predictions = captioner.generate([row_image(row, image_column) for row in rows],
                                         questions=[str(row["question"]) for row in rows])  # fmt: skip
        return [(prediction, str(row["answer"]), str(row["answer_type"]))
                for prediction, row in zip(predictions, rows, strict=True)]  # fmt: skip

    def score(records) -> dict[str, float]:
        return vqa_metrics([r[0] for r in records], [r[1] for r in records], [r[2] for r in records])

    return GenerationEval(dataset, generate, score, max_samples=max_samples, batch_size=batch_size)


def finish_captioning_run(trainer, train_result, *, info: dict, title: str, vqa: bool = False):
    """`radtune.common.run.finish_run` for a captioning or BLIP VQA run: the model or adapter is saved with its
    tokenizer, image processor (the collator's) and generation settings (`trainer.generation_kwargs`, so inference
    decodes as the evaluation did), beside the metrics, state, loss curve and `run_info.json`.

    Returns:
        `Captioner`: the trained model, in eval mode, for the final evaluation.
    """
    from radtune.captioning.modeling import Captioner
    from radtune.common.run import finish_run

    model = trainer.accelerator.unwrap_model(trainer.model)
    model.generation_config.update(**trainer.generation_kwargs)
    image_processor = trainer.data_collator.image_processor
    finish_run(trainer, train_result, info=info, processors=[image_processor, model.generation_config], title=title)
    return Captioner(model=model.eval(), tokenizer=trainer.processing_class, image_processor=image_processor,
                     architecture=info["architecture"], vqa=vqa, generation_kwargs=dict(trainer.generation_kwargs))  # fmt: skip
