"""The tiny contrastive models (`radtune tiny clip|dual-encoder`): each loads with plain code, runs and trains a LoRA
adapter; the dual encoder is a `DualEncoderModel` folder whose `text/` and `image/` are plain `AutoModel` towers."""

from __future__ import annotations

import torch
from PIL import Image

from radtune.contrastive.dual_encoder import CONFIG_NAME, HEADS_NAME, DualEncoderModel
from radtune.contrastive.modeling import load_contrastive


def _images(n=2):
    return [Image.new("RGB", (40 + 8 * i, 36), color=(30 * i, 90, 160)) for i in range(n)]


def test_tiny_clip_loads_runs_and_a_lora_step_changes_only_the_adapter(tiny_model, lora_step):
    from transformers import AutoProcessor, CLIPModel

    folder = tiny_model("clip")
    model = CLIPModel.from_pretrained(folder)
    processor = AutoProcessor.from_pretrained(folder)
    batch = processor(text=["right pneumothorax", "enlarged heart"], images=_images(), return_tensors="pt",
                      padding=True)  # fmt: skip
    lora_step(model, lambda m: m(**batch, return_loss=True).loss, ["q_proj", "v_proj"])


def test_tiny_dual_encoder_towers_load_as_plain_automodels_and_train_a_lora_adapter(tiny_model, lora_step):
    """`text/` (BERT + tokenizer) and `image/` (ResNet + image processor): what a recipe's
    `--text_model_name_or_path` / `--image_model_name_or_path` point at."""
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    folder = tiny_model("dual-encoder")
    text_model = AutoModel.from_pretrained(folder / "text")
    image_model = AutoModel.from_pretrained(folder / "image")
    tokens = AutoTokenizer.from_pretrained(folder / "text")(["left effusion", "no finding"], return_tensors="pt",
                                                            padding=True)  # fmt: skip
    pixels = AutoImageProcessor.from_pretrained(folder / "image")(_images(), return_tensors="pt").pixel_values
    generator = torch.Generator().manual_seed(0)
    text_head = torch.randn(text_model.config.hidden_size, 8, generator=generator)
    image_head = torch.randn(image_model.config.hidden_sizes[-1], 8, generator=generator)

    def loss_fn(m):
        text = torch.nn.functional.normalize(m.text(**tokens).last_hidden_state[:, 0] @ text_head, dim=-1)
        image = torch.nn.functional.normalize(m.image(pixel_values=pixels).pooler_output.flatten(1) @ image_head,
                                              dim=-1)  # fmt: skip
        return torch.nn.functional.cross_entropy(10 * text @ image.T, torch.arange(2))

    lora_step(torch.nn.ModuleDict({"text": text_model, "image": image_model}), loss_fn, ["query", "value"])


def test_tiny_dual_encoder_is_a_saved_dual_encoder(tiny_model, tmp_path):
    """Written by `DualEncoderModel.save_pretrained`: `load_contrastive` opens it with its processor, its heads
    project to the tiny hidden size, and saving it again gives the same weights."""
    folder = tiny_model("dual-encoder")
    assert (folder / CONFIG_NAME).is_file() and (folder / HEADS_NAME).is_file()
    model, processor = load_contrastive(folder)
    assert isinstance(model, DualEncoderModel) and processor.architecture == "dual-encoder"
    assert model.config.projection_dim == 32 and model.config.text_embed_dim == 32
    batch = processor.tokenizer(["left effusion", "no finding"], return_tensors="pt", padding=True)
    pixels = processor.image_processor(_images(), return_tensors="pt").pixel_values
    with torch.no_grad():
        output = model.eval()(input_ids=batch.input_ids, attention_mask=batch.attention_mask, pixel_values=pixels)
    assert output.logits_per_image.shape == (2, 2) and torch.isfinite(output.logits_per_image).all()
    assert torch.allclose(output.image_embeds.norm(dim=-1), torch.ones(2))
    model.save_pretrained(tmp_path / "again")
    reloaded = DualEncoderModel.from_pretrained(tmp_path / "again").state_dict()
    assert all(torch.equal(reloaded[name], tensor) for name, tensor in model.state_dict().items())
