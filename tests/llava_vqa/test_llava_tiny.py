"""The tiny LLaVA (`radtune tiny llava`): loads with plain transformers code, trains a LoRA adapter, generates, has as
many image tokens as the vision tower has patches, masks all but the answers with radtune's chat template, and can
start its vision tower from a CLIP checkpoint."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from radtune.common.cli import cli
from radtune.common.tiny import build_tiny
from radtune.llava_vqa.chat_template import LLAVA_CHAT_TEMPLATE


def _images(n=2):
    return [Image.new("RGB", (40 + 8 * i, 36), color=(30 * i, 90, 160)) for i in range(n)]


def test_tiny_llava_loads_runs_and_a_lora_step_changes_only_the_adapter(tiny_model, lora_step):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    folder = tiny_model("llava")
    processor = AutoProcessor.from_pretrained(folder)
    assert processor.chat_template == LLAVA_CHAT_TEMPLATE
    model = LlavaForConditionalGeneration.from_pretrained(folder)
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is there a pleural effusion?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Yes."}]},
    ]
    texts = [processor.apply_chat_template(messages, tokenize=False)] * 2
    batch = processor(images=_images(), text=texts, return_tensors="pt", padding=True, add_special_tokens=False)
    batch["labels"] = batch["input_ids"].clone()
    lora_step(model, lambda m: m(**batch).loss, ["q_proj", "v_proj"])


def test_tiny_llava_generates(tiny_model):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    folder = tiny_model("llava")
    model = LlavaForConditionalGeneration.from_pretrained(folder)
    processor = AutoProcessor.from_pretrained(folder)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Any effusion?"}]}]
    inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                           return_dict=True, return_tensors="pt", images=_images(1))  # fmt: skip
    if "pixel_values" not in inputs:
        inputs = processor(images=_images(1), text=processor.apply_chat_template(messages, add_generation_prompt=True),
                           return_tensors="pt", add_special_tokens=False)  # fmt: skip
    prompt_length = inputs["input_ids"].shape[1]
    output = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert output.shape[1] > prompt_length


def test_llava_image_token_count_matches_vision_tower(tiny_model):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    folder = tiny_model("llava")
    processor = AutoProcessor.from_pretrained(folder)
    model = LlavaForConditionalGeneration.from_pretrained(folder)
    inputs = processor(images=_images(1), text=["USER: <image>\nhello ASSISTANT:"], return_tensors="pt")
    n_image_tokens = int((inputs["input_ids"] == model.config.image_token_index).sum())
    with torch.no_grad():
        features = model.get_image_features(pixel_values=inputs["pixel_values"])
    features = features.pooler_output if hasattr(features, "pooler_output") else features
    features = (
        torch.cat(list(features)) if isinstance(features, (list, tuple)) else features.reshape(-1, features.shape[-1])
    )
    assert n_image_tokens == features.shape[0]


def test_llava_assistant_only_loss_labels_only_assistant_tokens(tiny_model):
    """TRL's assistant_only_loss, with our chat template, leaves labels on the answers and end-of-turn only."""
    from datasets import Dataset
    from transformers import AutoProcessor, LlavaForConditionalGeneration
    from trl import SFTConfig, SFTTrainer

    folder = tiny_model("llava")
    processor = AutoProcessor.from_pretrained(folder)
    answers = ["Yes.", "No, the costophrenic angles are sharp."]
    rows = [
        {
            "messages": [
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]},
                {"role": "assistant", "content": [{"type": "text", "text": answer}]},
            ],
            "images": [image],
        }
        for question, answer, image in zip(
            ["Is the heart enlarged?", "Is there an effusion?"], answers, _images(), strict=True
        )
    ]
    trainer = SFTTrainer(
        model=LlavaForConditionalGeneration.from_pretrained(folder),
        args=SFTConfig(
            output_dir="unused",
            activation_checkpointing=False,  # TRL's default goes through a deprecated alias
            assistant_only_loss=True,
            max_length=None,
            per_device_train_batch_size=2,
            report_to=[],
            use_cpu=True,
            dataloader_num_workers=0,
        ),
        train_dataset=Dataset.from_list(rows),
        processing_class=processor,
    )
    batch = next(iter(trainer.get_train_dataloader()))
    tokenizer = processor.tokenizer
    for row_labels, input_ids, answer in zip(batch["labels"], batch["input_ids"], answers, strict=True):
        kept = row_labels != -100
        # Exactly the answer and the end-of-turn token carry labels, and they equal the inputs there.
        assert torch.equal(row_labels[kept], input_ids[kept])
        expected = tokenizer(" " + answer, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
        assert row_labels[kept].tolist() == expected
        image_token = processor.tokenizer.convert_tokens_to_ids("<image>")
        assert not (row_labels == image_token).any()


def test_tiny_size_options_change_the_architecture(tmp_path):
    from transformers import AutoProcessor, LlavaConfig

    build_tiny("llava", tmp_path / "big", image_size=64, hidden_size=48)
    config = LlavaConfig.from_pretrained(tmp_path / "big")
    assert config.vision_config.image_size == 64 and config.text_config.hidden_size == 48
    processor = AutoProcessor.from_pretrained(tmp_path / "big")
    inputs = processor(images=_images(1), text=["USER: <image>\nhi ASSISTANT:"], return_tensors="pt")
    assert int((inputs["input_ids"] == config.image_token_index).sum()) == (64 // 8) ** 2


def test_tiny_llava_vision_tower_starts_from_a_clip_checkpoint(tmp_path, tiny_model):
    """`--vision-tower CLIP_DIR` copies the CLIP's vision weights (not the random ones) and refuses a misfit."""
    from transformers import CLIPModel, LlavaForConditionalGeneration

    clip_dir = tiny_model("clip")
    clip = CLIPModel.from_pretrained(clip_dir)
    with torch.no_grad():  # make the CLIP's weights unlike any freshly drawn tower's
        for parameter in clip.vision_model.parameters():
            parameter.add_(0.5)
    clip.save_pretrained(tmp_path / "clip")
    result = CliRunner().invoke(
        cli, ["tiny", "llava", str(tmp_path / "llava"), "--vision-tower", str(tmp_path / "clip")]
    )
    assert result.exit_code == 0, result.output
    llava = LlavaForConditionalGeneration.from_pretrained(tmp_path / "llava")
    copied = llava.model.vision_tower.state_dict()
    expected = clip.vision_model.state_dict()
    assert copied.keys() == expected.keys()
    assert all(torch.equal(copied[name], expected[name]) for name in expected)
    random = LlavaForConditionalGeneration.from_pretrained(tiny_model("llava")).model.vision_tower.state_dict()
    assert not torch.equal(random["embeddings.patch_embedding.weight"], copied["embeddings.patch_embedding.weight"])

    result = CliRunner().invoke(cli, ["tiny", "llava", str(tmp_path / "misfit"), "--image-size", "64",
                                      "--vision-tower", str(tmp_path / "clip")])  # fmt: skip
    assert result.exit_code == 1 and "image_size 32 (tiny LLaVA: 64)" in result.output
    # The option is llava's own: another kind refuses it by name.
    with pytest.raises(ValueError, match="tiny 'clip' takes no option 'vision_tower' \\(its options: none\\)"):
        build_tiny("clip", tmp_path / "c", vision_tower=tmp_path / "clip")
    result = CliRunner().invoke(cli, ["tiny", "clip", str(tmp_path / "c"), "--vision-tower", str(tmp_path / "clip")])
    assert result.exit_code == 1 and "takes no option 'vision_tower'" in result.output
