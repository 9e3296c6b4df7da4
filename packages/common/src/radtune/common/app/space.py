"""What may leave the machine from `radtune app`: the credentialed rule for share links and Spaces, and the Space
folder `--export-space` writes.

A share link (`--share`) puts the app, its evaluation rows and their images on a public URL; a Space runs it for
anyone who can see the repo. For a run (or an evaluation) marked credentialed (`radtune.common.credentialed`), both
are refused unless `--allow-credentialed-public` says its data use agreement allows it, as for a public push.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from radtune.common.credentialed import CredentialedPublishError, folder_marks

ALLOW_FLAG = "--allow-credentialed-public"
SPACE_FILES = ("app.py", "requirements.txt", "README.md")


def check_public(run: str | Path, evaluations: Iterable[str | Path], action: str, allow: bool = False) -> set[str]:
    """Refuse to make a credentialed run or evaluation public (`action`: what would be made, e.g. "a share link").

    Returns:
        `set[str]`: the marking files (`run_info.json`, `eval-vqa-test/metrics.json`, …); empty for public data.

    Raises:
        `CredentialedPublishError`: marked, and `allow` is false.
    """
    run = Path(run)
    marks = {name for name in folder_marks(run) if name in ("run_info.json", "metrics.json")}
    for folder in map(Path, evaluations):
        if folder.resolve() != run.resolve() and "metrics.json" in folder_marks(folder):
            marks.add(f"{folder.name}/metrics.json")
    if marks and not allow:
        raise CredentialedPublishError(
            f"{run} was trained or evaluated on credentialed data ({', '.join(sorted(marks))}), so no {action} was "
            f"made. Serve it on this machine (the default, --no-share), or add {ALLOW_FLAG} if its data use "
            "agreement allows a public app."
        )
    return marks


def _range(distribution: str) -> str:
    """`name>=X.Y,<X.(Y+1)` for an installed radtune distribution (the sibling ranges the packages use)."""
    try:
        major, minor = version(distribution.split("[")[0]).split(".")[:2]
    except (PackageNotFoundError, ValueError):
        return distribution
    return f"{distribution}>={major}.{minor},<{major}.{int(minor) + 1}"


def space_files(repo_id: str, task: str, title: str | None = None) -> dict[str, str]:
    """The text of `app.py`, `requirements.txt` and `README.md` (Space YAML metadata) of a Space serving `repo_id`."""
    from radtune.common.app import task_distribution

    requirements = [_range("radtune-common[app]")]
    distribution = task_distribution(task)
    if distribution:
        requirements.append(_range(distribution))
    title = (title or repo_id.split("/")[-1])[:30]
    try:
        sdk_version = f"sdk_version: {version('gradio')}\n"
    except PackageNotFoundError:
        sdk_version = ""
    app = f'''"""A Hugging Face Space serving {repo_id} with `radtune app` (written by `radtune app --export-space`).

Run it locally the same way: `python app.py`, or `radtune app {repo_id}`.
"""

from radtune.common.app.page import build_app

demo = build_app({repo_id!r})

if __name__ == "__main__":
    demo.launch()
'''
    readme = f"""---
title: {title}
emoji: 🩻
colorFrom: blue
colorTo: gray
sdk: gradio
{sdk_version}app_file: app.py
pinned: false
models:
- {repo_id}
tags:
- radtune
- medical-imaging
- {task}
---

# {title}

The `radtune app` of [{repo_id}](https://huggingface.co/{repo_id}) ({task}): try the model on an image or a DICOM
file, and browse its evaluation when the repo holds one (`evaluation_results.csv` + `metrics.json`).

API endpoints (`gradio_client`): {_endpoints(task)}.

Research use only: not a medical device.
"""
    return {"app.py": app, "requirements.txt": "\n".join(requirements) + "\n", "README.md": readme}


def _endpoints(task: str) -> str:
    return {"vqa": "`/answer` (image, question)", "blip-vqa": "`/answer` (image, question)",
            "captioning": "`/caption` (image)",
            "contrastive": "`/classify` (image, labels, exclusive)"}.get(task, "see the page's API link")  # fmt: skip


def export_space(out_dir: str | Path, repo_id: str, task: str, overwrite: bool = False) -> list[Path]:
    """Write the Space folder (`SPACE_FILES`) that runs the app for the pushed repo `repo_id`.

    Raises:
        `ValueError`: `out_dir` already holds one of the files (unless `overwrite`).
    """
    out_dir = Path(out_dir)
    files = space_files(repo_id, task)
    existing = [name for name in files if (out_dir / name).exists()]
    if existing and not overwrite:
        raise ValueError(f"{out_dir} already holds {', '.join(existing)}; choose a new folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        (out_dir / name).write_text(text, encoding="utf-8")
        written.append(out_dir / name)
    return written
