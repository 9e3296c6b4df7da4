"""Load a trained LLaVA (adapter or full model) and answer questions about images, in batches.

Shared by the end-of-training evaluation, `radtune vqa evaluate`, `radtune vqa predict` and `radtune vqa merge`,
so every path formats prompts exactly as training did (the processor's chat template, `add_generation_prompt`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BASE_MODEL = "llava-hf/llava-1.5-7b-hf"


def resolve(repo_or_path: str | Path) -> Path:
    """A local folder for `repo_or_path` (downloaded from the Hub when it is not a local path)."""
    from radtune.common.hub import resolve_model_path

    return resolve_model_path(str(repo_or_path))


def ensure_training_chat_template(processor) -> None:
    """Give `processor` radtune's LLaVA template when its own has no `{% generation %}` markers.

    LLaVA-1.5's published template marks no assistant span, so TRL's `assistant_only_loss` cannot mask the
    prompt with it; radtune's template renders the same `USER: <image>\\n… ASSISTANT: …</s>` format with markers.
    """
    from trl.chat_template_utils import has_generation_markers

    from radtune.common.chat_templates import LLAVA_CHAT_TEMPLATE

    if not has_generation_markers(processor.chat_template):
        processor.chat_template = LLAVA_CHAT_TEMPLATE
        processor.tokenizer.chat_template = LLAVA_CHAT_TEMPLATE


def load_vqa_model(
    adapter_or_model: str | Path,
    base: str | Path | None = None,
    dtype: str = "auto",
    load_in_4bit: bool = False,
    device: str | None = None,
):
    """Load a LoRA adapter on its base model, or a full (merged) model, with its processor.

    Args:
        adapter_or_model (`str` or `Path`): adapter or model folder, or a Hub repo id of either.
        base (`str` or `Path`, *optional*): base model for an adapter; defaults to the adapter's
            `base_model_name_or_path`.
        dtype (`str`, *optional*, defaults to `"auto"`): torch dtype name for the weights.
        load_in_4bit (`bool`, *optional*, defaults to `False`): quantise the base model with bitsandbytes (nf4).
        device (`str`, *optional*): `"cuda"`, `"cpu"`, …; defaults to CUDA when available.

    Returns:
        `(model, processor)` with the model in eval mode.
    """
    import torch
    from transformers import AutoProcessor, BitsAndBytesConfig, LlavaForConditionalGeneration

    folder = resolve(adapter_or_model)
    adapter_config = folder / "adapter_config.json"
    is_adapter = adapter_config.is_file()
    if is_adapter:
        base = base or json.loads(adapter_config.read_text())["base_model_name_or_path"]
        base_folder = resolve(base)
    else:
        base_folder = folder
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    kwargs = {"dtype": dtype if dtype == "auto" else getattr(torch, dtype)}
    if load_in_4bit:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )  # fmt: skip
        kwargs["device_map"] = {"": device}
    model = LlavaForConditionalGeneration.from_pretrained(base_folder, **kwargs)
    if is_adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, folder)
    if not load_in_4bit:
        model.to(device)
    # Training saves the processor (with its training chat template) beside the adapter: prefer it.
    processor_folder = folder if (folder / "processor_config.json").is_file() or (folder / "tokenizer_config.json").is_file() else base_folder  # fmt: skip
    processor = AutoProcessor.from_pretrained(processor_folder)
    ensure_training_chat_template(processor)
    model.eval()
    return model, processor


def _prompt(processor, question: str) -> str:
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def generate_answers(
    model,
    processor,
    images: Sequence,
    questions: Sequence[str],
    batch_size: int = 8,
    max_new_tokens: int = 32,
    progress: bool = True,
) -> list[str]:
    """Greedy answers for (image, question) pairs, batched with left padding.

    Args:
        images (`Sequence`): PIL images (or anything `radtune.common.images.load_image` opens).
        questions (`Sequence[str]`): one question per image.
        batch_size (`int`, *optional*, defaults to `8`): pairs per generation call.
        max_new_tokens (`int`, *optional*, defaults to `32`): longest answer.
        progress (`bool`, *optional*, defaults to `True`): show a progress bar.

    Returns:
        `list[str]`: the decoded answers, stripped.
    """
    import torch
    from tqdm.auto import tqdm

    from radtune.common.images import load_image

    if len(images) != len(questions):
        raise ValueError(f"{len(images)} images but {len(questions)} questions")
    tokenizer = processor.tokenizer
    original_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation continues from the right end of every row
    device = next(model.parameters()).device
    answers: list[str] = []
    try:
        starts = range(0, len(questions), batch_size)
        for start in tqdm(starts, desc="generating answers", unit="batch", disable=not progress):
            batch_images = [load_image(image) for image in images[start : start + batch_size]]
            prompts = [_prompt(processor, question) for question in questions[start : start + batch_size]]
            # The chat template already starts with the BOS token.
            inputs = processor(images=batch_images, text=prompts, return_tensors="pt", padding=True,
                               add_special_tokens=False).to(device)  # fmt: skip
            if "pixel_values" in inputs:
                inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
            with torch.inference_mode():
                output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                        pad_token_id=tokenizer.pad_token_id)  # fmt: skip
            new_tokens = output[:, inputs["input_ids"].shape[1] :]
            answers += [text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
    finally:
        tokenizer.padding_side = original_side
    return answers


@dataclass
class VQAItem:
    id: str
    image: object
    question: str
    answer: str
    answer_type: str
    # What the per-subgroup scores split by, where the dataset has it (see radtune.common.metrics.subgroups).
    category: str | None = None
    view: str | None = None
    modality: str | None = None
    image_id: str | None = None


def _text_of(content) -> str:
    if isinstance(content, str):
        return content
    return " ".join(part.get("text") or "" for part in content if part.get("type") == "text").strip()


def _optional_text(value) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def vqa_items(dataset) -> list[VQAItem]:
    """The (image, question, answer) items of a QA dataset in radtune's export format.

    Rows with `question`/`answer` columns give one item each; rows that only carry `messages` give one item per
    user/assistant turn pair (multi-turn conversations are evaluated turn by turn, each with the image). An item's
    id is the row's `qa_id` when it has one (the export's `id` is the image's, shared by all its questions; it
    becomes `image_id`), and `category`, `view` and `modality` are kept where the row has them.
    """
    items: list[VQAItem] = []
    columns = set(dataset.column_names)
    has_qa = {"question", "answer"} <= columns
    for index, row in enumerate(dataset):
        image_id = None if row.get("id") is None else str(row["id"])
        row_id = str(row["qa_id"]) if row.get("qa_id") else (image_id or str(index))
        images = row.get("images") or ([row["image"]] if row.get("image") is not None else [])
        if not images:
            raise ValueError(f"row {row_id} has no image")
        answer_type = str(row.get("answer_type") or "open").lower()
        view, modality = _optional_text(row.get("view")), _optional_text(row.get("modality"))
        if has_qa and isinstance(row["question"], str):
            items.append(VQAItem(row_id, images[0], row["question"], str(row["answer"]), answer_type,
                                 _optional_text(row.get("category")), view, modality, image_id))  # fmt: skip
            continue
        messages = row.get("messages")
        if not messages:
            raise ValueError(f"row {row_id} has neither question/answer columns nor messages")
        answer_types = row.get("answer_type") if isinstance(row.get("answer_type"), list) else None
        categories = row.get("category") if isinstance(row.get("category"), list) else None
        turn = 0
        for user, assistant in zip(messages[::2], messages[1::2], strict=False):  # a last unanswered turn is left out
            if user["role"] != "user" or assistant["role"] != "assistant":
                raise ValueError(f"row {row_id}: messages must alternate user/assistant")
            kind = str(answer_types[turn]).lower() if answer_types else answer_type
            category = categories[turn] if categories and turn < len(categories) else row.get("category")
            items.append(VQAItem(f"{row_id}-{turn}", images[0], _text_of(user["content"]),
                                 _text_of(assistant["content"]), kind, _optional_text(category), view, modality,
                                 image_id))  # fmt: skip
            turn += 1
    return items
