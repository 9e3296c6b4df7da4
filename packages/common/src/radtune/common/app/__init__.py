"""`radtune app`: a Gradio app to try a trained run's model and browse its evaluations.

The app itself (layout, evaluation browser, share rules, Space export) lives here in common, and never imports a
task package. Each task package says how to load its model for the app through the `radtune.app` entry-point
group, keyed by the task its runs record in `run_info.json`, as it declares its commands in `radtune.commands`:

    [project.entry-points."radtune.app"]
    vqa = "radtune.llava_vqa.app:app_model"

An entry point is `app_model(folder, info, device=None) -> AppModel`: it loads the model once (with the task's own
inference code) and returns the functions the app's endpoints call: `answer(image, question) -> str`,
`caption(image) -> str`, `classify(image, labels, exclusive) -> {label: score}`. Images reach them as PIL images
opened by `radtune.common.images.load_image` (DICOM windowed as in training).

    from radtune.common.app.page import build_app

    build_app("runs/demo/llava").launch()

Nothing heavy is imported here: `radtune app --help` stays instant.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path

ENTRY_POINT_GROUP = "radtune.app"
# The tasks radtune's own packages serve, and the distribution that brings each: only to name what to install.
SHIPPED_TASKS = {
    "vqa": "radtune-llava-vqa",
    "captioning": "radtune-captioning",
    "blip-vqa": "radtune-captioning",
    "contrastive": "radtune-contrastive",
}
INSTALL_HINT = "pip install 'radtune-common[app]'"
# Set before anything imports gradio: the app never phones home.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@dataclass
class AppModel:
    """A model loaded for the app, with the functions its endpoints call (`None`: the model cannot do that).

    Args:
        task (`str`): the run's task (`run_info.json`'s `task`).
        name (`str`): what the page calls the model (its folder or repo id).
        answer (`Callable[[PIL.Image.Image, str], str]`, *optional*): the answer to a question about an image.
        caption (`Callable[[PIL.Image.Image], str]`, *optional*): the caption of an image.
        classify (`Callable[[PIL.Image.Image, Sequence[str], bool], dict[str, float]]`, *optional*): a score per
            label; `exclusive=False` scores each label against its absence as the run's zero-shot evaluation does,
            `exclusive=True` is a softmax over the labels (they sum to 1).
        labels (`list[str]`, *optional*): the labels the page starts with (`classify` only).
        notes (`list[str]`, *optional*): lines the page shows under the model's name (how it decodes, …).
    """

    task: str
    name: str
    answer: Callable | None = None
    caption: Callable | None = None
    classify: Callable | None = None
    labels: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def app_tasks() -> dict[str, str]:
    """The installed `radtune.app` entry points: task → `"module:function"`."""
    return {entry_point.name: entry_point.value for entry_point in entry_points(group=ENTRY_POINT_GROUP)}


def task_distribution(task: str) -> str | None:
    """The distribution that serves `task` in the app (installed, else the one radtune ships), for requirements."""
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.name == task and entry_point.dist is not None:
            return entry_point.dist.metadata["Name"]
    return SHIPPED_TASKS.get(task)


def run_task(folder: str | Path, info: Mapping, task: str | None = None) -> str:
    """The task the app serves for a model folder: `task` when given, else `run_info.json`'s.

    Raises:
        `ValueError`: no task recorded and none given, or a task no installed package serves (the message names the
            package to install).
    """
    task = task or info.get("task")
    known = app_tasks()
    if not task:
        raise ValueError(f"{folder} has no run_info.json naming its task; pass --task "
                         f"({', '.join(sorted(known or SHIPPED_TASKS))})")  # fmt: skip
    if task not in known:
        hint = f"install {SHIPPED_TASKS[task]}" if task in SHIPPED_TASKS else f"tasks: {', '.join(sorted(known))}"
        raise ValueError(f"no installed radtune package serves task {task!r} in the app ({hint})")
    return task


def load_app_model(folder: str | Path, info: Mapping, task: str | None = None, device: str | None = None) -> AppModel:
    """Load the model of `folder` for the app through its task's `radtune.app` entry point (once per app)."""
    import importlib

    task = run_task(folder, info, task)
    module_name, _, function = app_tasks()[task].partition(":")
    loader = getattr(importlib.import_module(module_name), function)
    return loader(Path(folder), dict(info), device=device)


def parse_labels(text: str | Sequence[str]) -> list[str]:
    """Labels typed as one text (comma- or newline-separated) or given as a list, stripped, empty ones dropped."""
    if isinstance(text, str):
        text = text.replace("\n", ",").split(",")
    return [label.strip() for label in text if label and label.strip()]
