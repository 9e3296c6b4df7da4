"""Resuming a run: which checkpoint `resume_checkpoint` picks (an incomplete one, left by a kill while it was being
written, is skipped with a notice), and `load_model_weights` restoring a full model saved in the checkpoint format
(the end-to-end checks, per trainer and mode, are the `test_*_resume.py` files of the task packages)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file

from radtune.common.checkpoints import checkpoint_problem, load_model_weights
from radtune.common.run import resume_checkpoint


def _checkpoint(folder, step, weights="model.safetensors", state=True):
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    if weights:
        save_file({"w": torch.ones(3, 2), "b": torch.zeros(2)}, str(path / weights))
    if state:
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))
    return path


def _args(folder, value):
    return SimpleNamespace(output_dir=str(folder), resume_from_checkpoint=value)


def test_a_complete_checkpoint_has_its_state_and_whole_weights(tmp_path):
    assert checkpoint_problem(_checkpoint(tmp_path, 1)) is None
    assert checkpoint_problem(_checkpoint(tmp_path, 2, weights="adapter_model.safetensors")) is None
    assert checkpoint_problem(_checkpoint(tmp_path, 3, state=False)) == "no trainer_state.json"
    assert checkpoint_problem(_checkpoint(tmp_path, 4, weights=None)) == "no model weights"
    truncated = _checkpoint(tmp_path, 5)
    (truncated / "trainer_state.json").write_text('{"global_step": 5, "log_hi')
    assert checkpoint_problem(truncated) == "trainer_state.json is truncated"
    cut = _checkpoint(tmp_path, 6)
    data = (cut / "model.safetensors").read_bytes()
    (cut / "model.safetensors").write_bytes(data[:-4])  # the last tensor's bytes cut short
    assert checkpoint_problem(cut) == "model.safetensors is truncated"
    (cut / "model.safetensors").write_bytes(data[:20])  # inside the header
    assert checkpoint_problem(cut) == "model.safetensors is truncated"
    sharded = _checkpoint(tmp_path, 7, weights="model-00001-of-00002.safetensors")
    (sharded / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"w": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}})
    )
    assert checkpoint_problem(sharded) == "shard model-00002-of-00002.safetensors is missing"


def test_resume_skips_an_incomplete_last_checkpoint_with_one_notice(tmp_path, capsys):
    run = tmp_path / "run"
    for step in (5, 10):
        _checkpoint(run, step)
    _checkpoint(run, 15, state=False)  # killed before trainer_state.json, which the Trainer writes last
    assert resume_checkpoint(_args(run, "true")) == str(run / "checkpoint-10")
    (notice,) = capsys.readouterr().out.splitlines()
    assert notice.startswith(f"notice: skipping incomplete {run / 'checkpoint-15'} (no trainer_state.json")
    assert resume_checkpoint(_args(run, "last")) == str(run / "checkpoint-10")
    assert resume_checkpoint(_args(run, str(run / "checkpoint-5"))) == str(run / "checkpoint-5")
    # a path names exactly one checkpoint: an incomplete one is an error, not a silent substitute
    with pytest.raises(ValueError, match=r"checkpoint-15 is incomplete \(no trainer_state.json\); pass an earlier"):
        resume_checkpoint(_args(run, str(run / "checkpoint-15")))


def test_resume_starts_afresh_when_no_checkpoint_is_complete(tmp_path, capsys):
    run = tmp_path / "run"
    _checkpoint(run, 4, weights=None)
    assert resume_checkpoint(_args(run, "true")) is None
    out = capsys.readouterr().out
    assert "skipping incomplete" in out and "no complete checkpoint" in out and "from the beginning" in out
    assert resume_checkpoint(_args(tmp_path / "nothing-yet", "true")) is None
    for value in (None, "false", "none", ""):
        assert resume_checkpoint(_args(run, value)) is None
    with pytest.raises(ValueError, match="no such checkpoint folder"):
        resume_checkpoint(_args(run, str(tmp_path / "nowhere")))


def test_full_model_weights_are_restored_through_the_conversion_mapping(tiny_model, tmp_path):
    from safetensors.torch import load_file
    from transformers import CLIPModel, LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration.from_pretrained(tiny_model("llava"))
    trained = LlavaForConditionalGeneration.from_pretrained(tiny_model("llava"))
    with torch.no_grad():
        for parameter in trained.parameters():
            parameter.add_(torch.randn_like(parameter))
    trained.save_pretrained(tmp_path / "checkpoint-1")
    # The cause of the silent restart: the checkpoint is in the Hub format, whose keys are not the model's.
    saved = load_file(tmp_path / "checkpoint-1" / "model.safetensors")
    assert not set(saved) & set(model.state_dict())
    frozen = model.model.vision_tower.requires_grad_(False)

    load_model_weights(model, tmp_path / "checkpoint-1")
    for (name, expected), actual in zip(trained.state_dict().items(), model.state_dict().values(), strict=True):
        assert torch.equal(actual, expected), name
    assert not any(p.requires_grad for p in frozen.parameters())  # the parameters were filled, not replaced
    assert model.lm_head.weight is model.get_input_embeddings().weight or not model.config.tie_word_embeddings

    CLIPModel.from_pretrained(tiny_model("clip")).save_pretrained(tmp_path / "other")
    with pytest.raises(ValueError, match=r"other does not match the model \(\d+ weights missing"):
        load_model_weights(model, tmp_path / "other")
