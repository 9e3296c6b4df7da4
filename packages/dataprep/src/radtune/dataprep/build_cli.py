"""`radtune data build`, `radtune data info` and `radtune data push`.

    radtune data build rocov2 ~/data/rocov2 ./rocov2-hf --max-side 512 --num-proc 8
    radtune data build vqa-rad hf://datasets/flaviagiammarino/vqa-rad ./vqa-rad-hf
    radtune data build mimic-cxr ~/physionet/mimic-cxr-jpg/2.0.0 ./mimic --push-to-hub me/mimic-cxr
    radtune data info ./rocov2-hf
    radtune data push ./rocov2-hf me/rocov2            # private unless --public

Heavy libraries (datasets, huggingface_hub) load inside the commands so `--help` stays instant.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import click

SOURCE_NAMES = (
    "rocov2",
    "roco",
    "mimic-cxr",
    "chexpert-plus",
    "nih",
    "vqa-rad",
    "slake",
    "pathvqa",
    "imagefolder-csv",
)


def _parse_options(values: tuple[str, ...]) -> dict[str, str]:
    options = {}
    for value in values:
        key, sep, setting = value.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {value!r}", param_hint="--reader-option")
        options[key.strip().replace("-", "_")] = setting
    return options


def _load_local(path: Path):
    from datasets import Dataset, DatasetDict, load_from_disk

    data = load_from_disk(str(path))
    return DatasetDict({"train": data}) if isinstance(data, Dataset) else data


def push_dataset(directory: str | Path, repo_id: str, private: bool = True) -> str:
    """Push a built dataset folder to the Hub as parquet shards, with its card and build report.

    The card (`README.md`) and `build_report.json` are committed first; `DatasetDict.push_to_hub` then writes
    `data/<split>-*.parquet` and merges `dataset_info` into that card, so `load_dataset(repo_id)` works and the
    card's own text and metadata stay. Credentialed data (a MIMIC-CXR or CheXpert Plus build, a QA export of one)
    goes only to a private repo: a public one, or an existing public repo, is refused before anything is uploaded.

    Args:
        directory (`str` or `Path`): a folder written by `radtune data build`.
        repo_id (`str`): `namespace/name` of the dataset repo (created when missing).
        private (`bool`, *optional*, defaults to `True`): visibility of a repo this call creates.

    Returns:
        `str`: the repo URL.

    Raises:
        `CredentialedPublishError` (a `HubError`): a public push of credentialed data.
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    from radtune.common.credentialed import CredentialedPublishError, check_publish
    from radtune.common.hub import hub_errors

    directory = Path(directory)
    dataset = _load_local(directory)
    rule = check_publish(directory, repo_type="dataset", private=private)
    operations = [
        CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(directory / name))
        for name in ("README.md", "build_report.json")
        if (directory / name).is_file()
    ]
    api = HfApi()
    with hub_errors(repo_id, "dataset"):
        url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        if rule.private_only and not api.repo_info(url.repo_id, repo_type="dataset").private:
            raise CredentialedPublishError(
                f"{url.repo_id} already exists and is public, and {directory} is credentialed data: nothing was "
                "pushed. Push to a private repo (a new name, or make this one private first)."
            )
        if operations:
            api.create_commit(
                repo_id, operations, commit_message="Add dataset card and build report", repo_type="dataset"
            )
        dataset.push_to_hub(repo_id, private=private, commit_message="Upload dataset with radtune")
    return str(url)


class _SourceParam(click.ParamType):
    """SRC: an existing folder, or a Hub copy `hf://datasets/OWNER/NAME[@REVISION]` (kept as a string)."""

    name = "folder or hf://datasets/OWNER/NAME[@REVISION]"

    def convert(self, value, param, ctx):
        if isinstance(value, Path):
            return value
        if str(value).startswith("hf://"):
            from .readers.hub import parse_hub_address

            try:
                parse_hub_address(str(value))
            except ValueError as error:
                self.fail(str(error), param, ctx)
            return str(value)
        return click.Path(exists=True, file_okay=False, path_type=Path).convert(value, param, ctx)


