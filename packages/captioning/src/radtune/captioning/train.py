"""Fine-tune an image captioner (ViT-GPT2 or BLIP) with `Seq2SeqTrainer`, LoRA or full.

Copy-paste commands (from the repository root):

    # The ROCOv2 seed: ViT-GPT2 + LoRA on c_attn/c_proj, 10% of the data, 6 epochs, fp16
    accelerate launch --config_file packages/common/src/radtune/common/accelerate_configs/single_gpu.yaml \\
        -m radtune.captioning.train --config packages/captioning/recipes/rocov2_vitgpt2_lora.yaml
    # the same through the CLI (launcher flags before --, training flags after), a flag overriding the recipe
    radtune caption train --accelerate-config single_gpu -- \\
        --config packages/captioning/recipes/rocov2_vitgpt2_lora.yaml --num_train_epochs 3
    # BLIP on ROCO, published privately to the Hub at the end
    radtune caption train -- --config packages/captioning/recipes/roco_blip.yaml \\
        --push_to_hub --hub_model_id me/roco-blip
    # a tiny model on phantom chest X-rays, on the CPU, in a few minutes
    radtune tiny vit-gpt2 runs/tiny-vit-gpt2 --texts runs/phantoms-built
    radtune caption train --cpu -- --config packages/captioning/recipes/phantom_cpu_vitgpt2.yaml
    # go on from the last checkpoint in --output_dir
    radtune caption train -- --config packages/captioning/recipes/roco_blip.yaml --resume_from_checkpoint last

`--architecture vit-gpt2` trains a `VisionEncoderDecoderModel`: a pretrained captioner (`--model_name_or_path`,
default nlpconnect/vit-gpt2-image-captioning) or one composed from `--encoder` and `--decoder`. `--architecture blip`
trains a `BlipForConditionalGeneration` (default Salesforce/blip-image-captioning-base). `--use_peft` trains LoRA
adapters (ViT-GPT2: the decoder's c_attn/c_proj, plus cross-attention with `--lora_cross_attention`; BLIP: the text
decoder's query/value); without it every weight trains. `--text_column` picks the text to write (findings,
impression, report, caption, text).

Writes into `--output_dir`: checkpoints per epoch, the final model or adapter with its tokenizer, image processor and
generation settings, `all_results.json`, `loss_curve.png`, `run_info.json` (what `radtune caption evaluate` reads:
text and image columns, base model), TensorBoard logs, and, when the dataset has a test split (skip with
`--eval_after_training false`), `evaluation_results.csv` + `metrics.json` (BLEU-1..4, METEOR, ROUGE-L, CIDEr-D with
intervals and the blank/noise-image check: `radtune.captioning.evaluation.evaluate_captions`, as `radtune caption
evaluate` runs it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from transformers import Seq2SeqTrainingArguments
from transformers.trainer_utils import IntervalStrategy, SaveStrategy
from trl import ModelConfig

from radtune.common import run as lifecycle
from radtune.common.config import make_parser as _make_parser

ARCHITECTURES = ("vit-gpt2", "blip")
DEFAULT_MODELS = {
    "vit-gpt2": "nlpconnect/vit-gpt2-image-captioning",
    "blip": "Salesforce/blip-image-captioning-base",
}
# LoRA targets (regular expressions over module names, as PEFT reads a string `target_modules`).
# GPT-2's self-attention c_attn/c_proj and its MLP's c_proj: what the seed's ["c_attn", "c_proj"] meant
# for the decoder, without silently touching cross-attention.
GPT2_SELF_TARGETS = r"decoder\.transformer\.h\.\d+\.(attn\.c_attn|attn\.c_proj|mlp\.c_proj)"
GPT2_CROSS_TARGETS = r"decoder\.transformer\.h\.\d+\.crossattention\.(q_attn|c_attn|c_proj)"
BLIP_SELF_TARGETS = r"text_decoder\.bert\.encoder\.layer\.\d+\.attention\.self\.(query|value)"
BLIP_CROSS_TARGETS = r"text_decoder\.bert\.encoder\.layer\.\d+\.crossattention\.self\.(query|value)"


@dataclass
class CaptioningArguments(lifecycle.GenerationRunArguments):
    """What to train on and how to build the captioner (the splits, limits and image column: `RunArguments`)."""

    architecture: str = field(default="vit-gpt2", metadata={"help": "Model family: `vit-gpt2` or `blip`."})
    text_column: str = field(
        default="caption",
        metadata={"help": "The text to generate: `findings`, `impression`, `report` (findings + impression, else "
                  "`text`), `caption` (else `text`) or `text`."},
    )  # fmt: skip
    train_fraction: float = field(
        default=1.0, metadata={"help": "Train on this random fraction of the train split (the seed used 0.1)."}
    )
    max_target_length: int = field(default=128, metadata={"help": "Longest caption in tokens (longer ones are cut)."})
    num_beams: int = field(default=1, metadata={"help": "Beams for generation during and after training."})
    encoder: str | None = field(
        default=None, metadata={"help": "vit-gpt2 only: compose from this vision encoder (with --decoder)."}
    )
    decoder: str | None = field(
        default=None, metadata={"help": "vit-gpt2 only: compose with this GPT-2 style decoder (with --encoder)."}
    )
    lora_cross_attention: bool = field(
        default=False, metadata={"help": "With --use_peft: also put LoRA on the decoder's cross-attention."}
    )
    meteor: bool = field(
        default=True, metadata={"help": "Compute METEOR in the final evaluation (a JVM; ~10 s or more)."}
    )
    eval_batch_size: int = field(default=16, metadata={"help": "Images per generate call in the final evaluation."})

    def __post_init__(self):
        from radtune.captioning.evaluation import TEXT_COLUMNS

        super().__post_init__()
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {', '.join(ARCHITECTURES)}, got {self.architecture!r}")
        if self.text_column not in TEXT_COLUMNS:
            raise ValueError(f"text_column must be one of {', '.join(TEXT_COLUMNS)}, got {self.text_column!r}")
        if not 0.0 < self.train_fraction <= 1.0:
            raise ValueError(f"train_fraction must be in (0, 1], got {self.train_fraction}")
        if (self.encoder is None) != (self.decoder is None):
            raise ValueError("encoder and decoder go together: give both or neither")
        if self.encoder is not None and self.architecture != "vit-gpt2":
            raise ValueError("encoder/decoder composition is only for architecture vit-gpt2")


@dataclass
class CaptioningTrainingArguments(Seq2SeqTrainingArguments):
    # radtune's defaults, where they differ from Seq2SeqTrainingArguments:
    output_dir: str = field(default="runs/captioning", metadata={"help": "Where checkpoints and results go."})
    predict_with_generate: bool = field(
        default=True, metadata={"help": "Generate captions in `trainer.predict` (evaluation during training "
                                "generates through --generation_eval_samples)."}
    )  # fmt: skip
    eval_strategy: IntervalStrategy | str = field(
        default="epoch", metadata={"help": "Evaluate every epoch (`no` to skip)."}
    )
    save_strategy: SaveStrategy | str = field(default="epoch", metadata={"help": "Save a checkpoint every epoch."})
    logging_steps: float = field(default=10, metadata={"help": "Log the loss every this many steps."})
    report_to: None | str | list[str] = field(default="tensorboard", metadata={"help": "Loggers (`none` for none)."})
    # The collator needs the raw image and text columns.
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep the raw columns for the collator."})
    dataloader_num_workers: int = field(default=2, metadata={"help": "Worker processes decoding images."})


def make_parser():
    return _make_parser(
        (CaptioningArguments, CaptioningTrainingArguments, ModelConfig), prog="radtune.captioning.train"
    )


def build_vit_gpt2(script_args: CaptioningArguments, model_args: ModelConfig, output_dir: Path):
    """(model, tokenizer, image_processor) for architecture vit-gpt2: a pretrained captioner or encoder + decoder."""
    from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer, VisionEncoderDecoderModel

    from radtune.captioning.modeling import prepare_tokenizer

    if script_args.encoder is not None:
        tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(script_args.decoder))
        image_processor = AutoImageProcessor.from_pretrained(script_args.encoder)
        # gpt2's published config has no `is_decoder`, which transformers 5 reads (AttributeError): set it here.
        decoder_config = AutoConfig.from_pretrained(script_args.decoder)
        decoder_config.is_decoder = decoder_config.add_cross_attention = True
        model = VisionEncoderDecoderModel.from_encoder_decoder_pretrained(script_args.encoder, script_args.decoder,
                                                                          decoder_config=decoder_config)  # fmt: skip
        model.config.decoder_start_token_id = tokenizer.bos_token_id
        model.config.pad_token_id = tokenizer.pad_token_id
        model.config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.decoder_start_token_id = tokenizer.bos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        # A composed model exists nowhere else: save it once, so a LoRA adapter can name its base.
        base = output_dir / "base_model"
        model.save_pretrained(base)
        tokenizer.save_pretrained(base)
        image_processor.save_pretrained(base)
        model = VisionEncoderDecoderModel.from_pretrained(base)
        return model, tokenizer, image_processor
    path = model_args.model_name_or_path
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(path))
    image_processor = AutoImageProcessor.from_pretrained(path)
    model = VisionEncoderDecoderModel.from_pretrained(path, revision=model_args.model_revision)
    # A VisionEncoderDecoderConfig saved without these top-level ids has no such attribute in transformers 5.
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if getattr(model.config, "decoder_start_token_id", None) is None:
        model.config.decoder_start_token_id = tokenizer.bos_token_id
    return model, tokenizer, image_processor


def build_blip(model_args: ModelConfig):
    from transformers import AutoImageProcessor, AutoTokenizer, BlipForConditionalGeneration

    from radtune.captioning.modeling import prepare_tokenizer

    path = model_args.model_name_or_path
    model = BlipForConditionalGeneration.from_pretrained(path, revision=model_args.model_revision)
    return (
        model,
        prepare_tokenizer(AutoTokenizer.from_pretrained(path)),
        AutoImageProcessor.from_pretrained(path),
    )


def lora_config(script_args: CaptioningArguments, model_args: ModelConfig):
    """The `LoraConfig` for `--use_peft`: `--lora_target_modules` when given, else the architecture's defaults."""
    self_targets, cross_targets = {
        "vit-gpt2": (GPT2_SELF_TARGETS, GPT2_CROSS_TARGETS),
        "blip": (BLIP_SELF_TARGETS, BLIP_CROSS_TARGETS),
    }[script_args.architecture]
    targets = f"({self_targets}|{cross_targets})" if script_args.lora_cross_attention else self_targets
    # A freshly composed model's cross-attention is random: it must train in full.
    composed = script_args.encoder is not None and not script_args.lora_cross_attention
    return lifecycle.lora_config_of(model_args, targets, ["crossattention", "ln_cross_attn"] if composed else [])


