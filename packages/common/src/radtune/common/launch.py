"""Resolve the shipped accelerate configs by name and build the command that starts a training module.

`train_command(module)` builds the `radtune <task> train` command: radtune's launcher flags before `--`, the
training module's flags after it.

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

import click

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


LAUNCHER_FLAGS = ("--accelerate-config", "--num-processes", "--cpu", "--dry-run")
_TRAINING_ARGS = "radtune.training_args"
DEFAULT_EXAMPLES = (
    "{command} --cpu -- --config recipe.yaml --max_steps 10",
    "{command} --accelerate-config zero3 --num-processes 8 -- --config recipe.yaml --learning_rate 1e-4",
    "{command} -- --help",
)


def _flag_name(arg: str) -> str:
    """`--num_processes=2` → `--num-processes`: the dashed spelling of a flag, without its value."""
    return "--" + arg.split("=", 1)[0].lstrip("-").replace("_", "-")


class LaunchCommand(click.Command):
    """A click command whose own options come before `--` and whose arguments after it go to a training module.

    Click would swallow `--` itself, so `parse_args` splits the raw arguments first: a launcher flag after `--`
    (in either spelling) and a training flag before it are usage errors that say which side the flag goes on.
    """

    def __init__(self, *args, module: str, examples: Sequence[str] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.module = module
        self.examples = list(examples)

    def _own_options(self, ctx: click.Context) -> dict[str, bool]:
        """Each option string this command takes before `--` → whether it takes a value."""
        options = {name: False for name in ctx.help_option_names}
        for param in self.get_params(ctx):
            if isinstance(param, click.Option):
                for name in (*param.opts, *param.secondary_opts):
                    options[name] = not param.is_flag and not param.count
        return options

    def _example(self, ctx: click.Context) -> str:
        return f"{ctx.command_path} --cpu -- --config recipe.yaml --learning_rate 1e-4"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        args = list(args)
        split = args.index("--") if "--" in args else len(args)
        launcher, training = args[:split], args[split + 1 :]
        for arg in training:
            name, dashed = arg.split("=", 1)[0], _flag_name(arg)
            if arg.startswith("--") and dashed in LAUNCHER_FLAGS:
                spelled = f" (spelled {dashed})" if name != dashed else ""
                raise click.UsageError(
                    f"{name} is a launcher flag: put it before `--`{spelled}; after `--` come {self.module}'s own "
                    f"flags, e.g. {self._example(ctx)}",
                    ctx,
                )
        own = self._own_options(ctx)
        index = 0
        while index < len(launcher):
            arg = launcher[index]
            name = arg.split("=", 1)[0]
            if name in own:
                index += 2 if own[name] and "=" not in arg else 1
                continue
            if arg.startswith("-") and _flag_name(arg) in LAUNCHER_FLAGS:
                raise click.UsageError(f"{name} is spelled {_flag_name(arg)}", ctx)
            what = f"{name} is a flag of {self.module}" if arg.startswith("-") else f"{arg!r} is for {self.module}"
            raise click.UsageError(
                f"{what}: put it after `--`, e.g. {self._example(ctx)} (`{ctx.command_path} -- --help` lists them)",
                ctx,
            )
        ctx.meta[_TRAINING_ARGS] = training
        return super().parse_args(ctx, launcher)

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return [*super().collect_usage_pieces(ctx), "-- [TRAINING FLAGS]..."]

    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_help_text(ctx, formatter)
        examples = [example.format(command=ctx.command_path) for example in self.examples]
        with formatter.section("Examples"):
            formatter.write_text("\b\n" + "\n".join(examples))


def train_command(
    module: str,
    *,
    name: str = "train",
    help: str | None = None,
    examples: Sequence[str] = (),
) -> click.Command:
    """The `radtune <task> train` command that launches `module`: launcher flags before `--`, the module's after.

        radtune vqa train --cpu --num-processes 2 -- --config recipe.yaml --learning_rate 1e-4

    Its options are `--accelerate-config NAME|FILE`, `--num-processes N`, `--cpu` and `--dry-run` (print the
    command and exit); everything after `--` goes to `python -m module` unchanged (`--config recipe.yaml` and any
    field as a flag). A launcher flag after `--`, or a training flag before it, is a usage error saying where it
    goes.

    Args:
        module (`str`): the training module, e.g. `"radtune.llava_vqa.train"`.
        name (`str`, *optional*, defaults to `"train"`): the command's name.
        help (`str`, *optional*): the first paragraph of `--help`; by default says what is launched.
        examples (`Sequence[str]`, *optional*): command lines shown under "Examples" in `--help`; `{command}`
            stands for the command's path (`radtune vqa train`); by default a CPU, a multi-GPU and a `-- --help`
            example.

    Returns:
        `click.Command`: add it to the task's group (`group.add_command(train_command(...))`).
    """

    def launch(accelerate_config: str | None, num_processes: int | None, cpu: bool, dry_run: bool) -> None:
        ctx = click.get_current_context()
        try:
            args = ctx.meta.get(_TRAINING_ARGS, [])
            command = training_command(module, args, accelerate_config, num_processes, cpu)
        except ValueError as error:
            raise click.BadParameter(str(error), ctx=ctx, param_hint="--accelerate-config") from error
        if dry_run:
            click.echo(shlex.join(command))
            return
        ctx.exit(run_launch(command))

    return LaunchCommand(
        name,
        module=module,
        examples=list(examples) or DEFAULT_EXAMPLES,
        callback=launch,
        help=help
        or f"Launch `python -m {module}` with accelerate (or torchrun on the CPU).\n\n"
        "Launcher flags (below) go before `--`; the training module's own flags (`--config recipe.yaml`, any field "
        "of its --help) go after it.",
        short_help=f"Train: launcher flags, then -- and {module}'s flags.",
        params=[
            click.Option(
                ["--accelerate-config"],
                metavar="NAME|FILE",
                help="A shipped accelerate config (single_gpu, multi_gpu, fsdp, zero2, zero3, multi_node) "
                "or a YAML file.",
            ),
            click.Option(
                ["--num-processes"],
                type=click.IntRange(min=1),
                help="Processes to start (overrides the accelerate config).",
            ),
            click.Option(
                ["--cpu"], is_flag=True, help="Run on the CPU; several processes go through torchrun (gloo)."
            ),
            click.Option(["--dry-run"], is_flag=True, help="Print the launch command and exit."),
        ],
    )
