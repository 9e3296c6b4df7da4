"""Contrastive image–text training: CLIP, or a BERT-family text encoder + image backbone dual encoder.

Symmetric InfoNCE with a learnable, clamped temperature (or a triplet margin loss with in-batch hardest or
semi-hard negatives); negatives span the global batch across processes. Towers can be frozen with their last N
blocks left trainable; towers and heads take separate learning rates.

    # one GPU, or several through accelerate
    accelerate launch -m radtune.contrastive.train --config packages/contrastive/recipes/roco_clip.yaml
    accelerate launch --config_file multi_gpu.yaml -m radtune.contrastive.train \
        --config packages/contrastive/recipes/roco_biobert_resnet50_triplet.yaml
    radtune clip train --accelerate-config multi_gpu --config packages/contrastive/recipes/roco_clip.yaml

    # CPU, two processes (gloo), tiny model on phantom reports
    radtune clip train --cpu --num-processes 2 --config packages/contrastive/recipes/phantom_cpu_clip.yaml
    torchrun --nproc_per_node 2 -m radtune.contrastive.train --config packages/contrastive/recipes/phantom_cpu_clip.yaml

Gradient accumulation does not widen the pool of negatives: each micro-batch is contrasted on its own (as in
open_clip without its accumulation cache), so raise the per-device batch size or the number of processes instead.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field

from transformers import TrainingArguments

from radtune.common.config import make_parser as _make_parser
from radtune.common.config import parse_args_and_config

logger = logging.getLogger(__name__)


@dataclass
class ScriptArguments:
    """Which data to train on."""

    dataset_name: str | None = field(
        default=None,
        metadata={"help": "A `radtune data build` folder (save_to_disk), a local data folder or a Hub dataset id."},
    )
    dataset_train_split: str = field(default="train", metadata={"help": "Split to train on."})
    dataset_test_split: str | None = field(
        default=None, metadata={"help": "Split to evaluate on (eval loss and retrieval Recall@K); none by default."}
    )
    image_column: str = field(default="image", metadata={"help": "Column holding the images."})
    caption_column: str = field(
        default="text",
        metadata={"help": "Column holding the paired text: `text` (ROCO captions, whole reports), `findings` or "
                  "`impression` for radiology reports. Rows whose text is empty are skipped."},
    )  # fmt: skip
    max_text_length: int = field(default=77, metadata={"help": "Truncate texts to this many tokens."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N evaluation rows."})

    def __post_init__(self):
        if self.dataset_name is None:
            raise ValueError("dataset_name is required: a `radtune data build` folder or a Hub dataset id")
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


def _trainer_class():
    """`ContrastiveTrainer`, defined on first use so that importing this module (and `--help`) stays light."""
    import torch
    from transformers import Trainer, TrainerCallback
    from transformers.trainer import TRAINING_ARGS_NAME

    from radtune.contrastive.dual_encoder import DualEncoderModel
    from radtune.contrastive.losses import MAX_LOGIT_SCALE, InfoNCELoss, clamp_logit_scale_
    from radtune.contrastive.modeling import is_head_parameter

    class LogitScaleClampCallback(TrainerCallback):
        """Clamp the stored log logit scale to [0, log 100] after every optimizer step (as open_clip does)."""

        def on_optimizer_step(self, args, state, control, model=None, **kwargs):
            if model is not None:
                clamp_logit_scale_(model.logit_scale, MAX_LOGIT_SCALE)

    class ContrastiveTrainer(Trainer):
        """A `Trainer` whose loss is a contrastive loss module over the model's normalised embeddings.

        Args:
            contrastive_loss (`nn.Module`): `InfoNCELoss` or `TripletLoss` (gathers across processes itself).
            head_learning_rate (`float`, *optional*): learning rate of the heads and the logit scale.
        """

        def __init__(self, *args, contrastive_loss, head_learning_rate=None, **kwargs):
            super().__init__(*args, **kwargs)
            self.contrastive_loss = contrastive_loss
            self.head_learning_rate = head_learning_rate
            # The loss is a mean over the global batch already: no token-count rescaling.
            self.model_accepts_loss_kwargs = False
            # The loss needs no labels: evaluation must compute it too.
            self.can_return_loss = True
            self.add_callback(LogitScaleClampCallback())

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            outputs = model(
                input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], pixel_values=inputs["pixel_values"]
            )
            logit_scale = self.accelerator.unwrap_model(model).logit_scale
            loss = self.contrastive_loss(outputs.image_embeds, outputs.text_embeds, logit_scale)
            return (loss, outputs) if return_outputs else loss

        def create_optimizer(self, model=None):
            if self.optimizer is None:
                opt_model = self.model if model is None else model
                decay = set(self.get_decay_parameter_names(opt_model)) - {"logit_scale"}
                head_lr = self.args.learning_rate if self.head_learning_rate is None else self.head_learning_rate
                groups: dict[tuple[float, float], list] = {}
                for name, parameter in opt_model.named_parameters():
                    if not parameter.requires_grad:
                        continue
                    lr = head_lr if is_head_parameter(opt_model, name) else self.args.learning_rate
                    weight_decay = self.args.weight_decay if name in decay else 0.0
                    groups.setdefault((lr, weight_decay), []).append(parameter)
                optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
                param_groups = [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]
                self.optimizer = optimizer_cls(param_groups, **optimizer_kwargs)
            return super().create_optimizer(model)

        def log(self, logs, start_time=None):
            if "loss" in logs and isinstance(self.contrastive_loss, InfoNCELoss):
                scale = self.accelerator.unwrap_model(self.model).logit_scale.detach()
                logs["logit_scale"] = round(float(scale.clamp(max=math.log(MAX_LOGIT_SCALE)).exp()), 4)
            super().log(logs, start_time)

        # A dual encoder is not a PreTrainedModel: save and resume in its own layout (config, heads, text/, image/).
        def _save(self, output_dir=None, state_dict=None):
            model = self.accelerator.unwrap_model(self.model)
            if not isinstance(model, DualEncoderModel):
                return super()._save(output_dir, state_dict)
            if not self.args.should_save:
                return
            output_dir = output_dir or self.args.output_dir
            model.save_pretrained(output_dir)
            if self.processing_class is not None:
                self.processing_class.save_pretrained(output_dir)
            torch.save(self.args, os.path.join(output_dir, TRAINING_ARGS_NAME))

        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
            model = model if model is not None else self.model
            if not isinstance(model, DualEncoderModel):
                return super()._load_from_checkpoint(resume_from_checkpoint, model)
            model.load_state_dict(DualEncoderModel.from_pretrained(resume_from_checkpoint).state_dict())

    return ContrastiveTrainer


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


def load_pairs(script_args: ScriptArguments, split: str, limit: int | None):
    """One split with non-empty texts in `caption_column`, first `limit` rows."""
    from radtune.common.datasets_io import load_dataset_any

    dataset = load_dataset_any(script_args.dataset_name, split=split)
    for column in (script_args.image_column, script_args.caption_column):
        if column not in dataset.column_names:
            raise ValueError(
                f"column {column!r} not in {script_args.dataset_name} ({split}); it has: {', '.join(dataset.column_names)}"
            )
    dataset = dataset.filter(lambda text: bool(text and str(text).strip()), input_columns=[script_args.caption_column])
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    if len(dataset) == 0:
        raise ValueError(f"no rows with a non-empty {script_args.caption_column!r} in {script_args.dataset_name} ({split})")
    return dataset


def main(script_args=None, training_args: ContrastiveConfig | None = None, model_args: ModelArguments | None = None):
    """Train. Call with the three parsed dataclasses, or with a list of command-line arguments
    (`main(["--config", "recipe.yaml", "--max_steps", "10"])`), or with nothing to read `sys.argv`."""
    if training_args is None:
        script_args, training_args, model_args = parse_args_and_config(make_parser(), script_args)

    if training_args.push_to_hub and training_args.hub_model_id is None:
        raise ValueError("push_to_hub needs hub_model_id (namespace/name)")

    import torch
    from transformers import set_seed

    from radtune.common.plots import plot_loss_curve
    from radtune.contrastive.data import ContrastiveCollator, RadiographAugment, pair_transform
    from radtune.contrastive.losses import build_loss
    from radtune.contrastive.modeling import set_tower_trainable, towers

    ################
    # Model
    ################
    set_seed(training_args.seed)  # before the model: a new dual encoder's heads are drawn here
    model, processor = load_model(model_args)
    tower = towers(model)
    set_tower_trainable(tower["image"], model_args.freeze_vision_tower, model_args.unfreeze_last_n_vision_blocks)
    set_tower_trainable(tower["text"], model_args.freeze_text_tower, model_args.unfreeze_last_n_text_blocks)
    if model_args.temperature is not None:
        with torch.no_grad():
            model.logit_scale.fill_(math.log(1.0 / model_args.temperature))
    # The triplet loss has no temperature; a parameter without gradient would also stop DDP.
    model.logit_scale.requires_grad_(model_args.learn_temperature and training_args.loss == "infonce")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    logger.info("trainable parameters: %d of %d (%.1f%%)", trainable, total, 100 * trainable / total)

    ################
    # Data
    ################
    augment = None
    if training_args.augment:
        augment = RadiographAugment(
            rotation_degrees=training_args.aug_rotation_degrees,
            crop_min_area=training_args.aug_crop_min_area,
            brightness=training_args.aug_brightness,
            contrast=training_args.aug_contrast,
            horizontal_flip=training_args.aug_horizontal_flip,
        )
    columns = (script_args.image_column, script_args.caption_column)
    eval_raw = eval_dataset = None
    with training_args.main_process_first(desc="loading and filtering the dataset"):
        train_dataset = load_pairs(script_args, script_args.dataset_train_split, script_args.max_train_samples)
        if script_args.dataset_test_split is not None:
            eval_raw = load_pairs(script_args, script_args.dataset_test_split, script_args.max_eval_samples)
    train_dataset = train_dataset.with_transform(pair_transform(*columns, augment=augment))
    if eval_raw is not None:
        eval_dataset = eval_raw.with_transform(pair_transform(*columns))
    max_length = min(script_args.max_text_length, processor.tokenizer.model_max_length)
    collator = ContrastiveCollator(processor.tokenizer, processor.image_processor, max_length=max_length)

    ################
    # Train
    ################
    push_to_hub, training_args.push_to_hub = training_args.push_to_hub, False  # pushed below, with radtune's card
    loss = build_loss(training_args.loss, training_args.local_loss, training_args.triplet_margin, training_args.triplet_mining)
    trainer = _trainer_class()(
        model=model,
        args=training_args,
        data_collator=collator,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=processor,
        contrastive_loss=loss,
        head_learning_rate=training_args.head_learning_rate,
    )
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_metrics("train", train_result.metrics)
    trainer.save_state()

    ################
    # Evaluate
    ################
    if eval_dataset is not None:
        eval_metrics = trainer.evaluate()
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
    if trainer.is_world_process_zero():
        plot_loss_curve(trainer.state.log_history, os.path.join(training_args.output_dir, "loss_curve.png"),
                        title=f"{model_args.architecture} · {training_args.loss}")  # fmt: skip
        if eval_raw is not None:
            from radtune.contrastive.evaluation import retrieval_rows, retrieve, write_outputs

            captions = eval_raw[script_args.caption_column]
            metrics, similarity = retrieve(trainer.accelerator.unwrap_model(trainer.model), processor,
                                           eval_raw[script_args.image_column], captions, max_length=max_length)  # fmt: skip
            ids = eval_raw["id"] if "id" in eval_raw.column_names else [str(i) for i in range(len(eval_raw))]
            write_outputs(training_args.output_dir, metrics, retrieval_rows(ids, captions, similarity),
                          task="retrieval", model=training_args.output_dir, dataset=script_args.dataset_name,
                          split=script_args.dataset_test_split, extra_meta={"caption_column": script_args.caption_column})  # fmt: skip

    ################
    # Publish
    ################
    if trainer.is_world_process_zero():
        from radtune.common.model_card import build_model_card

        name = training_args.hub_model_id or os.path.basename(os.path.abspath(training_args.output_dir))
        base_model = model_args.model_name_or_path if model_args.architecture == "clip" else None
        card = build_model_card(training_args.output_dir, name, base_model=base_model, tags=["contrastive", "clip"])
        card.save(os.path.join(training_args.output_dir, "README.md"))
        if push_to_hub:
            from radtune.common.hub import push_folder

            result = push_folder(training_args.output_dir, training_args.hub_model_id,
                                 private=training_args.hub_private_repo is not False, base_model=base_model,
                                 tags=["contrastive"])  # fmt: skip
            logger.info("pushed to %s", result.commit_url)
    if torch.distributed.is_initialized():
        # Leave together and tear the group down: exiting with a live gloo group aborted a rank now and then.
        trainer.accelerator.wait_for_everyone()
        torch.distributed.destroy_process_group()
    return trainer


if __name__ == "__main__":
    parser = make_parser()
    main(*parse_args_and_config(parser))
