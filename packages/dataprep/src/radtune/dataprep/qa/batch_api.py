"""The Batch API route: half the price, results within 24 hours.

Upload one JSONL file of chat-completion requests (`files.create(purpose="batch")`), `batches.create`, poll
`batches.retrieve` until the job ends, download the output and error files with `files.content`, and merge:
valid answers go to the cache, invalid ones get their one re-ask through the online route, errors are
recorded as failures. The batch id is stored in the cache as soon as the job exists, so a restarted run polls
the same job instead of paying twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import replace

import pydantic
from openai.lib._parsing import type_to_response_format_param  # what chat.completions.parse sends

from radtune.dataprep.qa.openai_generator import OpenAIQAGenerator, QAResult
from radtune.dataprep.qa.prompt import PROMPT_VERSION, InvalidQAError, QAPairs, build_messages, validate_pairs

logger = logging.getLogger(__name__)

MAX_REQUESTS_PER_BATCH = 50_000  # the Batch API's limit per input file
FINAL_STATES = ("completed", "failed", "expired", "cancelled")


def batch_request_line(generator: OpenAIQAGenerator, key: str, scrubbed: str, url: str) -> str:
    """One JSONL line: the same request `chat.completions.parse` would send, with the cache key as custom_id."""
    body = {
        "model": generator.model,
        "messages": build_messages(scrubbed, generator.n),
        "response_format": type_to_response_format_param(QAPairs),
    }
    if generator.temperature is not None:
        body["temperature"] = generator.temperature
    return json.dumps({"custom_id": key, "method": "POST", "url": url, "body": body})


async def run_batch(
    generator: OpenAIQAGenerator,
    items: Iterable[tuple[str, str]],
    poll_interval: float = 30.0,
    url: str = "/v1/chat/completions",
    on_status: Callable[[str, str], None] | None = None,
) -> list[QAResult]:
    """Generate for every `(item_id, report_text)` through the Batch API.

    Args:
        generator (`OpenAIQAGenerator`): its client, model, cache and usage are used (tokens count at half price).
        items (`Iterable[tuple[str, str]]`): the reports.
        poll_interval (`float`, *optional*, defaults to `30.0`): seconds between `batches.retrieve` calls.
        url (`str`, *optional*): the endpoint of each request line (`/chat/completions` on Azure).
        on_status (`Callable[[str, str], None]`, *optional*): called with (batch id, status) at each poll.
    """
    client, cache = generator.client, generator.cache
    items = list(items)
    todo: dict[str, tuple[str, str]] = {}  # key -> (first item id, scrubbed text)
    by_key: dict[str, QAResult] = {}
    keys = []
    for item_id, text in items:
        scrubbed, key = generator.prepare(text)
        keys.append(key)
        if key in by_key or key in todo:
            continue
        hit = cache.get(key)
        if hit is not None:
            generator.usage.cached += 1
            by_key[key] = QAResult(item_id, key, pairs=hit["pairs"], cached=True)
        else:
            todo[key] = (item_id, scrubbed)

    # Jobs a previous run submitted for these reports: poll them, don't submit again.
    jobs: dict[str, list[str]] = {}
    for batch_id, batch_keys in cache.pending_batches().items():
        mine = [key for key in batch_keys if key in todo]
        if mine:
            jobs[batch_id] = mine
    submitted = {key for batch_keys in jobs.values() for key in batch_keys}
    fresh = [key for key in todo if key not in submitted]
    for start in range(0, len(fresh), MAX_REQUESTS_PER_BATCH):
        chunk = fresh[start : start + MAX_REQUESTS_PER_BATCH]
        lines = "\n".join(batch_request_line(generator, key, todo[key][1], url) for key in chunk) + "\n"
        upload = await client.files.create(file=("radtune-qa-batch.jsonl", lines.encode("utf-8")), purpose="batch")
        batch = await client.batches.create(
            input_file_id=upload.id,
            endpoint=url,
            completion_window="24h",
            metadata={"radtune": "qa", "prompt_version": PROMPT_VERSION},
        )
        cache.add_batch(batch.id, chunk)
        jobs[batch.id] = chunk
        logger.info("submitted batch %s with %d requests", batch.id, len(chunk))

    reasks: dict[str, tuple] = {}
    for batch_id, batch_keys in jobs.items():
        batch = await client.batches.retrieve(batch_id)
        while batch.status not in FINAL_STATES:
            if on_status is not None:
                on_status(batch_id, batch.status)
            await asyncio.sleep(poll_interval)
            batch = await client.batches.retrieve(batch_id)
        if on_status is not None:
            on_status(batch_id, batch.status)
        lines = []
        for file_id in (batch.output_file_id, batch.error_file_id):
            if file_id:
                lines += (await client.files.content(file_id)).text.splitlines()
        for line in lines:
            if not line.strip():
                continue
            record = json.loads(line)
            key = record.get("custom_id")
            if key not in todo or key in by_key:
                continue
            item_id, scrubbed = todo[key]
            outcome = _merge_line(generator, key, item_id, scrubbed, record)
            if isinstance(outcome, QAResult):
                by_key[key] = replace(outcome, item_id=item_id)
            else:
                reasks[key] = outcome
        for key in batch_keys:
            if key not in by_key and key not in reasks:
                item_id = todo[key][0]
                by_key[key] = generator.fail(item_id, key, f"batch {batch_id} ended {batch.status} without an answer")
        cache.remove_batch(batch_id)

    for key, (reason, content, spent) in reasks.items():
        item_id, scrubbed = todo[key]
        by_key[key] = await generator.reask(item_id, key, scrubbed, content, reason, spent)

    return [replace(by_key[key], item_id=item_id) for key, (item_id, _text) in zip(keys, items, strict=True)]


def _merge_line(generator: OpenAIQAGenerator, key: str, item_id: str, scrubbed: str, record: dict):
    """A `QAResult` for a final outcome, or `(reason, content, tokens)` for an invalid answer to re-ask."""
    response = record.get("response") or {}
    body = response.get("body") or {}
    if record.get("error") or response.get("status_code") != 200:
        error = record.get("error") or body.get("error") or {}
        message = error.get("message") if isinstance(error, dict) else str(error)
        return generator.fail(item_id, key, f"batch request failed ({response.get('status_code')}): {message}")
    usage = body.get("usage") or {}
    tokens = (int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
    generator.usage.requests += 1
    generator.usage.add(*tokens, batch=True)
    choice = (body.get("choices") or [{}])[0]
    content = (choice.get("message") or {}).get("content")
    try:
        if choice.get("finish_reason") not in (None, "stop"):
            raise InvalidQAError(f"finish_reason {choice.get('finish_reason')}")
        pairs = validate_pairs(QAPairs.model_validate_json(content or ""), generator.n)
    except (pydantic.ValidationError, ValueError) as error:
        return str(error).splitlines()[0][:300], content, tokens
    generator.cache.put(
        key, model=generator.model, prompt_version=PROMPT_VERSION, text=scrubbed, pairs=pairs,
        prompt_tokens=tokens[0], completion_tokens=tokens[1], batch=True,
    )  # fmt: skip
    return QAResult(item_id, key, pairs=pairs)
