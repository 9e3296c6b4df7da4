"""Contrastive image–text training: CLIP, or a BERT-family text encoder + image backbone dual encoder.

Symmetric InfoNCE with a learnable, clamped temperature (or a triplet margin loss with in-batch hardest or
semi-hard negatives); negatives span the global batch across processes. Towers can be frozen with their last N
blocks left trainable; towers and heads take separate learning rates. After training, retrieval (Recall@K, median
rank) on `dataset_test_split`, written into `output_dir` as `radtune clip retrieve` writes it.

```bash
# one GPU, or several through accelerate (radtune's launcher flags before `--`, this module's flags after it)
accelerate launch -m radtune.contrastive.train --config packages/contrastive/recipes/roco_clip.yaml
radtune clip train --accelerate-config multi_gpu -- --config packages/contrastive/recipes/roco_clip.yaml
radtune clip train --accelerate-config multi_gpu -- \
    --config packages/contrastive/recipes/roco_biobert_resnet50_triplet.yaml

# CPU, tiny model on phantom reports; two processes go through torchrun (gloo)
python -m radtune.contrastive.train --config packages/contrastive/recipes/phantom_cpu_clip.yaml
radtune clip train --cpu --num-processes 2 -- --config packages/contrastive/recipes/phantom_cpu_clip.yaml
```

Gradient accumulation does not widen the pool of negatives: each micro-batch is contrasted on its own (as in
open_clip without its accumulation cache), so raise the per-device batch size or the number of processes instead.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from transformers import TrainerCallback, TrainingArguments

from radtune.common.config import make_parser as _make_parser
from radtune.common.config import run_main
from radtune.common.run import RunArguments

logger = logging.getLogger(__name__)


@dataclass
class ScriptArguments(RunArguments):
    """The data: `RunArguments`' dataset, splits and limits, and the text paired with each image."""

    text_column: str = field(
        default="text",
        metadata={"help": "Column of the paired text: `text` (ROCO captions, whole reports), `findings` or "
                  "`impression` for radiology reports. Rows whose text is empty are skipped."},
    )  # fmt: skip
    max_text_length: int = field(default=77, metadata={"help": "Truncate texts to this many tokens."})

    def __post_init__(self):
        super().__post_init__()
        if self.max_text_length < 2:
            raise ValueError(f"max_text_length must be >= 2, got {self.max_text_length}")


@dataclass
class ModelArguments:
    """Which model to train and which parts of it."""

    architecture: str = field(default="clip", metadata={"help": "`clip` (CLIPModel) or `dual-encoder`."})
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A CLIP checkpoint (default `openai/clip-vit-base-patch32`), or a saved dual encoder to "
                  "continue from (default: build one from the two towers below)."},
    )  # fmt: skip
    text_model_name_or_path: str = field(
        default="dmis-lab/biobert-v1.1", metadata={"help": "Dual encoder: the BERT-family text tower."}
    )
    image_model_name_or_path: str = field(
        default="microsoft/resnet-50", metadata={"help": "Dual encoder: the AutoModel image backbone."}
    )
    projection_dim: int = field(default=512, metadata={"help": "Dual encoder: size of the shared embedding space."})
    text_pooling: str = field(default="mean", metadata={"help": "Dual encoder: `mean` or `cls` text pooling."})
    freeze_vision_tower: bool = field(default=False, metadata={"help": "Freeze the image tower."})
    freeze_text_tower: bool = field(default=False, metadata={"help": "Freeze the text tower."})
    unfreeze_last_n_vision_blocks: int = field(
        default=0, metadata={"help": "With a frozen image tower, train its last N blocks (and what follows them)."}
    )
    unfreeze_last_n_text_blocks: int = field(
        default=0, metadata={"help": "With a frozen text tower, train its last N blocks (and what follows them)."}
    )
    temperature: float | None = field(
        default=None, metadata={"help": "Initial softmax temperature (logit scale 1/T); default: the checkpoint's."}
    )
    learn_temperature: bool = field(default=True, metadata={"help": "Learn the temperature (else keep it fixed)."})

    def __post_init__(self):
        if self.architecture not in ("clip", "dual-encoder"):
            raise ValueError(f"architecture must be `clip` or `dual-encoder`, got {self.architecture!r}")
        if self.text_pooling not in ("mean", "cls"):
            raise ValueError(f"text_pooling must be `mean` or `cls`, got {self.text_pooling!r}")
        if self.temperature is not None and not 0.01 <= self.temperature:
            raise ValueError(f"temperature must be >= 0.01 (logit scale <= 100), got {self.temperature}")
        for tower in ("vision", "text"):
            name = f"unfreeze_last_n_{tower}_blocks"
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
            if getattr(self, name) and not getattr(self, f"freeze_{tower}_tower"):
                raise ValueError(f"{name} needs freeze_{tower}_tower: an unfrozen tower trains all its blocks")


