"""The tiny captioners (`radtune tiny vit-gpt2|blip-caption|blip-vqa`): ViT-GPT2 and BLIP, shrunk through their
configs, with tokenizers in the full models' styles. Declared in the `radtune.tiny` entry-point group; build one with
`radtune.common.tiny.build_tiny("vit-gpt2", out_dir)`."""

from __future__ import annotations

from pathlib import Path

from radtune.common.tiny import MAX_POSITIONS, NUM_HEADS, NUM_LAYERS, TinySize, train_tokenizer


def build_vit_gpt2(texts: list[str], out_dir: Path, size: TinySize) -> None:
    """Write a tiny ViT + GPT-2 `VisionEncoderDecoderModel`, its GPT-2-style tokenizer and ViT image processor to
    `out_dir` (tokenizer trained on `texts`)."""
    from transformers import (
        AutoTokenizer,
        GenerationConfig,
        GPT2Config,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessorPil,
    )

    tokenizer = train_tokenizer(texts, "gpt2")
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}  # fmt: skip
    encoder = ViTConfig(**size.vision_kwargs())
    decoder = GPT2Config(
        vocab_size=len(tokenizer), n_embd=size.hidden_size, n_layer=NUM_LAYERS, n_head=NUM_HEADS,
        n_positions=MAX_POSITIONS, add_cross_attention=True, is_decoder=True, **ids,
    )  # fmt: skip
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id = tokenizer.bos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    config.eos_token_id = tokenizer.eos_token_id
    model = VisionEncoderDecoderModel(config=config)
    model.generation_config = GenerationConfig(decoder_start_token_id=tokenizer.bos_token_id, max_new_tokens=32, **ids)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    ViTImageProcessorPil(size={"height": size.image_size, "width": size.image_size}).save_pretrained(out_dir)
    # The checkpoint's tokenizer_config names the class; make sure AutoTokenizer reads it back.
    AutoTokenizer.from_pretrained(out_dir)


def _blip_config(tokenizer, size: TinySize):
    from transformers import BlipConfig, BlipTextConfig, BlipVisionConfig

    text_config = BlipTextConfig(
        vocab_size=len(tokenizer), hidden_size=size.hidden_size, encoder_hidden_size=size.hidden_size,
        intermediate_size=size.intermediate_size, projection_dim=size.hidden_size, num_hidden_layers=NUM_LAYERS,
        num_attention_heads=NUM_HEADS, max_position_embeddings=MAX_POSITIONS, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id, sep_token_id=tokenizer.sep_token_id,
    )  # fmt: skip
    vision_config = BlipVisionConfig(**size.vision_kwargs(), projection_dim=size.hidden_size)
    return BlipConfig(
        text_config=text_config.to_dict(), vision_config=vision_config.to_dict(), projection_dim=size.hidden_size
    )


def _build_blip(texts: list[str], out_dir: Path, size: TinySize, vqa: bool) -> None:
    from transformers import (
        BlipForConditionalGeneration,
        BlipForQuestionAnswering,
        BlipImageProcessorPil,
        BlipProcessor,
        GenerationConfig,
    )

    tokenizer = train_tokenizer(texts, "bert")
    config = _blip_config(tokenizer, size)
    model = (BlipForQuestionAnswering if vqa else BlipForConditionalGeneration)(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.sep_token_id,
        pad_token_id=tokenizer.pad_token_id, decoder_start_token_id=tokenizer.bos_token_id, max_new_tokens=32,
    )  # fmt: skip
    image_processor = BlipImageProcessorPil(size={"height": size.image_size, "width": size.image_size})
    model.save_pretrained(out_dir)
    BlipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out_dir)


def build_blip_caption(texts: list[str], out_dir: Path, size: TinySize) -> None:
    """Write a tiny `BlipForConditionalGeneration` and its `BlipProcessor` to `out_dir` (BERT-style tokenizer
    trained on `texts`)."""
    _build_blip(texts, out_dir, size, vqa=False)


def build_blip_vqa(texts: list[str], out_dir: Path, size: TinySize) -> None:
    """Write a tiny `BlipForQuestionAnswering` and its `BlipProcessor` to `out_dir` (BERT-style tokenizer trained
    on `texts`)."""
    _build_blip(texts, out_dir, size, vqa=True)
