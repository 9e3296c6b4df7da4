"""Training end to end, in-process through `main(*parse_args_and_config(make_parser(), args))`, with the tiny CLIP
and the tiny dual encoder."""

from __future__ import annotations

import hashlib
import json
import math

import pytest
import torch
from click.testing import CliRunner

from radtune.common.cli import cli
from radtune.common.config import parse_args_and_config
from radtune.contrastive.dual_encoder import DualEncoderModel
from radtune.contrastive.train import main, make_parser

pytestmark = pytest.mark.slow


def train(args: list[str]):
    return main(*parse_args_and_config(make_parser(), args))


def file_hashes(folder) -> dict:
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}  # fmt: skip


def changed(before: dict, after: dict, prefix: str) -> bool:
    names = [name for name in before if name.startswith(prefix)]
    assert names, f"no parameter starts with {prefix!r}"
    return any(not torch.equal(before[name], after[name]) for name in names)


def unchanged(before: dict, after: dict, prefix: str) -> bool:
    names = [name for name in before if name.startswith(prefix)]
    assert names, f"no parameter starts with {prefix!r}"
    return all(torch.equal(before[name], after[name]) for name in names)


def losses(trainer) -> list[float]:
    return [row["loss"] for row in trainer.state.log_history if "loss" in row]


def common_args(dataset, out) -> list[str]:
    return ["--dataset_name", str(dataset), "--output_dir", str(out), "--max_steps", "3",
            "--per_device_train_batch_size", "8", "--use_cpu", "true", "--logging_steps", "1",
            "--warmup_steps", "0", "--seed", "0"]  # fmt: skip


def test_clip_with_frozen_vision_tower(tiny_model, pair_dataset, tmp_path):
    from transformers import CLIPModel

    folder = tiny_model("clip")
    before = {k: v.clone() for k, v in CLIPModel.from_pretrained(folder).state_dict().items()}
    out = tmp_path / "clip"
    trainer = train([*common_args(pair_dataset, out), "--model_name_or_path", str(folder),
                     "--freeze_vision_tower", "true", "--dataset_test_split", "test",
                     # no validation split: evaluation during training falls back to the test split
                     "--eval_strategy", "steps", "--eval_steps", "3",
                     # a huge head step throws the logit scale far outside [0, log 100]; the clamp brings it back
                     "--temperature", "0.01", "--head_learning_rate", "10", "--learning_rate", "1e-3"])  # fmt: skip
    after = trainer.model.state_dict()
    assert losses(trainer) and all(math.isfinite(value) for value in losses(trainer))
    assert unchanged(before, after, "vision_model.")
    assert changed(before, after, "text_model.")
    assert changed(before, after, "visual_projection.") and changed(before, after, "text_projection.")
    scale = trainer.model.logit_scale.item()
    assert scale == pytest.approx(0.0) or scale == pytest.approx(math.log(100.0)), scale
    assert all(row["logit_scale"] <= 100.0 for row in trainer.state.log_history if "logit_scale" in row)
    # What a finished run leaves behind.
    for name in ("config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json", "loss_curve.png",
                 "README.md", "metrics.json", "evaluation_results.csv", "test_results.json", "trainer_state.json",
                 "run_info.json"):  # fmt: skip
        assert (out / name).is_file(), name
    assert list((out / "runs").rglob("events.out.tfevents.*")), "no TensorBoard event file"
    assert [row for row in trainer.state.log_history if math.isfinite(row.get("eval_loss", math.nan))]
    # The final evaluation: retrieval on the test split, as `radtune clip retrieve` writes it, and printed.
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["meta"]["task"] == "retrieval" and 0.0 <= metrics["metrics"]["i2t/recall@5"] <= 1.0
    assert metrics["meta"]["n"] == 12 and metrics["meta"]["text_column"] == "text"
    low, high = metrics["ci"]["i2t/recall@5"]
    assert low <= metrics["metrics"]["i2t/recall@5"] <= high
    test = json.loads((out / "test_results.json").read_text())
    assert test["i2t/recall@5"] == pytest.approx(metrics["metrics"]["i2t/recall@5"])
    info = json.loads((out / "run_info.json").read_text())
    assert info["task"] == "contrastive" and info["architecture"] == "clip" and info["base_model"] == str(folder)
    assert (info["text_column"], info["image_column"], info["max_text_length"]) == ("text", "image", 77)
    reloaded = CLIPModel.from_pretrained(out)
    assert torch.equal(reloaded.text_projection.weight, trainer.model.text_projection.weight)


