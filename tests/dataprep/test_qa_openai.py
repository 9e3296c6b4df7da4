"""The openai generator against real local HTTP servers: structured output, retries, timeouts, re-asks, Batch API."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from qa_fake_openai import FakeOpenAI, completion, pairs_for, valid_answer
from werkzeug import Response

from radtune.dataprep.qa.batch_api import run_batch
from radtune.dataprep.qa.cache import QACache
from radtune.dataprep.qa.openai_generator import EndpointSettings, OpenAIQAGenerator, make_client
from radtune.dataprep.qa.pricing import Usage
from radtune.dataprep.qa.prompt import PROMPT_VERSION

REPORT = "Small left pleural effusion. No pneumothorax. Heart size is normal."


def _generator(base_url, cache, n=3, max_retries=2, timeout=5.0, key="sk-test"):
    import os

    os.environ["RADTUNE_TEST_KEY"] = key
    settings = EndpointSettings(
        provider="compatible", model="test-model", base_url=base_url, api_key_env="RADTUNE_TEST_KEY",
        max_retries=max_retries, timeout=timeout,
    )  # fmt: skip
    client, secret = make_client(settings)
    return OpenAIQAGenerator(client, "test-model", n, cache, usage=Usage(), secret=secret)


def _run(generator, items, concurrency=4):
    async def main():
        async with generator.client:
            return await generator.run(items, concurrency=concurrency)

    return asyncio.run(main())


def _chat_json(n=3, report=REPORT):
    return completion(json.dumps({"pairs": pairs_for("Report:\n" + report, n)}))


def test_structured_output_is_requested_parsed_validated_and_cached(httpserver, tmp_path):
    httpserver.expect_request("/v1/chat/completions", method="POST").respond_with_json(_chat_json())
    cache = QACache(tmp_path / "cache.sqlite")
    generator = _generator(httpserver.url_for("/v1"), cache)
    [result] = _run(generator, [("r1", REPORT)])

    assert result.reason is None and len(result.pairs) == 3
    assert {pair["answer_type"] for pair in result.pairs} == {"closed", "open"}
    body = json.loads(httpserver.log[0][0].get_data())
    assert body["model"] == "test-model"
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["strict"] is True
    assert "exactly 3" in body["messages"][0]["content"] and REPORT in body["messages"][1]["content"]
    assert generator.usage.prompt_tokens == 100 and generator.usage.completion_tokens == 40
    # Keyed by model + prompt version + report: the same report again is served from the cache.
    assert cache.get(generator.key(REPORT))["pairs"] == result.pairs
    [again] = _run(_generator(httpserver.url_for("/v1"), cache), [("r1", REPORT)])
    assert again.cached and len(httpserver.log) == 1
    assert PROMPT_VERSION in json.dumps(PROMPT_VERSION)


def test_429_then_500_then_success_is_retried_by_the_client(httpserver, tmp_path):
    route = ("/v1/chat/completions",)
    httpserver.expect_oneshot_request(*route, method="POST").respond_with_json(
        {"error": {"message": "rate limited", "type": "rate_limit"}}, status=429, headers={"retry-after-ms": "20"}
    )
    httpserver.expect_oneshot_request(*route, method="POST").respond_with_json(
        {"error": {"message": "server error"}}, status=500, headers={"retry-after-ms": "20"}
    )
    httpserver.expect_request(*route, method="POST").respond_with_json(_chat_json())
    generator = _generator(httpserver.url_for("/v1"), QACache(":memory:"), max_retries=3)
    started = time.monotonic()
    [result] = _run(generator, [("r1", REPORT)])

    assert result.pairs is not None
    assert len(httpserver.log) == 3
    retry_counts = [request.headers.get("x-stainless-retry-count") for request, _response in httpserver.log]
    assert retry_counts == ["0", "1", "2"]
    assert time.monotonic() - started < 3  # retry-after-ms was honoured, not the default back-off
    assert generator.usage.requests == 1


def test_retries_exhausted_records_the_failure_and_a_rerun_tries_again(httpserver, tmp_path):
    httpserver.expect_request("/v1/chat/completions", method="POST").respond_with_json(
        {"error": {"message": "slow down"}}, status=429, headers={"retry-after-ms": "1"}
    )
    cache = QACache(tmp_path / "cache.sqlite")
    generator = _generator(httpserver.url_for("/v1"), cache, max_retries=1)
    [result] = _run(generator, [("r1", REPORT)])
    assert result.pairs is None and result.reason.startswith("RateLimitError")
    assert len(httpserver.log) == 2  # the first attempt and one retry
    assert cache.failure(generator.key(REPORT)) == result.reason

    httpserver.clear_all_handlers()
    httpserver.expect_request("/v1/chat/completions", method="POST").respond_with_json(_chat_json())
    [result] = _run(_generator(httpserver.url_for("/v1"), cache), [("r1", REPORT)])
    assert result.pairs is not None and cache.failure(generator.key(REPORT)) is None


def test_timeout_is_recorded_as_a_failure(httpserver):
    def slow(_request):
        time.sleep(1.0)
        return Response(json.dumps(_chat_json()), content_type="application/json")

    httpserver.expect_request("/v1/chat/completions", method="POST").respond_with_handler(slow)
    generator = _generator(httpserver.url_for("/v1"), QACache(":memory:"), max_retries=1, timeout=0.2)
    started = time.monotonic()
    [result] = _run(generator, [("r1", REPORT)])
    assert result.pairs is None and result.reason.startswith("APITimeoutError")
    assert time.monotonic() - started < 3
    deadline = time.monotonic() + 5  # let the server finish the abandoned requests before the next test
    while len(httpserver.log) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(httpserver.log) == 2  # the first attempt and one retry, both timed out


def test_malformed_json_is_reasked_once_then_recorded_as_failed(httpserver):
    httpserver.expect_request("/v1/chat/completions", method="POST").respond_with_json(
        completion('{"pairs": [{"question": "Is there')
    )
    generator = _generator(httpserver.url_for("/v1"), QACache(":memory:"))
    [result] = _run(generator, [("r1", REPORT)])

    assert result.pairs is None and result.reason.startswith("invalid output after one re-ask")
    assert len(httpserver.log) == 2
    reask = json.loads(httpserver.log[1][0].get_data())["messages"]
    assert [m["role"] for m in reask] == ["system", "user", "assistant", "user"]
    assert reask[2]["content"].startswith('{"pairs"') and "invalid" in reask[3]["content"]
    assert generator.usage.requests == 2 and generator.usage.prompt_tokens == 200  # both attempts are paid for


@pytest.mark.parametrize(
    "bad_pairs, reason",
    [
        (lambda pairs: pairs[:2], "expected 3 pairs, got 2"),
        (lambda pairs: [pairs[0], pairs[0], pairs[2]], "repeats the question"),
        (lambda pairs: [{**pairs[0], "answer": "  "}, *pairs[1:]], "empty question or answer"),
    ],
)
def test_invalid_pairs_are_reasked_and_a_valid_second_answer_is_kept(bad_pairs, reason):
    def script(fake, body, attempt):
        if attempt == 1:
            return 200, completion(json.dumps({"pairs": bad_pairs(pairs_for(body["messages"][1]["content"], 3))}))
        return None

    with FakeOpenAI(script=script) as fake:
        generator = _generator(fake.base_url, QACache(":memory:"))
        [result] = _run(generator, [("r1", REPORT)])
        requests = fake.chat_requests()
    assert result.pairs is not None and len(result.pairs) == 3
    assert len(requests) == 2 and reason in requests[1]["body"]["messages"][-1]["content"]


def test_missing_answer_type_fails_schema_validation():
    def script(fake, body, attempt):
        pairs = pairs_for(body["messages"][1]["content"], 3)
        for pair in pairs:
            pair.pop("answer_type")
        return 200, completion(json.dumps({"pairs": pairs}))

    with FakeOpenAI(script=script) as fake:
        [result] = _run(_generator(fake.base_url, QACache(":memory:")), [("r1", REPORT)])
        assert len(fake.chat_requests()) == 2
    assert result.pairs is None and "answer_type" in result.reason


def test_identical_reports_are_asked_once_and_concurrency_is_bounded():
    with FakeOpenAI(delay=0.05) as fake:
        in_flight, peak = [0], [0]
        original = fake.handle_post

        def counting(path, headers, raw, entry):
            with fake.lock:
                in_flight[0] += 1
                peak[0] = max(peak[0], in_flight[0])
            try:
                return original(path, headers, raw, entry)
            finally:
                with fake.lock:
                    in_flight[0] -= 1

        fake.handle_post = counting
        items = [(f"r{i}", f"Report number {i % 10}.") for i in range(30)]
        results = _run(_generator(fake.base_url, QACache(":memory:")), items, concurrency=3)
        assert len(fake.chat_requests()) == 10
    assert peak[0] <= 3
    assert [r.item_id for r in results] == [f"r{i}" for i in range(30)]
    assert results[0].pairs == results[10].pairs


def test_batch_api_flow_uploads_polls_downloads_and_merges(tmp_path):
    def script(fake, body, attempt):
        # One report answers badly in the batch; its re-ask goes through the online endpoint.
        if "Report B" in body["messages"][1]["content"] and attempt == 0:
            return 200, completion("not json at all")
        if "Report C" in body["messages"][1]["content"]:
            return 500, {"error": {"message": "the model is overloaded"}}
        return None

    with FakeOpenAI(script=script, batch_polls=2) as fake:
        cache = QACache(tmp_path / "cache.sqlite")
        generator = _generator(fake.base_url, cache)
        statuses = []

        async def main():
            async with generator.client:
                return await run_batch(
                    generator, [("a", "Report A."), ("b", "Report B."), ("c", "Report A."), ("d", "Report C.")],
                    poll_interval=0.01,
                    on_status=lambda batch_id, status: statuses.append(status),
                )  # fmt: skip

        results = asyncio.run(main())
        calls = [(r["method"], r["path"].split("?")[0]) for r in fake.requests]
        upload = next(r for r in fake.requests if r["path"] == "/v1/files")
        chat = fake.chat_requests()

    assert all(result.pairs for result in results[:3]) and results[0].pairs == results[2].pairs
    assert results[3].pairs is None and "batch request failed (500): the model is overloaded" in results[3].reason
    assert cache.failure(results[3].key) == results[3].reason
    assert calls[:2] == [("POST", "/v1/files"), ("POST", "/v1/batches")]
    assert calls.count(("GET", "/v1/batches/batch-1")) == 3 and statuses == ["in_progress", "in_progress", "completed"]
    assert ("GET", "/v1/files/file-2/content") in calls and ("GET", "/v1/files/file-3/content") in calls
    assert b'name="purpose"' in upload["raw"] and b"batch" in upload["raw"]
    lines = [json.loads(line) for line in fake.files["file-1"].decode().splitlines()]
    assert len(lines) == 3  # the duplicate report is sent once
    assert lines[0]["url"] == "/v1/chat/completions" and lines[0]["body"]["response_format"]["type"] == "json_schema"
    assert len(chat) == 1 and chat[0]["body"]["messages"][-2]["content"] == "not json at all"
    # Two batch answers at half price, one online re-ask at full price.
    assert generator.usage.batch_prompt_tokens == 200 and generator.usage.prompt_tokens == 100
    assert generator.usage.cost((1.0, 2.0)) == pytest.approx(0.5 * (200 + 80 * 2) / 1e6 + (100 + 40 * 2) / 1e6)
    assert cache.pending_batches() == {}


def test_interrupted_batch_run_polls_the_submitted_batch_instead_of_paying_twice(tmp_path):
    class Stop(Exception):
        pass

    def stop(_batch_id, _status):
        raise Stop

    items = [("a", "Report A."), ("b", "Report B.")]
    with FakeOpenAI(batch_polls=1) as fake:
        cache = QACache(tmp_path / "cache.sqlite")

        async def main(on_status):
            generator = _generator(fake.base_url, cache)
            async with generator.client:
                return await run_batch(generator, items, poll_interval=0.01, on_status=on_status)

        with pytest.raises(Stop):
            asyncio.run(main(stop))
        assert list(cache.pending_batches()) == ["batch-1"]
        results = asyncio.run(main(None))
        posts = [r["path"] for r in fake.requests if r["method"] == "POST"]
    assert posts == ["/v1/files", "/v1/batches"]  # submitted once
    assert all(result.pairs for result in results) and cache.count() == 2


def test_azure_provider_sends_to_the_deployment_with_the_api_version(monkeypatch):
    monkeypatch.setenv("RADTUNE_AZURE_KEY", "azure-key")
    with FakeOpenAI() as fake:
        settings = EndpointSettings(
            provider="azure", model="my-deployment", base_url=fake.base_url.removesuffix("/v1"),
            api_key_env="RADTUNE_AZURE_KEY", api_version="2024-10-21", max_retries=0, timeout=5,
        )  # fmt: skip
        client, _ = make_client(settings)
        generator = OpenAIQAGenerator(client, "my-deployment", 2, QACache(":memory:"))
        [result] = _run(generator, [("r", REPORT)])
        [request] = fake.chat_requests()
    assert result.pairs is not None
    assert request["path"] == "/openai/deployments/my-deployment/chat/completions?api-version=2024-10-21"
    assert request["headers"].get("api-key") == "azure-key"


def test_missing_key_names_the_variable_not_a_value(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        make_client(EndpointSettings(provider="openai", max_retries=0, timeout=1))
    with pytest.raises(ValueError, match="base_url"):
        EndpointSettings(provider="compatible")
    assert valid_answer  # the fake's default answer is importable for other tests


def test_cli_batch_api_run_reports_tokens_at_half_price(tmp_path, monkeypatch):
    from click.testing import CliRunner
    from qa_fake_openai import make_report_dataset

    from radtune.dataprep.qa_cli import qa

    dataset = make_report_dataset(tmp_path / "data", n=2)
    (tmp_path / "prices.json").write_text(json.dumps({"test-model": {"input": 1.0, "output": 2.0}}))
    monkeypatch.setenv("RADTUNE_TEST_KEY", "sk-test")
    with FakeOpenAI() as fake:
        args = [str(dataset), str(tmp_path / "out"), "--generator", "openai", "--provider", "compatible",
                "--base-url", fake.base_url, "--model", "test-model", "--api-key-env", "RADTUNE_TEST_KEY",
                "--n-per-report", "2", "--batch-api", "--poll-interval", "0", "--price-table",
                str(tmp_path / "prices.json")]  # fmt: skip
        result = CliRunner().invoke(qa, args)
        assert result.exit_code == 0, result.output
        assert fake.chat_requests() == []  # everything went through the batch
    report = json.loads((tmp_path / "out" / "qa_report.json").read_text())
    cost = report["cost"]
    assert cost["batch_prompt_tokens"] == 4 * 100 and cost["batch_completion_tokens"] == 4 * 40
    assert cost["cost_usd"] == pytest.approx(0.5 * (400 * 1.0 + 160 * 2.0) / 1e6)
    assert report["rows"] == {"train": 4, "test": 4} and report["batch_api"] is True
