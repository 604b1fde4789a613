"""Flower as the Procfile runs it: bound to 127.0.0.1, basic auth, reading a live worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
import requests

from tests.support.waiting import free_port, wait_for

T = TypeVar("T")
pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BROKER_DB = 11  # a Redis database of its own: the broker's keys stay out of the tests' db 15
AUTH = ("ops", "flower-test-" + uuid.uuid4().hex[:8])


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


@pytest.fixture
def flower(redis_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(Flower's base URL, the worker's name), both on a Redis broker of their own."""
    host = redis_url.split("//", 1)[1].split("/", 1)[0]
    broker = f"redis://{host}/{BROKER_DB}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMCHAT_")}
    env.update(IMCHAT_CELERY_BROKER_URL=broker, PYTHONPATH=str(ROOT))
    worker_name = f"ops-{uuid.uuid4().hex[:8]}@127.0.0.1"
    port = free_port()
    celery = [sys.executable, "-m", "celery", "-A", "tasks"]
    quiet = ["--without-gossip", "--without-mingle", "--loglevel", "INFO"]
    worker_argv = [*celery, "worker", "-n", worker_name, "--pool", "solo", *quiet]
    worker = start(worker_argv, env, tmp_path / "worker.log")
    # As the Procfile starts it: loopback only, basic auth on the dashboard and its API.
    flower_argv = [*celery, "flower", "--address=127.0.0.1", f"--port={port}"]
    flower_argv.append(f"--basic-auth={AUTH[0]}:{AUTH[1]}")
    dashboard = start(flower_argv, env, tmp_path / "flower.log")
    try:
        yield f"http://127.0.0.1:{port}", worker_name
    except BaseException:
        for log in ("worker.log", "flower.log"):
            print(f"--- {log}\n{(tmp_path / log).read_text(errors='replace')[-3000:]}")
        raise
    finally:
        stop(dashboard)
        stop(worker)
        redis.Redis.from_url(broker).flushdb()


def eventually(probe: Callable[[], T], what: str) -> T:
    """``probe()``'s first truthy value; Flower refusing connections is "not yet"."""
    return wait_for(probe, 30.0, what, interval=0.3, ignoring=(requests.ConnectionError,))


def test_flower_lists_the_worker_behind_basic_auth(flower: tuple[str, str]) -> None:
    url, worker_name = flower
    eventually(lambda: requests.get(url + "/healthcheck", timeout=5).ok, "Flower's healthcheck")

    assert requests.get(url + "/api/workers", timeout=5).status_code == 401
    bad = requests.get(url + "/api/workers", auth=(AUTH[0], "wrong"), timeout=5)
    assert bad.status_code == 401

    def workers() -> dict[str, Any]:
        answer = requests.get(url + "/api/workers", auth=AUTH, params={"refresh": 1}, timeout=10)
        assert answer.status_code == 200, answer.text
        listed: dict[str, Any] = answer.json()
        return listed if worker_name in listed else {}

    listed = eventually(workers, f"{worker_name} in Flower's workers")
    registered = listed[worker_name]["registered"]
    assert "imchat.confirm_delivered" in registered


def test_flower_listens_on_loopback_only(flower: tuple[str, str]) -> None:
    url, _ = flower
    eventually(lambda: requests.get(url + "/healthcheck", timeout=5).ok, "Flower's healthcheck")
    port = int(url.rsplit(":", 1)[1])
    listening = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    addresses = [field for field in listening if field.endswith(f":{port}")]
    assert addresses == [f"127.0.0.1:{port}"]
