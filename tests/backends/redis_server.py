"""What the Redis adapters' tests share: a redis-server of a test's own (on a
free port, never the shared server: the tests stop, pause and restart it),
the clean-up of a test's keys on the shared one, and the check that a call
fails fast."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from imchat.backends.base import BackendUnavailable
from tests.support.waiting import free_port


def drop_test_keys(url: str, unique: str) -> None:
    """Delete every imchat key of this test run (its ids all carry ``unique``)."""
    client = redis.Redis.from_url(url)
    try:
        for key in client.scan_iter(match=f"imchat:*{unique}*", count=500):
            client.delete(key)
    finally:
        client.close()


def raises_unavailable_quickly(call: Callable[[], object], within: float) -> None:
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as caught:
        call()
    assert caught.value.backend == "redis"
    assert time.monotonic() - started < within


class PrivateRedis:
    """A redis-server of this test's own, on a free port, that it may stop and restart."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed (scripts/test-services installs it)"
        # No persistence: a restart comes back empty, like a lost Redis.
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(
            [binary, *args, "--dir", str(self._workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        client = redis.Redis.from_url(self.url, socket_timeout=0.5)
        try:
            deadline = time.monotonic() + 5
            while True:
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is None:
            return
        os.kill(self.proc.pid, signal.SIGCONT)  # in case a test left it paused
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def command(self, *args: str) -> object:
        client = redis.Redis.from_url(self.url, decode_responses=True)
        try:
            return client.execute_command(*args)
        finally:
            client.close()
