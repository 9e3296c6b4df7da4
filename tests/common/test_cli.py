"""The `radtune` root command: discovery, versions, help that imports nothing heavy, examples everywhere."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
import tomllib
from click.testing import CliRunner

from radtune.common.cli import cli
from radtune.common.errors import HubError

ROOT = Path(__file__).resolve().parents[2]


def _distributions_in_repo() -> dict[str, str]:
    found = {}
    for pyproject in sorted(ROOT.glob("packages/*/pyproject.toml")):
        project = tomllib.loads(pyproject.read_text())["project"]
        found[project["name"]] = project["version"]
    return found


def test_version_lists_every_radtune_distribution():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    listed = dict(line.split(" ", 1) for line in result.output.strip().splitlines())
    expected = _distributions_in_repo()
    assert len(expected) == 5
    assert listed == expected


def test_help_lists_tiny_and_imports_nothing_heavy(fresh_cli):
    code, output, loaded = fresh_cli("--help")
    assert code == 0
    assert "tiny" in output
    # the task packages' command groups load (their click modules are light); no deep-learning library does
    assert [name for name in loaded if not name.startswith("radtune.")] == []


def _all_commands(group: click.Group, ctx: click.Context, prefix=()):
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        yield (*prefix, name), command
        if isinstance(command, click.Group):
            yield from _all_commands(command, click.Context(command, parent=ctx, info_name=name), (*prefix, name))


def test_every_command_help_shows_an_example():
    root_ctx = click.Context(cli, info_name="radtune")
    commands = list(_all_commands(cli, root_ctx))
    assert commands
    missing = []
    for path, _command in commands:
        result = CliRunner().invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        if "Example" not in result.output:
            missing.append("radtune " + " ".join(path))
    assert missing == [], f"these commands' --help shows no example: {missing}"


def test_broken_plugin_does_not_take_the_cli_down(monkeypatch):
    import radtune.common.cli as cli_module

    monkeypatch.setitem(cli_module._OWN_GROUPS, "broken", "radtune.common.no_such_module:group")
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0 and "tiny" in result.output
    result = CliRunner().invoke(cli, ["broken"])
    assert result.exit_code != 0
    assert "could not load 'broken'" in result.output


@pytest.mark.parametrize(
    "error", [ValueError("bad value for --split"), FileNotFoundError("no such folder: runs/x"), HubError("repo gone")]
)
def test_user_errors_from_any_command_are_two_lines_without_traceback(monkeypatch, error):
    monkeypatch.delenv("RADTUNE_TRACEBACK", raising=False)

    @click.group("task")
    def task() -> None:
        """A task group."""

    @task.command("fail")
    def fail() -> None:
        raise error

    monkeypatch.setitem(cli.commands, "task", task)
    result = CliRunner().invoke(cli, ["task", "fail"])
    assert result.exit_code == 1
    assert result.output.splitlines() == [f"Error: {error}", "(set RADTUNE_TRACEBACK=1 to see the traceback)"]

    monkeypatch.setenv("RADTUNE_TRACEBACK", "1")
    result = CliRunner().invoke(cli, ["task", "fail"])
    assert result.exception is error  # re-raised unchanged, with its traceback


def test_other_exceptions_keep_their_traceback(monkeypatch):
    @click.command("bug")
    def bug() -> None:
        raise KeyError("a bug")

    monkeypatch.setitem(cli.commands, "bug", bug)
    result = CliRunner().invoke(cli, ["bug"])
    assert isinstance(result.exception, KeyError)
