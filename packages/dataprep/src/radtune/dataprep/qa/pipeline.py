"""The QA pipeline behind `radtune data qa`: load a built dataset's reports, generate pairs, save the TRL dataset.

    from radtune.dataprep.qa.pipeline import generate_qa_dataset
    report = generate_qa_dataset("./phantoms-built", "./phantoms-qa", generator="rules", n_per_report=6)

    from radtune.dataprep.qa.openai_generator import EndpointSettings
    report = generate_qa_dataset(
        "./mimic", "./mimic-qa", generator="openai",
        endpoint=EndpointSettings("azure", "my-deployment", "https://my-resource.openai.azure.com"),
    )

Writes `OUT_DIR` (`save_to_disk`), its `README.md` card and `qa_report.json`, and returns that report. The
dataset is staged in a hidden folder beside `OUT_DIR` (`.OUT_DIR.qa-building-*`) and renamed into place only once
it is complete with its card and report: a killed run leaves `OUT_DIR` as it was, and the next run resumes (the
openai generator's answered requests are in the cache beside it, `OUT_DIR.qa_cache.sqlite`) and removes what the
killed run left. When more than `max_failure_fraction` of the reports fail, or no pair is generated, nothing is
written to `OUT_DIR` and the report goes to `OUT_DIR.qa_report.json` instead. Heavy libraries (datasets, openai)
load inside the functions.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from radtune.dataprep.qa.openai_generator import EndpointSettings

logger = logging.getLogger(__name__)

GENERATORS = ("openai", "rules")
REPORT_NAME = "qa_report.json"
_STAGING_TAG = "qa-building-"


class QAPipelineError(Exception):
    """A QA run cannot start or cannot reach the API: the message says what to change."""


class QAFailuresError(QAPipelineError):
    """More reports failed than `max_failure_fraction` allows, or no pair was generated: nothing was written to
    `out_dir`.

    Attributes:
        report (`dict`): the run report, also written to `report_path`.
        report_path (`Path`): where the report went (`OUT_DIR.qa_report.json`, beside the would-be output).
        cache_path (`Path`, *optional*): the openai generator's cache: its answered requests are not asked again,
            so rerunning the same command retries only the failed ones.
    """

    def __init__(self, message: str, report: dict, report_path: Path, cache_path: Path | None):
        super().__init__(message)
        self.report, self.report_path, self.cache_path = report, report_path, cache_path


def default_cache_path(out_dir: str | Path) -> Path:
    """The openai generator's cache of `out_dir`: `OUT_DIR.qa_cache.sqlite`, beside it (never inside: `out_dir` is
    replaced as a whole when the dataset is complete)."""
    out_dir = Path(out_dir).absolute()
    return out_dir.with_name(f"{out_dir.name}.qa_cache.sqlite")


def failed_report_path(out_dir: str | Path) -> Path:
    """Where a run that wrote nothing leaves its report: `OUT_DIR.qa_report.json`, beside the would-be output."""
    out_dir = Path(out_dir).absolute()
    return out_dir.with_name(f"{out_dir.name}.{REPORT_NAME}")


def retryable_failures(report: dict) -> int:
    """How many of the report's failures a rerun asks again (all but reports without text)."""
    return sum(1 for failure in report.get("failures", []) if failure.get("reason") != "empty report")


