"""Config loading: YAML sets defaults, flags override, unknown keys fail naming the key, every error is short."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pytest
from transformers import TrainingArguments

from radtune.common.config import make_parser, parse_args_and_config, run_main
from radtune.common.hub import HubError

PROG = "radtune.test.train"


@dataclass
class ScriptArguments:
    dataset_name: str = field(default="phantoms", metadata={"help": "Dataset folder or Hub repo."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    strict: bool = field(default=False, metadata={"help": "Fail on anything odd."})

    def __post_init__(self):
        if self.lora_r <= 0:
            raise ValueError(f"lora_r must be positive, got {self.lora_r}")
        # Stands for a validation that fails on this machine (TRL's "Your setup doesn't support bf16/gpu").
        if self.strict:
            raise ValueError("strict mode is not supported on this machine")


@pytest.fixture
def parser():
    return make_parser([ScriptArguments, TrainingArguments], prog=PROG)


def _write(tmp_path, text, name="recipe.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _fails(parser, args, capsys) -> list[str]:
    """Parse `args`, expecting exit code 2; the lines printed on stderr (nothing on stdout)."""
    with pytest.raises(SystemExit) as excinfo:
        parse_args_and_config(parser, args)
    assert excinfo.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err.strip().splitlines()


def test_yaml_sets_defaults_and_flags_override(parser, tmp_path):
    recipe = _write(tmp_path, "dataset_name: runs/phantoms\nlora_r: 64\nlearning_rate: 0.0002\noutput_dir: out\n")
    script, training = parse_args_and_config(parser, ["--config", recipe, "--lora_r", "16"])
    assert script.dataset_name == "runs/phantoms"
    assert script.lora_r == 16  # the flag wins over the YAML
    assert training.learning_rate == pytest.approx(2e-4)
    assert training.output_dir == "out"


def test_config_equals_form_and_env_mapping(parser, tmp_path, monkeypatch):
    monkeypatch.delenv("RADTUNE_TEST_VAR", raising=False)
    recipe = _write(tmp_path, "env:\n  RADTUNE_TEST_VAR: 7\nlora_r: 3\n")
    (script, _training) = parse_args_and_config(parser, [f"--config={recipe}", "--output_dir", "o"])
    assert script.lora_r == 3
    assert os.environ["RADTUNE_TEST_VAR"] == "7"


def test_without_config_the_dataclass_defaults_apply(parser):
    script, training = parse_args_and_config(parser, ["--output_dir", "o"])
    assert script == ScriptArguments()
    assert training.output_dir == "o"


def test_unknown_yaml_key_is_named_with_the_closest_known_one(parser, tmp_path, capsys):
    recipe = _write(tmp_path, "dataset_name: x\nlora_rank: 64\nlearnig_rate: 0.1\noutput_dir: out\n")
    lines = _fails(parser, ["--config", recipe], capsys)
    assert len(lines) <= 3, lines
    assert lines[0].startswith(f"{PROG}: error: unknown keys in {recipe}:")
    assert "'lora_rank' (did you mean lora_r?)" in lines[0]
    assert "'learnig_rate' (did you mean learning_rate?)" in lines[0]
    assert not any(line.startswith("usage") for line in lines)


def test_unknown_flag_is_named_with_the_closest_known_one(parser, capsys):
    lines = _fails(parser, ["--output_dir", "o", "--lora_rnak", "3"], capsys)
    assert len(lines) <= 3, lines
    assert lines[0] == f"{PROG}: error: unknown argument: --lora_rnak (did you mean --lora_r?)"
    assert "--help" in lines[1]


def test_a_typo_is_reported_before_any_dataclass_validation(parser, tmp_path, capsys):
    # The dataclasses would fail (`strict`), but the typo is what the person has to fix first.
    recipe = _write(tmp_path, "strict: true\nlearnig_rate: 0.1\n")
    lines = _fails(parser, ["--config", recipe, "--output_dir", "o"], capsys)
    assert "learnig_rate" in lines[0] and "learning_rate" in lines[0]
    assert "strict mode" not in "\n".join(lines)
    lines = _fails(parser, ["--strict", "true", "--output_dir", "o", "--learnig_rate", "1"], capsys)
    assert "--learnig_rate (did you mean --learning_rate?)" in lines[0]


def test_validation_error_is_one_line_without_usage(parser, capsys):
    lines = _fails(parser, ["--output_dir", "o", "--lora_r", "0"], capsys)
    assert lines == [f"{PROG}: error: lora_r must be positive, got 0"]


def test_config_file_problems_are_one_line(parser, tmp_path, capsys):
    lines = _fails(parser, ["--config", str(tmp_path / "nope.yaml")], capsys)
    assert len(lines) == 1 and "config file not found" in lines[0] and "nope.yaml" in lines[0]
    lines = _fails(parser, ["--config", _write(tmp_path, "- a\n- b\n", "list.yaml")], capsys)
    assert len(lines) == 1 and "must hold a mapping" in lines[0]
    lines = _fails(parser, ["--config", _write(tmp_path, "lora_r: [1\n", "broken.yaml")], capsys)
    assert len(lines) == 1 and "broken.yaml" in lines[0] and "not valid YAML" in lines[0]
    lines = _fails(parser, ["--output_dir", "o", "--config"], capsys)
    assert lines == [f"{PROG}: error: --config needs a YAML file path"]


def test_a_stray_positional_argument_is_named(parser, capsys):
    lines = _fails(parser, ["--output_dir", "o", "recipe.yaml"], capsys)
    assert lines[0].startswith(f"{PROG}: error: unexpected argument: recipe.yaml")


def test_help_starts_with_the_config_example(parser, capsys):
    with pytest.raises(SystemExit) as excinfo:
        parse_args_and_config(parser, ["--help"])
    assert excinfo.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"usage: accelerate launch -m {PROG} --config recipe.yaml [--field value …]"
    assert lines[1].strip().startswith(f"python -m {PROG} --config recipe.yaml")
    options = [line.strip() for line in lines if line.strip().startswith("--")]
    assert options[0].startswith("--config FILE")  # listed first, right after -h/--help
    assert len(lines) > 100  # the long option list still follows


def test_an_explicit_example_replaces_the_derived_one():
    parser = make_parser([ScriptArguments], prog="x", example="radtune x train -- --config r.yaml")
    assert parser.format_usage().strip() == "usage: radtune x train -- --config r.yaml"


def _make_parser():
    return make_parser([ScriptArguments], prog=PROG)


@pytest.mark.parametrize("error", [ValueError("bad value"), FileNotFoundError("no such folder: runs/x"),
                                   HubError("model repo 'a/b' was not found")])  # fmt: skip
def test_run_main_turns_user_errors_into_two_lines(error, capsys, monkeypatch):
    monkeypatch.delenv("RADTUNE_TRACEBACK", raising=False)

    def main(script_args):
        raise error

    with pytest.raises(SystemExit) as excinfo:
        run_main(main, _make_parser, ["--lora_r", "2"])
    assert excinfo.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{PROG}: error: {error}",
        "(set RADTUNE_TRACEBACK=1 to see the traceback)",
    ]


def test_run_main_returns_mains_result_and_reraises_on_request(monkeypatch):
    assert run_main(lambda script_args: script_args.lora_r * 10, _make_parser, ["--lora_r", "2"]) == 20

    def main(script_args):
        raise ValueError("bad value")

    monkeypatch.setenv("RADTUNE_TRACEBACK", "1")
    with pytest.raises(ValueError, match="bad value"):
        run_main(main, _make_parser, [])
    monkeypatch.delenv("RADTUNE_TRACEBACK")
    with pytest.raises(KeyError):  # a bug, not a user error: the traceback stays
        run_main(lambda script_args: {}["missing"], _make_parser, [])


def test_an_abbreviated_flag_is_not_an_alias(parser, capsys):
    # argparse would take `--lora` for `--lora_r`; radtune has one name per option.
    with pytest.raises(SystemExit) as raised:
        parse_args_and_config(parser, ["--output_dir", "o", "--lora", "4"])
    assert raised.value.code == 2
    assert "unknown argument: --lora (did you mean --lora_r?)" in capsys.readouterr().err
