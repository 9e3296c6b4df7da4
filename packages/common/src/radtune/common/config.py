"""One way to configure every training entry point: dataclasses parsed by TRL's `TrlParser`.

`--config recipe.yaml` sets defaults, command-line flags override them, and a key that no dataclass knows is
an error naming the key and the closest known one (in the YAML or on the command line), checked before any
dataclass is built so that a typo is never hidden behind another field's validation error. Every error is one
or two lines, without argparse's usage dump:

    def make_parser():
        return config.make_parser([ScriptArguments, SFTConfig, ModelConfig], prog="radtune.llava_vqa.train")

    if __name__ == "__main__":
        run_main(main, make_parser)
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from radtune.common.errors import TRACEBACK_HINT, USER_ERRORS, traceback_wanted

CONFIG_FLAG = "--config"
HELP_HINT = "(--help lists every option)"


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown after each option's help (as HfArgumentParser does), the description kept as written."""


def default_example(prog: str) -> str:
    """The command lines that start `--help` for the training module `prog` (e.g. `radtune.llava_vqa.train`)."""
    return (
        f"accelerate launch -m {prog} --config recipe.yaml [--field value …]\n"
        f"python -m {prog} --config recipe.yaml [--field value …]   (one process)"
    )


def make_parser(dataclass_types: Iterable[type], prog: str | None = None, example: str | None = None):
    """A `TrlParser` over `dataclass_types` (task arguments, the trainer's config, `ModelConfig`, …).

    Its `--help` starts with the command lines that run the module (`example`, one per line), not with a usage
    line listing every option, and its `--config FILE` is listed first among the options.

    Args:
        dataclass_types (`Iterable[type]`): the dataclasses, in the order `parse_args_and_config` returns them.
        prog (`str`, *optional*): the module's name, e.g. `"radtune.llava_vqa.train"`.
        example (`str`, *optional*): the usage lines; by default `accelerate launch -m <prog> --config recipe.yaml
            [--field value …]` and its `python -m` twin when `prog` is given.
    """
    from trl import TrlParser

    if example is None and prog:
        example = default_example(prog)
    # A short usage line: argparse's own lists every option (175+ lines) and repeats it before every error.
    usage = "%(prog)s [--config FILE] [--field value …]"
    if example:
        usage = example.replace("%", "%%").replace("\n", "\n       ")
    description = (
        f"Options come from a YAML recipe ({CONFIG_FLAG} FILE, one `option: value` per line, e.g. "
        "`learning_rate: 1.0e-4`) and from flags, which override the recipe. An unknown key or flag is an error."
    )
    parser = TrlParser(
        dataclass_types=list(dataclass_types),
        prog=prog,
        usage=usage,
        description=description,
        formatter_class=_HelpFormatter,
        allow_abbrev=False,  # one name per option: `--arch` is not `--architecture`
    )
    config_action = parser.add_argument(
        CONFIG_FLAG,
        metavar="FILE",
        default=argparse.SUPPRESS,  # never reaches the dataclasses: parse_args_and_config reads it first
        help="YAML recipe whose keys are the options below; flags on the command line override its values.",
    )
    group = parser._optionals._group_actions  # list it right after -h/--help, not after hundreds of fields
    if config_action in group:
        group.remove(config_action)
        group.insert(1 if parser.add_help else 0, config_action)
    return parser


def _fail(parser: argparse.ArgumentParser, message: str, hint: str = HELP_HINT) -> None:
    """Exit with code 2 printing `<prog>: error: <message>` and one hint line, without the usage dump."""
    parser.exit(2, f"{parser.prog}: error: {message}\n{hint}\n" if hint else f"{parser.prog}: error: {message}\n")


def _closest(name: str, known: Iterable[str]) -> str:
    """` (did you mean X?)` for the known name closest to `name`, or `""`.

    Among difflib's three best, the one sharing the longest prefix wins: `lora_rank` means `lora_r`, not
    `local_rank`.
    """
    close = difflib.get_close_matches(name, sorted(known), n=3)
    if not close:
        return ""
    best = max(close, key=lambda candidate: len(os.path.commonprefix([name, candidate])))
    return f" (did you mean {best}?)"


def _split_config(parser: argparse.ArgumentParser, args: list[str]) -> tuple[str | None, list[str]]:
    """`(path, the other args)` from `--config PATH` or `--config=PATH`."""
    path, rest, index = None, [], 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            rest += args[index:]
            break
        if arg == CONFIG_FLAG or arg.startswith(CONFIG_FLAG + "="):
            if path is not None:
                _fail(parser, f"{CONFIG_FLAG} given twice ({path} and more): pass one recipe", hint="")
            if arg == CONFIG_FLAG:
                if index + 1 >= len(args) or args[index + 1].startswith("--"):
                    _fail(parser, f"{CONFIG_FLAG} needs a YAML file path", hint="")
                path, index = args[index + 1], index + 2
            else:
                path, index = arg.split("=", 1)[1], index + 1
            continue
        rest.append(arg)
        index += 1
    return path, rest


