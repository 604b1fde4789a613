"""`python app.py --host H --port P` on a fresh data dir serves at once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(url: str, timeout: float = 20.0) -> tuple[int, dict[str, object]]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status, json.loads(response.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_embedded_default_serves_health_and_readiness(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMCHAT_")}
    env["IMCHAT_DATA_DIR"] = str(tmp_path / "var")
    server = subprocess.Popen(
        [sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        status, body = wait_for(f"http://127.0.0.1:{port}/healthz")
        assert (status, body) == (200, {"status": "ok"})
        status, body = wait_for(f"http://127.0.0.1:{port}/readyz")
        assert status == 200
        assert body["status"] == "ok"
        # The embedded default migrated its own SQLite file on start-up.
        assert (tmp_path / "var" / "imchat.sqlite3").exists()
    finally:
        server.terminate()
        output = server.communicate(timeout=10)[0].decode()
    assert server.returncode == 0, output  # SIGTERM is a clean stop
