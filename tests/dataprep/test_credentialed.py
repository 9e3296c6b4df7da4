"""Deny by default for credentialed data (MIMIC-CXR, CheXpert Plus): the mark a build carries on, where its reports
may go, what may be published, and passwords inside URLs.

The refused endpoints are reached through the fake OpenAI server acting as an HTTP proxy (as in the issue's
reproduction): with `--allow-credentialed-upload` the same command reaches it, so "no request arrived" means the
guard stopped it, not the network.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from dataprep_layouts import make_mimic
from qa_fake_openai import FakeOpenAI, make_report_dataset

from radtune.dataprep.build import build_dataset
from radtune.dataprep.card import parse_card_metadata
from radtune.dataprep.qa.privacy import (
    CredentialedUploadRefusedError,
    check_upload_allowed,
    is_permitted_endpoint,
    redact_url_credentials,
)
from radtune.dataprep.qa_cli import qa
from radtune.dataprep.sources import SOURCES

KEY_ENV = "RADTUNE_TEST_KEY"
PASSWORD = "S3cr3t-PASSWORD-q7"


@pytest.mark.parametrize(
    "provider, url",
    [
        ("openai", None),  # OpenAI's API itself
        ("compatible", "http://api.together.xyz/v1"),
        ("openai", "http://api.openai.com./v1"),
        ("azure", "http://api.openai.com"),
        ("compatible", "http://API.OpenAI.COM/v1"),
        ("compatible", "http://127.0.0.1@api.openai.com/v1"),  # the host is after the @
        ("compatible", "http://api.openai.com\\@127.0.0.1/v1"),  # parsers disagree: refused
        ("compatible", "http://[::ffff:8.8.8.8]/v1"),  # IPv4-mapped public address
        ("compatible", "http://134744072/v1"),  # 8.8.8.8 as one integer: 8·2^24 + 8·2^16 + 8·2^8 + 8
        ("compatible", "http://172.32.0.1/v1"),  # just past 172.16.0.0/12
        ("compatible", "http://10.0.0.5.nip.io/v1"),  # a name, whatever it looks like
        ("compatible", "http://localhost.evil.com/v1"),
        ("azure", "https://openai.azure.com"),  # no resource name
        ("azure", "https://x.openai.azure.com.evil.net"),
        ("azure", "https://evil.net/x.openai.azure.com"),
        ("compatible", "localhost:8000/v1"),  # no scheme: the client's reading is not ours
        ("compatible", "ftp://127.0.0.1/v1"),
        ("compatible", "http://0177.0.0.1/v1"),  # the client itself rejects this dotted form
    ],
)
def test_endpoints_outside_the_allow_list_are_refused(provider, url):
    assert not is_permitted_endpoint(provider, url)
    with pytest.raises(CredentialedUploadRefusedError, match=r"Nothing was sent\.\n.*--allow-credentialed-upload"):
        check_upload_allowed({"mimic-cxr"}, provider, url, allow_credentialed=False)
    check_upload_allowed({"mimic-cxr"}, provider, url, allow_credentialed=True)
    check_upload_allowed(set(), provider, url, allow_credentialed=False)  # data that is not credentialed


@pytest.mark.parametrize(
    "provider, url",
    [
        ("compatible", "http://localhost:8000/v1"),
        ("compatible", "http://LOCALHOST.:8000/v1"),
        ("compatible", "http://127.0.0.1:8000/v1"),
        ("openai", "http://[::1]:8000/v1"),
        ("compatible", "http://10.0.0.5:11434/v1"),
        ("compatible", "http://172.31.255.255/v1"),
        ("compatible", "http://192.168.1.20/v1"),
        ("compatible", "http://2130706433/v1"),  # 127.0.0.1 = 127·2^24 + 1
        ("compatible", "http://3232235777/v1"),  # 192.168.1.1 = 192·2^24 + 168·2^16 + 1·2^8 + 1
        ("compatible", "http://0x7f.1/v1"),
        ("compatible", "http://0177.1/v1"),  # octal 0177 = 127
        ("compatible", "http://[fd12:3456::1]:8000/v1"),
        ("compatible", "http://[::ffff:192.168.0.1]/v1"),
        ("compatible", "http://user:pw@10.1.2.3/v1"),
        ("azure", "https://My-Resource.OpenAI.Azure.com."),
        ("compatible", "https://my-resource.openai.azure.com/openai/v1"),
    ],
)
def test_loopback_private_and_azure_endpoints_are_allowed(provider, url):
    assert is_permitted_endpoint(provider, url)
    check_upload_allowed({"mimic-cxr"}, provider, url, allow_credentialed=False)


def _qa_args(dataset, out, base_url, *extra):
    return [str(dataset), str(out), "--generator", "openai", "--model", "test-model", "--base-url", base_url,
            "--api-key-env", KEY_ENV, "--max-retries", "0", "--timeout", "5", "--n-per-report", "2", *extra]  # fmt: skip


def _through_proxy(monkeypatch, fake: FakeOpenAI) -> None:
    """Send every http:// request of this process through the fake server, as the issue's reproduction did."""
    proxy = fake.base_url.rsplit("/v1", 1)[0]
    for name in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, proxy)
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    "base_url, provider",
    [
        ("http://api.together.xyz/v1", "compatible"),
        ("http://api.openai.com./v1", "openai"),
        ("http://api.openai.com", "azure"),
    ],
)
def test_the_three_reported_hosts_get_no_request(tmp_path, monkeypatch, base_url, provider):
    dataset = make_report_dataset(tmp_path / "mimic", n=2, source="mimic-cxr")
    monkeypatch.setenv(KEY_ENV, "sk-test")
    with FakeOpenAI() as fake:
        _through_proxy(monkeypatch, fake)
        result = CliRunner().invoke(qa, _qa_args(dataset, tmp_path / "out", base_url, "--provider", provider))
        assert result.exit_code != 0
        assert "credentialed (mimic-cxr)" in result.output and "Nothing was sent" in result.output
        assert "--allow-credentialed-upload" in result.output
        assert fake.requests == []
        assert not (tmp_path / "out").exists()

        # The same command with the flag reaches the server: the route was open, the guard closed it.
        result = CliRunner().invoke(
            qa, _qa_args(dataset, tmp_path / "out", base_url, "--provider", provider, "--allow-credentialed-upload")
        )
        assert result.exit_code == 0, result.output
        assert len(fake.chat_requests()) == 4  # 2 splits × 2 reports


