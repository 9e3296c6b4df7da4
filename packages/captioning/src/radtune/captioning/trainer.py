"""`Seq2SeqTrainer` that generates from the right inputs, and the caption metrics as `compute_metrics`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import Seq2SeqTrainer

from radtune.common.collators import IGNORE_INDEX


class GenerationTrainer(Seq2SeqTrainer):
    """A `Seq2SeqTrainer` whose evaluation generates from `generation_input_names` only.

    `Seq2SeqTrainer` passes every batch key to `generate`. BLIP reads the caption as `input_ids`, so generation
    would be conditioned on the reference caption it is scored against. Here only the named inputs reach
    `generate`: `("pixel_values",)` for captioning, `("pixel_values", "input_ids", "attention_mask")` for VQA
    (the question), while the loss is still computed on the whole batch.

    Args:
        generation_input_names (`Sequence[str]`): batch keys passed to `generate`.
        generation_kwargs (`dict`, *optional*): defaults for `generate` (`max_new_tokens`, `num_beams`), which
            the model's own generation config may not carry (BLIP's text decoder has its own).
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


def decode_ids(tokenizer, ids) -> list[str]:
    """Decode ids padded with -100 (the Trainer's padding across batches) into stripped texts."""
    import numpy as np

    ids = np.where(np.asarray(ids) == IGNORE_INDEX, tokenizer.pad_token_id, np.asarray(ids))
    return [text.strip() for text in tokenizer.batch_decode(ids, skip_special_tokens=True)]


def caption_compute_metrics(tokenizer, meteor: bool = False):
    """`compute_metrics` for `predict_with_generate`: BLEU-1..4, ROUGE-L, CIDEr-D (and METEOR) of the decoded texts.

    METEOR is off by default here: it starts a JVM on every evaluation; the final test evaluation computes it.
    """
    from radtune.captioning.evaluation import caption_scores

    def compute_metrics(prediction) -> dict[str, float]:
        predictions = decode_ids(tokenizer, prediction.predictions)
        references = decode_ids(tokenizer, prediction.label_ids)
        return caption_scores(predictions, [[reference] for reference in references], meteor=meteor)

    return compute_metrics


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
