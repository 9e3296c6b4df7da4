"""The QA pipeline behind `radtune data qa`: load a built dataset's reports, generate pairs, save the TRL dataset.

    from radtune.dataprep.qa.pipeline import generate_qa_dataset
    report = generate_qa_dataset("./phantoms-built", "./phantoms-qa", generator="rules", n_per_report=6)

    from radtune.dataprep.qa.openai_generator import EndpointSettings
    report = generate_qa_dataset(
        "./mimic", "./mimic-qa", generator="openai",
        endpoint=EndpointSettings("azure", "my-deployment", "https://my-resource.openai.azure.com"),
    )

Writes `OUT_DIR` (`save_to_disk`), its `README.md` card and `qa_report.json`, and returns that report. Heavy
libraries (datasets, openai) load inside the functions.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from radtune.dataprep.qa.openai_generator import EndpointSettings

GENERATORS = ("openai", "rules")


class QAPipelineError(Exception):
    """A QA run cannot start or cannot reach the API: the message says what to change."""


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
    on_batch_status: Callable[[str, str], None] | None = None,
) -> dict:
    """Generate question–answer pairs from the reports of `dataset` and save them to `out_dir` for TRL.

    Credentialed data (MIMIC-CXR, CheXpert Plus) is refused for OpenAI's public API before any request unless
    `allow_credentialed_upload`; identifiers left in the reports are scrubbed before any text leaves. A killed
    openai run resumes from its cache without repeating a completed request.

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
        cache_path (`str` or `Path`, *optional*): openai: the SQLite cache (default: `out_dir/qa_cache.sqlite`).
        concurrency (`int`, *optional*, defaults to `16`): openai: requests in flight.
        temperature (`float`, *optional*): openai: sampling temperature (default: the server's).
        batch_api (`bool`, *optional*, defaults to `False`): openai: use the Batch API.
        poll_interval (`float`, *optional*, defaults to `30.0`): openai: seconds between Batch API status checks.
        allow_credentialed_upload (`bool`, *optional*, defaults to `False`): send credentialed data to OpenAI's
            public API anyway.
        overwrite (`bool`, *optional*, defaults to `False`): replace a QA dataset already saved in `out_dir`
            (the cache stays).
        on_batch_status (`Callable[[str, str], None]`, *optional*): called with `(batch_id, status)` on each
            Batch API status change.

    Returns:
        `dict`: the run report written to `qa_report.json` (`rows` per split, `failures`, openai: `cost`).

    Raises:
        `QAPipelineError`: the output exists, the dataset cannot be loaded or has no report text, a split is
            missing, the upload is refused or the API key is unset.
    """
    from radtune.common.datasets_io import is_saved_dataset, load_dataset_any
    from radtune.dataprep.build import default_command

    if generator not in GENERATORS:
        raise ValueError(f"generator must be one of {GENERATORS}, got {generator!r}")
    if generator == "openai" and n_per_report < 1:
        raise ValueError(f"n_per_report must be at least 1 for the openai generator, got {n_per_report}")
    out_dir = Path(out_dir)
    if (out_dir / "dataset_dict.json").is_file() and not overwrite:
        raise QAPipelineError(f"{out_dir} already holds a QA dataset (pass --overwrite to replace it)")

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
        "command": default_command(),
    }  # fmt: skip
    if generator == "rules":
        pairs, failures, dropped = _run_rules(rows, n_per_report, uncertain, balance)
        report["balanced_dropped_pairs"] = dropped
    else:
        from radtune.dataprep.qa.openai_generator import EndpointSettings
        from radtune.dataprep.qa.privacy import (
            CredentialedUploadRefusedError,
            check_upload_allowed,
            credentialed_sources,
        )
        from radtune.dataprep.qa.prompt import PROMPT_VERSION

        endpoint = endpoint or EndpointSettings()
        if endpoint.provider == "openai" and not endpoint.base_url:
            # Where the client would send the requests: the guard below must judge that URL.
            endpoint = replace(endpoint, base_url=os.environ.get("OPENAI_BASE_URL") or None)
        try:
            check_upload_allowed(
                credentialed_sources(found_sources, card_text),
                endpoint.provider,
                endpoint.base_url,
                allow_credentialed_upload,
            )
        except CredentialedUploadRefusedError as error:
            raise QAPipelineError(str(error)) from error
        pairs, failures, cost = _run_openai(
            rows, endpoint, price, Path(cache_path) if cache_path else out_dir / "qa_cache.sqlite", n_per_report,
            concurrency, temperature, batch_api, poll_interval, on_batch_status,
        )  # fmt: skip
        report.update({"model": endpoint.model, "provider": endpoint.provider, "base_url": endpoint.base_url,
                       "prompt_version": PROMPT_VERSION, "batch_api": batch_api, "cost": cost})  # fmt: skip

    # Export
    from radtune.dataprep.qa.export import build_qa_dataset, render_qa_card

    qa_dataset = build_qa_dataset(source, pairs, conversation=conversation, form=form)
    report["reports"] = sum(len(split_rows) for split_rows in rows.values())
    report["reports_with_pairs"] = sum(1 for split_pairs in pairs.values() for p in split_pairs if p)
    report["rows"] = {name: len(split) for name, split in qa_dataset.items()}
    report["failures"] = failures
    out_dir.mkdir(parents=True, exist_ok=True)
    if (out_dir / "dataset_dict.json").is_file():
        _clear_saved_dataset(out_dir)
    qa_dataset.save_to_disk(str(out_dir))
    card_metadata, notice = _source_card(card_text, found_sources)
    if "license" not in card_metadata and len(found_licenses) == 1:
        card_metadata["license"] = found_licenses.pop()
    (out_dir / "README.md").write_text(render_qa_card(report, card_metadata, notice), encoding="utf-8")
    (out_dir / "qa_report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def _text_of(row: dict) -> tuple[str, str, str]:
    findings, impression = row.get("findings") or "", row.get("impression") or ""
    text = row.get("text") or " ".join(part for part in (findings, impression) if part)
    return text, findings, impression


def _clear_saved_dataset(out_dir: Path) -> None:
    """Remove a previous `save_to_disk` output from `out_dir`, leaving anything else (the cache) alone."""
    import shutil

    dict_file = out_dir / "dataset_dict.json"
    for name in json.loads(dict_file.read_text())["splits"]:
        shutil.rmtree(out_dir / name, ignore_errors=True)
    dict_file.unlink()


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