@click.command(
    "build",
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="""\b
Examples:
  radtune data build rocov2 ~/data/rocov2 ./rocov2-hf --max-side 512 --num-proc 8
  radtune data build mimic-cxr ~/physionet/mimic-cxr-jpg/2.0.0 ./mimic-hf --push-to-hub me/mimic-cxr
  radtune data build slake ~/data/Slake1.0 ./slake-hf --reader-option languages=en,zh
  radtune data build vqa-rad hf://datasets/flaviagiammarino/vqa-rad ./vqa-rad-hf
  radtune data build pathvqa hf://datasets/flaviagiammarino/path-vqa@main ./pathvqa-hf
  radtune data build imagefolder-csv ./my-data ./my-data-hf --reader-option text_column=report""",
)
@click.argument("source", type=click.Choice(SOURCE_NAMES))
@click.argument("src_dir", metavar="SRC", type=_SourceParam())
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option("--max-side", type=click.IntRange(min=1), default=None, help="Scale images so the longer side is at most N px.")
@click.option("--num-proc", type=click.IntRange(min=1), default=1, show_default=True, help="Processes decoding images.")
@click.option(
    "--max-skip-fraction",
    type=click.FloatRange(0, 1),
    default=0.05,
    show_default=True,
    help="Fail when a larger fraction of records is skipped (missing/unreadable images, empty texts).",
)
@click.option(
    "--split-ratios",
    default="0.8,0.1,0.1",
    show_default=True,
    help="train,validation,test ratios of the patient-level split, used where the source has no official split.",
)
@click.option(
    "--reader-option",
    "reader_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Reader setting, e.g. languages=en,zh (slake), subsets=radiology,non-radiology (roco), "
    "csv=meta.csv image_column=path text_column=caption (imagefolder-csv). Repeatable.",
)
@click.option("--overwrite", is_flag=True, help="Replace OUT_DIR if it exists (only once the new build succeeded).")
@click.option("--push-to-hub", "push_to_hub", metavar="REPO_ID", default=None, help="Push the built dataset to this repo.")
@click.option("--private/--public", default=True, show_default=True, help="Visibility of a repo created by the push.")
def build(
    source, src_dir, out_dir, max_side, num_proc, max_skip_fraction, split_ratios, reader_options, overwrite,
    push_to_hub, private,
):
    """Build a Hugging Face dataset from SOURCE as downloaded in the folder SRC (or its Hub copy
    SRC = hf://datasets/OWNER/NAME[@REVISION]), saved to OUT_DIR.

    \b
    Sources: rocov2, roco, mimic-cxr, chexpert-plus, nih, vqa-rad, slake, pathvqa, imagefolder-csv.
    Hub copies: vqa-rad, pathvqa, slake, rocov2 (e.g. flaviagiammarino/vqa-rad, flaviagiammarino/path-vqa,
    BoKelvin/SLAKE, eltorio/ROCOv2-radiology).
    Writes OUT_DIR (save_to_disk) with README.md (the dataset card) and build_report.json (every skipped record).
    Official test splits are never altered: a train copy of a test row leaves train (reported as leakage).
    Exits non-zero when more than --max-skip-fraction of the records are skipped; nothing is written then.
    """
    from radtune.common.errors import HubError

    from .build import BuildError, build_dataset
    from .records import MissingColumnError, SourceLayoutError
    from .sources import resolve_source
    from .splits import PatientLeakageError, parse_ratios

    if push_to_hub and not private and _credentialed_source(resolve_source, source, src_dir):
        raise click.ClickException(
            f"{source} is credentialed data: its data use agreement forbids a public copy. Leave out --public to "
            "push it to a private repo."
        )

    try:
        ratios = parse_ratios(split_ratios)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--split-ratios") from error
    # The command as given, rebuilt from the parsed values (local paths included: they help reproduce the build).
    words = ["radtune", "data", "build", source, str(src_dir), str(out_dir)]
    if max_side:
        words += ["--max-side", str(max_side)]
    if num_proc != 1:
        words += ["--num-proc", str(num_proc)]
    if max_skip_fraction != 0.05:
        words += ["--max-skip-fraction", str(max_skip_fraction)]
    if split_ratios != "0.8,0.1,0.1":
        words += ["--split-ratios", split_ratios]
    for option in reader_options:
        words += ["--reader-option", option]
    command = shlex.join(words)
    try:
        report = build_dataset(
            source,
            src_dir,
            out_dir,
            max_side=max_side,
            num_proc=num_proc,
            max_skip_fraction=max_skip_fraction,
            ratios=ratios,
            reader_options=_parse_options(reader_options),
            overwrite=overwrite,
            command=command,
        )
    except (
        BuildError, PatientLeakageError, MissingColumnError, SourceLayoutError, FileExistsError, ValueError, HubError,
    ) as error:
        raise click.ClickException(str(error)) from error
    counts = ", ".join(f"{name}={count:,}" for name, count in report["splits"].items())
    skipped = ", ".join(f"{k}={v:,}" for k, v in report["skipped"].items()) or "none"
    click.echo(f"Built {report['source']} dataset in {out_dir}: {counts}")
    click.echo(
        f"Skipped {report['skipped_total']:,} ({skipped}); {report['duplicates_dropped']:,} duplicates dropped; "
        f"{report['leakage_dropped']:,} rows repeating a test (or validation) row left their split; "
        f"{report['test_duplicates_kept']:,} duplicates inside test kept."
    )
    published = report.get("published_splits")
    if published:
        click.echo(
            "Split sizes equal the published ones."
            if published["equal"]
            else "Split sizes differ from the published ones: "
            + ", ".join(f"{k} {v['built']:,} (published {v['published']:,})" for k, v in published["differences"].items())
        )
    if push_to_hub:
        click.echo(f"Pushing to {push_to_hub} ({'private' if private else 'public'}) ...")
        url = _push_or_fail(out_dir, push_to_hub, private)
        click.echo(f"Pushed: {url}")


