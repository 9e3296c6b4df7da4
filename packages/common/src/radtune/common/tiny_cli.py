"""`radtune tiny`: build a tiny model folder for smoke tests."""

from __future__ import annotations

from pathlib import Path

import click


def _read_texts(path: Path) -> list[str]:
    """Lines of a text file, or the text columns of every split of a saved dataset folder."""
    if path.is_file():
        return path.read_text(encoding="utf-8").splitlines()
    from radtune.common.datasets_io import is_saved_dataset, load_dataset_any

    if not is_saved_dataset(path):
        raise ValueError(f"{path} is neither a text file nor a dataset folder written by save_to_disk")
    texts = []
    for split in load_dataset_any(path).values():
        for column in ("text", "question", "answer"):
            if column in split.column_names:
                for value in split[column]:  # a multi-turn export holds one list of questions/answers a row
                    texts += [value] if isinstance(value, str) else [v for v in value or [] if isinstance(v, str)]
    if not texts:
        raise ValueError(f"{path} has no text, question or answer column to train a tokenizer on")
    return texts


class _TinyCommand(click.Command):
    """Lists the installed kinds (the `radtune.tiny` entry points) in `--help`, read only when help is shown."""

    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from radtune.common.tiny import tiny_kinds

        super().format_help_text(ctx, formatter)
        with formatter.section("Kinds installed"):
            formatter.write_dl(list(tiny_kinds().items()) or [("(none)", "install a radtune task package")])


@click.command(
    "tiny",
    cls=_TinyCommand,
    epilog="""\b
Examples:
  radtune tiny llava ./tiny-llava
  radtune tiny vit-gpt2 ./tiny-vitgpt2 --texts reports.txt
  radtune tiny clip ./tiny-clip --texts runs/phantoms-built   # a `radtune data build` folder
  radtune tiny llava ./tiny-llava-64 --image-size 64 --hidden-size 64
  radtune tiny llava ./tiny-llava --vision-tower runs/phantom-clip   # a CLIP from `radtune clip train`
  radtune tiny dual-encoder ./tiny-dual   # a dual encoder; its text/ and image/ are plain towers""",
)
@click.argument("kind")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--texts",
    type=click.Path(exists=True, path_type=Path),
    help="Texts to train the tokenizer on: a text file (one text per line) or a dataset folder written by "
    "`radtune data build` / `radtune data qa` (its text, question and answer columns). Default: radtune's "
    "built-in radiology corpus.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the random weights.")
@click.option("--image-size", type=int, default=32, show_default=True, help="Input image side (multiple of 8).")
@click.option("--hidden-size", type=int, default=32, show_default=True, help="Hidden size (multiple of 4).")
@click.option(
    "--vision-tower",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="llava only: start the vision tower from this CLIP model folder (e.g. from `radtune clip train`, built "
    "with the same --image-size and --hidden-size) instead of random weights, as LLaVA starts from CLIP.",
)
def tiny(
    kind: str, out_dir: Path, texts: Path | None, seed: int, image_size: int, hidden_size: int,
    vision_tower: Path | None,
) -> None:  # fmt: skip
    """Build a tiny, randomly initialised KIND model with its processor in OUT_DIR.

    The folder loads with plain `from_pretrained` and trains in seconds on a CPU: use it to smoke-test a
    pipeline before spending GPU hours on the real model. KIND is one of the kinds listed below, which the
    installed radtune task packages provide.
    """
    from radtune.common.tiny import build_tiny, tiny_builder

    try:
        tiny_builder(kind)  # an unknown or missing kind fails before the texts are read
        lines = _read_texts(texts) if texts else None
        build_tiny(kind, out_dir, texts=lines, seed=seed, image_size=image_size, hidden_size=hidden_size,
                   vision_tower=vision_tower)  # fmt: skip
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"wrote tiny {kind} model to {out_dir}")
