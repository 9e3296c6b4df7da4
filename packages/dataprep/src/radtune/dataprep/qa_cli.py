"""`radtune data qa`: question–answer pairs from the reports of a built dataset, exported for TRL.

    radtune data qa ./mimic ./mimic-qa --generator rules --n-per-report 6
    radtune data qa ./mimic ./mimic-qa --generator openai --provider azure --model gpt-4o-mini \\
        --base-url https://my-resource.openai.azure.com --concurrency 32
    radtune data qa ./rocov2 ./rocov2-qa --generator openai --model gpt-4o-mini --batch-api
    radtune data qa ./mimic ./mimic-qa --generator openai --provider compatible \\
        --base-url http://localhost:8000/v1 --model Qwen/Qwen2.5-7B-Instruct

The pipeline itself is `radtune.dataprep.qa.pipeline.generate_qa_dataset`; it loads inside the command so `--help`
stays instant.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import click


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
    help="SQLite cache of completed requests, outside OUT_DIR [OUT_DIR.qa_cache.sqlite]; a rerun resumes from it "
    "and asks only what failed or was never asked.",
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
    help="Send a credentialed dataset (MIMIC-CXR, CheXpert Plus) to an endpoint other than loopback, a private "
    "address or Azure OpenAI (*.openai.azure.com) anyway.",
)
@click.option(
    "--push-to-hub", "push_to_hub", metavar="REPO_ID", default=None, help="Push the QA dataset to this repo."
)
@click.option("--private/--public", default=True, show_default=True, help="Visibility of a repo created by the push.")
@click.option(
    "--max-failure-fraction",
    type=click.FloatRange(0, 1),
    default=0.05,
    show_default=True,
    help="Fail, writing nothing to OUT_DIR, when a larger fraction of the reports fail (API errors, invalid "
    "answers, empty reports); a rerun retries only the failed ones.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace OUT_DIR if it exists, once the new dataset is complete (the cache stays).",
)
@click.option("--balance/--no-balance", default=True, show_default=True,
              help="rules: drop yes/no pairs until every closed question is answered Yes as often as No in each "
              "split, so the majority answer scores 50% and accuracy above it needs the image.")  # fmt: skip
def qa(
    dataset, out_dir, generator, n_per_report, splits, limit, conversation, form, uncertain, model, provider,
    base_url, api_key_env, api_version, concurrency, max_retries, timeout, temperature, cache_path, batch_api,
    poll_interval, price_input, price_output, price_table, allow_credentialed_upload, push_to_hub, private,
    max_failure_fraction, overwrite, balance,
):  # fmt: skip
    """Generate question–answer pairs from the reports of DATASET and save them to OUT_DIR for TRL.

    DATASET is a `radtune data build` folder or a Hub repo with report text (`text`, or `findings` and
    `impression`). The reports of credentialed data (MIMIC-CXR, CheXpert Plus) go only to servers on loopback
    or private addresses or to Azure OpenAI (*.openai.azure.com), unless --allow-credentialed-upload; anything
    else is refused before the first request, and a public push of the result is refused. Identifiers left in
    the reports (names with a title or degree, dates, phone, record and social security numbers, e-mail
    addresses, URLs, ages over 89) are scrubbed before any text leaves.

    OUT_DIR appears only once complete with its card and qa_report.json. A killed run resumes from its cache
    (OUT_DIR.qa_cache.sqlite, beside OUT_DIR) without repeating a completed request. Exits non-zero, writing
    nothing, when more than --max-failure-fraction of the reports fail or no pair is generated; the message gives
    the command that retries only the failures.
    """
    from radtune.dataprep.qa.pipeline import (
        QAFailuresError,
        QAPipelineError,
        default_cache_path,
        generate_qa_dataset,
    )

    if generator == "openai" and n_per_report < 1:
        raise click.BadParameter("must be at least 1 for the openai generator", param_hint="--n-per-report")
    endpoint = price = None
    if generator == "openai":
        from radtune.dataprep.qa.openai_generator import EndpointSettings

        try:
            endpoint = EndpointSettings(provider, model, base_url, api_key_env, api_version, max_retries, timeout)
        except ValueError as error:
            raise click.ClickException(str(error)) from error
        price = _price(model, price_input, price_output, price_table)

    command = _command_line(click.get_current_context())
    if push_to_hub and not private:
        from radtune.common.credentialed import dataset_marks

        marks = dataset_marks(dataset)  # a local folder: refused now, not after generating
        if marks:
            raise click.ClickException(
                f"{dataset} is credentialed data ({', '.join(sorted(marks))}): what is made from it may not be "
                "pushed public. Leave out --public to push it to a private repo."
            )
    try:
        report = generate_qa_dataset(
            dataset, out_dir, generator=generator, n_per_report=n_per_report, splits=splits, limit=limit,
            conversation=conversation, form=form, uncertain=uncertain, balance=balance, endpoint=endpoint,
            price=price, cache_path=cache_path, concurrency=concurrency, temperature=temperature,
            batch_api=batch_api, poll_interval=poll_interval, allow_credentialed_upload=allow_credentialed_upload,
            overwrite=overwrite, max_failure_fraction=max_failure_fraction, command=command,
            on_batch_status=lambda batch_id, status: click.echo(f"batch {batch_id}: {status}", err=True),
        )  # fmt: skip
    except QAFailuresError as error:
        _echo_cost(error.report)
        next_step = _next_step(error.report, error.cache_path, command)
        raise click.ClickException(f"{error}\n{next_step}" if next_step else str(error)) from error
    except QAPipelineError as error:
        raise click.ClickException(str(error)) from error

    click.echo(
        f"wrote {sum(report['rows'].values()):,} rows ({', '.join(f'{k}: {v:,}' for k, v in report['rows'].items())}) to {out_dir}"
    )
    if report["failures"]:
        click.echo(f"{len(report['failures']):,} report(s) failed; reasons in {out_dir / 'qa_report.json'}.")
        retry = _retry_hint(
            report, cache_path or default_cache_path(out_dir), command if overwrite else f"{command} --overwrite"
        )
        if retry:
            click.echo(retry)
    _echo_cost(report)

    # Publish
    if push_to_hub:
        from radtune.common.errors import HubError
        from radtune.dataprep.build_cli import push_dataset

        try:
            url = push_dataset(out_dir, push_to_hub, private=private)
        except (HubError, OSError, ValueError) as error:
            public = [] if private or report.get("credentialed") else ["--public"]
            later = shlex.join(["radtune", "data", "push", str(out_dir), push_to_hub, *public])
            raise click.ClickException(
                f"the QA dataset is saved in {out_dir}, but pushing it to {push_to_hub} failed: "
                f"{' '.join(str(error).split())}\n"
                f"Push it later with: {later}"
            ) from error
        click.echo(f"pushed to {url}")


def _echo_cost(report: dict) -> None:
    cost = report.get("cost")
    if not cost:
        return
    dollars = "unknown (pass --price-input/--price-output)" if cost["cost_usd"] is None else f"${cost['cost_usd']:.4f}"
    click.echo(
        f"requests: {cost['requests']:,}, cached reports: {cost['cached_reports']:,}, tokens: "
        f"{cost['prompt_tokens']:,} in / {cost['completion_tokens']:,} out, cost: {dollars}"
    )


def _retry_hint(report: dict, cache_path: Path | None, command: str) -> str:
    """How to ask again for only the failed reports: the cache keeps every answered one."""
    from radtune.dataprep.qa.pipeline import retryable_failures

    retry = retryable_failures(report)
    if report["generator"] != "openai" or not retry:
        return ""
    return (
        f"Once the cause is fixed, this retries only the {retry:,} failed report(s) (the answered ones are cached "
        f"in {cache_path}):\n  {command}"
    )


def _next_step(report: dict, cache_path: Path | None, command: str) -> str:
    """What to do after a run that wrote nothing: retry the failures, or accept them."""
    lines = [_retry_hint(report, cache_path, command)]
    if report["reports_with_pairs"]:
        # The smallest fraction in hundredths that lets what was generated through.
        needed = min(1.0, -(-round(report["failure_fraction"] * 1e6) // 10_000) / 100)
        lines.append(f"To keep the {report['reports_with_pairs']:,} report(s) that gave pairs, add "
                     f"--max-failure-fraction {needed:g} to the command.")  # fmt: skip
    return "\n".join(line for line in lines if line)


def _command_line(ctx: click.Context) -> str:
    """The command as given, rebuilt from the parsed values (options left at their defaults are left out)."""
    words = ["radtune", "data", "qa"]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if isinstance(param, click.Argument):
            words.append(str(value))
        elif value is None or value == param.get_default(ctx) or (param.multiple and not value):
            continue
        elif param.is_flag and param.secondary_opts:
            words.append(param.opts[0] if value else param.secondary_opts[0])
        elif param.is_flag:
            words.append(param.opts[0])
        else:
            for item in value if param.multiple else (value,):
                words += [param.opts[0], str(item)]
    from radtune.dataprep.qa.privacy import redact_url_credentials

    return redact_url_credentials(shlex.join(words))  # a password inside --base-url is never printed or stored


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