def _credentialed_source(resolve_source, source: str, src_dir: Path) -> bool:
    try:
        return resolve_source(source, src_dir)[0].credentialed
    except (OSError, ValueError):  # a malformed phantom marker: the build itself says what is wrong
        return False


def _push_or_fail(directory: Path, repo_id: str, private: bool) -> str:
    from radtune.common.hub import HubError

    try:
        return push_dataset(directory, repo_id, private=private)
    except HubError as error:
        raise click.ClickException(str(error)) from error


@click.command(
    "push",
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="""\b
Examples:
  radtune data push ./rocov2-hf me/rocov2
  radtune data push ./nih-hf me/chestxray14 --public""",
)
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("repo_id")
@click.option("--private/--public", default=True, show_default=True, help="Visibility of a repo created by the push.")
def push(directory, repo_id, private):
    """Push a dataset built by `radtune data build` in DIRECTORY to the Hub repo REPO_ID (private by default).

    The card and build report are committed, then the splits as parquet shards, so that
    `datasets.load_dataset(REPO_ID)` loads it.
    """
    if not (directory / "dataset_dict.json").is_file() and not (directory / "state.json").is_file():
        raise click.ClickException(f"{directory} is not a dataset folder written by `radtune data build`")
    url = _push_or_fail(directory, repo_id, private)
    click.echo(f"Pushed {directory} to {url} ({'private' if private else 'public'})")


def _short(value, limit: int = 100) -> str:
    if isinstance(value, str):
        return value if len(value) <= limit else value[: limit - 1] + "…"
    if hasattr(value, "size") and hasattr(value, "mode"):
        return f"<image {value.mode} {value.size[0]}x{value.size[1]}>"
    return _short(repr(value), limit)


@click.command(
    "info",
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="""\b
Examples:
  radtune data info ./rocov2-hf
  radtune data info me/rocov2 --examples 5""",
)
@click.argument("dir_or_repo")
@click.option("--examples", type=click.IntRange(min=0), default=2, show_default=True, help="Rows shown per split.")
def info(dir_or_repo, examples):
    """Show the splits, row counts, features and a few examples of a built dataset (folder or Hub repo id)."""
    path = Path(dir_or_repo)
    if path.exists():
        if not (path / "dataset_dict.json").is_file() and not (path / "state.json").is_file():
            raise click.ClickException(f"{path} is not a dataset folder written by `radtune data build`")
        dataset = _load_local(path)
    else:
        from radtune.common.datasets_io import load_dataset_any
        from radtune.common.errors import HubError

        try:  # a missing path fails at once; a repo id that the Hub does not know, within seconds
            dataset = load_dataset_any(dir_or_repo)
        except (HubError, ValueError, FileNotFoundError) as error:
            raise click.ClickException(str(error)) from error
    click.echo(f"{dir_or_repo}")
    for name, split in dataset.items():
        click.echo(f"  {name}: {len(split):,} rows")
    first = next(iter(dataset.values()))
    click.echo("features:")
    for name, feature in first.features.items():
        click.echo(f"  {name}: {feature}")
    report_path = path / "build_report.json"
    if path.exists() and report_path.is_file():
        report = json.loads(report_path.read_text(encoding="utf-8"))
        skipped = ", ".join(f"{k}={v:,}" for k, v in report.get("skipped", {}).items()) or "none"
        click.echo(
            f"build: source={report.get('source')} read={report.get('records_read', 0):,} "
            f"skipped={report.get('skipped_total', 0):,} ({skipped}) duplicates={report.get('duplicates_dropped', 0):,} "
            f"leakage={report.get('leakage_dropped', 0):,} test_duplicates_kept={report.get('test_duplicates_kept', 0):,}"
        )
    for name, split in dataset.items():
        for index in range(min(examples, len(split))):
            row = split[index]
            click.echo(f"{name}[{index}]: " + "; ".join(f"{k}={_short(v)}" for k, v in row.items()))
