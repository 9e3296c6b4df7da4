"""One way to configure every training entry point: dataclasses parsed by TRL's `TrlParser`.

`--config recipe.yaml` sets defaults, command-line flags override them, and a key that no dataclass knows is
an error naming the key (in the YAML or on the command line), not a silently ignored typo.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from pathlib import Path


def make_parser(dataclass_types: Iterable[type], prog: str | None = None):
    """A `TrlParser` over `dataclass_types` (task arguments, the trainer's config, `ModelConfig`, …)."""
    from trl import TrlParser

    return TrlParser(dataclass_types=list(dataclass_types), prog=prog)


def parse_args_and_config(parser, args: Sequence[str] | None = None) -> tuple:
    """Parse `args` (default `sys.argv[1:]`) with an optional `--config FILE`, failing clearly.

    Returns:
        `tuple`: one instance per dataclass type, in the parser's order.

    Raises:
        `SystemExit` (code 2, through `parser.error`): missing config file, a key no dataclass knows, or a
        value that fails a dataclass's validation, with a message naming the file, key or field.
    """
    args = list(sys.argv[1:] if args is None else args)
    if "--config" in args:
        index = args.index("--config")
        if index + 1 >= len(args):
            parser.error("--config needs a YAML file path")
        config_path = Path(args[index + 1])
        if not config_path.is_file():
            parser.error(f"config file not found: {config_path}")
    try:
        return parser.parse_args_and_config(args)
    except ValueError as error:
        message = str(error)
        if "Unknown arguments from config file" in message:
            message = f"unknown key(s) in {args[args.index('--config') + 1]}: {message.split(':', 1)[1].strip()}"
        elif "not used by the HfArgumentParser" in message:
            message = f"unknown argument(s): {message.split(':', 1)[1].strip()}"
        parser.error(message)
