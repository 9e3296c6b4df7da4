"""A run killed half-way (kill -9) and restarted makes exactly the requests that had not completed.

Kills during the save, failure thresholds and the Hub push are in test_qa_atomic.py.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

from click.testing import CliRunner
from qa_fake_openai import FakeOpenAI, make_report_dataset

from radtune.dataprep.qa_cli import qa

N_REPORTS = 40  # 20 per split, every report distinct


def _command(dataset, out, base_url):
    return [
        sys.executable, "-c", "from radtune.dataprep.qa_cli import qa; qa()",
        str(dataset), str(out), "--generator", "openai", "--provider", "compatible", "--base-url", base_url,
        "--model", "test-model", "--api-key-env", "RADTUNE_TEST_KEY", "--concurrency", "2", "--n-per-report", "2",
        "--max-retries", "0", "--timeout", "10",
    ]  # fmt: skip


def _completed(cache_path) -> int:
    if not cache_path.exists():
        return 0
    connection = sqlite3.connect(cache_path)
    try:
        return connection.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    finally:
        connection.close()


def test_killed_run_resumes_with_exactly_the_missing_requests(tmp_path):
    dataset = make_report_dataset(tmp_path / "data", n=N_REPORTS // 2)
    out = tmp_path / "out"
    env = {**os.environ, "RADTUNE_TEST_KEY": "sk-test", "TQDM_DISABLE": "1"}
    hold = {"after": 12}

    def script(fake, body, attempt):
        # Past the 12th request the server stalls, so the kill lands half-way however slow this machine is.
        if hold["after"] is not None and attempt > hold["after"]:
            time.sleep(0.5)
        return None

    with FakeOpenAI(script=script, delay=0.05) as fake:
        process = subprocess.Popen(_command(dataset, out, fake.base_url), env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT)  # fmt: skip
        deadline = time.monotonic() + 60
        while len(fake.chat_requests()) < 12 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait()
        hold["after"] = None
        first_run = len(fake.chat_requests())
        done = _completed(tmp_path / "out.qa_cache.sqlite")  # the cache sits beside OUT_DIR, never inside
        assert process.returncode == -signal.SIGKILL
        assert not out.exists()  # nothing is written to OUT_DIR until the dataset is complete
        assert 10 <= done < N_REPORTS  # really stopped half-way, with work committed
        assert first_run - done <= 2  # at most the requests in flight were lost

        # The restart runs in-process (same code path, no second interpreter start-up).
        result = CliRunner(env={"RADTUNE_TEST_KEY": "sk-test"}).invoke(qa, _command(dataset, out, fake.base_url)[3:])
        assert result.exit_code == 0, result.output
        second_run = len(fake.chat_requests()) - first_run
        assert second_run == N_REPORTS - done
        assert f"cached reports: {done}" in result.output
        # Every report was asked at least once, and only the requests in flight at the kill were repeated.
        reports = [r["body"]["messages"][1]["content"] for r in fake.chat_requests()]
        assert len(set(reports)) == N_REPORTS
        assert len(reports) - N_REPORTS == first_run - done

        # A third run (overwriting the output) asks nothing.
        result = CliRunner(env={"RADTUNE_TEST_KEY": "sk-test"}).invoke(
            qa, _command(dataset, out, fake.base_url)[3:] + ["--overwrite"]
        )
        assert result.exit_code == 0, result.output
        assert len(fake.chat_requests()) == first_run + second_run

    from datasets import load_from_disk

    saved = load_from_disk(str(out))
    assert {name: len(split) for name, split in saved.items()} == {"train": N_REPORTS, "test": N_REPORTS}