def generate_qa_dataset(
    dataset: str | Path,
    out_dir: str | Path,
    *,
    generator: str,
    n_per_report: int = 5,
    splits: Sequence[str] | None = None,
    limit: int | None = None,
    conversation: str = "single",
    form: str = "messages",
    uncertain: str = "possibly",
    balance: bool = True,
    endpoint: EndpointSettings | None = None,
    price: tuple[float, float] | None = None,
    cache_path: str | Path | None = None,
    concurrency: int = 16,
    temperature: float | None = None,
    batch_api: bool = False,
    poll_interval: float = 30.0,
    allow_credentialed_upload: bool = False,
    overwrite: bool = False,
    max_failure_fraction: float = 0.05,
    command: str | None = None,
    on_batch_status: Callable[[str, str], None] | None = None,
) -> dict:
    """Generate question–answer pairs from the reports of `dataset` and save them to `out_dir` for TRL.

    The reports of credentialed data (MIMIC-CXR, CheXpert Plus; the output carries the `credentialed` mark on) go
    only to loopback, private addresses or Azure OpenAI, else are refused before any request unless
    `allow_credentialed_upload`; identifiers left in the reports are scrubbed before any text leaves. The dataset
    is staged beside `out_dir` and moved into place complete with its card and report; a killed run leaves nothing
    in `out_dir`, and the next one resumes from the cache without repeating a completed request.

    Args:
        dataset (`str` or `Path`): a `radtune data build` folder or a Hub repo with report text (`text`, or
            `findings` and `impression`).
        out_dir (`str` or `Path`): where the QA dataset, its card and `qa_report.json` go.
        generator (`str`): `"rules"` (offline, the report labeler) or `"openai"` (an OpenAI-compatible API).
        n_per_report (`int`, *optional*, defaults to `5`): pairs per report (rules: at most this many, 0 = all).
        splits (`Sequence[str]`, *optional*): only these splits (default: all).
        limit (`int`, *optional*): only the first `limit` rows of each split.
        conversation (`str`, *optional*, defaults to `"single"`): `"single"` (one pair per row) or `"multi"` (all
            pairs of an image as one conversation).
        form (`str`, *optional*, defaults to `"messages"`): `"messages"` or `"prompt-completion"`.
        uncertain (`str`, *optional*, defaults to `"possibly"`): rules: answer uncertain mentions "Possibly." or
            `"skip"` them.
        balance (`bool`, *optional*, defaults to `True`): rules: drop yes/no pairs until each closed question is
            answered Yes as often as No in each split.
        endpoint (`EndpointSettings`, *optional*): openai: where the requests go (default: OpenAI's API,
            `gpt-4o-mini`; `OPENAI_BASE_URL` when set and no `base_url` is given).
        price (`tuple[float, float]`, *optional*): openai: dollars per 1M input and output tokens, for the cost.
        cache_path (`str` or `Path`, *optional*): openai: the SQLite cache, outside `out_dir` (default:
            `OUT_DIR.qa_cache.sqlite`, beside it).
        concurrency (`int`, *optional*, defaults to `16`): openai: requests in flight.
        temperature (`float`, *optional*): openai: sampling temperature (default: the server's).
        batch_api (`bool`, *optional*, defaults to `False`): openai: use the Batch API.
        poll_interval (`float`, *optional*, defaults to `30.0`): openai: seconds between Batch API status checks.
        allow_credentialed_upload (`bool`, *optional*, defaults to `False`): send credentialed data to an endpoint
            outside loopback, private addresses and Azure OpenAI (`*.openai.azure.com`) anyway.
        overwrite (`bool`, *optional*, defaults to `False`): replace `out_dir` if it exists, once the new dataset
            is complete (the cache stays).
        max_failure_fraction (`float`, *optional*, defaults to `0.05`): fail, writing nothing to `out_dir`, when a
            larger fraction of the reports fail (an API error or invalid output after one re-ask, or no text).
        command (`str`, *optional*): the command line recorded in the report and the card (default: this
            process's).
        on_batch_status (`Callable[[str, str], None]`, *optional*): called with `(batch_id, status)` on each
            Batch API status change.

    Returns:
        `dict`: the run report written to `qa_report.json` (`rows` per split, `failures`, openai: `cost`).

    Raises:
        `QAFailuresError`: more than `max_failure_fraction` of the reports failed, or no pair was generated
            (the report is written to `OUT_DIR.qa_report.json`, nothing to `out_dir`).
        `QAPipelineError`: the output exists, the dataset cannot be loaded or has no report text, a split is
            missing, the upload is refused or the API key is unset.
    """
    from radtune.common.datasets_io import is_saved_dataset, load_dataset_any
    from radtune.dataprep.build import default_command

    if generator not in GENERATORS:
        raise ValueError(f"generator must be one of {GENERATORS}, got {generator!r}")
    if generator == "openai" and n_per_report < 1:
        raise ValueError(f"n_per_report must be at least 1 for the openai generator, got {n_per_report}")
    if not 0 <= max_failure_fraction <= 1:
        raise ValueError(f"max_failure_fraction must be between 0 and 1, got {max_failure_fraction}")
    out_dir = Path(out_dir).absolute()
    cache_path = Path(cache_path).absolute() if cache_path else default_cache_path(out_dir)
    _check_out_dir(out_dir, overwrite)
    if generator == "openai" and cache_path.is_relative_to(out_dir):
        raise QAPipelineError(
            f"the cache {cache_path} must be outside {out_dir}: the folder is replaced as a whole when the dataset "
            "is complete (leave --cache out to keep it beside, as OUT_DIR.qa_cache.sqlite)"
        )
    _remove_stale_staging(out_dir)

    # Data
    try:
        source = load_dataset_any(dataset)
    except (FileNotFoundError, ValueError) as error:
        raise QAPipelineError(f"cannot load {dataset}: {error}") from error
    names = list(splits or ()) or list(source)
    missing = [name for name in names if name not in source]
    if missing:
        raise QAPipelineError(f"split(s) {', '.join(missing)} not in {dataset}; it has: {', '.join(source)}")
    source = {name: source[name] for name in names}
    if limit:
        source = {name: split.select(range(min(limit, len(split)))) for name, split in source.items()}
    text_columns = [
        c for c in ("id", "text", "findings", "impression") if c in next(iter(source.values())).column_names
    ]
    if not {"text", "findings", "impression"} & set(text_columns):
        raise QAPipelineError(f"{dataset} has no report text (a `text`, `findings` or `impression` column)")
    rows = {name: split.select_columns(text_columns).to_list() for name, split in source.items()}

    card_text = None
    if Path(dataset).exists() and is_saved_dataset(dataset):
        from radtune.dataprep.qa.privacy import read_card

        card_text = read_card(dataset)
    found_sources, found_licenses = set(), set()
    for split in source.values():
        if "source" in split.column_names:
            found_sources.update(value for value in split.unique("source") if value)
        if "license" in split.column_names:
            found_licenses.update(value for value in split.unique("license") if value)

    # Generate
    report = {
        "dataset": str(dataset), "generator": generator, "n_per_report": n_per_report,
        "conversation": conversation, "form": form,
        "command": command or default_command(),
    }  # fmt: skip
    from radtune.dataprep.qa.privacy import credentialed_marks, redact_url_credentials

    credentialed = credentialed_marks(dataset, found_sources, card_text)
    report["credentialed"] = bool(credentialed)  # the mark carries on: qa_report.json, the card, runs trained on it
    report["command"] = redact_url_credentials(report["command"])
    if generator == "rules":
        pairs, failures, dropped = _run_rules(rows, n_per_report, uncertain, balance)
        report["balanced_dropped_pairs"] = dropped
    else:
        from radtune.dataprep.qa.openai_generator import EndpointSettings
        from radtune.dataprep.qa.privacy import CredentialedUploadRefusedError, check_upload_allowed
        from radtune.dataprep.qa.prompt import PROMPT_VERSION

        endpoint = endpoint or EndpointSettings()
        if endpoint.provider == "openai" and not endpoint.base_url:
            # Where the client would send the requests: the guard below must judge that URL.
            endpoint = replace(endpoint, base_url=os.environ.get("OPENAI_BASE_URL") or None)
        try:
            check_upload_allowed(
                credentialed,
                endpoint.provider,
                endpoint.base_url,
                allow_credentialed_upload,
            )
        except CredentialedUploadRefusedError as error:
            raise QAPipelineError(str(error)) from error
        pairs, failures, cost = _run_openai(
            rows, endpoint, price, cache_path, n_per_report, concurrency, temperature, batch_api, poll_interval,
            on_batch_status,
        )  # fmt: skip
        base_url = endpoint.base_url and redact_url_credentials(endpoint.base_url)
        report.update({"model": endpoint.model, "provider": endpoint.provider, "base_url": base_url,
                       "prompt_version": PROMPT_VERSION, "batch_api": batch_api, "cost": cost})  # fmt: skip

    # Export
    from radtune.dataprep.qa.export import build_qa_dataset, render_qa_card

    report["reports"] = sum(len(split_rows) for split_rows in rows.values())
    report["reports_with_pairs"] = sum(1 for split_pairs in pairs.values() for p in split_pairs if p)
    report["failures"] = failures
    report["max_failure_fraction"] = max_failure_fraction
    _check_failures(report, out_dir, cache_path if generator == "openai" else None)
    qa_dataset = build_qa_dataset(source, pairs, conversation=conversation, form=form)
    # A split without pairs is left out: datasets (5.2) saves a 0-row split without a data file and then cannot load
    # the folder (IndexError in load_from_disk); the report and the card name it.
    empty = [name for name, split in qa_dataset.items() if len(split) == 0]
    for name in empty:
        del qa_dataset[name]
    if not qa_dataset:
        raise QAPipelineError(f"no question-answer pairs in any split of {report.get('dataset', 'the dataset')}")
    report["rows"] = {name: len(split) for name, split in qa_dataset.items()}
    report["empty_splits"] = empty
    card_metadata, notice = _source_card(card_text, found_sources)
    if credentialed:
        card_metadata["credentialed"] = True
    if "license" not in card_metadata and len(found_licenses) == 1:
        card_metadata["license"] = found_licenses.pop()
    with _staging_folder(out_dir) as work:
        staged = work / "dataset"
        qa_dataset.save_to_disk(str(staged))
        (staged / "README.md").write_text(render_qa_card(report, card_metadata, notice), encoding="utf-8")
        (staged / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        _move_into_place(staged, out_dir, work)
    failed_report_path(out_dir).unlink(missing_ok=True)
    return report


def _text_of(row: dict) -> tuple[str, str, str]:
    findings, impression = row.get("findings") or "", row.get("impression") or ""
    text = row.get("text") or " ".join(part for part in (findings, impression) if part)
    return text, findings, impression


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if overwrite or not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise QAPipelineError(f"{out_dir} is a file, not a folder: choose another OUT_DIR")
    if (out_dir / "dataset_dict.json").is_file() or (out_dir / "state.json").is_file():
        raise QAPipelineError(f"{out_dir} already holds a QA dataset (pass --overwrite to replace it)")
    if any(out_dir.iterdir()):
        raise QAPipelineError(
            f"{out_dir} exists and is not a dataset: choose a new OUT_DIR (or pass --overwrite to replace it)"
        )


def _failure_summary(failures: list[dict], shown: int = 3, width: int = 160) -> str:
    """The most common failure reasons with their counts: `9 × AuthenticationError: …; 2 × …`."""
    reasons = Counter(str(failure.get("reason")) for failure in failures).most_common()
    parts = [f"{count} × {reason if len(reason) <= width else reason[: width - 1] + '…'}"
             for reason, count in reasons[:shown]]  # fmt: skip
    if len(reasons) > shown:
        parts.append(f"{sum(count for _, count in reasons[shown:])} × other reasons")
    return "; ".join(parts)


def _check_failures(report: dict, out_dir: Path, cache_path: Path | None) -> None:
    """Raise `QAFailuresError` (writing the report beside `out_dir`) when too many reports failed or none gave
    pairs."""
    failed, total = len(report["failures"]), report["reports"]
    fraction = failed / total if total else 0.0
    report["failure_fraction"] = round(fraction, 6)
    if report["reports_with_pairs"] and fraction <= report["max_failure_fraction"]:
        report["status"] = "ok"
        return
    report["status"] = "failed"
    path = failed_report_path(out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    reasons = f": {_failure_summary(report['failures'])}" if failed else ""
    if not report["reports_with_pairs"]:
        head = f"no question–answer pairs were generated from {total:,} report(s) ({failed:,} failed{reasons})"
    else:
        head = (f"{failed:,} of {total:,} report(s) failed ({fraction:.1%}, more than the "
                f"{report['max_failure_fraction']:.1%} allowed){reasons}")  # fmt: skip
    raise QAFailuresError(
        f"{head}. Nothing was written to {out_dir}; the failures are listed in {path}.", report, path, cache_path
    )


@contextlib.contextmanager
def _staging_folder(out_dir: Path) -> Iterator[Path]:
    """A new hidden folder beside `out_dir` (`.OUT_DIR.qa-building-*`), locked while this process lives (a later
    run tells a killed run's folder from a live one by the lock) and removed on the way out."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = out_dir.parent / f".{out_dir.name}.{_STAGING_TAG}{uuid.uuid4().hex[:8]}"
    work.mkdir()
    try:
        with _locked(work / ".lock", blocking=True):
            yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def _locked(path: Path, blocking: bool) -> Iterator[bool]:
    """Hold an exclusive `flock` on `path` (created when missing); yields whether it was obtained. The kernel drops
    the lock when its process dies, even by SIGKILL. Where `fcntl` is missing (Windows) nothing is locked and
    `False` is yielded, so no staging folder is ever taken for stale."""
    try:
        import fcntl
    except ImportError:
        yield False
        return
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_stale_staging(out_dir: Path) -> list[Path]:
    """Remove the staging folders that killed runs into `out_dir` left (the ones no live process holds locked)."""
    removed = []
    for work in sorted(out_dir.parent.glob(f".{out_dir.name}.{_STAGING_TAG}*")):
        if not work.is_dir():
            continue
        with _locked(work / ".lock", blocking=False) as stale:
            if stale:
                shutil.rmtree(work, ignore_errors=True)
        if stale:
            removed.append(work)
            logger.warning("removed %s, left by an interrupted run", work)
    return removed


def _move_into_place(staged: Path, out_dir: Path, work: Path) -> None:
    """Rename the complete `staged` folder to `out_dir`; a previous `out_dir` goes into `work` (removed after)."""
    if out_dir.exists():
        os.replace(out_dir, work / "previous")
    os.replace(staged, out_dir)


def _source_card(card_text: str | None, found_sources: Iterable[str]) -> tuple[dict, str]:
    """The source card's metadata and the data use notice the QA card must carry on."""
    from radtune.dataprep.card import parse_card_metadata
    from radtune.dataprep.qa.privacy import credentialed_sources
    from radtune.dataprep.sources import SOURCES

    metadata = {}
    if card_text:
        try:
            metadata = parse_card_metadata(card_text) or {}
        except ValueError:
            metadata = {}
    notices = [SOURCES[name].data_use_notice for name in sorted(credentialed_sources(found_sources, card_text))
               if name in SOURCES]  # fmt: skip
    return metadata, " ".join(notices)


def _run_rules(rows: dict[str, list[dict]], n: int, uncertain: str, balance: bool):
    from tqdm.auto import tqdm

    from radtune.dataprep.qa.rules_generator import balance_closed_answers, generate_rules_qa

    memo: dict[tuple[str, str, str], list[dict]] = {}
    pairs: dict[str, list[list[dict] | None]] = {}
    failures = []
    total = sum(len(split_rows) for split_rows in rows.values())
    with tqdm(total=total, desc="rules QA", unit="report") as progress:
        for name, split_rows in rows.items():
            pairs[name] = []
            for row in split_rows:
                text, findings, impression = _text_of(row)
                if not text.strip():
                    pairs[name].append(None)
                    failures.append({"split": name, "id": row.get("id"), "reason": "empty report"})
                else:
                    key = (text, findings, impression)
                    if key not in memo:
                        memo[key] = generate_rules_qa(text, findings, impression, n=n, uncertain=uncertain)
                    pairs[name].append(memo[key])
                progress.update()
    dropped = 0
    if balance:
        for name in pairs:
            pairs[name], n_dropped = balance_closed_answers(pairs[name])
            dropped += n_dropped
    return pairs, failures, dropped


def _run_openai(
    rows, settings, price, cache_path, n, concurrency, temperature, batch_api, poll_interval, on_batch_status
):
    """Pairs per row of every split through the API, the failures, and the cost report."""
    import asyncio

    from tqdm.auto import tqdm

    from radtune.dataprep.qa.cache import QACache
    from radtune.dataprep.qa.openai_generator import OpenAIQAGenerator, make_client
    from radtune.dataprep.qa.pricing import Usage

    try:
        client, secret = make_client(settings)
    except ValueError as error:
        raise QAPipelineError(str(error)) from error
    model = settings.model

    items, where, failures = [], [], []
    for name, split_rows in rows.items():
        for index, row in enumerate(split_rows):
            text = _text_of(row)[0]
            if text.strip():
                items.append((f"{name}/{row.get('id', index)}", text))
                where.append((name, index))
            else:
                failures.append({"split": name, "id": row.get("id"), "reason": "empty report"})
    cache = QACache(cache_path)
    usage = Usage()
    generate = OpenAIQAGenerator(client, model, n, cache, usage=usage, secret=secret, temperature=temperature)

    async def main():
        async with client:
            if batch_api:
                from radtune.dataprep.qa.batch_api import run_batch

                url = "/chat/completions" if settings.provider == "azure" else "/v1/chat/completions"
                return await run_batch(
                    generate, items, poll_interval=poll_interval, url=url, on_status=on_batch_status
                )
            with tqdm(total=len(items), desc=f"QA with {model}", unit="report") as progress:
                return await generate.run(items, concurrency=concurrency, on_result=lambda _result: progress.update())

    try:
        results = asyncio.run(main())
    finally:
        cache.close()
    pairs = {name: [None] * len(split_rows) for name, split_rows in rows.items()}
    for (name, index), result in zip(where, results, strict=True):
        pairs[name][index] = result.pairs
        if result.pairs is None:
            failures.append({"split": name, "id": rows[name][index].get("id"), "reason": result.reason})
    return pairs, failures, usage.report(model, price)
