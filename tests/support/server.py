"""A real ``python app.py`` process in the embedded default, on a port and
data dir of its own, that a test may stop, kill and restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from .waiting import free_port, http_get, wait_for

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 20.0


class EmbeddedServer:
    """One ``python app.py`` process on a fixed port and data dir."""

    def __init__(self, data_dir: Path, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.extra_env = env or {}
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server and wait until /healthz answers."""
        # A clean environment: no IMCHAT_* variable may select a real backend.
        env = {k: v for k, v in os.environ.items() if not k.startswith("IMCHAT_")}
        env["IMCHAT_DATA_DIR"] = str(self.data_dir)
        env.update(self.extra_env)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for(self._healthy, START_TIMEOUT, "/healthz", interval=0.05, ignoring=(OSError,))
        except AssertionError as exc:
            raise RuntimeError(f"server not healthy ({exc}):\n{self.output()}") from None

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.output()}")
        return http_get(self.base_url + "/healthz")[0] == 200

    def stop(self, kill: bool = False) -> None:
        """SIGKILL (a crash) or SIGTERM (a clean stop), then reap the process."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def restart(self, kill: bool = True) -> None:
        """Stop (SIGKILL by default) and start again on the same port and data dir."""
        self.stop(kill=kill)
        with self.log_path.open("a") as log:
            log.write(f"\n----- restart (kill={kill}) -----\n")
        self.start()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_mark(self) -> int:
        """Where the log ends now: ``assert_no_traceback(since=mark)`` looks after it."""
        return len(self.output())

    def tracebacks(self, since: int = 0) -> list[str]:
        """Every traceback the server logged after ``since``, with the lines that follow."""
        lines = self.output()[since:].splitlines()
        return [
            "\n".join(lines[max(i - 2, 0) : i + 30])
            for i, line in enumerate(lines)
            if "Traceback (most recent call last)" in line
        ]

    def assert_no_traceback(self, since: int = 0) -> None:
        found = self.tracebacks(since)
        assert not found, f"{len(found)} traceback(s) in the server log; the first:\n{found[0]}"

    @property
    def secret_key(self) -> str:
        """The embedded server's token-signing secret (generated on first start)."""
        return (self.data_dir / "secret_key").read_text().strip()

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "imchat.sqlite3"


def run_server(tmp: Path, env: dict[str, str] | None = None) -> Iterator[EmbeddedServer]:
    """A started server in ``tmp`` (data dir and log), stopped when the generator ends."""
    server = EmbeddedServer(tmp / "var", tmp / "server.log", env)
    server.start()
    try:
        yield server
    finally:
        server.stop()
