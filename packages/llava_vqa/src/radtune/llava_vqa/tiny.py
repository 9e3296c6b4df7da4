"""The tiny vision-language models of `radtune.llava_vqa`, one per family it trains, declared in the `radtune.tiny`
entry-point group (`radtune tiny KIND OUT`, `radtune.common.tiny.build_tiny(KIND, out_dir)`):

- `llava`: LLaVA-1.5 (a CLIP vision tower, a projector and a Llama language model) with radtune's chat template;
- `llava-next`: LLaVA-NeXT (CLIP, Mistral, `image_grid_pinpoints` tiling) with llava-v1.6-mistral's published template;
- `gemma3`: Gemma 3 / MedGemma (SigLIP, Gemma 3, pooled soft image tokens) with Gemma 3's published template;
- `idefics3`: Idefics3 / SmolVLM (SigLIP-style encoder, pixel-shuffle connector, Llama; images split into tiles) with
  SmolVLM's special tokens and published template.

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


# --- The other families (`radtune tiny llava-next|gemma3|idefics3`): each from a config written here with the
# --- family's real special tokens and its published chat template (as `tests/fixtures/<family>/` keeps it), a small
# --- vocabulary trained on the texts, and the sizes of `TinySize`. The special tokens keep their published names;
# --- their ids are the first ones of the small vocabulary (in the published order where the published ids are
# --- small: Gemma's <pad> 0, <eos> 1, <bos> 2), because nothing in radtune or transformers reads a fixed id: the
# --- model configs name the image token's id, the generation configs the end-of-turn ids. Only PIL image
# --- processors are used (the torchvision ones are not installed).


def _published_template(name: str) -> str:
    """The chat template TRL keeps as published for `name` (`trl/chat_templates/<name>.jinja`)."""
    from importlib import resources

    return resources.files("trl").joinpath(f"chat_templates/{name}.jinja").read_text(encoding="utf-8")


def _family_tokenizer(texts: list[str], specials: list[str], *, style: str, bos: str, eos: str, pad: str, unk: str,
                      add_bos: bool, vocab_size: int = 1000, **named):  # fmt: skip
    """A small tokenizer trained on `texts` with `specials` as its first ids (special added tokens).

    Args:
        style (`str`): `"metaspace"` (SentencePiece-style `▁` words with byte fallback, prefixed like Llama's),
            `"metaspace-plain"` (the same without the prefix, like Gemma's) or `"bytelevel"` (GPT-2 style, like
            SmolLM's).
        add_bos (`bool`): the tokenizer puts `bos` in front of every text (Llama, Mistral, Gemma), or not (SmolLM).
        named: further named special tokens (`boi_token="<start_of_image>"`, …).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if style == "bytelevel":
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    else:
        prepend = "first" if style == "metaspace" else "never"
        tokenizer = Tokenizer(models.BPE(unk_token=unk, byte_fallback=True, fuse_unk=True))
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=prepend)
        tokenizer.decoder = decoders.Sequence(
            [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
            + ([decoders.Strip(" ", 1, 0)] if prepend == "first" else [])
        )
        byte_tokens = [f"<0x{value:02X}>" for value in range(256)]
        trainer = trainers.BpeTrainer(vocab_size=vocab_size + 256, special_tokens=specials + byte_tokens,
                                      show_progress=False)  # fmt: skip
    tokenizer.train_from_iterator(texts, trainer=trainer)
    if add_bos:
        tokenizer.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                                 special_tokens=[(bos, tokenizer.token_to_id(bos))])  # fmt: skip
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, model_max_length=MAX_POSITIONS, bos_token=bos,
                                   eos_token=eos, pad_token=pad, unk_token=unk, extra_special_tokens=named or None)  # fmt: skip


