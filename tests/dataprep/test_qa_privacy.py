"""What may leave the machine: scrubbing, the credentialed-data guard, and the API key."""

from __future__ import annotations

import logging
import sqlite3

import pytest
from click.testing import CliRunner
from qa_fake_openai import FakeOpenAI, make_report_dataset

from radtune.dataprep.deidentify import scrub
from radtune.dataprep.qa.privacy import (
    CredentialedUploadRefusedError,
    check_upload_allowed,
    credentialed_sources,
)
from radtune.dataprep.qa_cli import qa

SECRET = "sk-radtune-test-SECRET-9f8e7d6c5b4a"


@pytest.mark.parametrize(
    "text, kept, removed",
    [
        ("Compared to ___ on 03/14/2021 at 10:45 AM.", ["Compared to ___ on", "."], ["03/14/2021", "10:45"]),
        ("Prior from 2021-03-14 and March 14, 2021; also 14 March 2021.", ["Prior from"], ["2021", "March 14"]),
        (
            "Findings discussed with Dr. John Smith by phone at (617) 555-1234.",
            ["Dr. ___", "by phone"],
            ["Smith", "555"],
        ),
        ("MRN: 12345678. Accession number A12-3456. Record 998877.", [], ["12345678", "A12-3456", "998877"]),
        ("A 2.5 x 3.1 cm nodule at T11; ET tube 4 cm above the carina.", ["2.5 x 3.1 cm", "T11", "4 cm"], []),
        ("___-year-old man. Dr. ___ was notified.", ["___-year-old man. Dr. ___ was notified."], []),
        ("There may be 2 small nodules. MR shows no mass.", ["There may be 2 small nodules. MR shows no mass."], []),
    ],
)
def test_scrub_removes_identifiers_and_keeps_clinical_content(text, kept, removed):
    out = scrub(text)
    for piece in kept:
        assert piece in out
    for piece in removed:
        assert piece not in out


def test_guard_refuses_only_credentialed_data_at_the_public_endpoint():
    found = credentialed_sources({"mimic-cxr", "phantom"})
    assert found == {"mimic-cxr"}
    assert credentialed_sources({"phantom", "rocov2"}) == set()
    assert credentialed_sources(set(), "---\ncredentialed: true\n---\n")
    with pytest.raises(CredentialedUploadRefusedError, match="--allow-credentialed-upload"):
        check_upload_allowed(found, "openai", None, allow_credentialed=False)
    check_upload_allowed(found, "openai", None, allow_credentialed=True)
    check_upload_allowed(found, "azure", "https://x.openai.azure.com", allow_credentialed=False)
    check_upload_allowed(found, "compatible", "http://localhost:8000/v1", allow_credentialed=False)
    check_upload_allowed(set(), "openai", None, allow_credentialed=False)


PUBLIC_URL = "http://api.openai.com/v1"


def _through_proxy(monkeypatch, fake: FakeOpenAI) -> None:
    """Send every http:// request of this process through the fake server (an HTTP proxy to the world)."""
    for name in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, fake.base_url.rsplit("/v1", 1)[0])
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def _qa_args(dataset, out, base_url, *extra):
    return [str(dataset), str(out), "--generator", "openai", "--model", "test-model", "--base-url", base_url,
            "--api-key-env", "RADTUNE_TEST_KEY", "--max-retries", "0", "--timeout", "5", "--n-per-report", "2",
            *extra]  # fmt: skip


@pytest.mark.parametrize("source", ["mimic-cxr", "chexpert-plus"])
def test_credentialed_dataset_is_refused_before_any_request(tmp_path, monkeypatch, source):
    dataset = make_report_dataset(tmp_path / "data", n=2, source=source)
    monkeypatch.setenv("RADTUNE_TEST_KEY", SECRET)
    with FakeOpenAI() as fake:
        # OpenAI's public endpoint, reached through the local server as an HTTP proxy.
        _through_proxy(monkeypatch, fake)
        result = CliRunner().invoke(qa, _qa_args(dataset, tmp_path / "out", PUBLIC_URL, "--provider", "openai"))
        assert result.exit_code != 0
        assert "credentialed" in result.output and "Nothing was sent" in result.output
        assert fake.requests == []
        assert not (tmp_path / "out").exists()

        # The explicit flag lets the same run through: the server was reachable all along.
        result = CliRunner().invoke(
            qa,
            _qa_args(dataset, tmp_path / "out", PUBLIC_URL, "--provider", "openai", "--allow-credentialed-upload"),
        )
        assert result.exit_code == 0, result.output
        assert len(fake.chat_requests()) == 4


