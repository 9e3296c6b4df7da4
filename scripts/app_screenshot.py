"""A screenshot of `radtune app`'s evaluation browser (for the README), taken with headless Chromium.

Starts `radtune app RUN` on a free loopback port, waits until it answers, opens `?tab=evaluation` in Debian's
`chromium` (`apt-get install -y chromium`) and writes a PNG, then stops the app.

    python scripts/app_screenshot.py                                  # runs/demo/llava → docs/app_evaluation.png
    python scripts/app_screenshot.py runs/demo/caption --out /tmp/caption-app.png --tab "try the model"
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, server: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"radtune app exited with {server.returncode} before serving")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    sys.exit(f"radtune app did not answer at {url} within {timeout_s:.0f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", default=str(ROOT / "runs" / "demo" / "llava"), help="Run folder or repo.")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "app_evaluation.png", help="PNG to write.")
    parser.add_argument("--tab", default="evaluation", help="Tab to open (the start of its label).")
    parser.add_argument("--size", default="1280,1000", help="Window size, WIDTH,HEIGHT.")
    parser.add_argument("--timeout", type=float, default=300, help="Seconds to wait for the app to start.")
    args = parser.parse_args(argv)
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        sys.exit("no chromium on the PATH: apt-get install -y chromium")
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    radtune = Path(sys.executable).with_name("radtune")
    server = subprocess.Popen([str(radtune), "app", args.run, "--port", str(port)])
    try:
        wait_until_up(url, server, args.timeout)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--window-size={args.size}", "--virtual-time-budget=20000", f"--screenshot={args.out}",
                        f"{url}?tab={args.tab}"], check=True, capture_output=True, timeout=120)  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
