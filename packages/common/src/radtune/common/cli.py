"""The `radtune` command line.

The root group holds common's own groups and discovers the groups that other installed radtune packages
declare in the `radtune.commands` entry-point group (names: `data`, `vqa`, `caption`, `clip`). Nothing heavy
is imported here: `radtune --help` must stay instant, so torch and transformers load inside the commands.
"""

from __future__ import annotations

import importlib
from importlib.metadata import distributions, entry_points

import click

ENTRY_POINT_GROUP = "radtune.commands"

# common's own groups, as "module:attribute" so they load lazily like the entry points do.
_OWN_GROUPS = {
    "tiny": "radtune.common.tiny_cli:tiny",
    "eval": "radtune.common.eval_cli:eval_group",
    "hub": "radtune.common.hub_cli:hub",
    "app": "radtune.common.app_cli:app",
}


def radtune_distributions() -> dict[str, str]:
    """Every installed radtune distribution and its version, e.g. `{"radtune-common": "0.1.0"}`."""
    found = {}
    for dist in distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name.startswith("radtune-"):
            found[name] = dist.version
    return dict(sorted(found.items()))


def _print_versions(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    for name, version in radtune_distributions().items():
        click.echo(f"{name} {version}")
    ctx.exit()


def _load(target: str) -> click.Command:
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


class RadtuneGroup(click.Group):
    """A group whose sub-groups come from common itself and from the `radtune.commands` entry points.

    A `ValueError`, `OSError` or `HubError` that a sub-command lets through becomes a short click error (the
    message and a hint line, no traceback) unless `RADTUNE_TRACEBACK=1`.
    """

    def invoke(self, ctx: click.Context):
        from radtune.common.errors import TRACEBACK_HINT, USER_ERRORS, traceback_wanted

        try:
            return super().invoke(ctx)
        except USER_ERRORS as error:
            if traceback_wanted() or isinstance(error, BrokenPipeError):  # click itself handles a closed pipe
                raise
            raise click.ClickException(f"{error or type(error).__name__}\n{TRACEBACK_HINT}") from error

    def _targets(self) -> dict[str, str]:
        targets = dict(_OWN_GROUPS)
        for entry_point in entry_points(group=ENTRY_POINT_GROUP):
            targets.setdefault(entry_point.name, entry_point.value)
        return targets

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._targets()))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        target = self._targets().get(cmd_name)
        if target is None:
            return None
        try:
            return _load(target)
        except Exception as error:  # a broken plug-in must not take the whole CLI down
            message = f"could not load '{cmd_name}' from {target}: {type(error).__name__}: {error}"

            @click.command(cmd_name, help=f"(unavailable: {message})")
            def broken() -> None:
                raise click.ClickException(message)

            return broken


@click.group(cls=RadtuneGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_versions,
    help="List every installed radtune distribution with its version, then exit.",
)
def cli() -> None:
    """radtune: fine-tune vision-language models on medical images.

    \b
    Example:
      radtune tiny llava ./tiny-llava
      radtune --version
    """
    from radtune.common.quiet import quiet_third_party

    quiet_third_party()


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