def test_a_build_of_mimic_and_everything_derived_carry_the_mark(tmp_path):
    build_dataset("mimic-cxr", make_mimic(tmp_path / "src"), tmp_path / "mimic")
    card = (tmp_path / "mimic" / "README.md").read_text(encoding="utf-8")
    assert parse_card_metadata(card)["credentialed"] is True
    assert json.loads((tmp_path / "mimic" / "build_report.json").read_text())["credentialed"] is True

    result = CliRunner().invoke(qa, [str(tmp_path / "mimic"), str(tmp_path / "qa"), "--generator", "rules"])
    assert result.exit_code == 0, result.output
    qa_card = (tmp_path / "qa" / "README.md").read_text(encoding="utf-8")
    assert parse_card_metadata(qa_card)["credentialed"] is True
    assert SOURCES["mimic-cxr"].data_use_notice in qa_card
    assert json.loads((tmp_path / "qa" / "qa_report.json").read_text())["credentialed"] is True

    # A run trained on the QA export records the mark in run_info.json.
    from radtune.common.run import RunArguments, run_info

    args = SimpleNamespace(seed=3)
    assert run_info("vqa", RunArguments(dataset_name=str(tmp_path / "qa")), args, "base")["credentialed"] is True
    # ... and so does an evaluation on it (metrics.json's meta).
    from radtune.common.metrics.io import write_metrics

    written = write_metrics(tmp_path / "eval", {"accuracy": 0.5}, task="vqa", model="m", dataset=str(tmp_path / "qa"))
    assert json.loads(written.read_text())["meta"]["credentialed"] is True


def test_a_public_push_of_a_credentialed_build_is_refused_before_building(tmp_path):
    from radtune.dataprep.build_cli import build

    args = ["mimic-cxr", str(make_mimic(tmp_path / "src")), str(tmp_path / "out"), "--push-to-hub", "me/x"]
    result = CliRunner().invoke(build, [*args, "--public"])
    assert result.exit_code != 0 and "credentialed data" in result.output and "Leave out --public" in result.output
    assert not (tmp_path / "out").exists()


def test_a_public_push_of_qa_from_credentialed_data_is_refused_before_generating(tmp_path):
    dataset = make_report_dataset(tmp_path / "mimic", n=2, source="mimic-cxr")
    args = [str(dataset), str(tmp_path / "qa"), "--generator", "rules", "--push-to-hub", "me/qa", "--public"]
    result = CliRunner().invoke(qa, args)
    assert result.exit_code != 0 and "credentialed data (mimic-cxr)" in result.output
    assert "Leave out --public" in result.output and not (tmp_path / "qa").exists()


def test_a_phantom_build_is_not_marked(tmp_path):
    dataset = make_report_dataset(tmp_path / "phantom", n=2, source="phantom")
    from radtune.common.run import RunArguments, run_info

    assert (
        run_info("vqa", RunArguments(dataset_name=str(dataset)), SimpleNamespace(seed=1), None)["credentialed"]
        is False
    )
    result = CliRunner().invoke(qa, [str(dataset), str(tmp_path / "qa"), "--generator", "rules"])
    assert result.exit_code == 0, result.output
    assert "credentialed" not in parse_card_metadata((tmp_path / "qa" / "README.md").read_text())
    assert json.loads((tmp_path / "qa" / "qa_report.json").read_text())["credentialed"] is False


