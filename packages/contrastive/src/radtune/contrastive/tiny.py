"""The tiny contrastive models (`radtune tiny clip|dual-encoder`): a CLIP, and a BERT + ResNet dual encoder saved by
`DualEncoderModel.save_pretrained`, both shrunk through their configs. Declared in the `radtune.tiny` entry-point
group; build one with `radtune.common.tiny.build_tiny("clip", out_dir)`."""

from __future__ import annotations

from pathlib import Path

from radtune.common.tiny import MAX_POSITIONS, NUM_HEADS, NUM_LAYERS, TinySize, clip_image_processor, train_tokenizer


def build_clip(texts: list[str], out_dir: Path, size: TinySize) -> None:
    """Write a tiny `CLIPModel` and its `CLIPProcessor` to `out_dir` (CLIP-style tokenizer trained on `texts`)."""
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPTextConfig, CLIPVisionConfig

    tokenizer = train_tokenizer(texts, "clip", model_max_length=77)
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=size.hidden_size, intermediate_size=size.intermediate_size,
        num_hidden_layers=NUM_LAYERS, num_attention_heads=NUM_HEADS, max_position_embeddings=77,
        projection_dim=size.hidden_size, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    vision_config = CLIPVisionConfig(**size.vision_kwargs(), projection_dim=size.hidden_size)
    config = CLIPConfig(
        text_config=text_config.to_dict(), vision_config=vision_config.to_dict(), projection_dim=size.hidden_size
    )
    CLIPModel(config).save_pretrained(out_dir)
    CLIPProcessor(image_processor=clip_image_processor(size), tokenizer=tokenizer).save_pretrained(out_dir)


def build_dual_encoder(texts: list[str], out_dir: Path, size: TinySize) -> None:
    """Write a tiny `DualEncoderModel` (a BERT text tower, a ResNet image tower, projection heads of
    `size.hidden_size`) with its tokenizer and image processor to `out_dir`, in the layout
    `DualEncoderModel.save_pretrained` writes: `load_contrastive(out_dir)` opens it, and its `text/` and `image/`
    folders are plain `AutoModel` towers to start a new dual encoder from."""
    from transformers import BertConfig, BertModel, ConvNextImageProcessorPil, ResNetConfig, ResNetModel

    from radtune.contrastive.dual_encoder import DualEncoderConfig, DualEncoderModel, image_feature_size
    from radtune.contrastive.modeling import ContrastiveProcessor

    tokenizer = train_tokenizer(texts, "bert")
    text_config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=size.hidden_size, intermediate_size=size.intermediate_size,
        num_hidden_layers=NUM_LAYERS, num_attention_heads=NUM_HEADS, max_position_embeddings=MAX_POSITIONS,
        pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    image_config = ResNetConfig(
        num_channels=3, embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], layer_type="basic"
    )
    config = DualEncoderConfig(
        text_embed_dim=text_config.hidden_size,
        image_embed_dim=image_feature_size(image_config),
        projection_dim=size.hidden_size,
    )
    DualEncoderModel(BertModel(text_config), ResNetModel(image_config), config).save_pretrained(out_dir)
    image_processor = ConvNextImageProcessorPil(size={"shortest_edge": size.image_size}, crop_pct=1.0)
    ContrastiveProcessor(tokenizer, image_processor, "dual-encoder").save_pretrained(out_dir)
