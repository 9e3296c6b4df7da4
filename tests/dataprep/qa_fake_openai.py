"""A small threaded OpenAI-compatible server for the QA tests: chat completions and the Batch API.

It records every request (path, headers, JSON body) so tests can count them, answers chat completions with
`n` valid pairs about the report it was sent (or whatever `script` says), and runs batches in memory.
"""

from __future__ import annotations

import email.parser
import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def pairs_for(report: str, n: int) -> list[dict]:
    tag = hashlib.sha1(report.encode()).hexdigest()[:6]
    pairs = [
        {"question": f"Is there a pleural effusion ({tag}-{i})?", "answer": "No.", "answer_type": "closed",
         "category": "presence"}
        for i in range(n)
    ]  # fmt: skip
    if n > 1:
        pairs[-1] = {"question": "What are the main findings?", "answer": "No acute process.", "answer_type": "open",
                     "category": "other"}  # fmt: skip
    return pairs


def completion(content: str, model: str = "test-model", finish_reason: str = "stop") -> dict:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "finish_reason": finish_reason,
                "message": {"role": "assistant", "content": content, "refusal": None},
            }
        ],  # fmt: skip
        "usage": {"prompt_tokens": 100, "completion_tokens": 40, "total_tokens": 140},
    }


def request_n(body: dict) -> int:
    return int(re.search(r"exactly (\d+)", body["messages"][0]["content"]).group(1))


def request_report(body: dict) -> str:
    return body["messages"][1]["content"]


def valid_answer(body: dict) -> dict:
    return completion(json.dumps({"pairs": pairs_for(request_report(body), request_n(body))}), body.get("model"))


class FakeOpenAI:
    """The server. `script(fake, body, attempt)` may return `(status, json_or_bytes[, headers])` to override the
    default answer of a chat completion; `attempt` counts chat requests so far (1-based; 0 inside a batch)."""

    def __init__(self, script=None, delay: float = 0.0, batch_polls: int = 1):
        self.script, self.delay, self.batch_polls = script, delay, batch_polls
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status, payload, headers=None):
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_GET(self):
                fake._record(self, b"")
                self._send(*fake.handle_get(self.path))

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                entry = fake._record(self, raw)
                self._send(*fake.handle_post(self.path, self.headers, raw, entry))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def _record(self, handler, raw: bytes) -> dict:
        try:
            body = json.loads(raw) if raw and "json" in (handler.headers.get("Content-Type") or "") else None
        except json.JSONDecodeError:
            body = None
        entry = {"method": handler.command, "path": handler.path, "headers": dict(handler.headers), "body": body,
                 "raw": raw}  # fmt: skip
        with self.lock:
            self.requests.append(entry)
        return entry

    def chat_requests(self) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["path"].split("?", 1)[0].endswith("/chat/completions")]

    def handle_post(self, path, headers, raw, entry):
        path = path.split("?", 1)[0]
        if path.endswith("/chat/completions"):
            attempt = len(self.chat_requests())
            if self.delay:
                time.sleep(self.delay)
            if self.script is not None:
                scripted = self.script(self, entry["body"], attempt)
                if scripted is not None:
                    return scripted
            return 200, valid_answer(entry["body"])
        if path.endswith("/files"):
            message = email.parser.BytesParser().parsebytes(
                b"Content-Type: " + headers["Content-Type"].encode() + b"\r\n\r\n" + raw
            )
            content = next(part.get_payload(decode=True) for part in message.walk()
                           if part.get_param("name", header="content-disposition") == "file")  # fmt: skip
            file_id = f"file-{len(self.files) + 1}"
            self.files[file_id] = content
            return 200, {"id": file_id, "object": "file", "bytes": len(content), "created_at": 0,
                         "filename": "input.jsonl", "purpose": "batch", "status": "processed"}  # fmt: skip
        if path.endswith("/batches"):
            body = json.loads(raw)
            batch_id = f"batch-{len(self.batches) + 1}"
            self.batches[batch_id] = {"input": body["input_file_id"], "polls": 0, "endpoint": body["endpoint"]}
            return 200, self._batch(batch_id, "validating")
        return 404, {"error": {"message": f"no route {path}"}}

    def _batch(self, batch_id, status, output=None, error=None) -> dict:
        return {"id": batch_id, "object": "batch", "endpoint": self.batches[batch_id]["endpoint"],
                "input_file_id": self.batches[batch_id]["input"], "completion_window": "24h", "status": status,
                "created_at": 0, "output_file_id": output, "error_file_id": error}  # fmt: skip

    def handle_get(self, path):
        match = re.search(r"/batches/([^/?]+)", path)
        if match:
            batch_id = match.group(1)
            job = self.batches[batch_id]
            job["polls"] += 1
            if job["polls"] <= self.batch_polls:
                return 200, self._batch(batch_id, "in_progress")
            if "output" not in job:
                job["output"], job["error"] = self._run_batch(job["input"])
            return 200, self._batch(batch_id, "completed", job["output"], job["error"])
        match = re.search(r"/files/([^/]+)/content", path)
        if match:
            return 200, self.files[match.group(1)]
        return 404, {"error": {"message": f"no route {path}"}}

    def _run_batch(self, input_id):
        outputs, errors = [], []
        for line in self.files[input_id].decode().splitlines():
            request = json.loads(line)
            body = request["body"]
            scripted = self.script(self, body, 0) if self.script is not None else None
            status, payload = scripted[:2] if scripted is not None else (200, valid_answer(body))
            record = {"id": "req", "custom_id": request["custom_id"],
                      "response": {"status_code": status, "request_id": "r", "body": payload}, "error": None}  # fmt: skip
            (outputs if status == 200 else errors).append(json.dumps(record))
        ids = []
        for lines in (outputs, errors):
            if lines:
                file_id = f"file-{len(self.files) + 1}"
                self.files[file_id] = ("\n".join(lines) + "\n").encode()
                ids.append(file_id)
            else:
                ids.append(None)
        return ids


def make_report_dataset(path, n: int = 6, source: str = "phantom", image_size: int = 32):
    """A small `save_to_disk` dataset like `radtune data build` writes: train and test splits of report rows."""
    import numpy as np
    from datasets import Dataset, DatasetDict, Features, Image, List, Value
    from PIL import Image as PILImage

    features = Features({
        "image": Image(), "id": Value("string"), "text": Value("string"), "findings": Value("string"),
        "impression": Value("string"), "patient_id": Value("string"), "study_id": Value("string"),
        "source": Value("string"), "license": Value("string"), "labels": List(Value("string")),
    })  # fmt: skip
    sides = ("left", "right")
    splits = {}
    for split, offset in (("train", 0), ("test", n)):
        rows = []
        for i in range(offset, offset + n):
            side = sides[i % 2]
            findings = f"Study {i}: small {side} pleural effusion. No pneumothorax."
            impression = f"Small {side} pleural effusion."
            pixels = np.full((image_size, image_size), 40 + 10 * (i % 20), dtype=np.uint8)
            rows.append({
                "image": PILImage.fromarray(pixels), "id": f"img-{i}", "text": f"{findings} {impression}",
                "findings": findings, "impression": impression, "patient_id": f"p{i // 2 + 100 * (split == 'test')}",
                "study_id": f"s{i}", "source": source, "license": "cc0-1.0", "labels": ["Pleural Effusion"],
            })  # fmt: skip
        splits[split] = Dataset.from_list(rows, features=features)
    DatasetDict(splits).save_to_disk(str(path))
    return path
