"""A contact sheet of phantoms with their impressions (the README's picture)."""

from __future__ import annotations

import io
import os
import textwrap
from pathlib import Path

from PIL import Image

from radtune.dataprep.phantoms.findings import TARGETS, validate_prevalences
from radtune.dataprep.phantoms.generator import describe_study, draw_study, sample_study


def _pick_indices(count: int, seed: int, prevalences: dict[str, float], limit: int = 400) -> list[int]:
    """The first `count` studies, except that every finding and a few normal studies are shown."""
    wanted = {name: 2 for name in TARGETS} | {"normal": max(1, count // 4)}
    chosen = []
    for index in range(limit):
        phantom = sample_study(index, seed, prevalences)
        shows = [name for name, present in phantom.targets().items() if present]
        if phantom.is_normal and not phantom.devices:
            shows = ["normal"]
        if any(wanted.get(name, 0) > 0 for name in shows):
            chosen.append(index)
            for name in shows:
                wanted[name] = wanted.get(name, 0) - 1
        if len(chosen) == count:
            break
    extra = (index for index in range(limit) if index not in chosen)
    while len(chosen) < count:
        chosen.append(next(extra))
    return sorted(chosen)


def make_preview(
    out_path: str | os.PathLike,
    count: int = 16,
    seed: int = 0,
    image_size: int = 256,
    prevalences: dict[str, float] | None = None,
) -> Path:
    """Save a grid of `count` phantoms, each captioned with its MIMIC-style impression, as a PNG.

    The studies are those `generate_phantoms(..., seed=seed, image_size=image_size)` writes at the same
    indices, chosen so that every drawn finding and some normal studies appear.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    prevalences = validate_prevalences(prevalences)
    columns = min(4, count)
    rows = (count + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 4.3 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, index in zip(axes.flat, _pick_indices(count, seed, prevalences), strict=False):
        phantom, pixels = draw_study(index, seed, image_size, prevalences)
        report = describe_study(phantom, seed, index, age=60, sex="M", first_study=True)
        axis.imshow(pixels, cmap="gray", vmin=0, vmax=255)
        caption = "\n".join(textwrap.fill(line, 42) for line in report.impression_lines())
        axis.set_title(f"#{index}", fontsize=8, loc="left")
        axis.text(0.0, -0.02, caption, transform=axis.transAxes, fontsize=7, va="top", ha="left", wrap=True)
    figure.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=72)
    plt.close(figure)
    # The sheet is grey anyway: an 8-bit grey PNG is a third of the RGBA one (the README's copy stays < 500 KB).
    Image.open(buffer).convert("L").save(out_path, format="PNG", optimize=True)
    return out_path
