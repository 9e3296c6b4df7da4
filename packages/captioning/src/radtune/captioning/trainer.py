"""`Seq2SeqTrainer` that generates from the right inputs, with caption (or VQA) metrics of generated texts at each
evaluation during training, streamed batch by batch (`radtune.common.generation_eval`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import Seq2SeqTrainer

from radtune.common.generation_eval import GenerationEval, GenerationEvalMixin


class GenerationTrainer(GenerationEvalMixin, Seq2SeqTrainer):
    """A `Seq2SeqTrainer` whose evaluation generates from `generation_input_names` only.

    `Seq2SeqTrainer` passes every batch key to `generate`. BLIP reads the caption as `input_ids`, so generation
    would be conditioned on the reference caption it is scored against. Here only the named inputs reach
    `generate`: `("pixel_values",)` for captioning, `("pixel_values", "input_ids", "attention_mask")` for VQA
    (the question), while the loss is still computed on the whole batch.

    Metrics of generated texts during training come from `generation_eval` (see `captioning_generation_eval`),
    not from `compute_metrics`, which would gather every generated id of the eval split before scoring.

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


def captioning_generation_eval(
    dataset,
    tokenizer,
    image_processor,
    arch: str,
    text_columns: Sequence[str] = ("caption",),
    image_field: str = "image",
    vqa: bool = False,
    generation_kwargs: dict | None = None,
    max_samples: int = 64,
    batch_size: int = 8,
) -> GenerationEval:
    """The `GenerationEval` of a captioning (or BLIP VQA) eval split, for `GenerationTrainer(generation_eval=...)`.

    Captions are scored with BLEU-1..4, ROUGE-L and CIDEr-D (no METEOR: it would start a JVM at every evaluation;
    the final test evaluation computes it), answers with radtune's VQA metrics (`strict_closed_accuracy`, …). Each
    batch goes through `Captioner.generate`, as in the final evaluation.

    Args:
        dataset (`datasets.Dataset`): eval rows with the image and the reference text (VQA: `question`, `answer`,
            `answer_type`).
        text_columns (`Sequence[str]`, *optional*): the columns that make the reference caption.
        vqa (`bool`, *optional*, defaults to `False`): a `BlipForQuestionAnswering` answering `question`.
        generation_kwargs (`dict`, *optional*): `max_new_tokens`, `num_beams`.
        max_samples (`int`, *optional*, defaults to `64`): rows generated per evaluation.
        batch_size (`int`, *optional*, defaults to `8`): images per `generate` call.
    """
    from radtune.captioning.modeling import Captioner
    from radtune.common.collators import row_image, row_text
    from radtune.common.metrics.captioning import caption_metrics
    from radtune.common.metrics.vqa import vqa_metrics

    def generate(model, rows) -> list[tuple[str, ...]]:
        rows = list(rows)
        captioner = Captioner(model=model, tokenizer=tokenizer, image_processor=image_processor, arch=arch, vqa=vqa,
                              generation_kwargs=dict(generation_kwargs or {}))  # fmt: skip
        questions = [str(row["question"]) for row in rows] if vqa else None
        predictions = captioner.generate([row_image(row, image_field) for row in rows], questions=questions)
        if vqa:
            return [(prediction, str(row["answer"]), str(row["answer_type"]))
                    for prediction, row in zip(predictions, rows, strict=True)]  # fmt: skip
        return [(prediction, row_text(row, text_columns)) for prediction, row in zip(predictions, rows, strict=True)]

    def score(records) -> dict[str, float]:
        if vqa:
            return vqa_metrics([r[0] for r in records], [r[1] for r in records], [r[2] for r in records])
        return dict(caption_metrics([r[0] for r in records], [[r[1]] for r in records], meteor=False).metrics)

    return GenerationEval(dataset, generate, score, max_samples=max_samples, batch_size=batch_size)


def save_run(trainer, train_result, image_processor, generation_kwargs: dict, title: str):
    """What every captioning run leaves in `output_dir`: the model or adapter with its tokenizer, image processor
    and generation settings, the train metrics and state, and the loss curve. Returns the unwrapped model."""
    from radtune.common.plots import plot_loss_curve

    output_dir = trainer.args.output_dir
    trainer.save_model(output_dir)
    model = trainer.accelerator.unwrap_model(trainer.model)
    if trainer.is_world_process_zero():
        image_processor.save_pretrained(output_dir)
        model.generation_config.update(**generation_kwargs)
        model.generation_config.save_pretrained(output_dir)
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_metrics("train", train_result.metrics)
    trainer.save_state()
    if trainer.is_world_process_zero():
        plot_loss_curve(trainer.state.log_history, f"{output_dir}/loss_curve.png", title=title)
    return model


def publish(output_dir, base_model: str, hub_repo_id: str | None, private: bool = True) -> None:
    """Write the model card into `output_dir` and, with `hub_repo_id`, push the folder there."""
    from pathlib import Path

    from radtune.common.model_card import build_model_card

    output_dir = Path(output_dir)
    repo_id = hub_repo_id or output_dir.resolve().name
    build_model_card(output_dir, repo_id, base_model=base_model).save(output_dir / "README.md")
    if hub_repo_id:
        from radtune.common.hub import push_folder

        result = push_folder(output_dir, hub_repo_id, private=private, base_model=base_model)
        print(f"pushed to {result.repo_url}")
