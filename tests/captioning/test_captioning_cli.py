"""`radtune caption train/train-vqa` launch the training modules through common's launcher: launcher flags before
`--`, the module's own flags after it."""

from __future__ import annotations

import sys

import pytest
from click.testing import CliRunner

from radtune.common.cli import cli


@pytest.fixture
def launched(monkeypatch):
    from radtune.common import launch

    commands = []

    def record(command, env=None):
        commands.append(list(command))
        return 0

    monkeypatch.setattr(launch, "run_launch", record)
    return commands


def test_train_passes_unknown_flags_through_on_the_cpu(launched):
    args = ["caption", "train", "--cpu", "--", "--config", "r.yaml", "--learning_rate", "1e-4", "--use_peft"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    # --cpu also tells the training module to stay on the CPU.
    assert launched == [[sys.executable, "-m", "radtune.captioning.train", "--config", "r.yaml",
                         "--learning_rate", "1e-4", "--use_peft", "--use_cpu", "true"]]  # fmt: skip


def test_train_vqa_goes_through_accelerate_with_a_named_config(launched):
    args = ["caption", "train-vqa", "--accelerate-config", "zero2", "--num-processes", "2", "--", "--config", "v.yaml"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    command = launched[0]
    assert command[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert command[command.index("--config_file") + 1].endswith("deepspeed_zero2.yaml")
    assert command[command.index("--num_processes") + 1] == "2"
    assert command[-4:] == ["-m", "radtune.captioning.train_vqa", "--config", "v.yaml"]


def test_unknown_accelerate_config_is_a_clear_error(launched):
    result = CliRunner().invoke(cli, ["caption", "train", "--accelerate-config", "zero9"])
    assert result.exit_code != 0 and "zero9" in result.output and not launched


def test_flags_on_the_wrong_side_of_the_dashes_say_where_they_go(launched):
    before = CliRunner().invoke(cli, ["caption", "train", "--config", "r.yaml"])
    assert before.exit_code == 2 and "put it after `--`" in before.output
    after = CliRunner().invoke(cli, ["caption", "train-vqa", "--", "--config", "v.yaml", "--num-processes", "2"])
    assert after.exit_code == 2 and "put it before `--`" in after.output and not launched


def test_every_caption_command_has_help_with_an_example():
    for command in ("train", "train-vqa", "evaluate", "predict"):
        result = CliRunner().invoke(cli, ["caption", command, "--help"])
        assert result.exit_code == 0 and "Example" in result.output, result.output
        assert f"caption {command} --" in result.output, result.output  # an example of the command itself
