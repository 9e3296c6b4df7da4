"""`ContrastiveTrainer`: a `transformers.Trainer` whose loss is a contrastive loss over a model's normalised image and
text embeddings (CLIP or `DualEncoderModel`).

It adds what contrastive training needs beside the Trainer's loop: separate learning rates for the towers and the
heads (projections and logit scale), no weight decay on the logit scale, the logit scale clamped to [0, log 100] after
every optimizer step (as open_clip does) and logged as a temperature's inverse, and saving / resuming a dual encoder
in its own folder layout.
"""

from __future__ import annotations

import math
import os

import torch
from transformers import Trainer, TrainerCallback
from transformers.trainer import TRAINING_ARGS_NAME

from radtune.common.checkpoints import CheckpointLoadingMixin
from radtune.contrastive.dual_encoder import DualEncoderModel
from radtune.contrastive.losses import MAX_LOGIT_SCALE, InfoNCELoss, clamp_logit_scale_
from radtune.contrastive.modeling import is_head_parameter


class LogitScaleClampCallback(TrainerCallback):
    """Clamp the stored log logit scale to [0, log 100] after every optimizer step (as open_clip does)."""

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        if model is not None:
            clamp_logit_scale_(model.logit_scale, MAX_LOGIT_SCALE)


class ContrastiveTrainer(CheckpointLoadingMixin, Trainer):
    """A `Trainer` whose loss is a contrastive loss module over the model's normalised embeddings.

    Args:
        contrastive_loss (`nn.Module`): `InfoNCELoss` or `TripletLoss` (gathers across processes itself).
        head_learning_rate (`float`, *optional*): learning rate of the heads and the logit scale; defaults to
            `args.learning_rate`.
        *args, **kwargs: what `transformers.Trainer` takes.
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

    def _load_best_model(self):
        if not isinstance(self.model, DualEncoderModel):
            return super()._load_best_model()
        self._load_from_checkpoint(self.state.best_model_checkpoint)
