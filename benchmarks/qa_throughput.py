"""How close `radtune data qa --generator openai` comes to the ideal throughput of an API with a fixed latency.

    python benchmarks/qa_throughput.py                          # 256 reports, 1 s latency, concurrency 16
    python benchmarks/qa_throughput.py --reports 128 --delay 0.25 --concurrency 32

The default latency of 1 s is on the short side of a real structured-output completion of five pairs (a few
seconds); shorter delays weigh the client's fixed cost per request (a few ms of CPU) more.

A local OpenAI-compatible server (stdlib, one thread per connection, in its own process so that it does not share
the client's interpreter) answers every chat completion with valid structured output after `--delay` seconds. The
generator (the command's own code: scrubbing, cache, the `openai` client's `chat.completions.parse`, validation)
runs against it with an in-memory cache, and this prints:

(a) wall time / (N x delay / concurrency)              target <= 1.2
    the denominator is the time an ideal client needs with `concurrency` requests always in flight;
(b) speed-up over one request at a time at the same N  target >= 10 at concurrency 16
    measured on --sequential-reports reports and scaled to N (the sequential run costs N x delay).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from radtune.dataprep.qa.cache import QACache
from radtune.dataprep.qa.openai_generator import OpenAIQAGenerator
from radtune.dataprep.qa.pricing import Usage


def serve(delay: float) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            n = int(re.search(r"exactly (\d+)", body["messages"][0]["content"]).group(1))
            report = body["messages"][1]["content"]
            pairs = [
                {"question": f"Question {i} about {report[-12:]}?", "answer": "Yes.", "answer_type": "closed",
                 "category": "presence"}
                for i in range(n)
            ]  # fmt: skip
            time.sleep(delay)
            data = json.dumps({
                "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": json.dumps({"pairs": pairs})}}],
                "usage": {"prompt_tokens": 300, "completion_tokens": 120, "total_tokens": 420},
            }).encode()  # fmt: skip
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 256  # the listen backlog: the default 5 refuses bursts of new connections

    return Server(("127.0.0.1", 0), Handler)


def start_server_process(delay: float) -> tuple[subprocess.Popen, str]:
    """Run `serve` in a child process; returns it and the base URL it listens on."""
    port_file = Path(tempfile.mkdtemp()) / "port"
    process = subprocess.Popen([sys.executable, __file__, "--serve", str(port_file), "--delay", str(delay)])
    deadline = time.monotonic() + 60
    while not port_file.exists():
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError("the benchmark server did not start")
        time.sleep(0.05)
    return process, f"http://127.0.0.1:{port_file.read_text()}/v1"


def measure(base_url: str, reports: int, concurrency: int, sequential_reports: int) -> tuple[float, float]:
    """Wall seconds of `reports` reports at `concurrency`, and of `sequential_reports` one at a time.

    One client serves both runs, after a warm-up of `concurrency` requests that opens its connections, as in a
    real run, where the client's start-up is spread over the whole dataset.
    """
    from openai import AsyncOpenAI

    async def timed(generator, items, concurrency) -> float:
        started = time.perf_counter()
        results = await generator.run(items, concurrency=concurrency)
        elapsed = time.perf_counter() - started
        failed = [r for r in results if r.pairs is None]
        if failed:
            raise RuntimeError(f"{len(failed)} requests failed, e.g. {failed[0].reason}")
        return elapsed

    def items(count: int, tag: str) -> list[tuple[str, str]]:
        return [(f"{tag}{i}", f"Report {tag} {i}: small left pleural effusion.") for i in range(count)]

    async def main() -> tuple[float, float]:
        client = AsyncOpenAI(api_key="bench", base_url=base_url, max_retries=0, timeout=60)
        generator = OpenAIQAGenerator(client, "bench-model", 5, QACache(":memory:"), usage=Usage())
        async with client:
            await timed(generator, items(concurrency, "warm"), concurrency)
            concurrent = await timed(generator, items(reports, "c"), concurrency)
            sequential = await timed(generator, items(sequential_reports, "s"), 1)
        return concurrent, sequential

    return asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reports", type=int, default=256, help="Reports in the concurrent run.")
    parser.add_argument("--delay", type=float, default=1.0, help="Seconds the server takes per request.")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--sequential-reports", type=int, default=8, help="Reports in the one-at-a-time run.")
    parser.add_argument("--serve", metavar="PORT_FILE", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()

    if args.serve:
        server = serve(args.delay)
        Path(args.serve + ".tmp").write_text(str(server.server_address[1]))
        Path(args.serve + ".tmp").rename(args.serve)
        server.serve_forever()
        return

    process, base_url = start_server_process(args.delay)
    try:
        concurrent, sequential = measure(base_url, args.reports, args.concurrency, args.sequential_reports)
    finally:
        process.terminate()
        process.wait()
    ideal = args.reports * args.delay / args.concurrency
    per_request_sequential = sequential / args.sequential_reports
    speed_up = per_request_sequential * args.reports / concurrent

    print(f"reports={args.reports} delay={args.delay}s concurrency={args.concurrency}")
    print(f"concurrent wall: {concurrent:.2f}s   ideal (N x delay / concurrency): {ideal:.2f}s")
    print(f"sequential: {per_request_sequential * 1000:.0f} ms per request ({args.delay * 1000:.0f} ms server delay)")
    print(f"(a) wall / ideal = {concurrent / ideal:.3f}   (target <= 1.2)")
    print(f"(b) speed-up over one at a time = {speed_up:.1f}x   (target >= 10x at concurrency 16)")


if __name__ == "__main__":
    main()