def build_gemma3(texts: list[str], out_dir: Path, size: TinySize) -> None:
    """Write a tiny Gemma 3 (MedGemma's architecture: a SigLIP vision tower, an average-pooling projector and a
    Gemma 3 language model) and its `Gemma3Processor` with the published Gemma 3 chat template to `out_dir`.

    The image becomes `(size.image_size / 8)^2` patches pooled to 4 soft tokens (`mm_tokens_per_image`; MedGemma:
    4096 patches to 256), between `<start_of_image>` and `<end_of_image>`; the processor returns `token_type_ids`
    (1 on image tokens), which Gemma 3 needs for its bidirectional attention over the image while training.
    Generation stops at `<eos>` or `<end_of_turn>`, as `generation_config.json` of google/medgemma-4b-it says.
    """
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3ImageProcessorPil,
        Gemma3Processor,
        Gemma3TextConfig,
        GenerationConfig,
        SiglipVisionConfig,
    )

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>",
                "<start_of_image>", "<end_of_image>", "<image_soft_token>"]  # fmt: skip
    tokenizer = _family_tokenizer(texts, specials, style="metaspace-plain", bos="<bos>", eos="<eos>", pad="<pad>",
                                  unk="<unk>", add_bos=True, boi_token="<start_of_image>",
                                  eoi_token="<end_of_image>", image_token="<image_soft_token>")  # fmt: skip
    tokenizer.padding_side = "left"
    template = _published_template("gemma3")
    token = tokenizer.convert_tokens_to_ids
    ids = {"bos_token_id": token("<bos>"), "eos_token_id": token("<eos>"), "pad_token_id": token("<pad>")}
    mm_tokens_per_image = 4
    config = Gemma3Config(
        text_config=Gemma3TextConfig(
            vocab_size=len(tokenizer), hidden_size=size.hidden_size, intermediate_size=2 * size.intermediate_size,
            num_hidden_layers=NUM_LAYERS, num_attention_heads=NUM_HEADS, num_key_value_heads=2, head_dim=16,
            max_position_embeddings=MAX_POSITIONS, sliding_window=64, **ids,
        ),
        vision_config=SiglipVisionConfig(**size.vision_kwargs(), vision_use_head=False),  # as Gemma 3 ships it
        mm_tokens_per_image=mm_tokens_per_image,
        boi_token_index=token("<start_of_image>"),
        eoi_token_index=token("<end_of_image>"),
        image_token_index=token("<image_soft_token>"),
        **ids,
    )  # fmt: skip
    model = Gemma3ForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        bos_token_id=ids["bos_token_id"], pad_token_id=ids["pad_token_id"],
        eos_token_id=[ids["eos_token_id"], token("<end_of_turn>")], max_new_tokens=32,
    )  # fmt: skip
    image_processor = Gemma3ImageProcessorPil(
        size={"height": size.image_size, "width": size.image_size}, image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5], do_pan_and_scan=False,
    )  # fmt: skip
    processor = Gemma3Processor(image_processor=image_processor, tokenizer=tokenizer, chat_template=template,
                                image_seq_length=mm_tokens_per_image)  # fmt: skip
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)


# Idefics3's tile grid tags (`<row_1_col_1>` …), special tokens in SmolVLM's vocabulary.
_IDEFICS3_GRID = [f"<row_{row}_col_{col}>" for row in range(1, 7) for col in range(1, 7)]


