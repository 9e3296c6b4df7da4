"""`radtune hub`: push model, adapter and dataset folders to the Hugging Face Hub, and pull them back."""

from __future__ import annotations

from pathlib import Path

import click

_REPO_TYPE = click.option(
    "--repo-type",
    type=click.Choice(["model", "dataset"]),
    default="model",
    show_default=True,
    help="`model` for models and adapters, `dataset` for datasets.",
)
_REVISION = click.option("--revision", help="Branch, tag or commit (default: main).")


@click.group(
    "hub",
    epilog="""\b
Examples:
  radtune hub push runs/llava-slake me/llava-slake-lora          # private, with a model card
  radtune hub pull me/llava-slake-lora adapters/slake

The token comes from HF_TOKEN or `hf auth login`; set HF_ENDPOINT to use another Hub.""",
)
def hub() -> None:
    """Publish models, adapters and datasets to the Hugging Face Hub, and pull them back."""


@hub.command(
    "push",
    epilog="""\b
Examples:
  radtune hub push runs/slake-lora me/llava-slake-lora --base-model llava-hf/llava-1.5-7b-hf
  radtune hub push data/rocov2-radtune me/rocov2-radtune --repo-type dataset --public""",
)
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("repo_id")
@click.option(
    "--private/--public",
    default=True,
    show_default=True,
    help="Visibility of a repo this push creates (an existing repo keeps its own).",
)
@_REPO_TYPE
@_REVISION
@click.option("--base-model", help="Hub id of the base model, for the card (default: the one the config names).")
@click.option("--dataset", "datasets", multiple=True, help="Hub id of a training dataset, for the card (repeatable).")
@click.option("--license", "license_", default="other", show_default=True, help="License identifier for the card.")
@click.option(
    "--tag", "tags", multiple=True, help="Extra card tag (repeatable); medical and radiology are always set."
)
@click.option("--no-card", is_flag=True, help="Do not generate README.md (models and adapters only).")
@click.option("-m", "--message", help="Commit message.")
@click.option(
    "--allow-credentialed-public",
    is_flag=True,
    help="With --public: publish a run trained on credentialed data (MIMIC-CXR, CheXpert Plus) anyway; its "
    "per-item files (evaluation_results.csv, ...) still stay here. Credentialed datasets are never public.",
)
def push(
    folder: Path,
    repo_id: str,
    private: bool,
    repo_type: str,
    revision: str | None,
    base_model: str | None,
    datasets: tuple[str, ...],
    license_: str,
    tags: tuple[str, ...],
    no_card: bool,
    message: str | None,
    allow_credentialed_public: bool,
) -> None:
    """Push FOLDER (a saved model, adapter or dataset) to the Hub repo REPO_ID, in one commit.

    Models and adapters get a generated model card (README.md) with base_model, datasets, library_name, license,
    tags and, when FOLDER has a metrics.json, model-index evaluation results. The repo is private unless --public.
    Credentialed data (MIMIC-CXR, CheXpert Plus builds and anything derived) is never pushed public; a run trained
    on it only with --allow-credentialed-public, and never with its per-item files.
    """
    from radtune.common.hub import HubError, push_folder

    try:
        result = push_folder(
            folder,
            repo_id,
            repo_type=repo_type,
            private=private,
            revision=revision,
            commit_message=message,
            card=not no_card,
            base_model=base_model,
            datasets=list(datasets) or None,
            license=license_,
            tags=list(tags),
            allow_credentialed_public=allow_credentialed_public,
        )
    except HubError as error:
        raise click.ClickException(str(error)) from error
    if result.left_out:
        click.echo(f"notice: left out {', '.join(result.left_out)}: per-item results of credentialed data stay "
                   "here", err=True)  # fmt: skip
    visibility = {True: "private", False: "public", None: "visibility unknown"}[result.private]
    click.echo(f"pushed {folder} to {result.repo_url} ({visibility})")
    click.echo(f"commit: {result.commit_url}")


@hub.command(
    "pull",
    epilog="""\b
Examples:
  radtune hub pull me/llava-slake-lora adapters/slake
  radtune hub pull me/rocov2-radtune data/rocov2 --repo-type dataset
  radtune hub pull me/llava-slake-lora adapters/slake -f adapter_config.json""",
)
@click.argument("repo_id")
@click.argument("local_dir", type=click.Path(file_okay=False, path_type=Path))
@_REPO_TYPE
@_REVISION
@click.option("-f", "--file", "filenames", multiple=True, help="Pull only this file (repeatable).")
def pull(repo_id: str, local_dir: Path, repo_type: str, revision: str | None, filenames: tuple[str, ...]) -> None:
    """Download the Hub repo REPO_ID (or only some of its files) into LOCAL_DIR as plain files."""
    from radtune.common.hub import HubError
    from radtune.common.hub import pull as pull_repo

    try:
        pull_repo(repo_id, local_dir, repo_type=repo_type, revision=revision, filenames=list(filenames) or None)
    except HubError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"pulled {repo_type} repo {repo_id} into {local_dir}")
