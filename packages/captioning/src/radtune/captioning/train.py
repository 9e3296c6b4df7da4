"""Fine-tune an image captioner (ViT-GPT2 or BLIP) with `Seq2SeqTrainer`, LoRA or full.

Copy-paste commands (from the repository root):

    # The ROCOv2 seed: ViT-GPT2 + LoRA on c_attn/c_proj, 10% of the data, 6 epochs, fp16
    accelerate launch --config_file packages/common/src/radtune/common/accelerate_configs/single_gpu.yaml \\
        -m radtune.captioning.train --config packages/captioning/recipes/rocov2_vitgpt2_lora.yaml
    # the same through the CLI, with a flag overriding the recipe
    radtune caption train --accelerate-config single_gpu \\
        --config packages/captioning/recipes/rocov2_vitgpt2_lora.yaml --num_train_epochs 3
    # BLIP on ROCO
    radtune caption train --config packages/captioning/recipes/roco_blip.yaml
    # a tiny model on phantom chest X-rays, on the CPU, in a few minutes
    radtune tiny vit-gpt2 runs/tiny-vit-gpt2 --texts runs/phantoms-built
    radtune caption train --cpu --config packages/captioning/recipes/phantom_cpu_vitgpt2.yaml

`--arch vit-gpt2` trains a `VisionEncoderDecoderModel`: a pretrained captioner (`--model_name_or_path`, default
nlpconnect/vit-gpt2-image-captioning) or one composed from `--encoder` and `--decoder`. `--arch blip` trains a
`BlipForConditionalGeneration` (default Salesforce/blip-image-captioning-base). `--use_peft` trains LoRA adapters
(ViT-GPT2: the decoder's c_attn/c_proj, plus cross-attention with `--lora_cross_attention`; BLIP: the text
decoder's query/value); without it every weight trains.

Writes into `--output_dir`: checkpoints per epoch, the final model or adapter with its tokenizer and image
processor, `all_results.json`, `loss_curve.png`, TensorBoard logs, and, when the dataset has a test split,
`evaluation_results.csv` + `metrics.json` (BLEU-1..4, METEOR, ROUGE-L, CIDEr-D).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from transformers import Seq2SeqTrainingArguments
from transformers.trainer_utils import IntervalStrategy, SaveStrategy
from trl import ModelConfig

from radtune.common.config import make_parser as _make_parser
from radtune.common.config import parse_args_and_config
from radtune.common.generation_eval import generation_eval_samples_field

ARCHS = ("vit-gpt2", "blip")
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
class CaptioningArguments:
    """What to train on and how to build the captioner."""

    dataset_name: str | None = field(
        default=None,
        metadata={"help": "A `save_to_disk` folder (what `radtune data build` writes), a local data folder, or a Hub "
                  "dataset repo."},
    )  # fmt: skip
    arch: str = field(default="vit-gpt2", metadata={"help": "Model family: `vit-gpt2` or `blip`."})
    text_field: str = field(
        default="caption",
        metadata={"help": "The text to generate: `findings`, `impression`, `report` (findings + impression), "
                  "`caption` or `text`."},
    )  # fmt: skip
    image_field: str = field(default="image", metadata={"help": "Image column (else the first of `images`)."})
    dataset_train_split: str = field(default="train", metadata={"help": "Split to train on."})
    dataset_eval_split: str | None = field(
        default="validation",
        metadata={"help": "Split evaluated during training (eval_strategy): eval loss and caption metrics of "
                  "generated captions. When absent, dataset_test_split is used (with a warning)."},
    )  # fmt: skip
    dataset_test_split: str | None = field(
        default="test", metadata={"help": "Split for the final evaluation files (skipped when missing)."}
    )
    train_fraction: float = field(
        default=1.0, metadata={"help": "Train on this random fraction of the train split (the seed used 0.1)."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Evaluate on at most this many rows per split (generation is slow)."}
    )
    max_target_length: int = field(default=128, metadata={"help": "Longest caption in tokens (longer ones are cut)."})
    max_new_tokens: int = field(default=64, metadata={"help": "Longest generated caption in tokens."})
    generation_eval_samples: int = generation_eval_samples_field(
        "caption", "eval_bleu_1..4, eval_rouge_l, eval_cider", "cider"
    )
    num_beams: int = field(default=1, metadata={"help": "Beams for generation during evaluation."})
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
        default=True, metadata={"help": "Compute METEOR in the final test evaluation (a JVM; ~10 s or more)."}
    )
    resume: bool = field(
        default=False, metadata={"help": "Resume from the last checkpoint in output_dir (when there is one)."}
    )
    hub_repo_id: str | None = field(
        default=None, metadata={"help": "Push the final model or adapter (with its model card) to this Hub repo."}
    )
    hub_private: bool = field(default=True, metadata={"help": "Create the Hub repo private."})
    eval_batch_size_generate: int = field(
        default=16, metadata={"help": "Images per generate call in the final test evaluation."}
    )

    def __post_init__(self):
        from radtune.captioning.evaluation import TEXT_FIELDS

        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        if self.text_field not in TEXT_FIELDS:
            raise ValueError(f"text_field must be one of {', '.join(TEXT_FIELDS)}, got {self.text_field!r}")
        if self.generation_eval_samples < 0:
            raise ValueError(f"generation_eval_samples must be >= 0 (0 disables), got {self.generation_eval_samples}")
        if not 0.0 < self.train_fraction <= 1.0:
            raise ValueError(f"train_fraction must be in (0, 1], got {self.train_fraction}")
        if (self.encoder is None) != (self.decoder is None):
            raise ValueError("encoder and decoder go together: give both or neither")
        if self.encoder is not None and self.arch != "vit-gpt2":
            raise ValueError("encoder/decoder composition is only for arch=vit-gpt2")


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
    """(model, tokenizer, image_processor) for arch vit-gpt2: a pretrained captioner or encoder + decoder."""
    from transformers import AutoImageProcessor, AutoTokenizer, VisionEncoderDecoderModel

    from radtune.captioning.modeling import prepare_tokenizer

    if script_args.encoder is not None:
        tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(script_args.decoder))
        image_processor = AutoImageProcessor.from_pretrained(script_args.encoder)
        model = VisionEncoderDecoderModel.from_encoder_decoder_pretrained(script_args.encoder, script_args.decoder)
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
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if model.config.decoder_start_token_id is None:
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
    """The `LoraConfig` for `--use_peft`: `--lora_target_modules` when given, else the arch's defaults."""
    from peft import LoraConfig

    modules_to_save = list(model_args.lora_modules_to_save or [])
    if model_args.lora_target_modules:
        targets = model_args.lora_target_modules
    else:
        self_targets, cross_targets = {
            "vit-gpt2": (GPT2_SELF_TARGETS, GPT2_CROSS_TARGETS),
            "blip": (BLIP_SELF_TARGETS, BLIP_CROSS_TARGETS),
        }[script_args.arch]
        targets = f"({self_targets}|{cross_targets})" if script_args.lora_cross_attention else self_targets
    if script_args.encoder is not None and not script_args.lora_cross_attention:
        # A freshly composed model's cross-attention is random: it must train in full.
        modules_to_save += ["crossattention", "ln_cross_attn"]
    return LoraConfig(
        r=model_args.lora_r,
        lora_alpha=model_args.lora_alpha,
        lora_dropout=model_args.lora_dropout,
        target_modules=targets,
        modules_to_save=modules_to_save or None,
        use_rslora=model_args.use_rslora,
        use_dora=model_args.use_dora,
    )