def test_credentialed_card_is_refused_even_without_a_source_column(tmp_path, monkeypatch):
    from datasets import load_from_disk

    from radtune.dataprep.sources import SOURCES

    dataset = make_report_dataset(tmp_path / "data", n=2, source="phantom")
    moved = load_from_disk(str(dataset))
    moved = moved.remove_columns("source")
    moved.save_to_disk(str(tmp_path / "nosource"))
    (tmp_path / "nosource" / "README.md").write_text(f"# x\n\n> **{SOURCES['mimic-cxr'].data_use_notice}**\n")
    monkeypatch.setenv("RADTUNE_TEST_KEY", SECRET)
    with FakeOpenAI() as fake:
        _through_proxy(monkeypatch, fake)
        result = CliRunner().invoke(qa, _qa_args(tmp_path / "nosource", tmp_path / "out", PUBLIC_URL))
        assert result.exit_code != 0 and "mimic-cxr" in result.output
        assert fake.requests == []


def test_local_endpoint_accepts_credentialed_data_and_sends_only_scrubbed_text(tmp_path, monkeypatch):
    from datasets import load_from_disk

    dataset = make_report_dataset(tmp_path / "data", n=2, source="mimic-cxr")
    data = load_from_disk(str(dataset))
    data = data.map(lambda row: {"text": row["text"] + " Discussed with Dr. Jane Doe on 01/02/2023, MRN 12345678."})
    data.save_to_disk(str(tmp_path / "phi"))
    monkeypatch.setenv("RADTUNE_TEST_KEY", SECRET)
    with FakeOpenAI() as fake:
        result = CliRunner().invoke(
            qa, _qa_args(tmp_path / "phi", tmp_path / "out", fake.base_url, "--provider", "compatible")
        )
        assert result.exit_code == 0, result.output
        sent = " ".join(r["body"]["messages"][1]["content"] for r in fake.chat_requests())
    assert len(fake.chat_requests()) == 4
    assert "Dr. ___" in sent and "Jane" not in sent and "01/02/2023" not in sent and "12345678" not in sent
    # The card carries the data use notice of the credentialed source on.
    assert "PhysioNet" in (tmp_path / "out" / "README.md").read_text()


def test_api_key_is_never_cached_logged_or_written(tmp_path, monkeypatch, caplog):
    dataset = make_report_dataset(tmp_path / "data", n=3, source="phantom")
    monkeypatch.setenv("RADTUNE_TEST_KEY", SECRET)

    def hostile(fake, body, attempt):
        # A server that echoes the Authorization header into its error message, for some reports.
        if "Study 1:" in body["messages"][1]["content"] or "Study 4:" in body["messages"][1]["content"]:
            key = next(r["headers"]["authorization"] for r in fake.chat_requests())
            return 400, {"error": {"message": f"bad request from {key}", "type": "invalid_request_error"}}
        return None

    caplog.set_level(logging.DEBUG)
    with FakeOpenAI(script=hostile) as fake:
        result = CliRunner().invoke(qa, _qa_args(dataset, tmp_path / "out", fake.base_url, "--provider", "compatible",
                                                 "--max-failure-fraction", "0.5"))  # fmt: skip
        assert result.exit_code == 0, result.output
        assert all(r["headers"]["authorization"] == f"Bearer {SECRET}" for r in fake.chat_requests())
    assert "2 report(s) failed" in result.output

    assert SECRET not in result.output and SECRET not in caplog.text
    assert "[REDACTED]" in (tmp_path / "out" / "qa_report.json").read_text()
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    connection = sqlite3.connect(tmp_path / "out.qa_cache.sqlite")
    dump = "\n".join(connection.iterdump())
    assert SECRET not in dump and "[REDACTED]" in dump
