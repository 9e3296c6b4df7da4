"""The tiny LLaVA-1.5 (`radtune tiny llava`): a CLIP vision tower, a projector and a Llama language model, shrunk
through their configs, with radtune's chat template. Declared in the `radtune.tiny` entry-point group; build it with
`radtune.common.tiny.build_tiny("llava", out_dir)`."""

from __future__ import annotations

from pathlib import Path

from radtune.common.tiny import (
    MAX_POSITIONS,
    NUM_HEADS,
    NUM_LAYERS,
    PATCH_SIZE,
    TinySize,
    clip_image_processor,
    train_tokenizer,
)
from radtune.llava_vqa.chat_template import LLAVA_CHAT_TEMPLATE


def _load_vision_tower(path: str | Path, expected):
    """The vision tower (`CLIPVisionModel`) of a CLIP checkpoint at `path` (a whole CLIP model, e.g. one trained
    by `radtune clip train`, or a vision model alone) and its image processor, checked against the `expected`
    `CLIPVisionConfig`: the weights are copied as they are, so every shape must agree."""
    from transformers import AutoConfig, AutoImageProcessor, CLIPModel, CLIPVisionModel

    config = AutoConfig.from_pretrained(path)
    if config.model_type == "clip":
        tower = CLIPModel.from_pretrained(path).vision_model
        vision_config = config.vision_config
    elif config.model_type == "clip_vision_model":
        tower = CLIPVisionModel.from_pretrained(path)
        vision_config = config
    else:
        raise ValueError(f"--vision-tower {path} is a {config.model_type!r} model; expected a CLIP model")
    fields = (
        "image_size",
        "patch_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
    )
    different = [f"{name} {getattr(vision_config, name)} (tiny LLaVA: {getattr(expected, name)})"
                 for name in fields if getattr(vision_config, name) != getattr(expected, name)]  # fmt: skip
    if different:
        raise ValueError(f"the vision tower at {path} does not fit the tiny LLaVA: {'; '.join(different)}; "
                         "build both with the same --image-size and --hidden-size")  # fmt: skip
    try:
        image_processor = AutoImageProcessor.from_pretrained(path)
    except OSError:
        image_processor = None
    return tower, image_processor


def build_llava(texts: list[str], out_dir: Path, size: TinySize, *, vision_tower: str | Path | None = None) -> None:
    """Write a tiny `LlavaForConditionalGeneration` and its `LlavaProcessor` to `out_dir`.

    Args:
        texts (`list[str]`): texts to train the Llama-style tokenizer on.
        out_dir (`Path`): an existing folder.
        size (`TinySize`): image side and hidden size.
        vision_tower (`str` or `Path`, *optional*): start the vision tower from this CLIP checkpoint (a folder
            written by `radtune clip train`, or a CLIP vision model) instead of random weights, as LLaVA-1.5
            starts from a pretrained CLIP; it must have the same image, patch and hidden sizes.
    """
    from transformers import (
        CLIPVisionConfig,
        GenerationConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tokenizer = train_tokenizer(texts, "llama")
    tokenizer.chat_template = LLAVA_CHAT_TEMPLATE
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}  # fmt: skip
    text_config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=size.hidden_size, intermediate_size=2 * size.intermediate_size,
        num_hidden_layers=NUM_LAYERS, num_attention_heads=NUM_HEADS, num_key_value_heads=2,
        max_position_embeddings=MAX_POSITIONS, **ids,
    )  # fmt: skip
    # CLIP's vision tower adds one CLS token; the "default" strategy drops it, leaving (32/8)^2 = 16 image tokens.
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**size.vision_kwargs(), projection_dim=size.hidden_size),
        text_config=text_config,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=(size.image_size // PATCH_SIZE) ** 2,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    model = LlavaForConditionalGeneration(config)
    model.generation_config = GenerationConfig(**ids, max_new_tokens=32)
    image_processor = clip_image_processor(size)
    if vision_tower is not None:
        # As LLaVA-1.5 starts from a pretrained CLIP ViT: the tower (and the image processor it was trained with).
        tower, tower_processor = _load_vision_tower(vision_tower, config.vision_config)
        model.model.vision_tower.load_state_dict(tower.state_dict())
        image_processor = tower_processor or image_processor
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_CHAT_TEMPLATE,
        image_token="<image>",
    )
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
