"""`radtune tiny`: build a tiny model folder for smoke tests."""

from __future__ import annotations

from pathlib import Path

import click

from radtune.common.tiny import KINDS


@click.command(
    "tiny",
    epilog="""\b
Examples:
  radtune tiny llava ./tiny-llava
  radtune tiny vit-gpt2 ./tiny-vitgpt2 --texts reports.txt
  radtune tiny llava ./tiny-llava-64 --image-size 64 --hidden-size 64
  radtune tiny dual-encoder ./tiny-dual   # writes text/ and image/ subfolders""",
)
@click.argument("kind", type=click.Choice(KINDS))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--texts",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Text file (one text per line) to train the tokenizer on. Default: radtune's built-in radiology corpus.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the random weights.")
@click.option("--image-size", type=int, default=32, show_default=True, help="Input image side (multiple of 8).")
@click.option("--hidden-size", type=int, default=32, show_default=True, help="Hidden size (multiple of 4).")
def tiny(kind: str, out_dir: Path, texts: Path | None, seed: int, image_size: int, hidden_size: int) -> None:
    """Build a tiny, randomly initialised KIND model with its processor in OUT_DIR.

    The folder loads with plain `from_pretrained` and trains in seconds on a CPU: use it to smoke-test a
    pipeline before spending GPU hours on the real model.
    """
    from radtune.common.tiny import build_tiny

    lines = texts.read_text(encoding="utf-8").splitlines() if texts else None
    try:
        build_tiny(kind, out_dir, texts=lines, seed=seed, image_size=image_size, hidden_size=hidden_size)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"wrote tiny {kind} model to {out_dir}")
