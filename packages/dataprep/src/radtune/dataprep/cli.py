"""`radtune data`: build and inspect datasets.

Registered under the `radtune.commands` entry point `data`; the heavy modules load inside the commands
so that `radtune --help` stays instant.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

LAYOUT_CHOICES = ("mimic-cxr", "chexpert-plus", "nih")  # radtune.dataprep.phantoms.LAYOUTS, without the import


def _prevalences(values: tuple[str, ...]) -> dict[str, float] | None:
    parsed = {}
    for value in values:
        name, sep, number = value.partition("=")
        try:
            if not sep:
                raise ValueError
            parsed[name.strip()] = float(number)
        except ValueError:
            raise click.BadParameter(
                f"expected FINDING=PROBABILITY, got {value!r}", param_hint="--prevalence"
            ) from None
    return parsed or None


@click.group("data", context_settings={"help_option_names": ["-h", "--help"]})
def data() -> None:
    """Build and inspect datasets: phantom chest radiographs, readers for the real downloads.

    \b
    Example:
      radtune data phantoms ./phantoms/mimic --n 2000 --layout mimic-cxr
    """


@data.command(
    "phantoms",
    epilog="""\b
Examples:
  radtune data phantoms ./phantoms/mimic --n 2000 --layout mimic-cxr
  radtune data phantoms ./phantoms/nih --n 500 --layout nih --image-size 128 --seed 1
  radtune data phantoms ./phantoms/cxp --layout chexpert-plus --prevalence pneumothorax=0.3
  radtune data phantoms ./phantoms/mimic --n 16 --preview docs/phantoms.png""",
)
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--n", "n", type=click.IntRange(min=1), default=2000, show_default=True, help="Number of studies.")
@click.option(
    "--layout",
    type=click.Choice(LAYOUT_CHOICES),
    default="mimic-cxr",
    show_default=True,
    help="On-disk layout of the real dataset to imitate.",
)
@click.option(
    "--image-size", type=click.IntRange(32, 2048), default=256, show_default=True, help="Square image size in pixels."
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Same seed, same bytes.")
@click.option(
    "--prevalence",
    "prevalence",
    multiple=True,
    metavar="FINDING=P",
    help="Override a finding's prevalence (repeatable): cardiomegaly, pleural_effusion, pneumothorax, nodule, "
    "mass, consolidation, support_devices.",
)
@click.option(
    "--workers", type=click.IntRange(min=1), default=None, help="Drawing processes [default: CPU cores, at most 8]."
)
@click.option(
    "--preview",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also save a 16-phantom contact sheet with impressions to this PNG.",
)
def phantoms(
    out_dir: Path,
    n: int,
    layout: str,
    image_size: int,
    seed: int,
    prevalence: tuple[str, ...],
    workers: int | None,
    preview: Path | None,
) -> None:
    """Write N synthetic chest radiographs with reports and labels to OUT_DIR in a real dataset's layout.

    The images show drawn findings (cardiomegaly, pleural effusion, pneumothorax, nodule/mass,
    consolidation, support devices; about 40% normal studies), the reports describe exactly what was
    drawn, and the label files come from the drawing. OUT_DIR/PHANTOM.json marks the build as
    source "phantom" (CC0-1.0, not credentialed); OUT_DIR/phantom_findings.jsonl holds the ground truth.
    """
    from radtune.dataprep.phantoms import generate_phantoms, make_preview

    prevalences = _prevalences(prevalence)
    try:
        root = generate_phantoms(
            out_dir,
            n=n,
            layout=layout,
            image_size=image_size,
            seed=seed,
            prevalences=prevalences,
            workers=workers,
            progress=True,
        )
        if preview is not None:
            make_preview(preview, count=16, seed=seed, image_size=image_size, prevalences=prevalences)
    except (ValueError, FileExistsError) as error:
        raise click.ClickException(str(error)) from error
    marker = json.loads((root / "PHANTOM.json").read_text(encoding="utf-8"))
    click.echo(f"wrote {n} {marker['layout']} phantoms to {root}")
    if preview is not None:
        click.echo(f"wrote preview to {preview}")


from radtune.dataprep.qa_cli import qa  # noqa: E402

data.add_command(qa)

from radtune.dataprep.build_cli import build, info, push  # noqa: E402

data.add_command(build)
data.add_command(info)
data.add_command(push)
