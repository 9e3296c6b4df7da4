"""The captioning recipes say what the seeds did (tests/test_recipes.py runs every recipe as its header documents)."""

from __future__ import annotations

from pathlib import Path

import pytest

from radtune.common.config import parse_args_and_config

RECIPES = Path(__file__).parents[2] / "packages" / "captioning" / "recipes"


def _parse(recipe: Path):
    import torch

    if "train-vqa" in recipe.read_text():  # the BLIP VQA recipes name `radtune caption train-vqa` in their header
        from radtune.captioning.train_vqa import make_parser
    else:
        from radtune.captioning.train import make_parser
    # transformers refuses bf16 without a GPU unless told the run is on the CPU
    on_cpu = [] if torch.cuda.is_available() else ["--use_cpu", "true"]
    return parse_args_and_config(make_parser(), ["--config", str(recipe), *on_cpu])


def test_recipes_cover_the_seeds_and_both_cpu_smoke_tests():
    names = {path.name for path in RECIPES.glob("*.yaml")}
    assert {"rocov2_vitgpt2_lora.yaml", "mimic_cxr_vitgpt2.yaml", "roco_blip.yaml", "vqa_rad_blip.yaml",
            "slake_blip.yaml", "pathvqa_blip.yaml", "phantom_cpu_vitgpt2.yaml", "phantom_cpu_blip.yaml"} <= names  # fmt: skip


def test_rocov2_recipe_has_the_seed_settings():
    script_args, training_args, model_args = _parse(RECIPES / "rocov2_vitgpt2_lora.yaml")
    assert script_args.architecture == "vit-gpt2" and script_args.train_fraction == 0.1
    assert model_args.use_peft and model_args.lora_target_modules is None  # the architecture default: c_attn/c_proj
    assert training_args.per_device_train_batch_size == 8 and training_args.num_train_epochs == 6
    assert training_args.fp16 and training_args.save_strategy == "epoch"
    assert training_args.optim == "adamw_torch" and training_args.lr_scheduler_type == "linear"


def test_mimic_recipe_generates_findings_and_impression():
    from radtune.captioning.evaluation import text_columns

    script_args, _, _ = _parse(RECIPES / "mimic_cxr_vitgpt2.yaml")
    assert text_columns(script_args.text_column, ["findings", "impression", "text"]) == ("findings", "impression")


def test_a_flag_overrides_the_recipe_and_an_unknown_key_fails(tmp_path):
    from radtune.captioning.train import make_parser

    recipe = RECIPES / "roco_blip.yaml"
    _, training_args, _ = parse_args_and_config(make_parser(), ["--config", str(recipe), "--num_train_epochs", "1"])
    assert training_args.num_train_epochs == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text(recipe.read_text() + "lora_rank: 8\n")
    with pytest.raises(SystemExit):
        parse_args_and_config(make_parser(), ["--config", str(bad)])
