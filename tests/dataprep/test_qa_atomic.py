"""`radtune data qa` is atomic and loud: OUT_DIR holds a complete QA dataset (card and report included) or nothing
new, whatever moment a kill lands; too many failed reports exit non-zero with the command that retries only them; a
push the Hub does not take ends in a short error once the dataset is safely saved.

The kill during generation (and its resume) is in test_qa_resume.py.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys

import pytest
from click.testing import CliRunner
from qa_fake_openai import FakeOpenAI, completion, make_report_dataset

from radtune.dataprep.qa_cli import qa

KEY = "sk-right-key"


def _openai_args(dataset, out, base_url, *extra):
    return [str(dataset), str(out), "--generator", "openai", "--provider", "compatible", "--base-url", base_url,
            "--model", "test-model", "--api-key-env", "RADTUNE_TEST_KEY", "--n-per-report", "2", "--concurrency", "2",
            "--max-retries", "0", "--timeout", "10", *extra]  # fmt: skip


def _invoke(args, key=KEY):
    return CliRunner(env={"RADTUNE_TEST_KEY": key}).invoke(qa, args)


def _staging(tmp_path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir() if ".qa-building-" in p.name)


def _assert_complete(out, rows):
    from datasets import load_from_disk

    saved = load_from_disk(str(out))
    assert {name: len(split) for name, split in saved.items()} == rows
    assert "visual-question-answering" in (out / "README.md").read_text()
    report = json.loads((out / "qa_report.json").read_text())
    assert report["rows"] == rows and report["status"] == "ok"
    return report


def _assert_nothing_loads(out):
    from datasets import load_from_disk

    with pytest.raises(FileNotFoundError):
        load_from_disk(str(out))


# The command in a fresh interpreter that SIGKILLs itself at one moment of the save.
_KILLED_AT = """
import os, signal, sys

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

