"""The dual encoder: save/load round trip, CLIP-like outputs, freezing by blocks, and a push/pull through the Hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from radtune.contrastive.dual_encoder import CONFIG_NAME, DualEncoderModel
from radtune.contrastive.modeling import block_list, load_contrastive, set_tower_trainable, towers

HERE = Path(__file__).parent


def test_save_load_round_trip(tiny_model, tmp_path):
    folder = tiny_model("dual-encoder")
    model = DualEncoderModel.from_text_image_pretrained(folder / "text", folder / "image", projection_dim=8,
                                                        text_pooling="cls")  # fmt: skip
    with torch.no_grad():
        model.logit_scale.fill_(3.0)
    model.save_pretrained(tmp_path / "saved")
    assert json.loads((tmp_path / "saved" / CONFIG_NAME).read_text())["projection_dim"] == 8
    loaded = DualEncoderModel.from_pretrained(tmp_path / "saved").eval()
    model.eval()
    assert loaded.config == model.config and loaded.logit_scale.item() == 3.0
    pixels = torch.rand(2, 3, 32, 32)
    ids = torch.tensor([[2, 10, 11, 3], [2, 12, 3, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    with torch.no_grad():
        a, b = model(input_ids=ids, pixel_values=pixels, attention_mask=mask), loaded(input_ids=ids, pixel_values=pixels, attention_mask=mask)
    assert torch.allclose(a.logits_per_image, b.logits_per_image)
    assert a.image_embeds.shape == (2, 8) and torch.allclose(a.image_embeds.norm(dim=-1), torch.ones(2))
    assert torch.allclose(a.logits_per_text, a.logits_per_image.T)
    with pytest.raises(ValueError, match=CONFIG_NAME):
        DualEncoderModel.from_pretrained(folder / "text")  # a plain tower folder has no heads


def test_block_list_and_partial_unfreezing(tiny_model):
    model, _ = load_contrastive(tiny_model("clip"))
    name, blocks = block_list(model.vision_model)
    assert name == "encoder.layers" and len(blocks) == 2
    set_tower_trainable(model.vision_model, freeze=True, unfreeze_last_n=1)
    trainable = {n for n, p in model.vision_model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("encoder.layers.1.", "post_layernorm.")) for n in trainable)
    assert any(n.startswith("post_layernorm.") for n in trainable)
    with pytest.raises(ValueError, match="has 2"):
        set_tower_trainable(model.text_model, freeze=True, unfreeze_last_n=3)
    folder = tiny_model("dual-encoder")
    dual = DualEncoderModel.from_text_image_pretrained(folder / "text", folder / "image", projection_dim=8)
    assert block_list(towers(dual)["image"])[0] == "encoder.stages"
    assert block_list(towers(dual)["text"])[0] == "encoder.layer"


@pytest.mark.slow
def test_train_push_and_pull_through_the_hub(hub_server, tiny_model, pair_dataset, tmp_path):
    out = tmp_path / "report.json"
    env = {**os.environ, **hub_server.client_env(tmp_path / "hf-home")}
    done = subprocess.run([sys.executable, str(HERE / "hub_probe.py"), str(out), str(pair_dataset),
                           str(tiny_model("dual-encoder")), str(tiny_model("clip"))], env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["same_keys"] and report["same_weights"]
    assert {"dual_encoder_config.json", "heads.safetensors", "README.md", "text/config.json",
            "image/preprocessor_config.json", "run_info.json", "metrics.json"} <= set(report["files"])  # fmt: skip
    assert report["card_mentions_contrastive"]
    assert report["private"] is True  # published privately unless --hub_private_repo false
    assert report["clip_class"] == "CLIPModel"


def test_a_missing_local_model_folder_is_named_not_a_hub_validation_traceback(tmp_path):
    from radtune.common.hub import HubError

    missing = tmp_path / "runs" / "no-such-clip"
    with pytest.raises(HubError, match=f"no such folder: {missing}"):
        load_contrastive(missing)


def test_reloading_a_dual_encoder_reports_no_newly_initialised_weights(tiny_model, caplog, monkeypatch):
    """The saved text tower has no pooler (the dual encoder drops it): a plain load would report the pooler's
    weights as newly initialised on every reload; the dual encoder loads the tower without one."""
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    folder = tiny_model("dual-encoder")
    monkeypatch.setattr(hf_logging._get_library_root_logger(), "propagate", True)  # into caplog
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_warning()  # the suite runs with TRANSFORMERS_VERBOSITY=error; users see warnings
    try:
        AutoModel.from_pretrained(folder / "text")
        assert "pooler.dense.weight" in caplog.text  # the report this test would see
        caplog.clear()
        model = DualEncoderModel.from_pretrained(folder)
    finally:
        hf_logging.set_verbosity(verbosity)
    assert "LOAD REPORT" not in caplog.text and "pooler" not in caplog.text
    assert model.text_model.pooler is None
