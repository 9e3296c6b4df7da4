"""Tiny models: each KIND loads back with plain transformers code, runs, and trains a LoRA adapter."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from radtune.common.cli import cli
from radtune.common.tiny import KINDS, build_tiny, builtin_corpus, train_tokenizer

# LoRA targets per kind, as a user would write them for the full-size model.
LORA_TARGETS = {
    "llava": ["q_proj", "v_proj"],
    "vit-gpt2": ["c_attn"],
    "blip-caption": ["query", "value"],
    "blip-vqa": ["query", "value"],
    "clip": ["q_proj", "v_proj"],
    "dual-encoder": ["query", "value"],
}


def _images(n=2):
    return [Image.new("RGB", (40 + 8 * i, 36), color=(30 * i, 90, 160)) for i in range(n)]


def _load_and_batch(kind, folder):
    """Load `folder` with the Auto/plain classes a user would use; return (model, loss_fn)."""
    from transformers import AutoModel, AutoProcessor, AutoTokenizer

    if kind == "llava":
        from transformers import LlavaForConditionalGeneration

        processor = AutoProcessor.from_pretrained(folder)
        model = LlavaForConditionalGeneration.from_pretrained(folder)
        messages = [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is there a pleural effusion?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Yes."}]},
        ]
        texts = [processor.apply_chat_template(messages, tokenize=False)] * 2
        batch = processor(images=_images(), text=texts, return_tensors="pt", padding=True, add_special_tokens=False)
        batch["labels"] = batch["input_ids"].clone()
        return model, lambda m: m(**batch).loss
    if kind == "vit-gpt2":
        from transformers import AutoImageProcessor, VisionEncoderDecoderModel

        model = VisionEncoderDecoderModel.from_pretrained(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        pixels = AutoImageProcessor.from_pretrained(folder)(_images(), return_tensors="pt").pixel_values
        labels = tokenizer(["No pleural effusion.", "Mild cardiomegaly."], padding=True, return_tensors="pt").input_ids
        return model, lambda m: m(pixel_values=pixels, labels=labels).loss
    if kind in ("blip-caption", "blip-vqa"):
        from transformers import BlipForConditionalGeneration, BlipForQuestionAnswering

        model_class = BlipForQuestionAnswering if kind == "blip-vqa" else BlipForConditionalGeneration
        model = model_class.from_pretrained(folder)
        processor = AutoProcessor.from_pretrained(folder)
        if kind == "blip-vqa":
            batch = processor(images=_images(), text=["Is there a nodule?"] * 2, return_tensors="pt")
            batch["labels"] = processor.tokenizer(["yes", "no"], return_tensors="pt", padding=True).input_ids
        else:
            batch = processor(images=_images(), text=["Small left effusion.", "Normal chest."], return_tensors="pt",
                              padding=True)  # fmt: skip
            batch["labels"] = batch["input_ids"].clone()
        return model, lambda m: m(**batch).loss
    if kind == "clip":
        from transformers import CLIPModel

        model = CLIPModel.from_pretrained(folder)
        processor = AutoProcessor.from_pretrained(folder)
        batch = processor(text=["right pneumothorax", "enlarged heart"], images=_images(), return_tensors="pt",
                          padding=True)  # fmt: skip
        return model, lambda m: m(**batch, return_loss=True).loss
    # dual-encoder: a BERT text tower and a ResNet image tower, each a plain AutoModel folder.
    from transformers import AutoImageProcessor

    text_model = AutoModel.from_pretrained(folder / "text")
    image_model = AutoModel.from_pretrained(folder / "image")
    tokens = AutoTokenizer.from_pretrained(folder / "text")(["left effusion", "no finding"], return_tensors="pt",
                                                            padding=True)  # fmt: skip
    pixels = AutoImageProcessor.from_pretrained(folder / "image")(_images(), return_tensors="pt").pixel_values
    generator = torch.Generator().manual_seed(0)
    text_head = torch.randn(text_model.config.hidden_size, 8, generator=generator)
    image_head = torch.randn(image_model.config.hidden_sizes[-1], 8, generator=generator)
    model = torch.nn.ModuleDict({"text": text_model, "image": image_model})

    def loss_fn(m):
        text = torch.nn.functional.normalize(m.text(**tokens).last_hidden_state[:, 0] @ text_head, dim=-1)
        image = torch.nn.functional.normalize(m.image(pixel_values=pixels).pooler_output.flatten(1) @ image_head,
                                              dim=-1)  # fmt: skip
        logits = 10 * text @ image.T
        return torch.nn.functional.cross_entropy(logits, torch.arange(2))

    return model, loss_fn


@pytest.mark.parametrize("kind", KINDS)
def test_tiny_model_loads_runs_and_lora_step_changes_only_the_adapter(kind, tiny_model):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model, loss_fn = _load_and_batch(kind, tiny_model(kind))
    assert torch.isfinite(loss_fn(model))

    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=LORA_TARGETS[kind]))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss = loss_fn(model)
    assert torch.isfinite(loss)
    loss.backward()
    optimizer.step()

    after = dict(model.named_parameters())
    changed = {name for name in before if not torch.equal(before[name], after[name].detach())}
    assert changed, "the optimizer step changed no adapter weight"
    assert changed <= trainable, f"frozen weights changed: {sorted(changed - trainable)[:5]}"


@pytest.mark.parametrize("kind", ["llava", "vit-gpt2", "blip-caption"])
def test_tiny_generative_models_generate(kind, tiny_model):
    from transformers import AutoImageProcessor, AutoProcessor

    folder = tiny_model(kind)
    if kind == "llava":
        from transformers import LlavaForConditionalGeneration

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
    elif kind == "vit-gpt2":
        from transformers import VisionEncoderDecoderModel

        model = VisionEncoderDecoderModel.from_pretrained(folder)
        pixels = AutoImageProcessor.from_pretrained(folder)(_images(1), return_tensors="pt").pixel_values
        prompt_length = 1  # the decoder start token
        output = model.generate(pixel_values=pixels, max_new_tokens=4, do_sample=False)
        assert output[0, 0] == model.config.decoder_start_token_id
    else:
        from transformers import BlipForConditionalGeneration

        model = BlipForConditionalGeneration.from_pretrained(folder)
        pixels = AutoProcessor.from_pretrained(folder)(images=_images(1), return_tensors="pt").pixel_values
        prompt_length = 1
        output = model.generate(pixel_values=pixels, max_new_tokens=4, do_sample=False)
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
    features = torch.cat(list(features)) if isinstance(features, (list, tuple)) else features.reshape(-1, features.shape[-1])
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
        for question, answer, image in zip(["Is the heart enlarged?", "Is there an effusion?"], answers, _images(), strict=True)
    ]
    trainer = SFTTrainer(
        model=LlavaForConditionalGeneration.from_pretrained(folder),
        args=SFTConfig(output_dir="unused", assistant_only_loss=True, max_length=None, per_device_train_batch_size=2,
                       report_to=[], use_cpu=True, dataloader_num_workers=0),  # fmt: skip
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


def test_tokenizer_trains_on_given_texts():
    word = "pneumomediastinum"
    default = train_tokenizer(builtin_corpus(), "llama")
    custom = train_tokenizer([f"There is {word} and {word} again."] * 50, "llama")
    # Byte-level BPE merges the word with its leading space, as it appeared in the training texts.
    assert len(custom(" " + word, add_special_tokens=False).input_ids) == 1
    assert len(default(" " + word, add_special_tokens=False).input_ids) > 1


def test_tiny_cli_writes_loadable_folder_and_rejects_bad_input(tmp_path):
    from transformers import CLIPModel

    texts = tmp_path / "texts.txt"
    texts.write_text("Small right apical pneumothorax.\nNo pleural effusion.\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["tiny", "clip", str(tmp_path / "clip"), "--texts", str(texts)])
    assert result.exit_code == 0, result.output
    assert CLIPModel.from_pretrained(tmp_path / "clip").config.projection_dim > 0

    result = CliRunner().invoke(cli, ["tiny", "resnet", str(tmp_path / "x")])
    assert result.exit_code == 2 and "resnet" in result.output

    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["tiny", "clip", str(tmp_path / "y"), "--texts", str(empty)])
    assert result.exit_code == 1 and "no non-empty texts" in result.output


def test_tiny_size_options_change_the_architecture(tmp_path):
    from transformers import AutoProcessor, LlavaConfig

    build_tiny("llava", tmp_path / "big", image_size=64, hidden_size=48)
    config = LlavaConfig.from_pretrained(tmp_path / "big")
    assert config.vision_config.image_size == 64 and config.text_config.hidden_size == 48
    processor = AutoProcessor.from_pretrained(tmp_path / "big")
    inputs = processor(images=_images(1), text=["USER: <image>\nhi ASSISTANT:"], return_tensors="pt")
    assert int((inputs["input_ids"] == config.image_token_index).sum()) == (64 // 8) ** 2
    result = CliRunner().invoke(cli, ["tiny", "clip", str(tmp_path / "bad"), "--image-size", "30"])
    assert result.exit_code == 1 and "multiple of 8" in result.output


def test_build_tiny_rejects_unknown_kind(tmp_path):
    with pytest.raises(ValueError, match="unknown tiny model kind 'gpt5'"):
        build_tiny("gpt5", tmp_path)


def test_tiny_cli_trains_tokenizer_on_a_saved_dataset(tmp_path):
    from datasets import Dataset, DatasetDict
    from transformers import AutoTokenizer

    word = " pneumomediastinum"
    DatasetDict({"train": Dataset.from_dict({"question": [f"Is there{word}?"] * 40, "answer": ["Yes."] * 40})}).save_to_disk(tmp_path / "qa")
    result = CliRunner().invoke(cli, ["tiny", "vit-gpt2", str(tmp_path / "m"), "--texts", str(tmp_path / "qa")])
    assert result.exit_code == 0, result.output
    assert len(AutoTokenizer.from_pretrained(tmp_path / "m")(word).input_ids) == 1
    (tmp_path / "not-a-dataset").mkdir()
    result = CliRunner().invoke(cli, ["tiny", "clip", str(tmp_path / "x"), "--texts", str(tmp_path / "not-a-dataset")])
    assert result.exit_code == 1 and "neither a text file nor a dataset" in result.output


def test_tiny_llava_vision_tower_starts_from_a_clip_checkpoint(tmp_path, tiny_model):
    """`--vision-tower CLIP_DIR` copies the CLIP's vision weights (not the random ones) and refuses a misfit."""
    from transformers import CLIPModel, LlavaForConditionalGeneration

    clip_dir = tiny_model("clip")
    clip = CLIPModel.from_pretrained(clip_dir)
    with torch.no_grad():  # make the CLIP's weights unlike any freshly drawn tower's
        for parameter in clip.vision_model.parameters():
            parameter.add_(0.5)
    clip.save_pretrained(tmp_path / "clip")
    result = CliRunner().invoke(cli, ["tiny", "llava", str(tmp_path / "llava"), "--vision-tower", str(tmp_path / "clip")])
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
    with pytest.raises(ValueError, match="llava only"):
        build_tiny("clip", tmp_path / "c", vision_tower=tmp_path / "clip")
