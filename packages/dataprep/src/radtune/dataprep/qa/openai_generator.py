"""Question–answer pairs from any OpenAI-compatible chat API: OpenAI, Azure OpenAI, vLLM, Ollama, llama.cpp.

Every request goes through the `openai` client's own retries (429, 5xx, timeouts; it honours `retry-after`
and `retry-after-ms`) with `max_retries` and `timeout` set explicitly, under an `asyncio.Semaphore` of
`concurrency` requests. The answer is parsed into `QAPairs` by `chat.completions.parse`, checked by
`validate_pairs`, re-asked once with the reason when invalid, and then recorded as failed. Each completed
request is committed to the cache before the next one starts.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import openai
import pydantic
from openai import AsyncAzureOpenAI, AsyncOpenAI

from radtune.dataprep.deidentify import scrub
from radtune.dataprep.qa.cache import QACache, cache_key
from radtune.dataprep.qa.pricing import Usage
from radtune.dataprep.qa.privacy import redact
from radtune.dataprep.qa.prompt import (
    PROMPT_VERSION,
    InvalidQAError,
    QAPairs,
    build_messages,
    reask_message,
    validate_pairs,
)

logger = logging.getLogger(__name__)

PROVIDERS = ("openai", "azure", "compatible")
DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "azure": "AZURE_OPENAI_API_KEY", "compatible": "OPENAI_API_KEY"}
DEFAULT_AZURE_API_VERSION = "2024-10-21"


@dataclass
class EndpointSettings:
    """Where the requests go and how they are retried.

    Args:
        provider (`str`): `openai` (the public API, or `base_url`), `azure` (Azure OpenAI; `base_url` is the
            resource endpoint and `model` the deployment) or `compatible` (a vLLM/Ollama/llama.cpp server at
            `base_url`; the key is optional).
        model (`str`): the model (or Azure deployment) name.
        base_url (`str`, *optional*): the API's base URL.
        api_key_env (`str`, *optional*): the environment variable holding the key; defaults per provider.
        api_version (`str`, *optional*): Azure's API version.
        max_retries (`int`): retries of one request on 429/5xx/timeouts/connection errors.
        timeout (`float`): seconds before one attempt times out.
    """

    provider: str = "openai"
    model: str = "gpt-4o-mini"
    base_url: str | None = None
    api_key_env: str | None = None
    api_version: str | None = None
    max_retries: int = 5
    timeout: float = 60.0

    def __post_init__(self):
        if self.provider not in PROVIDERS:
            raise ValueError(f"provider must be one of {PROVIDERS}, got {self.provider!r}")
        if self.provider in ("azure", "compatible") and not self.base_url:
            raise ValueError(f"provider {self.provider!r} needs base_url (the server's or Azure resource's URL)")
        if self.max_retries < 0 or self.timeout <= 0:
            raise ValueError("max_retries must be >= 0 and timeout > 0")


def make_client(settings: EndpointSettings) -> tuple[AsyncOpenAI, str | None]:
    """The async client for `settings` and the key it uses (kept only to redact it from stored messages).

    Raises:
        `ValueError`: the key's environment variable is unset (OpenAI and Azure need one). The message names
            the variable, never a value.
    """
    key_env = settings.api_key_env or DEFAULT_KEY_ENV[settings.provider]
    api_key = os.environ.get(key_env) or None
    if api_key is None and settings.provider != "compatible":
        raise ValueError(f"set the API key in the environment variable {key_env} (or choose one with --api-key-env)")
    common = {"max_retries": settings.max_retries, "timeout": settings.timeout}
    if settings.provider == "azure":
        client = AsyncAzureOpenAI(
            api_key=api_key,
            azure_endpoint=settings.base_url,
            api_version=settings.api_version or os.environ.get("OPENAI_API_VERSION") or DEFAULT_AZURE_API_VERSION,
            **common,
        )
    else:
        # Local servers usually ignore the key, but the client insists on one.
        client = AsyncOpenAI(api_key=api_key or "no-key", base_url=settings.base_url, **common)
    return client, api_key


@dataclass
class QAResult:
    """The outcome for one report: `pairs` on success, else `reason`."""

    item_id: str
    key: str
    pairs: list[dict] | None = None
    reason: str | None = None
    cached: bool = False


class OpenAIQAGenerator:
    """Generate `n` pairs per report through `client`, caching every completed request.

    Args:
        client (`AsyncOpenAI`): the client (`make_client`).
        model (`str`): the model or deployment name.
        n (`int`): pairs per report.
        cache (`QACache`): where completed requests are committed.
        usage (`Usage`, *optional*): accumulates the returned token usage.
        secret (`str`, *optional*): the API key, redacted from every stored or logged failure reason.
        temperature (`float`, *optional*): sampling temperature (the server's default when unset).
    """

    def __init__(
        self,
        client: AsyncOpenAI,
        model: str,
        n: int,
        cache: QACache,
        usage: Usage | None = None,
        secret: str | None = None,
        temperature: float | None = None,
    ):
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self.client, self.model, self.n, self.cache = client, model, n, cache
        self.usage = usage if usage is not None else Usage()
        self.secret = secret
        self.temperature = temperature

    def key(self, scrubbed_text: str) -> str:
        return cache_key(self.model, PROMPT_VERSION, self.n, scrubbed_text)

    async def _ask(self, messages: list[dict]) -> tuple[list[dict] | None, str | None, str | None, tuple[int, int]]:
        """One request (with the client's retries): (pairs or None, invalid reason or None, content, tokens).

        Transport errors that outlive the retries propagate as `openai.APIError`.
        """
        extra = {} if self.temperature is None else {"temperature": self.temperature}
        raw = await self.client.chat.completions.with_raw_response.parse(
            model=self.model, messages=messages, response_format=QAPairs, **extra
        )
        try:
            body = raw.http_response.json()
        except ValueError:  # not JSON at all: `raw.parse()` below reports it as invalid output
            body = {}
        usage = body.get("usage") or {}
        tokens = (int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
        self.usage.requests += 1
        self.usage.add(*tokens)
        choices = body.get("choices") or [{}]
        content = (choices[0].get("message") or {}).get("content")
        try:
            message = raw.parse().choices[0].message
            if message.refusal:
                raise InvalidQAError(f"the model refused: {message.refusal}")
            return validate_pairs(message.parsed, self.n), None, content, tokens
        except (pydantic.ValidationError, ValueError) as error:
            # ValueError covers InvalidQAError and the JSON decoder's errors.
            return None, _short(error), content, tokens
        except (openai.LengthFinishReasonError, openai.ContentFilterFinishReasonError) as error:
            return None, type(error).__name__, content, tokens

    def prepare(self, text: str) -> tuple[str, str]:
        """`(scrubbed text, cache key)` of a report: only the scrubbed text ever leaves the machine."""
        scrubbed = scrub(text)
        return scrubbed, self.key(scrubbed)

    async def generate(self, item_id: str, text: str) -> QAResult:
        """The pairs of one report: from the cache, or asked (and re-asked once when invalid)."""
        return await self._generate(item_id, *self.prepare(text))

    async def _generate(self, item_id: str, scrubbed: str, key: str) -> QAResult:
        hit = self.cache.get(key)
        if hit is not None:
            self.usage.cached += 1
            return QAResult(item_id, key, pairs=hit["pairs"], cached=True)
        return await self._attempts(item_id, key, scrubbed, build_messages(scrubbed, self.n), attempts=2)

    async def reask(self, item_id: str, key: str, scrubbed: str, content: str | None, reason: str, spent=(0, 0)):
        """The one re-ask after an invalid answer obtained elsewhere (a Batch API output line)."""
        messages = [
            *build_messages(scrubbed, self.n),
            {"role": "assistant", "content": content or ""},
            reask_message(reason, self.n),
        ]
        return await self._attempts(item_id, key, scrubbed, messages, attempts=1, spent=spent, reason=reason)

    async def _attempts(self, item_id, key, scrubbed, messages, attempts, spent=(0, 0), reason=None) -> QAResult:
        spent = list(spent)
        try:
            for _attempt in range(attempts):
                pairs, reason, content, tokens = await self._ask(messages)
                spent = [spent[0] + tokens[0], spent[1] + tokens[1]]
                if pairs is not None:
                    self.cache.put(
                        key, model=self.model, prompt_version=PROMPT_VERSION, text=scrubbed, pairs=pairs,
                        prompt_tokens=spent[0], completion_tokens=spent[1],
                    )  # fmt: skip
                    return QAResult(item_id, key, pairs=pairs)
                messages = [*messages, {"role": "assistant", "content": content or ""}, reask_message(reason, self.n)]
            reason = f"invalid output after one re-ask: {reason}"
        except openai.APIError as error:  # retries exhausted, timeout, connection refused, 4xx
            reason = f"{type(error).__name__}: {_short(error)}"
        return self.fail(item_id, key, reason, spent)

    def fail(self, item_id: str, key: str, reason: str, spent=(0, 0)) -> QAResult:
        """Record a failed report (reason redacted of the key) and return its result."""
        reason = redact(reason, self.secret)
        self.cache.put_failure(key, reason, *spent)
        logger.warning("report %s failed: %s", item_id, reason)
        return QAResult(item_id, key, reason=reason)

    async def run(
        self,
        items: Iterable[tuple[str, str]],
        concurrency: int = 16,
        on_result: Callable[[QAResult], None] | None = None,
    ) -> list[QAResult]:
        """Generate for every `(item_id, report_text)` with at most `concurrency` requests in flight.

        Identical reports are asked once. `concurrency` workers pull from the queue (no task per report).
        Results come back in the order of `items`; `on_result` is called for each item as its request completes.
        """
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        items = list(items)
        unique: dict[str, tuple[str, str]] = {}
        keys = []
        for item_id, text in items:
            scrubbed, key = self.prepare(text)
            unique.setdefault(key, (item_id, scrubbed))
            keys.append(key)
        pending = iter(unique.items())
        by_key: dict[str, QAResult] = {}

        repeats = Counter(keys)

        async def worker() -> None:
            for key, (item_id, scrubbed) in pending:
                by_key[key] = await self._generate(item_id, scrubbed, key)
                if on_result is not None:
                    for _ in range(repeats[key]):  # once per item, so progress counts items
                        on_result(by_key[key])

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return [replace(by_key[key], item_id=item_id) for key, (item_id, _text) in zip(keys, items, strict=True)]


def _short(error: BaseException, limit: int = 300) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
