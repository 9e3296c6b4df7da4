"""A persistent SQLite cache of generated question–answer pairs, so an interrupted run resumes for free.

Each completed request is committed on its own (WAL journal), so even `kill -9` loses at most the requests
in flight. The key is model + prompt version + number of pairs + the hash of the (scrubbed) report text:
a changed prompt or model never reuses an old answer. Failures are kept apart and are tried again by the
next run, so rerunning the same command asks exactly the reports that failed or were never asked. The cache
holds no API key and no request headers. `radtune data qa` keeps it beside its output (`OUT_DIR.qa_cache.sqlite`,
`pipeline.default_cache_path`), never inside: the output folder is replaced as a whole once complete.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    report_hash TEXT NOT NULL,
    pairs TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    batch INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS failures (
    key TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    keys TEXT NOT NULL,
    created REAL NOT NULL
);
"""


def report_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cache_key(model: str, prompt_version: str, n: int, text: str) -> str:
    """The cache key of one request: what makes two requests the same."""
    return hashlib.sha256(f"{model}\0{prompt_version}\0{n}\0{report_hash(text)}".encode()).hexdigest()


class QACache:
    """The cache file (or `":memory:"`).

    Args:
        path (`str` or `Path`): the SQLite file; created with its folder when missing.
    """

    def __init__(self, path: str | Path):
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.connection = sqlite3.connect(str(path))
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.executescript(_SCHEMA)
        self.connection.commit()

    def get(self, key: str) -> dict | None:
        """The stored result of `key` (`pairs`, token counts, `batch`), or `None`."""
        row = self.connection.execute(
            "SELECT pairs, prompt_tokens, completion_tokens, batch FROM results WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        return {
            "pairs": json.loads(row[0]),
            "prompt_tokens": row[1],
            "completion_tokens": row[2],
            "batch": bool(row[3]),
        }

    def put(
        self,
        key: str,
        *,
        model: str,
        prompt_version: str,
        text: str,
        pairs: list[dict],
        prompt_tokens: int,
        completion_tokens: int,
        batch: bool = False,
    ) -> None:
        """Store a completed request and commit at once."""
        with self.connection:
            self.connection.execute(
                "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, model, prompt_version, report_hash(text), json.dumps(pairs), prompt_tokens, completion_tokens,
                 int(batch), time.time()),
            )  # fmt: skip
            self.connection.execute("DELETE FROM failures WHERE key = ?", (key,))

    def put_failure(self, key: str, reason: str, prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        """Record why `key` failed (the next run tries it again)."""
        with self.connection:
            self.connection.execute(
                "INSERT OR REPLACE INTO failures VALUES (?, ?, ?, ?, ?)",
                (key, reason, prompt_tokens, completion_tokens, time.time()),
            )

    def failure(self, key: str) -> str | None:
        row = self.connection.execute("SELECT reason FROM failures WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def count(self) -> int:
        return self.connection.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def add_batch(self, batch_id: str, keys: list[str]) -> None:
        """Remember a submitted Batch API job so a restarted run polls it instead of submitting again."""
        with self.connection:
            self.connection.execute(
                "INSERT OR REPLACE INTO batches VALUES (?, ?, ?)", (batch_id, json.dumps(keys), time.time())
            )

    def pending_batches(self) -> dict[str, list[str]]:
        rows = self.connection.execute("SELECT batch_id, keys FROM batches ORDER BY created").fetchall()
        return {batch_id: json.loads(keys) for batch_id, keys in rows}

    def remove_batch(self, batch_id: str) -> None:
        with self.connection:
            self.connection.execute("DELETE FROM batches WHERE batch_id = ?", (batch_id,))

    def close(self) -> None:
        self.connection.close()
