"""Shipped accelerate configs resolve by name; a CPU multi-process launch really gives two ranks; the `train`
command puts launcher flags before `--` and the module's after it, and says so when one is on the wrong side."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from radtune.common.launch import (
    accelerate_config_names,
    accelerate_config_path,
    launch_command,
    train_command,
    training_command,
)

REQUIRED = {"single_gpu", "multi_gpu", "fsdp", "deepspeed_zero2", "deepspeed_zero3", "multi_node"}


def test_shipped_configs_resolve_and_load_with_accelerate():
    from accelerate.commands.config.config_args import ClusterConfig

    assert REQUIRED <= set(accelerate_config_names())
    for name in accelerate_config_names():
        path = accelerate_config_path(name)
        assert path.is_file() and path.name == f"{name}.yaml"
        config = ClusterConfig.from_yaml_file(str(path))
        assert config.num_processes >= 1
    assert accelerate_config_path("zero3") == accelerate_config_path("deepspeed_zero3.yaml")
    assert yaml.safe_load(accelerate_config_path("zero3").read_text())["deepspeed_config"]["zero_stage"] == 3


def test_config_path_accepts_a_file_and_rejects_unknown_names(tmp_path):
    own = tmp_path / "mine.yaml"
    own.write_text("distributed_type: 'NO'\n")
    assert accelerate_config_path(own) == own.resolve()
    with pytest.raises(ValueError, match="unknown accelerate config 'zero4'.*single_gpu"):
        accelerate_config_path("zero4")


def test_launch_command_shapes():
    gpu = launch_command("radtune.llava_vqa.train", ["--config", "r.yaml"], accelerate_config="fsdp", num_processes=4)
    assert gpu[1:3] == ["-m", "accelerate.commands.launch"]
    assert gpu[gpu.index("--config_file") + 1] == str(accelerate_config_path("fsdp"))
    assert gpu[gpu.index("--num_processes") + 1] == "4"
    assert gpu[-4:] == ["-m", "radtune.llava_vqa.train", "--config", "r.yaml"]
    cpu = launch_command("m", ["--x"], cpu=True, num_processes=2)
    assert "torch.distributed.run" in cpu and "--nproc_per_node=2" in cpu and cpu[-3:] == ["-m", "m", "--x"]
    assert launch_command("m", cpu=True)[1:] == ["-m", "m"]


def test_training_command_tells_the_module_it_runs_on_the_cpu():
    assert training_command("m", ["--x", "1"], cpu=True)[-4:] == ["--x", "1", "--use_cpu", "true"]
    assert training_command("m", ["--use_cpu", "false"], cpu=True).count("--use_cpu") == 1  # the user's flag wins
    assert "--use_cpu" not in training_command("m", ["--x"], accelerate_config="single_gpu")


MODULE = "radtune.llava_vqa.train"


def _train(args: list[str]):
    """Invoke `radtune vqa train ARGS` built by the factory, inside a `vqa` group as the task CLIs do."""
    group = click.Group("vqa", commands=[train_command(MODULE, examples=["{command} --cpu -- --config r.yaml"])])
    return CliRunner().invoke(group, ["train", *args], prog_name="radtune vqa")


def test_train_command_sends_flags_after_dashes_to_the_module_and_before_to_the_launcher():
    result = _train(["--cpu", "--num-processes", "2", "--dry-run", "--", "--config", "recipe.yaml",
                     "--learning_rate", "1e-4"])  # fmt: skip
    assert result.exit_code == 0, result.output
    command = shlex.split(result.output.strip())
    assert command == training_command(MODULE, ["--config", "recipe.yaml", "--learning_rate", "1e-4"],
                                       num_processes=2, cpu=True)  # fmt: skip
    assert "--nproc_per_node=2" in command and command[-2:] == ["--use_cpu", "true"]

    result = _train(["--accelerate-config=fsdp", "--num-processes=4", "--dry-run", "--", "--config", "r.yaml"])
    command = shlex.split(result.output.strip())
    assert command[command.index("--config_file") + 1] == str(accelerate_config_path("fsdp"))
    assert command[command.index("--num_processes") + 1] == "4"
    assert command[-4:] == ["-m", MODULE, "--config", "r.yaml"]

    result = _train(["--dry-run"])  # nothing after `--`: the module with no arguments
    assert shlex.split(result.output.strip())[-2:] == ["-m", MODULE]


@pytest.mark.parametrize("flag", ["--num_processes", "--num-processes", "--accelerate_config", "--cpu", "--dry-run"])
def test_a_launcher_flag_after_dashes_says_to_put_it_before(flag):
    result = _train(["--dry-run", "--", "--config", "r.yaml", flag, "2"])
    assert result.exit_code == 2
    assert f"Error: {flag} is a launcher flag: put it before `--`" in result.output
    if "_" in flag:
        assert f"(spelled {flag.replace('_', '-')})" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args", [["--config", "r.yaml"], ["--cpu", "--learning_rate", "1e-4"], ["r.yaml"]])
def test_a_training_flag_before_dashes_says_to_put_it_after(args):
    result = _train(args)
    assert result.exit_code == 2
    assert f"is a flag of {MODULE}: put it after `--`" in result.output or (
        f"'r.yaml' is for {MODULE}: put it after `--`" in result.output
    )
    assert "radtune vqa train --cpu -- --config recipe.yaml" in result.output  # an example of the right shape


def test_underscored_launcher_flag_before_dashes_gets_its_spelling():
    result = _train(["--num_processes", "2", "--", "--config", "r.yaml"])
    assert result.exit_code == 2 and "Error: --num_processes is spelled --num-processes" in result.output


def test_train_command_help_and_unknown_accelerate_config():
    result = _train(["--help"])
    assert result.exit_code == 0
    assert "Usage: radtune vqa train [OPTIONS] -- [TRAINING FLAGS]..." in result.output
    assert "Examples:\n  radtune vqa train --cpu -- --config r.yaml" in result.output
    for flag in ("--accelerate-config", "--num-processes", "--cpu", "--dry-run"):
        assert flag in result.output
    result = _train(["--accelerate-config", "zero9", "--dry-run"])
    assert result.exit_code == 2 and "unknown accelerate config 'zero9'" in result.output


@pytest.mark.distributed
def test_cpu_launch_starts_two_gloo_ranks(tmp_path):
    command = launch_command("ddp_probe", [str(tmp_path)], cpu=True, num_processes=2)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    reports = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    for rank, report in enumerate(reports):
        assert report["WORLD_SIZE"] == "2"
        assert report["num_processes"] == 2
        assert report["process_index"] == rank
        assert report["backend"] == "gloo"
        assert report["all_reduce_sum"] == 3.0  # 1 + 2: both ranks took part