def test_redact_url_credentials():
    assert redact_url_credentials("http://user:PASS@host:8/v1") == "http://[REDACTED]@host:8/v1"
    assert (
        redact_url_credentials("--base-url https://tok@example.org/x --y")
        == "--base-url https://[REDACTED]@example.org/x --y"
    )
    assert (
        redact_url_credentials("http://u:p@ss@host/x") == "http://[REDACTED]@host/x"
    )  # an unescaped @ in the password
    assert redact_url_credentials("http://plain.org/a@b and mail me@x.org") == "http://plain.org/a@b and mail me@x.org"


def test_a_password_inside_the_base_url_is_written_nowhere(tmp_path, monkeypatch):
    dataset = make_report_dataset(tmp_path / "data", n=2, source="phantom")
    monkeypatch.setenv(KEY_ENV, "sk-test")
    with FakeOpenAI() as fake:
        url = fake.base_url.replace("http://", f"http://me:{PASSWORD}@")
        result = CliRunner().invoke(qa, _qa_args(dataset, tmp_path / "out", url, "--provider", "compatible"))
        assert result.exit_code == 0, result.output
        assert len(fake.chat_requests()) == 4
    report = json.loads((tmp_path / "out" / "qa_report.json").read_text())
    assert report["base_url"] == fake.base_url.replace("http://", "http://[REDACTED]@")
    assert PASSWORD not in result.output
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path

    # A run where every report fails prints the command that retries them: without the password.
    def unauthorised(fake, body, attempt):
        return 401, {"error": {"message": f"bad credentials for {url}", "type": "invalid_request_error"}}

    with FakeOpenAI(script=unauthorised) as fake:
        url = fake.base_url.replace("http://", f"http://me:{PASSWORD}@")
        result = CliRunner().invoke(qa, _qa_args(dataset, tmp_path / "failed", url, "--provider", "compatible"))
    assert result.exit_code != 0
    assert PASSWORD not in result.output and "[REDACTED]@" in result.output
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".md", ".sqlite"):
            assert PASSWORD.encode() not in path.read_bytes(), path


_PUSHES = textwrap.dedent(
    """
    import json, sys
    from click.testing import CliRunner
    from radtune.dataprep.build_cli import push
    from radtune.common.hub_cli import hub
    out = {}
    for name, command, args in json.loads(sys.argv[1]):
        result = CliRunner().invoke(push if command == "data-push" else hub, args)
        out[name] = {"rc": result.exit_code, "output": result.output}
    print(json.dumps(out))
    """
)


@pytest.mark.slow
def test_credentialed_datasets_are_never_pushed_public(hub_server, tmp_path):
    mimic = make_report_dataset(tmp_path / "mimic", n=2, source="mimic-cxr")
    phantom = make_report_dataset(tmp_path / "phantom", n=2, source="phantom")
    user = "radtune-tester"
    steps = [
        ("public", "data-push", [str(mimic), f"{user}/mimic-public", "--public"]),
        ("hub_public", "hub", ["push", str(mimic), f"{user}/mimic-hub", "--repo-type", "dataset", "--public"]),
        ("private", "data-push", [str(mimic), f"{user}/mimic-private"]),
        ("shared_public", "data-push", [str(phantom), f"{user}/shared", "--public"]),
        ("into_public_repo", "data-push", [str(mimic), f"{user}/shared"]),
    ]
    env = {**os.environ, **hub_server.client_env(tmp_path / "hf-home")}

    def run(batch):
        done = subprocess.run([sys.executable, "-c", _PUSHES, json.dumps(batch)], env=env, capture_output=True,
                              text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr[-4000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    runs = run(steps[:4])
    repos = hub_server.state.repos
    shared = repos[("dataset", f"{user}/shared")]
    commits = dict(shared.commits)
    runs |= run(steps[4:])

    for name in ("public", "hub_public"):
        assert runs[name]["rc"] != 0 and "credentialed data" in runs[name]["output"], runs[name]
        assert "leave out --public" in runs[name]["output"]
    assert ("dataset", f"{user}/mimic-public") not in repos and ("dataset", f"{user}/mimic-hub") not in repos

    assert runs["private"]["rc"] == 0, runs["private"]["output"]
    assert repos[("dataset", f"{user}/mimic-private")].private is True

    assert runs["shared_public"]["rc"] == 0, runs["shared_public"]["output"]
    assert runs["into_public_repo"]["rc"] != 0 and "already exists and is public" in runs["into_public_repo"]["output"]
    assert shared.private is False and shared.commits == commits  # refused before anything was committed


def test_common_knows_the_same_credentialed_sources_as_dataprep():
    from radtune.common.credentialed import CREDENTIALED_SOURCES

    assert CREDENTIALED_SOURCES == {name for name, info in SOURCES.items() if info.credentialed}