def _read_config(parser: argparse.ArgumentParser, path: str) -> dict:
    import yaml

    file = Path(path)
    if not file.is_file():
        _fail(parser, f"config file not found: {path} (cwd {Path.cwd()})", hint="")
    try:
        config = yaml.safe_load(file.read_text())
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" line {where.line + 1}" if where is not None else ""
        _fail(parser, f"{path}{line} is not valid YAML: {getattr(error, 'problem', None) or error}", hint="")
    if config is None:
        return {}
    if not isinstance(config, dict):
        _fail(parser, f"{path} must hold a mapping of option names to values (`learning_rate: 1.0e-4`)", hint="")
    return config


def _option_dests(parser: argparse.ArgumentParser) -> set[str]:
    return {
        action.dest
        for action in parser._actions
        if action.dest not in (argparse.SUPPRESS, "help", "config") and action.option_strings
    }


def _unknown_flags(parser: argparse.ArgumentParser, args: Sequence[str]) -> list[str]:
    """The `--flags` in `args` that the parser does not know (as argparse would take them, abbreviations included)."""
    known = parser._option_string_actions
    unknown = []
    for arg in args:
        if arg == "--":
            break
        if not arg.startswith("-") or arg == "-" or _is_number(arg):
            continue
        name = arg.split("=", 1)[0]
        if name in known:
            continue
        if parser.allow_abbrev and name.startswith("--") and sum(option.startswith(name) for option in known) == 1:
            continue
        unknown.append(name)
    return unknown


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_args_and_config(parser, args: Sequence[str] | None = None) -> tuple:
    """Parse `args` (default `sys.argv[1:]`) with an optional `--config FILE`, failing clearly.

    The YAML's keys and the command line's flags are checked against the parser's options before any dataclass
    is built; the YAML's `env:` mapping (TRL's convention) sets environment variables.

    Returns:
        `tuple`: one instance per dataclass type, in the parser's order.

    Raises:
        `SystemExit` (code 2): a missing or unreadable config file, a key or flag no dataclass knows (the message
        names it and the closest known one), or a value that fails a dataclass's validation (the message names
        the field). Each is one or two lines on stderr, without the usage listing.
    """
    args = list(sys.argv[1:] if args is None else args)
    if "-h" in args or "--help" in args:
        parser.print_help()
        parser.exit(0)
    config_path, rest = _split_config(parser, args)

    config = _read_config(parser, config_path) if config_path is not None else {}
    env = config.pop("env", {})
    if not isinstance(env, dict):
        _fail(parser, f"`env` in {config_path} must be a mapping of variable names to values", hint="")
    dests = _option_dests(parser)
    unknown_keys = [str(key) for key in config if key not in dests]
    if unknown_keys:
        listed = ", ".join(f"{key!r}{_closest(key, dests)}" for key in unknown_keys)
        _fail(parser, f"unknown key{'s' if len(unknown_keys) > 1 else ''} in {config_path}: {listed}")
    unknown = _unknown_flags(parser, rest)
    if unknown:
        options = [option for option in parser._option_string_actions if option.startswith("--")]
        listed = ", ".join(f"{flag}{_closest(flag, options)}" for flag in unknown)
        _fail(parser, f"unknown argument{'s' if len(unknown) > 1 else ''}: {listed}")

    for key, value in env.items():
        os.environ[str(key)] = str(value)
    if config:
        if hasattr(parser, "set_defaults_with_config"):  # TrlParser: YAML values become the defaults
            parser.set_defaults_with_config(**config)
        else:
            parser.set_defaults(**config)
    _namespace, remaining = parser.parse_known_args(rest)
    if remaining:
        _fail(parser, f"unexpected argument{'s' if len(remaining) > 1 else ''}: {' '.join(remaining)} "
                      "(options are `--name value`)")  # fmt: skip
    try:
        return tuple(parser.parse_args_into_dataclasses(args=rest, look_for_args_file=False))
    except ValueError as error:
        _fail(parser, str(error), hint="")


def run_main(main: Callable, make_parser: Callable[[], argparse.ArgumentParser], args: Sequence[str] | None = None):
    """Run a training module's `main` from its command line, turning the errors a person can fix into two lines.

    Parses `args` (default `sys.argv[1:]`) with `parse_args_and_config(make_parser(), args)`, then calls
    `main(*parsed)`. A `ValueError`, `OSError` (`FileNotFoundError` …) or `HubError` becomes
    `<prog>: error: <message>` on stderr plus a line saying that `RADTUNE_TRACEBACK=1` shows the traceback, and
    exit code 2; with `RADTUNE_TRACEBACK=1` it propagates unchanged.

        if __name__ == "__main__":
            run_main(main, make_parser)

    Returns:
        whatever `main` returns.
    """
    parser = make_parser()
    parsed = parse_args_and_config(parser, args)
    try:
        return main(*parsed)
    except USER_ERRORS as error:
        if traceback_wanted():
            raise
        _fail(parser, str(error) or type(error).__name__, hint=TRACEBACK_HINT)
