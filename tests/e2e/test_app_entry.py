"""`python app.py --host H --port P` on a fresh data dir serves at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.server import ROOT
from tests.support.waiting import free_port, wait_http

pytestmark = pytest.mark.e2e


def get_json(url: str) -> tuple[int, dict[str, object]]:
    """The first answer of ``url`` that is no HTTP error, its body as JSON."""
    status, body = wait_http(url, timeout=20.0)
    return status, json.loads(body)


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
        status, body = get_json(f"http://127.0.0.1:{port}/healthz")
        assert (status, body) == (200, {"status": "ok"})
        status, body = get_json(f"http://127.0.0.1:{port}/readyz")
        assert status == 200
        assert body["status"] == "ok"
        # The embedded default migrated its own SQLite file on start-up.
        assert (tmp_path / "var" / "imchat.sqlite3").exists()
    finally:
        server.terminate()
        output = server.communicate(timeout=10)[0].decode()
    assert server.returncode == 0, output  # SIGTERM is a clean stop