def test_dual_encoder_triplet_with_last_text_block_unfrozen(tiny_model, pair_dataset, tmp_path):
    folder = tiny_model("dual-encoder")
    out = tmp_path / "dual"
    trainer = train([*common_args(pair_dataset, out), "--architecture", "dual-encoder",
                     "--text_model_name_or_path", str(folder / "text"), "--image_model_name_or_path", str(folder / "image"),
                     "--projection_dim", "16", "--loss", "triplet", "--triplet_mining", "semi-hard",
                     "--freeze_text_tower", "true", "--unfreeze_last_n_text_blocks", "1", "--max_text_length", "64",
                     "--text_column", "impression", "--learning_rate", "1e-2", "--report_to", "tensorboard"])  # fmt: skip
    assert losses(trainer) and all(math.isfinite(value) for value in losses(trainer))
    # The TensorBoard logger records the model's config: the dual encoder's must serialise like a transformers one.
    assert list(out.rglob("events.out.tfevents.*"))
    fresh = DualEncoderModel.from_text_image_pretrained(folder / "text", folder / "image", projection_dim=16)
    before, after = fresh.state_dict(), trainer.model.state_dict()
    assert unchanged(before, after, "text_model.embeddings.")
    assert unchanged(before, after, "text_model.encoder.layer.0.")
    assert changed(before, after, "text_model.encoder.layer.1.")
    assert changed(before, after, "image_model.")
    assert not trainer.model.logit_scale.requires_grad  # triplet loss: no temperature
    # Saved in the dual-encoder layout, and it loads back to the same weights.
    for name in ("dual_encoder_config.json", "heads.safetensors", "text/config.json", "text/tokenizer.json",
                 "image/config.json", "image/preprocessor_config.json", "loss_curve.png"):
        assert (out / name).is_file(), name
    reloaded = DualEncoderModel.from_pretrained(out).state_dict()
    assert reloaded.keys() == after.keys()
    assert all(torch.equal(reloaded[name], after[name]) for name in after)
    info = json.loads((out / "run_info.json").read_text())
    assert info["base_model"] is None and info["text_model_name_or_path"] == str(folder / "text")

    # `clip retrieve` on the run scores the column it trained on, truncated as in training, into a new folder;
    # the run's own files stay byte-identical.
    before_files = file_hashes(out)
    result = CliRunner().invoke(cli, ["clip", "retrieve", "--model", str(out), "--dataset", str(pair_dataset),
                                      "--n-resamples", "20"])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((out / "eval-retrieval-test" / "metrics.json").read_text())
    assert (report["meta"]["text_column"], report["meta"]["max_text_length"]) == ("impression", 64)
    assert report["meta"]["n"] == 9  # three of the twelve test impressions are empty
    trained = json.loads((out / "metrics.json").read_text())["metrics"]  # the trainer's final evaluation
    assert report["metrics"] == pytest.approx(trained, rel=1e-5)
    assert {name: digest for name, digest in file_hashes(out).items()
            if not name.startswith("eval-retrieval-test/")} == before_files  # fmt: skip


def test_unknown_key_and_bad_value_are_errors(pair_dataset, tmp_path, capsys):
    with pytest.raises(SystemExit):
        train(["--dataset_name", str(pair_dataset), "--output_dir", str(tmp_path), "--no_such_flag", "1"])
    assert "no_such_flag" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train(["--dataset_name", str(pair_dataset), "--output_dir", str(tmp_path), "--loss", "siglip"])
    assert "loss must be" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train(["--dataset_name", str(pair_dataset), "--output_dir", str(tmp_path), "--unfreeze_last_n_text_blocks", "1"])
    assert "needs freeze_text_tower" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train(["--dataset_name", str(pair_dataset), "--output_dir", str(tmp_path), "--caption_column", "text"])
    assert "caption_column" in capsys.readouterr().err


@pytest.mark.distributed
def test_two_cpu_processes_train_like_one_process_with_the_global_batch(tiny_model, pair_dataset, tmp_path):
    """`radtune clip train --cpu --num-processes 2` (torchrun, gloo) with 2 x 4 pairs per step ends where one process
    with 8 pairs per step ends: same losses, same gradient norms, same weights (plain SGD, no augmentation)."""
    import subprocess

    from safetensors.torch import load_file

    from radtune.common.launch import launch_command

    folder = tiny_model("clip")
    args = ["--dataset_name", str(pair_dataset), "--model_name_or_path", str(folder), "--max_steps", "2",
            "--report_to", "none", "--logging_steps", "1", "--augment", "false", "--warmup_steps", "0",
            "--optim", "sgd", "--learning_rate", "0.5", "--weight_decay", "0", "--save_strategy", "no",
            "--use_cpu", "true"]  # fmt: skip
    two = launch_command("radtune.contrastive.train", [*args, "--output_dir", str(tmp_path / "two"),
                                                       "--per_device_train_batch_size", "4"], cpu=True, num_processes=2)  # fmt: skip
    done = subprocess.run(two, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    one = train([*args, "--output_dir", str(tmp_path / "one"), "--per_device_train_batch_size", "8"])

    def logged(out):
        history = json.loads((out / "trainer_state.json").read_text())["log_history"]
        return [value for row in history if "loss" in row for value in (row["loss"], row["grad_norm"])]

    assert logged(tmp_path / "two") == pytest.approx(logged(tmp_path / "one"), rel=1e-4)
    start = load_file(str(folder / "model.safetensors"))
    a, b = load_file(str(tmp_path / "two" / "model.safetensors")), load_file(str(tmp_path / "one" / "model.safetensors"))
    moved = max((b[k] - start[k]).abs().max().item() for k in b)
    assert moved > 1e-3
    assert max((a[k] - b[k]).abs().max().item() for k in b) < 1e-3 * moved
    assert one.model.logit_scale.requires_grad
