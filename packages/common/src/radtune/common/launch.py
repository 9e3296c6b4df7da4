"""Resolve the shipped accelerate configs by name and build the command that starts a training module.

The YAMLs in `accelerate_configs/` (`single_gpu`, `multi_gpu`, `fsdp`, `deepspeed_zero2`, `deepspeed_zero3`,
`multi_node`) ship as package data, as TRL ships its own. On GPUs a run goes through `accelerate launch`; on the
CPU a multi-process run goes through `torchrun` (gloo), because an accelerate `MULTI_CPU` launch started only one
process here.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

_CONFIG_PACKAGE = "radtune.common.accelerate_configs"


def accelerate_config_names() -> list[str]:
    """Names of the shipped accelerate configs, e.g. `["deepspeed_zero2", …, "single_gpu"]`."""
    folder = resources.files("radtune.common").joinpath("accelerate_configs")
    return sorted(entry.name[: -len(".yaml")] for entry in folder.iterdir() if entry.name.endswith(".yaml"))


def accelerate_config_path(name_or_path: str | Path) -> Path:
    """Turn `--accelerate-config NAME` (a shipped config's name, with or without `.yaml`, or a file) into a path.

    Raises:
        `ValueError`: neither an existing file nor a shipped config; the message lists the shipped names.
    """
    candidate = Path(name_or_path)
    if candidate.is_file():
        return candidate.resolve()
    name = str(name_or_path).removesuffix(".yaml")
    # Accept the short forms people type: zero2, zero3, ddp.
    aliases = {"zero2": "deepspeed_zero2", "zero3": "deepspeed_zero3", "ddp": "multi_gpu"}
    name = aliases.get(name, name)
    if name not in accelerate_config_names():
        raise ValueError(
            f"unknown accelerate config {str(name_or_path)!r}: not a file, and not one of the shipped configs "
            f"({', '.join(accelerate_config_names())})"
        )
    return Path(str(resources.files("radtune.common").joinpath(f"accelerate_configs/{name}.yaml")))


def launch_command(
    module: str,
    args: Sequence[str] = (),
    accelerate_config: str | Path | None = None,
    num_processes: int | None = None,
    cpu: bool = False,
) -> list[str]:
    """The command line that runs `python -m module args…` under the right launcher.

    Args:
        module (`str`): the training module, e.g. `"radtune.llava_vqa.train"`.
        args (`Sequence[str]`): arguments for the module (`--config recipe.yaml --learning_rate 1e-4 …`).
        accelerate_config (`str` or `Path`, *optional*): a shipped config name or a YAML file (GPU runs).
        num_processes (`int`, *optional*): processes to start; overrides the config's `num_processes`.
        cpu (`bool`, *optional*, defaults to `False`): run on the CPU; several processes go through `torchrun`.
    """
    if cpu:
        if num_processes and num_processes > 1:
            return [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc_per_node={num_processes}", "-m", module, *args]  # fmt: skip
        return [sys.executable, "-m", module, *args]
    command = [sys.executable, "-m", "accelerate.commands.launch"]
    if accelerate_config is not None:
        command += ["--config_file", str(accelerate_config_path(accelerate_config))]
    if num_processes:
        command += ["--num_processes", str(num_processes)]
    return [*command, "-m", module, *args]


def training_command(
    module: str,
    args: Sequence[str] = (),
    accelerate_config: str | Path | None = None,
    num_processes: int | None = None,
    cpu: bool = False,
) -> list[str]:
    """`launch_command` for a radtune training module, which on the CPU is also told so (`--use_cpu true`).

    The task CLIs' `train` commands (`radtune vqa|caption|clip train`) all launch through this.

    Raises:
        `ValueError`: an unknown accelerate config (the message lists the shipped ones).
    """
    args = list(args)
    if cpu and "--use_cpu" not in args:
        args += ["--use_cpu", "true"]
    return launch_command(module, args, accelerate_config=accelerate_config, num_processes=num_processes, cpu=cpu)


def run_launch(command: Sequence[str], env: dict | None = None) -> int:
    """Print `command` (so users can copy it) and run it, returning its exit code."""
    print("+ " + shlex.join(command), file=sys.stderr, flush=True)
    return subprocess.call(list(command), env=env)