def main(script_args: CaptioningArguments, training_args: CaptioningTrainingArguments, model_args: ModelConfig):
    from transformers.trainer_utils import get_last_checkpoint

    from radtune.captioning.evaluation import drop_empty_texts, evaluate_dataset, text_columns
    from radtune.captioning.modeling import Captioner
    from radtune.captioning.trainer import GenerationTrainer, captioning_generation_eval, publish, save_run
    from radtune.common.collators import CaptioningCollator, undecoded_images
    from radtune.common.datasets_io import load_dataset_any
    from radtune.common.generation_eval import choose_eval_split

    if script_args.dataset_name is None:
        raise ValueError("dataset_name is required (a `radtune data build` folder or a Hub dataset repo)")
    output_dir = Path(training_args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model_args.model_name_or_path = model_args.model_name_or_path or DEFAULT_MODELS[script_args.arch]

    # Model
    if script_args.arch == "vit-gpt2":
        model, tokenizer, image_processor = build_vit_gpt2(script_args, model_args, output_dir)
    else:
        model, tokenizer, image_processor = build_blip(model_args)
    if model_args.use_peft:
        from peft import get_peft_model

        model = get_peft_model(model, lora_config(script_args, model_args))
        model.print_trainable_parameters()
    generation_kwargs = {"max_new_tokens": script_args.max_new_tokens, "num_beams": script_args.num_beams}

    # Data
    data = load_dataset_any(script_args.dataset_name)
    if script_args.dataset_train_split not in data:
        raise ValueError(f"dataset_train_split {script_args.dataset_train_split!r} not in: {', '.join(data)}")
    columns = text_columns(script_args.text_field, data[script_args.dataset_train_split].column_names)
    train_dataset = drop_empty_texts(data[script_args.dataset_train_split], columns)
    if script_args.train_fraction < 1.0:
        keep = max(1, math.ceil(len(train_dataset) * script_args.train_fraction))
        train_dataset = train_dataset.shuffle(seed=training_args.seed).select(range(keep))
    train_dataset = undecoded_images(train_dataset, script_args.image_field)  # the collator decodes, at reduced scale
    eval_dataset = None
    eval_split = choose_eval_split(data, script_args.dataset_eval_split, script_args.dataset_test_split)
    if eval_split is not None and training_args.eval_strategy != "no":
        eval_dataset = drop_empty_texts(data[eval_split], columns)
        if script_args.max_eval_samples is not None:
            eval_dataset = eval_dataset.select(range(min(script_args.max_eval_samples, len(eval_dataset))))
        eval_dataset = undecoded_images(eval_dataset, script_args.image_field)
    elif training_args.eval_strategy != "no":
        training_args.eval_strategy = "no"  # no split to evaluate on
    collator = CaptioningCollator(
        image_processor=image_processor,
        tokenizer=tokenizer,
        text_field=columns,
        image_field=script_args.image_field,
        max_length=script_args.max_target_length,
        append_eos=script_args.arch == "vit-gpt2",  # GPT-2 tokenizers add no EOS
        text_inputs=script_args.arch == "blip",
        decoder_start_token_id=model.config.text_config.bos_token_id if script_args.arch == "blip" else None,
    )

    # Train
    trainer = GenerationTrainer(
        model=model,
        args=training_args,
        data_collator=collator,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        generation_input_names=("pixel_values",),
        generation_kwargs=generation_kwargs,
        generation_eval=captioning_generation_eval(
            eval_dataset, tokenizer, image_processor, script_args.arch, text_columns=columns,
            image_field=script_args.image_field, generation_kwargs=generation_kwargs,
            max_samples=script_args.generation_eval_samples, batch_size=training_args.per_device_eval_batch_size,
        ) if eval_dataset is not None and script_args.generation_eval_samples else None,
    )  # fmt: skip
    checkpoint = training_args.resume_from_checkpoint
    if checkpoint is None and script_args.resume:
        checkpoint = get_last_checkpoint(str(output_dir))  # None when the folder holds no checkpoint yet
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
    unwrapped = save_run(trainer, train_result, image_processor, generation_kwargs, f"{script_args.arch} captioning")

    # Evaluate
    if script_args.dataset_test_split in data and trainer.is_world_process_zero():
        captioner = Captioner(
            model=unwrapped.eval(),
            tokenizer=tokenizer,
            image_processor=image_processor,
            arch=script_args.arch,
            generation_kwargs=generation_kwargs,
        )
        metrics = evaluate_dataset(
            captioner,
            data[script_args.dataset_test_split],
            output_dir,
            text_field=script_args.text_field,
            image_field=script_args.image_field,
            batch_size=script_args.eval_batch_size_generate,
            max_samples=script_args.max_eval_samples,
            meta={"model": str(output_dir), "base_model": model_args.model_name_or_path,
                  "dataset": script_args.dataset_name, "split": script_args.dataset_test_split,
                  "seed": training_args.seed},
            meteor=script_args.meteor,
        )  # fmt: skip
        trainer.log_metrics("test", metrics)
        trainer.save_metrics("test", metrics)

    # Publish
    if trainer.is_world_process_zero():
        # a composed model has no Hub base; the card then reads the folder's own config
        base_model = model_args.model_name_or_path if script_args.encoder is None else None
        publish(output_dir, base_model, script_args.hub_repo_id, script_args.hub_private)
    return trainer


if __name__ == "__main__":
    main(*parse_args_and_config(make_parser()))
