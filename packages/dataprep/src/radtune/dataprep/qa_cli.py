"""`radtune data qa`: question–answer pairs from the reports of a built dataset, exported for TRL.

    radtune data qa ./mimic ./mimic-qa --generator rules --n-per-report 6
    radtune data qa ./mimic ./mimic-qa --generator openai --provider azure --model gpt-4o-mini \\
        --base-url https://my-resource.openai.azure.com --concurrency 32
    radtune data qa ./rocov2 ./rocov2-qa --generator openai --model gpt-4o-mini --batch-api
    radtune data qa ./mimic ./mimic-qa --generator openai --provider compatible \\
        --base-url http://localhost:8000/v1 --model Qwen/Qwen2.5-7B-Instruct

Heavy libraries load inside the command so `--help` stays instant.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import click

logger = logging.getLogger(__name__)


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


@click.command(
    "qa",
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="""\b
Examples:
  radtune data qa ./phantoms-built ./phantoms-qa --generator rules --conversation multi
  radtune data qa ./mimic ./mimic-qa --generator openai --provider azure --model my-deployment \\
      --base-url https://my-resource.openai.azure.com --concurrency 32
  radtune data qa ./mimic ./mimic-qa --generator openai --provider compatible \\
      --base-url http://localhost:8000/v1 --model Qwen/Qwen2.5-7B-Instruct
  radtune data qa ./rocov2 ./rocov2-qa --generator openai --model gpt-4o-mini --batch-api --push-to-hub me/rocov2-qa""",
)
@click.argument("dataset")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--generator", type=click.Choice(["openai", "rules"]), required=True, help="LLM API or offline rules.")
@click.option(
    "--n-per-report",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="Pairs per report (rules: at most this many, 0 = all).",
)
@click.option("--split", "splits", multiple=True, help="Only these splits (repeatable); default: all.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N rows of each split.")
@click.option(
    "--conversation",
    type=click.Choice(["single", "multi"]),
    default="single",
    show_default=True,
    help="One pair per row, or all pairs of an image as one multi-turn conversation.",
)
@click.option(
    "--format",
    "form",
    type=click.Choice(["messages", "prompt-completion"]),
    default="messages",
    show_default=True,
    help="TRL's conversational `messages` or its `prompt`/`completion` form.",
)
@click.option(
    "--uncertain",
    type=click.Choice(["possibly", "skip"]),
    default="possibly",
    show_default=True,
    help="rules: answer uncertain mentions 'Possibly.' or ask nothing about them.",
)
@click.option("--model", default="gpt-4o-mini", show_default=True, help="openai: model (Azure: deployment) name.")
@click.option(
    "--provider",
    type=click.Choice(["openai", "azure", "compatible"]),
    default="openai",
    show_default=True,
    help="openai: OpenAI's API; azure: Azure OpenAI; compatible: vLLM/Ollama/llama.cpp at --base-url.",
)
@click.option("--base-url", default=None, help="openai: the API base URL (Azure: the resource endpoint).")
@click.option(
    "--api-key-env",
    default=None,
    help="openai: environment variable holding the key [OPENAI_API_KEY; azure: AZURE_OPENAI_API_KEY].",
)
@click.option("--api-version", default=None, help="azure: API version [OPENAI_API_VERSION or 2024-10-21].")
@click.option("--concurrency", type=click.IntRange(min=1), default=16, show_default=True, help="Requests in flight.")
@click.option(
    "--max-retries",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="Retries of a request on 429/5xx/timeouts (the client honours retry-after).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Seconds before one attempt times out.",
)
@click.option("--temperature", type=float, default=None, help="Sampling temperature [server default].")
@click.option(
    "--cache",
    "cache_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="SQLite cache of completed requests [OUT_DIR/qa_cache.sqlite]; a rerun resumes from it.",
)
@click.option("--batch-api", is_flag=True, help="Use the Batch API (half price, results within 24 h).")
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="--batch-api: seconds between status checks.",
)
@click.option("--price-input", type=float, default=None, help="Dollars per 1M input tokens (overrides the table).")
@click.option("--price-output", type=float, default=None, help="Dollars per 1M output tokens (overrides the table).")
@click.option(
    "--price-table",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="JSON/YAML {model: {input: ..., output: ...}} in dollars per 1M tokens.",
)
@click.option(
    "--allow-credentialed-upload",
    is_flag=True,
    help="Send a credentialed dataset (MIMIC-CXR, CheXpert Plus) to OpenAI's public API anyway.",
)
@click.option(
    "--push-to-hub", "push_to_hub", metavar="REPO_ID", default=None, help="Push the QA dataset to this repo."
)
@click.option("--private/--public", default=True, show_default=True, help="Visibility of a repo created by the push.")
@click.option("--overwrite", is_flag=True, help="Replace a QA dataset already saved in OUT_DIR (the cache stays).")
@click.option("--balance/--no-balance", default=True, show_default=True,
              help="rules: drop yes/no pairs until every closed question is answered Yes as often as No in each "
              "split, so the majority answer scores 50% and accuracy above it needs the image.")  # fmt: skip
def qa(
    dataset, out_dir, generator, n_per_report, splits, limit, conversation, form, uncertain, model, provider,
    base_url, api_key_env, api_version, concurrency, max_retries, timeout, temperature, cache_path, batch_api,
    poll_interval, price_input, price_output, price_table, allow_credentialed_upload, push_to_hub, private, overwrite,
    balance,
):  # fmt: skip
    """Generate question–answer pairs from the reports of DATASET and save them to OUT_DIR for TRL.

    DATASET is a `radtune data build` folder or a Hub repo with report text (`text`, or `findings` and
    `impression`). Credentialed data (MIMIC-CXR, CheXpert Plus) is refused for OpenAI's public API before
    any request unless --allow-credentialed-upload; Azure and local servers are fine. Identifiers left in
    the reports (dates, phone and record numbers, "Dr. Name") are scrubbed before any text leaves. A killed
    run resumes from its cache (OUT_DIR/qa_cache.sqlite) without repeating a completed request.
    """
    from radtune.common.datasets_io import is_saved_dataset, load_dataset_any
    from radtune.dataprep.build import default_command

    if provider == "openai" and not base_url:
        base_url = os.environ.get("OPENAI_BASE_URL") or None  # where the client would send the requests
    if generator == "openai" and n_per_report < 1:
        raise click.BadParameter("must be at least 1 for the openai generator", param_hint="--n-per-report")
    if (out_dir / "dataset_dict.json").is_file():
        if not overwrite:
            raise click.ClickException(f"{out_dir} already holds a QA dataset (pass --overwrite to replace it)")

    # Data
    try:
        source = load_dataset_any(dataset)
    except (FileNotFoundError, ValueError) as error:
        raise click.ClickException(f"cannot load {dataset}: {error}") from error
    names = list(splits) or list(source)
    missing = [name for name in names if name not in source]
    if missing:
        raise click.ClickException(f"split(s) {', '.join(missing)} not in {dataset}; it has: {', '.join(source)}")
    source = {name: source[name] for name in names}
    if limit:
        source = {name: split.select(range(min(limit, len(split)))) for name, split in source.items()}
    text_columns = [
        c for c in ("id", "text", "findings", "impression") if c in next(iter(source.values())).column_names
    ]
    if not {"text", "findings", "impression"} & set(text_columns):
        raise click.ClickException(f"{dataset} has no report text (a `text`, `findings` or `impression` column)")
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

        try:
            check_upload_allowed(
                credentialed_sources(found_sources, card_text), provider, base_url, allow_credentialed_upload
            )
            settings = EndpointSettings(provider, model, base_url, api_key_env, api_version, max_retries, timeout)
        except (CredentialedUploadRefusedError, ValueError) as error:
            raise click.ClickException(str(error)) from error
        price = _price(model, price_input, price_output, price_table)
        pairs, failures, cost = _run_openai(
            rows, settings, price, cache_path or out_dir / "qa_cache.sqlite", n_per_report, concurrency, temperature,
            batch_api, poll_interval,
        )  # fmt: skip
        report.update({"model": model, "provider": provider, "base_url": base_url, "prompt_version": PROMPT_VERSION,
                       "batch_api": batch_api, "cost": cost})  # fmt: skip

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

    click.echo(
        f"wrote {sum(report['rows'].values()):,} rows ({', '.join(f'{k}: {v:,}' for k, v in report['rows'].items())}) to {out_dir}"
    )
    if failures:
        click.echo(
            f"{len(failures):,} report(s) failed; reasons in {out_dir / 'qa_report.json'} (a rerun retries them)"
        )
    if report.get("cost"):
        cost = report["cost"]
        dollars = (
            "unknown (pass --price-input/--price-output)" if cost["cost_usd"] is None else f"${cost['cost_usd']:.4f}"
        )
        click.echo(
            f"requests: {cost['requests']:,}, cached reports: {cost['cached_reports']:,}, tokens: "
            f"{cost['prompt_tokens']:,} in / {cost['completion_tokens']:,} out, cost: {dollars}"
        )

    # Publish
    if push_to_hub:
        from radtune.dataprep.build_cli import push_dataset

        click.echo(f"pushed to {push_dataset(out_dir, push_to_hub, private=private)}")


def _source_card(card_text: str | None, found_sources: set[str]) -> tuple[dict, str]:
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


def _price(model, price_input, price_output, price_table) -> tuple[float, float] | None:
    from radtune.dataprep.qa.pricing import load_price_table, price_for

    if (price_input is None) != (price_output is None):
        raise click.BadParameter("give both --price-input and --price-output", param_hint="--price-input")
    if price_input is not None:
        return price_input, price_output
    try:
        return price_for(model, load_price_table(price_table))
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--price-table") from error


def _run_openai(rows, settings, price, cache_path, n, concurrency, temperature, batch_api, poll_interval):
    """Pairs per row of every split through the API, the failures, and the cost report."""
    import asyncio

    from tqdm.auto import tqdm

    from radtune.dataprep.qa.cache import QACache
    from radtune.dataprep.qa.openai_generator import OpenAIQAGenerator, make_client
    from radtune.dataprep.qa.pricing import Usage

    try:
        client, secret = make_client(settings)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
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
                    generate, items, poll_interval=poll_interval, url=url,
                    on_status=lambda batch_id, status: click.echo(f"batch {batch_id}: {status}", err=True),
                )  # fmt: skip
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