hook = sys.argv[1]
if hook == "mid-save":  # the first split written, the second one starting
    from datasets import Dataset

    real_save, calls = Dataset.save_to_disk, []

    def save(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            die()
        return real_save(self, *args, **kwargs)

    Dataset.save_to_disk = save
elif hook == "saved-not-moved":  # dataset, card and report written, not yet renamed into place
    from radtune.dataprep.qa import pipeline

    pipeline._move_into_place = die
elif hook == "between-renames":  # --overwrite: the old OUT_DIR moved aside, the new one not yet in place
    real_replace = os.replace

    def replace(src, dst, **kwargs):
        real_replace(src, dst, **kwargs)
        if str(dst).endswith("previous"):
            die()

    os.replace = replace
from radtune.dataprep.qa_cli import qa

qa(sys.argv[2:])
"""


@pytest.mark.parametrize("hook", ["mid-save", "saved-not-moved", "between-renames"])
def test_kill_during_the_save_leaves_nothing_partial_and_the_rerun_completes_from_the_cache(tmp_path, hook):
    dataset = make_report_dataset(tmp_path / "data", n=3)
    out = tmp_path / "out"
    rows = {"train": 3 * 2, "test": 3 * 2}  # two pairs per report, one per row
    with FakeOpenAI() as fake:
        extra = []
        if hook == "between-renames":
            result = _invoke(_openai_args(dataset, out, fake.base_url))
            assert result.exit_code == 0, result.output
            extra = ["--overwrite", "--format", "prompt-completion"]
        asked = len(fake.chat_requests())
        env = {**os.environ, "RADTUNE_TEST_KEY": KEY, "TQDM_DISABLE": "1"}
        killed = subprocess.run(
            [sys.executable, "-c", _KILLED_AT, hook, *_openai_args(dataset, out, fake.base_url, *extra)],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
        assert len(fake.chat_requests()) == 6  # every report was answered (and cached) before the kill
        _assert_nothing_loads(out)
        assert not out.exists()
        assert len(_staging(tmp_path)) == 1  # what the killed run left

        # The rerun needs no --overwrite, asks nothing (all answers are cached) and removes the killed run's folder.
        asked = len(fake.chat_requests())
        result = _invoke(_openai_args(dataset, out, fake.base_url, *extra[1:]))
        assert result.exit_code == 0, result.output
        assert len(fake.chat_requests()) == asked
        assert "cached reports: 6" in result.output
    report = _assert_complete(out, rows)
    assert report["form"] == ("prompt-completion" if extra else "messages")
    assert _staging(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "out", "out.qa_cache.sqlite"]


def test_a_wrong_key_fails_loudly_and_the_printed_command_retries_only_the_failures(tmp_path):
    dataset = make_report_dataset(tmp_path / "data", n=3)
    out = tmp_path / "out"

    def checks_the_key(fake, body, attempt):
        headers = {name.lower(): value for name, value in fake.chat_requests()[-1]["headers"].items()}
        if headers.get("authorization") != f"Bearer {KEY}":
            return 401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                                   "code": "invalid_api_key"}}  # fmt: skip
        return None

    with FakeOpenAI(script=checks_the_key, delay=0.01) as fake:
        # Every report fails: non-zero, even when any fraction of failures is allowed, and nothing is written.
        for extra in ([], ["--max-failure-fraction", "1"]):
            result = _invoke(_openai_args(dataset, out, fake.base_url, *extra), key="sk-wrong")
            assert result.exit_code == 1, result.output
            assert "no question–answer pairs were generated from 6 report(s)" in result.output
            assert "6 × AuthenticationError" in result.output and "401" in result.output
            assert "Traceback" not in result.output
            assert not out.exists()
        assert len(fake.chat_requests()) == 12
        failed = json.loads((tmp_path / "out.qa_report.json").read_text())
        assert failed["status"] == "failed" and len(failed["failures"]) == 6 and failed["reports_with_pairs"] == 0

        # The message ends with the command to run once the key is fixed; it asks only the 6 failed reports.
        assert "this retries only the 6 failed report(s)" in result.output
        retry = shlex.split(result.output.strip().splitlines()[-1])
        assert retry[:3] == ["radtune", "data", "qa"] and "--overwrite" not in retry
        result = _invoke(retry[3:])
        assert result.exit_code == 0, result.output
        assert len(fake.chat_requests()) == 12 + 6
    _assert_complete(out, {"train": 6, "test": 6})
    assert not (tmp_path / "out.qa_report.json").exists()  # the failed run's report goes once the run succeeds


def test_failures_above_the_fraction_write_nothing_and_below_it_write_the_rest(tmp_path):
    dataset = make_report_dataset(tmp_path / "data", n=6)  # 12 reports: Study 0-5 in train, 6-11 in test
    out = tmp_path / "out"
    broken = {"on": True}

    def malformed_for_study_3(fake, body, attempt):
        if broken["on"] and "Study 3:" in body["messages"][1]["content"]:
            return 200, completion("these are not the pairs you asked for")
        return None

    with FakeOpenAI(script=malformed_for_study_3) as fake:
        # 1 of 12 failed (8.3% > 5%): non-zero, nothing written, and the fraction that would keep the rest.
        result = _invoke(_openai_args(dataset, out, fake.base_url))
        assert result.exit_code == 1, result.output
        assert "1 of 12 report(s) failed (8.3%, more than the 5.0% allowed)" in result.output
        assert "invalid output after one re-ask" in result.output
        assert "add --max-failure-fraction 0.09" in result.output
        assert not out.exists()
        assert len(fake.chat_requests()) == 11 + 2  # the failed report was asked, then re-asked once

        # Allowed: the 11 good reports are written (from the cache), the failed one asked again and listed.
        result = _invoke(_openai_args(dataset, out, fake.base_url, "--max-failure-fraction", "0.09"))
        assert result.exit_code == 0, result.output
        assert len(fake.chat_requests()) == 13 + 2
        assert "1 report(s) failed" in result.output
        report = _assert_complete(out, {"train": 5 * 2, "test": 6 * 2})
        assert [failure["id"] for failure in report["failures"]] == ["img-3"]
        assert report["failure_fraction"] == pytest.approx(1 / 12, abs=1e-6)

        # The printed command (with --overwrite, since OUT_DIR now holds the dataset) asks only that report.
        broken["on"] = False
        retry = shlex.split(result.output.split("this retries only the 1 failed report(s)")[1].splitlines()[1])
        assert retry[-1] == "--overwrite"
        result = _invoke(retry[3:])
        assert result.exit_code == 0, result.output
        assert len(fake.chat_requests()) == 15 + 1
    report = _assert_complete(out, {"train": 12, "test": 12})
    assert report["failures"] == []


def test_rules_on_reports_without_text_generate_nothing_and_exit_non_zero(tmp_path):
    from datasets import load_from_disk

    data = load_from_disk(str(make_report_dataset(tmp_path / "data", n=2)))
    data.map(lambda row: {"text": "", "findings": "", "impression": ""}).save_to_disk(str(tmp_path / "blank"))
    result = CliRunner().invoke(qa, [str(tmp_path / "blank"), str(tmp_path / "out"), "--generator", "rules"])
    assert result.exit_code == 1, result.output
    assert "no question–answer pairs were generated from 4 report(s) (4 failed: 4 × empty report)" in result.output
    assert "retries" not in result.output  # a rerun cannot give an empty report text
    assert not (tmp_path / "out").exists()


def test_out_dir_that_is_not_a_dataset_and_a_cache_inside_it_are_refused(tmp_path):
    dataset = make_report_dataset(tmp_path / "data", n=2)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep me")
    result = CliRunner().invoke(qa, [str(dataset), str(tmp_path / "notes"), "--generator", "rules"])
    assert result.exit_code == 1 and "is not a dataset" in result.output and "--overwrite" in result.output
    assert (tmp_path / "notes" / "mine.txt").read_text() == "keep me"

    result = _invoke(_openai_args(dataset, tmp_path / "out", "http://127.0.0.1:9/v1", "--cache",
                                  str(tmp_path / "out" / "cache.sqlite")))  # fmt: skip
    assert result.exit_code == 1 and "must be outside" in result.output
    assert not (tmp_path / "out").exists()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("hub", ["unreachable", "refusing"])
def test_a_push_the_hub_does_not_take_is_a_short_error_after_the_dataset_is_saved(tmp_path, hub, request):
    dataset = make_report_dataset(tmp_path / "data", n=2)
    out = tmp_path / "out"
    if hub == "unreachable":
        hub_env = {"HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}", "HF_TOKEN": "hf_anything",
                   "HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf-home")}  # fmt: skip
    else:
        hub_env = {**request.getfixturevalue("hub_server").client_env(tmp_path / "hf-home"), "HF_TOKEN": "hf_wrong"}
    env = {**os.environ, **hub_env, "TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    command = "from radtune.dataprep.qa_cli import qa; qa()"
    pushed = subprocess.run(
        [sys.executable, "-c", command, str(dataset), str(out), "--generator", "rules", "--push-to-hub", "me/qa"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert pushed.returncode == 1, pushed.stderr[-3000:]
    assert "Traceback" not in pushed.stderr
    error = pushed.stderr.strip().splitlines()[-2:]
    assert error[0].startswith(f"Error: the QA dataset is saved in {out}, but pushing it to me/qa failed: ")
    assert ("could not reach the Hub" if hub == "unreachable" else "HTTP 401") in error[0]
    assert error[1] == f"Push it later with: radtune data push {out} me/qa"
    from datasets import load_from_disk

    saved = load_from_disk(str(out))
    assert set(saved) == {"train", "test"} and (out / "README.md").is_file() and (out / "qa_report.json").is_file()


def test_only_staging_folders_no_live_run_holds_are_removed(tmp_path):
    from radtune.dataprep.qa import pipeline

    out = tmp_path / "out"
    killed = tmp_path / ".out.qa-building-deadbeef"  # a killed run's: nobody holds its lock
    (killed / "dataset").mkdir(parents=True)
    (killed / ".lock").touch()
    other = tmp_path / ".other.qa-building-deadbeef"  # another output's
    other.mkdir()
    with pipeline._staging_folder(out) as live:
        assert pipeline._remove_stale_staging(out) == [killed]
        assert live.is_dir() and other.is_dir() and not killed.exists()
    assert not live.exists() and other.is_dir()
