"""Config loading: YAML sets defaults, flags override, unknown keys fail naming the key."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from transformers import TrainingArguments

from radtune.common.config import make_parser, parse_args_and_config


@dataclass
class ScriptArguments:
    dataset_name: str = field(default="phantoms", metadata={"help": "Dataset folder or Hub repo."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})

    def __post_init__(self):
        if self.lora_r <= 0:
            raise ValueError(f"lora_r must be positive, got {self.lora_r}")


@pytest.fixture
def parser():
    return make_parser([ScriptArguments, TrainingArguments], prog="radtune-test")


def _write(tmp_path, text):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return str(path)


def test_yaml_sets_defaults_and_flags_override(parser, tmp_path):
    recipe = _write(tmp_path, "dataset_name: runs/phantoms\nlora_r: 64\nlearning_rate: 0.0002\noutput_dir: out\n")
    script, training = parse_args_and_config(parser, ["--config", recipe, "--lora_r", "16"])
    assert script.dataset_name == "runs/phantoms"
    assert script.lora_r == 16  # the flag wins over the YAML
    assert training.learning_rate == pytest.approx(2e-4)
    assert training.output_dir == "out"


def test_without_config_the_dataclass_defaults_apply(parser):
    script, training = parse_args_and_config(parser, ["--output_dir", "o"])
    assert script == ScriptArguments()
    assert training.output_dir == "o"


def test_unknown_yaml_key_fails_naming_it(parser, tmp_path, capsys):
    recipe = _write(tmp_path, "dataset_name: x\nlora_rank: 64\noutput_dir: out\n")
    with pytest.raises(SystemExit) as excinfo:
        parse_args_and_config(parser, ["--config", recipe])
    assert excinfo.value.code == 2
    err = capsys.readouterr().err
    assert "lora_rank" in err and "recipe.yaml" in err


def test_unknown_flag_fails_naming_it(parser, capsys):
    with pytest.raises(SystemExit):
        parse_args_and_config(parser, ["--output_dir", "o", "--lora_rnak", "3"])
    assert "--lora_rnak" in capsys.readouterr().err


def test_missing_config_file_and_invalid_value(parser, tmp_path, capsys):
    with pytest.raises(SystemExit):
        parse_args_and_config(parser, ["--config", str(tmp_path / "nope.yaml")])
    assert "config file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args_and_config(parser, ["--output_dir", "o", "--lora_r", "0"])
    assert "lora_r must be positive" in capsys.readouterr().err