def build_idefics3(texts: list[str], out_dir: Path, size: TinySize) -> None:
    """Write a tiny Idefics3 (SmolVLM's architecture: a SigLIP-style vision model, a pixel-shuffle connector and a
    Llama language model) and its `Idefics3Processor`, with SmolVLM's special tokens and published chat template,
    to `out_dir`.

    Images are split as SmolVLM splits them: resized to a longest edge of `2 * size.image_size`, cut into tiles of
    `size.image_size` (each between `<fake_token_around_image>` and its `<row_i_col_j>` tag), plus the whole image
    (`<global-img>`); each tile gives `(size.image_size / 8)^2 / 2^2` image tokens (`scale_factor` 2; SmolVLM: 3).
    The processor returns `pixel_attention_mask`; generation stops at `<end_of_utterance>`.
    """
    from transformers import (
        GenerationConfig,
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessorPil,
        Idefics3Processor,
        Idefics3VisionConfig,
        LlamaConfig,
    )

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<fake_token_around_image>", "<image>",
                "<end_of_utterance>", "<global-img>", *_IDEFICS3_GRID]  # fmt: skip
    tokenizer = _family_tokenizer(texts, specials, style="bytelevel", bos="<|im_start|>", eos="<end_of_utterance>",
                                  pad="<|im_end|>", unk="<|endoftext|>", add_bos=False)  # fmt: skip
    token = tokenizer.convert_tokens_to_ids
    ids = {"bos_token_id": token("<|im_start|>"), "eos_token_id": token("<end_of_utterance>"),
           "pad_token_id": token("<|im_end|>")}  # fmt: skip
    scale_factor = 2
    config = Idefics3Config(
        vision_config=Idefics3VisionConfig(**size.vision_kwargs()),
        text_config=LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=size.hidden_size, intermediate_size=2 * size.intermediate_size,
            num_hidden_layers=NUM_LAYERS, num_attention_heads=NUM_HEADS, num_key_value_heads=2,
            max_position_embeddings=MAX_POSITIONS, **ids,
        ),
        image_token_id=token("<image>"),
        scale_factor=scale_factor,
        **ids,
    )  # fmt: skip
    model = Idefics3ForConditionalGeneration(config)
    model.generation_config = GenerationConfig(**ids, max_new_tokens=32)
    image_processor = Idefics3ImageProcessorPil(
        size={"longest_edge": 2 * size.image_size}, max_image_size={"longest_edge": size.image_size},
        do_image_splitting=True, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
    )  # fmt: skip
    image_seq_len = (size.image_size // PATCH_SIZE) ** 2 // scale_factor**2
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer,
                                  chat_template=_published_template("smolvlm"), image_seq_len=image_seq_len)  # fmt: skip
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)


def build_llava_next(texts: list[str], out_dir: Path, size: TinySize) -> None:
    """Write a tiny LLaVA-NeXT (llava-v1.6-mistral's architecture: a CLIP vision tower, a projector and a Mistral
    language model, images tiled by `image_grid_pinpoints`) and its `LlavaNextProcessor`, with the published
    chat template, to `out_dir`.

    The pinpoints are llava-v1.6's (336×672, 672×336, 672×672, 1008×336, 336×1008) scaled to `size.image_size`
    tiles; the processor returns `image_sizes` and `pixel_values` of shape (batch, tiles, 3, side, side), and the
    number of `<image>` tokens of each image follows its size (tiles, unpadding and the newline token).
    """
    from transformers import (
        CLIPVisionConfig,
        GenerationConfig,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessorPil,
        LlavaNextProcessor,
        MistralConfig,
    )

    tokenizer = _family_tokenizer(texts, ["<unk>", "<s>", "</s>", "<image>", "<pad>"], style="metaspace",
                                  bos="<s>", eos="</s>", pad="<pad>", unk="<unk>", add_bos=True)  # fmt: skip
    token = tokenizer.convert_tokens_to_ids
    ids = {"bos_token_id": token("<s>"), "eos_token_id": token("</s>"), "pad_token_id": token("<pad>")}
    side = size.image_size
    pinpoints = [[side, 2 * side], [2 * side, side], [2 * side, 2 * side], [3 * side, side], [side, 3 * side]]
    config = LlavaNextConfig(
        vision_config=CLIPVisionConfig(**size.vision_kwargs(), projection_dim=size.hidden_size),
        text_config=MistralConfig(
            vocab_size=len(tokenizer), hidden_size=size.hidden_size, intermediate_size=2 * size.intermediate_size,
            num_hidden_layers=NUM_LAYERS, num_attention_heads=NUM_HEADS, num_key_value_heads=2,
            max_position_embeddings=MAX_POSITIONS, sliding_window=None, **ids,
        ),
        image_token_index=token("<image>"),
        image_grid_pinpoints=pinpoints,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        image_seq_length=(side // PATCH_SIZE) ** 2,
        **{"pad_token_id": ids["pad_token_id"]},
    )  # fmt: skip
    model = LlavaNextForConditionalGeneration(config)
    model.generation_config = GenerationConfig(**ids, max_new_tokens=32)
    image_processor = LlavaNextImageProcessorPil(size={"shortest_edge": side}, crop_size={"height": side, "width": side},
                                                 image_grid_pinpoints=pinpoints)  # fmt: skip
    processor = LlavaNextProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH_SIZE,
                                   vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                   chat_template=_published_template("llava_next"), image_token="<image>")  # fmt: skip
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
