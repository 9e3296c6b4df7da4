"""The tiny LLaVA-1.5 (`radtune tiny llava`): a CLIP vision tower, a projector and a Llama language model, shrunk
through their configs, with radtune's chat template. Declared in the `radtune.tiny` entry-point group; build it with
`radtune.common.tiny.build_tiny("llava", out_dir)`.

`build_published_llava` builds one from the published files of a real checkpoint instead (llava-hf's
`config.json`, `tokenizer_config.json`, `chat_template.json`, … kept in `tests/fixtures/llava-1.5-7b-hf/`): only the
sizes and the vocabulary are made tiny; the special tokens keep their published ids (`<image>` 32000, `<pad>`
32001), the tokenizer its published behaviour (BOS added, left padding), the processor the published template.
"""

from __future__ import annotations

import json
import shutil
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


# The processor attributes llava-hf no longer publishes (its processor_config.json was deleted), for a tiny tower.
_TINY_PROCESSOR_CONFIG = {"image_token": "<image>", "num_additional_image_tokens": 1, "patch_size": PATCH_SIZE,
                          "processor_class": "LlavaProcessor", "vision_feature_select_strategy": "default"}  # fmt: skip


def published_tokenizer(folder: str | Path, texts: list[str], vocab_size: int = 1000):
    """A Llama-style tokenizer with the published `tokenizer_config.json` in `folder` and a small vocabulary trained
    on `texts`.

    Built as Llama's SentencePiece vocabulary is (what transformers' `LlamaTokenizer`, the published
    `tokenizer_class`, loads): BPE over `▁`-prefixed words with byte fallback, the special tokens numbered from 0
    (`<unk>`, `<s>`, `</s>`) first, the byte tokens `<0x00>`…`<0xFF>` next, then the trained tokens, unused filler
    entries up to the first added token's id, and the added tokens (`<image>`, `<pad>`) at their published ids.
    BOS/EOS are added as `add_bos_token`/`add_eos_token` say.

    Returns:
        `(tokenizers.Tokenizer, dict)`: the backend tokenizer and the published `tokenizer_config.json`.

    Raises:
        `ValueError`: the published ids have gaps a tiny vocabulary cannot reproduce, or the vocabulary reaches them.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    config = json.loads((Path(folder) / "tokenizer_config.json").read_text(encoding="utf-8"))
    specials = {int(index): token["content"] for index, token in config["added_tokens_decoder"].items()}
    n_first = 0
    while n_first in specials:
        n_first += 1
    first = [specials[i] for i in range(n_first)]
    added = [(i, specials[i]) for i in sorted(specials) if i >= n_first]
    if added and [i for i, _ in added] != list(range(added[0][0], added[0][0] + len(added))):
        raise ValueError(f"{folder}: the added tokens' ids {[i for i, _ in added]} are not consecutive")
    unk = config.get("unk_token")
    tokenizer = Tokenizer(models.BPE(unk_token=unk, byte_fallback=True, fuse_unk=True))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=first, show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    data = json.loads(tokenizer.to_str())
    trained = sorted(data["model"]["vocab"], key=data["model"]["vocab"].get)
    byte_tokens = [f"<0x{value:02X}>" for value in range(256)]
    order = first + byte_tokens + [token for token in trained if token not in first and token not in byte_tokens]
    end = added[0][0] if added else len(order)
    if len(order) > end:
        raise ValueError(f"a vocabulary of {len(order)} reaches the published id {end} of {added[0][1]}")
    vocab = {token: index for index, token in enumerate(order)}
    vocab.update({f"<unused_{index}>": index for index in range(len(order), end)})
    data["model"]["vocab"] = vocab
    for token in data["added_tokens"]:
        token["id"] = vocab[token["content"]]
    tokenizer = Tokenizer.from_str(json.dumps(data))
    tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False) for _, token in added])
    wrong = {token: tokenizer.token_to_id(token) for index, token in specials.items()
             if tokenizer.token_to_id(token) != index}  # fmt: skip
    if wrong:
        raise ValueError(f"the tiny tokenizer gives {wrong}, not the published ids")
    bos, eos = config.get("bos_token"), config.get("eos_token")
    pieces = [*([bos] if config.get("add_bos_token") else []), "$A", *([eos] if config.get("add_eos_token") else [])]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=" ".join(pieces),
        special_tokens=[(token, tokenizer.token_to_id(token)) for token in (bos, eos) if token in pieces],
    )
    return tokenizer, config


def save_published_processor(folder: str | Path, out_dir: str | Path, texts: list[str], *, image_size: int,
                             patch_size: int = PATCH_SIZE, vocab_size: int = 1000) -> Path:  # fmt: skip
    """Write a LLaVA processor built from the published files in `folder` to `out_dir` (created).

    Copied as published: `tokenizer_config.json` (special tokens, their ids, BOS/EOS adding, padding side) and
    `chat_template.json`, unrepaired. Made to fit: the vocabulary (`published_tokenizer`, trained on `texts`), the
    image side in `preprocessor_config.json`, and `processor_config.json` (which llava-hf no longer publishes) with
    `patch_size` and the CLS token of a CLIP tower.

    Returns:
        `Path`: `out_dir`, loadable with `AutoProcessor.from_pretrained`.
    """
    folder, out_dir = Path(folder), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer, _ = published_tokenizer(folder, texts, vocab_size=vocab_size)
    tokenizer.save(str(out_dir / "tokenizer.json"))
    for name in ("tokenizer_config.json", "chat_template.json"):
        shutil.copyfile(folder / name, out_dir / name)
    image_processor = json.loads((folder / "preprocessor_config.json").read_text(encoding="utf-8"))
    image_processor.update(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})
    (out_dir / "preprocessor_config.json").write_text(json.dumps(image_processor, indent=2), encoding="utf-8")
    processor_config = {**_TINY_PROCESSOR_CONFIG, "patch_size": patch_size}
    (out_dir / "processor_config.json").write_text(json.dumps(processor_config, indent=2), encoding="utf-8")
    return out_dir


def build_published_llava(folder: str | Path, out_dir: str | Path, texts: list[str] | None = None,
                          size: TinySize | None = None) -> Path:  # fmt: skip
    """Write a tiny LLaVA built from the published files in `folder` (see the module docstring) to `out_dir`.

    The processor is `save_published_processor`'s; the model keeps every id and choice of the published
    `config.json` (image token, pad token, vocabulary size, projector, feature layer and strategy) and its
    `generation_config.json`, with the vision and language sizes of `size` and random weights.

    Returns:
        `Path`: `out_dir`, loadable with `AutoProcessor` / `LlavaForConditionalGeneration.from_pretrained`.
    """
    import torch
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    from radtune.common.tiny import builtin_corpus

    folder, size = Path(folder), size or TinySize()
    out_dir = save_published_processor(folder, out_dir, texts or builtin_corpus(), image_size=size.image_size)
    published = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    published["vision_config"].update(size.vision_kwargs(), projection_dim=size.hidden_size)
    published["text_config"].update(hidden_size=size.hidden_size, intermediate_size=2 * size.intermediate_size,
                                    num_hidden_layers=NUM_LAYERS, num_attention_heads=NUM_HEADS,
                                    num_key_value_heads=2, max_position_embeddings=MAX_POSITIONS)  # fmt: skip
    published["image_seq_length"] = (size.image_size // PATCH_SIZE) ** 2
    torch.manual_seed(0)
    LlavaForConditionalGeneration(LlavaConfig(**published)).save_pretrained(out_dir)
    shutil.copyfile(folder / "generation_config.json", out_dir / "generation_config.json")  # as published
    return out_dir