def build_trainer(
    script_args: CaptioningArguments, training_args: CaptioningTrainingArguments, model_args: ModelConfig
):
    """The model, tokenizer, image processor, data and `GenerationTrainer` of a run, ready to `train()`.

    Returns:
        `(trainer, splits)`: the trainer (its `data_collator` holds the image processor) and the run's
        `radtune.common.run.RunSplits` (rows with an empty text dropped; `splits.test` for the final evaluation).
    """
    from transformers import set_seed

    from radtune.captioning.collators import CaptioningCollator, undecoded_images
    from radtune.captioning.evaluation import drop_empty_texts, text_columns
    from radtune.captioning.trainer import captioning_generation_eval, generation_trainer

    output_dir = Path(training_args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model_args.model_name_or_path = model_args.model_name_or_path or DEFAULT_MODELS[script_args.architecture]

    # Data, before the model: a wrong split or column fails fast. The collator decodes the images (at reduced scale).
    def prepare(split):
        columns = text_columns(script_args.text_column, split.column_names)
        return undecoded_images(drop_empty_texts(split, columns), script_args.image_column)

    splits = lifecycle.load_run_splits(script_args, training_args, prepare=prepare)
    if script_args.train_fraction < 1.0:
        keep = max(1, math.ceil(len(splits.train) * script_args.train_fraction))
        splits.train = splits.train.shuffle(seed=training_args.seed).select(range(keep))
    columns = text_columns(script_args.text_column, splits.train.column_names)

    # Model (seeded: LoRA's initial weights, a composed model's new cross-attention)
    set_seed(training_args.seed)
    if script_args.architecture == "vit-gpt2":
        model, tokenizer, image_processor = build_vit_gpt2(script_args, model_args, output_dir)
    else:
        model, tokenizer, image_processor = build_blip(model_args)
    if model_args.use_peft:
        from peft import get_peft_model

        model = get_peft_model(model, lora_config(script_args, model_args))
        model.print_trainable_parameters()
    blip = script_args.architecture == "blip"
    collator = CaptioningCollator(
        image_processor=image_processor,
        tokenizer=tokenizer,
        text_column=columns,
        image_column=script_args.image_column,
        max_length=script_args.max_target_length,
        append_eos=not blip,  # GPT-2 tokenizers add no EOS
        text_inputs=blip,
        decoder_start_token_id=model.config.text_config.bos_token_id if blip else None,
    )

    # Trainer
    generation_eval_of = partial(captioning_generation_eval, tokenizer=tokenizer, image_processor=image_processor,
                                 architecture=script_args.architecture, text_columns=columns)  # fmt: skip
    trainer = generation_trainer(script_args, training_args, model, collator, splits, input_names=("pixel_values",),
                                 generation_eval_of=generation_eval_of)  # fmt: skip
    return trainer, splits


def main(script_args: CaptioningArguments, training_args: CaptioningTrainingArguments, model_args: ModelConfig):
    """Train, save, evaluate on the test split and (optionally) publish; returns the trainer."""
    from radtune.captioning.evaluation import evaluate_captions
    from radtune.captioning.trainer import finish_captioning_run

    push = lifecycle.take_push_request(training_args)  # radtune publishes at the end, not the Trainer
    trainer, splits = build_trainer(script_args, training_args, model_args)
    # a composed model has no Hub base: the adapter's base is the run's own base_model/ folder
    base_model = model_args.model_name_or_path if script_args.encoder is None else None

    # Train
    train_result = trainer.train(resume_from_checkpoint=lifecycle.resume_checkpoint(training_args))
    composed = {"encoder": script_args.encoder, "decoder": script_args.decoder} if script_args.encoder else {}
    info = lifecycle.run_info(
        "captioning", script_args, training_args, base_model, architecture=script_args.architecture,
        text_column=script_args.text_column, use_peft=model_args.use_peft, **trainer.generation_kwargs,
        max_target_length=script_args.max_target_length, **composed,
    )  # fmt: skip
    captioner = finish_captioning_run(trainer, train_result, info=info, title=f"{script_args.architecture} captioning")

    # Evaluate
    if splits.test is not None and trainer.is_world_process_zero():
        metrics = evaluate_captions(
            captioner, splits.test, training_args.output_dir, text_column=script_args.text_column,
            image_column=script_args.image_column, batch_size=script_args.eval_batch_size, meteor=script_args.meteor,
            ablation=script_args.eval_ablation, seed=training_args.seed,
            meta=lifecycle.evaluation_meta(training_args, script_args, splits, base_model=base_model),
        )  # fmt: skip
        lifecycle.log_test_metrics(trainer, metrics)

    # Publish
    if trainer.is_world_process_zero():
        lifecycle.publish_run(training_args.output_dir, push, base_model=base_model,
                              dataset_name=script_args.dataset_name, tags=["image-captioning", script_args.architecture])  # fmt: skip
    return trainer


if __name__ == "__main__":
    from radtune.common.config import run_main

    run_main(main, make_parser)