@dataclass
class ContrastiveConfig(TrainingArguments):
    """`TrainingArguments` plus the contrastive loss, the heads' learning rate and the image augmentation."""

    loss: str = field(default="infonce", metadata={"help": "`infonce` (symmetric, CLIP) or `triplet`."})
    local_loss: bool = field(
        default=False,
        metadata={"help": "Each process computes the loss of its own rows against the global batch (less memory, "
                  "same gradients)."},
    )  # fmt: skip
    triplet_margin: float = field(default=0.2, metadata={"help": "Triplet loss margin (unit-vector distances)."})
    triplet_mining: str = field(default="hardest", metadata={"help": "Triplet negatives: `hardest` or `semi-hard`."})
    head_learning_rate: float | None = field(
        default=None,
        metadata={"help": "Learning rate of the projection heads and the logit scale; `learning_rate` is the "
                  "towers'. Default: `learning_rate`."},
    )  # fmt: skip
    augment: bool = field(default=True, metadata={"help": "Augment training images (never evaluation images)."})
    aug_rotation_degrees: float = field(default=5.0, metadata={"help": "Random rotation in ± degrees."})
    aug_crop_min_area: float = field(default=0.9, metadata={"help": "Random crop keeping at least this area."})
    aug_brightness: float = field(default=0.1, metadata={"help": "Brightness factor in 1 ± this."})
    aug_contrast: float = field(default=0.1, metadata={"help": "Contrast factor in 1 ± this."})
    aug_horizontal_flip: bool = field(
        default=False, metadata={"help": "Random left-right flips. Off by default: laterality matters in radiographs."}
    )

    # Defaults that differ from TrainingArguments':
    # - a contrastive batch is its own set of negatives: keep it large;
    # - the collator needs the image and text columns, which the model's forward does not name;
    # - evaluation reports the loss only (the logits change shape with the batch);
    # - TensorBoard by default, and CLIP-style fine-tuning rates.
    per_device_train_batch_size: int = field(default=32, metadata={"help": "Batch size per device for training."})
    per_device_eval_batch_size: int = field(default=32, metadata={"help": "Batch size per device for evaluation."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep every dataset column."})
    prediction_loss_only: bool = field(default=True, metadata={"help": "Evaluation computes the loss only."})
    learning_rate: float = field(default=1e-5, metadata={"help": "Learning rate of the towers."})
    weight_decay: float = field(default=0.1, metadata={"help": "Weight decay (not on biases, norms, logit scale)."})
    warmup_steps: float = field(default=0.05, metadata={"help": "Warm-up steps (a float below 1: a fraction)."})
    logging_steps: float = field(default=10, metadata={"help": "Log every N steps."})
    report_to: None | str | list[str] = field(default="tensorboard", metadata={"help": "Where to report logs."})

    def __post_init__(self):
        super().__post_init__()
        if self.loss not in ("infonce", "triplet"):
            raise ValueError(f"loss must be `infonce` or `triplet`, got {self.loss!r}")
        if self.triplet_mining not in ("hardest", "semi-hard"):
            raise ValueError(f"triplet_mining must be `hardest` or `semi-hard`, got {self.triplet_mining!r}")
        if self.triplet_margin < 0:
            raise ValueError(f"triplet_margin must be >= 0, got {self.triplet_margin}")
        if self.head_learning_rate is not None and self.head_learning_rate < 0:
            raise ValueError(f"head_learning_rate must be >= 0, got {self.head_learning_rate}")
        if not 0 < self.aug_crop_min_area <= 1:
            raise ValueError(f"aug_crop_min_area must be in (0, 1], got {self.aug_crop_min_area}")


def make_parser():
    """The parser of `python -m radtune.contrastive.train`: `--config recipe.yaml` plus flag overrides."""
    return _make_parser((ScriptArguments, ContrastiveConfig, ModelArguments), prog="radtune.contrastive.train")


def load_model(model_args: ModelArguments):
    """The model and its processor, as `model_args` asks."""
    from radtune.contrastive.dual_encoder import DualEncoderModel
    from radtune.contrastive.modeling import DEFAULT_CLIP, load_contrastive, load_processor

    if model_args.architecture == "clip":
        name = model_args.model_name_or_path or DEFAULT_CLIP
        return load_contrastive(name)
    if model_args.model_name_or_path is not None:
        return load_contrastive(model_args.model_name_or_path)
    model = DualEncoderModel.from_text_image_pretrained(
        model_args.text_model_name_or_path,
        model_args.image_model_name_or_path,
        projection_dim=model_args.projection_dim,
        text_pooling=model_args.text_pooling,
    )
    processor = load_processor(model_args.text_model_name_or_path, model_args.image_model_name_or_path, "dual-encoder")
    return model, processor


def configure_model(model, model_args: ModelArguments, loss: str) -> None:
    """Freeze the towers (all but their last N blocks) as `model_args` asks, set the initial temperature, and let the
    logit scale learn only with the InfoNCE loss and `learn_temperature`."""
    import torch

    from radtune.contrastive.modeling import set_tower_trainable, towers

    tower = towers(model)
    set_tower_trainable(tower["image"], model_args.freeze_vision_tower, model_args.unfreeze_last_n_vision_blocks)
    set_tower_trainable(tower["text"], model_args.freeze_text_tower, model_args.unfreeze_last_n_text_blocks)
    if model_args.temperature is not None:
        with torch.no_grad():
            model.logit_scale.fill_(math.log(1.0 / model_args.temperature))
    # The triplet loss has no temperature; a parameter without gradient would also stop DDP.
    model.logit_scale.requires_grad_(model_args.learn_temperature and loss == "infonce")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    logger.info("trainable parameters: %d of %d (%.1f%%)", trainable, total, 100 * trainable / total)


def training_augment(training_args: ContrastiveConfig):
    """The `RadiographAugment` of the training images as `training_args` sets it, or `None` (`--augment false`)."""
    from radtune.contrastive.data import RadiographAugment

    if not training_args.augment:
        return None
    return RadiographAugment(
        rotation_degrees=training_args.aug_rotation_degrees,
        crop_min_area=training_args.aug_crop_min_area,
        brightness=training_args.aug_brightness,
        contrast=training_args.aug_contrast,
        horizontal_flip=training_args.aug_horizontal_flip,
    )


class AugmentEpochCallback(TrainerCallback):
    """Tells the training images' `PairTransform` which epoch the Trainer is in (a resumed run included: the epoch
    comes from the restored state). Batches are prepared in this process or in workers forked when an epoch's
    iteration starts (not with `dataloader_persistent_workers`, whose workers keep the first epoch)."""

    def __init__(self, transform):
        self.transform = transform

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.transform.epoch = math.floor((state.epoch or 0.0) + 1e-6)


def base_model(model_args: ModelArguments) -> str | None:
    """The checkpoint a run starts from: the CLIP (default `openai/clip-vit-base-patch32`) or a saved dual encoder
    (`None` for a dual encoder built from two towers)."""
    from radtune.contrastive.modeling import DEFAULT_CLIP

    if model_args.architecture == "clip":
        return model_args.model_name_or_path or DEFAULT_CLIP
    return model_args.model_name_or_path


def build_trainer(script_args: ScriptArguments, training_args: ContrastiveConfig, model_args: ModelArguments):
    """The model, its processor, the data and the `ContrastiveTrainer`, ready to train.

    Returns:
        `(ContrastiveTrainer, RunSplits)`: the trainer (its `processing_class` is the `ContrastiveProcessor`) and
        the splits (rows with an empty text dropped, limits applied; `splits.test` holds the rows of the final
        evaluation, or is `None`).
    """
    from transformers import set_seed

    from radtune.common.run import load_run_splits
    from radtune.contrastive.data import ContrastiveCollator, drop_empty_texts, pair_transform, with_row_index
    from radtune.contrastive.losses import build_loss
    from radtune.contrastive.trainer import ContrastiveTrainer

    # Data (first: a wrong split or column fails before a model is downloaded)
    columns = (script_args.image_column, script_args.text_column)
    with training_args.main_process_first(desc="loading and filtering the dataset"):
        splits = load_run_splits(script_args, training_args, required_columns=columns,
                                 prepare=lambda split: drop_empty_texts(split, script_args.text_column))  # fmt: skip

    # Model
    set_seed(training_args.seed)  # before the model: a new dual encoder's heads are drawn here
    model, processor = load_model(model_args)
    configure_model(model, model_args, training_args.loss)

    # Batches: augmented training pairs (each row's augmentation seeded by seed, epoch and row: resumable), plain
    # evaluation pairs, texts truncated as the tokenizer allows
    augment = training_augment(training_args)
    train_transform = pair_transform(*columns, augment=augment, seed=training_args.seed)
    train_dataset = (with_row_index(splits.train) if augment else splits.train).with_transform(train_transform)
    eval_dataset = None if splits.eval is None else splits.eval.with_transform(pair_transform(*columns))
    max_length = min(script_args.max_text_length, processor.tokenizer.model_max_length)
    collator = ContrastiveCollator(processor.tokenizer, processor.image_processor, max_length=max_length)

    # Trainer
    loss = build_loss(training_args.loss, training_args.local_loss, training_args.triplet_margin,
                      training_args.triplet_mining)  # fmt: skip
    trainer = ContrastiveTrainer(
        model=model,
        args=training_args,
        data_collator=collator,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=processor,
        contrastive_loss=loss,
        head_learning_rate=training_args.head_learning_rate,
    )
    if augment is not None:
        trainer.add_callback(AugmentEpochCallback(train_transform))
    return trainer, splits


def main(script_args: ScriptArguments, training_args: ContrastiveConfig, model_args: ModelArguments):
    """Train, save, evaluate retrieval on the test split and (when asked) publish; returns the trainer."""
    import torch

    from radtune.common.run import (
        evaluation_meta,
        finish_run,
        log_test_metrics,
        publish_run,
        resume_checkpoint,
        run_info,
        take_push_request,
    )

    push = take_push_request(training_args)
    trainer, splits = build_trainer(script_args, training_args, model_args)

    # Train
    train_result = trainer.train(resume_from_checkpoint=resume_checkpoint(training_args))
    tower_sources = {} if model_args.architecture == "clip" or model_args.model_name_or_path else {
        "text_model_name_or_path": model_args.text_model_name_or_path,
        "image_model_name_or_path": model_args.image_model_name_or_path,
    }  # fmt: skip
    info = run_info("contrastive", script_args, training_args, base_model(model_args),
                    architecture=model_args.architecture, text_column=script_args.text_column,
                    max_text_length=script_args.max_text_length, loss=training_args.loss, **tower_sources)  # fmt: skip
    # The Trainer saves the processor with the model (its processing_class), in the model's own layout.
    finish_run(trainer, train_result, info=info, title=f"{model_args.architecture} · {training_args.loss}")

    # Evaluate
    if splits.test is not None and trainer.is_world_process_zero():
        from radtune.contrastive.evaluation import evaluate_retrieval

        report = evaluate_retrieval(
            trainer.accelerator.unwrap_model(trainer.model), trainer.processing_class, splits.test,
            training_args.output_dir, text_column=script_args.text_column, image_column=script_args.image_column,
            max_text_length=script_args.max_text_length,
            meta=evaluation_meta(training_args, script_args, splits),
        )  # fmt: skip
        log_test_metrics(trainer, report.metrics)

    # Publish
    if trainer.is_world_process_zero():
        publish_run(training_args.output_dir, push, base_model=base_model(model_args),
                    dataset_name=script_args.dataset_name, tags=["contrastive", model_args.architecture])  # fmt: skip
    if torch.distributed.is_initialized():
        # Leave together and tear the group down: exiting with a live gloo group aborted a rank now and then.
        trainer.accelerator.wait_for_everyone()
        torch.distributed.destroy_process_group()
    return trainer


if __name__ == "__main__":
    run_main(main, make_parser)
