"""/metrics: every family moves when its event happens, and adds up across
gunicorn workers in multiprocess mode."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.clients import register_users
from tests.support.server import ROOT, EmbeddedServer, run_server
from tests.support.sockets import RawSocket
from tests.support.waiting import free_port

pytestmark = pytest.mark.e2e


def scrape(
    base_url: str, token: str | None = None
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    request = urllib.request.Request(base_url + "/metrics")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_every_family_moves(embedded_server: EmbeddedServer) -> None:
    alice, bob = register_users(embedded_server.base_url, 2)
    a = RawSocket(embedded_server.base_url, alice.token)
    b = RawSocket(embedded_server.base_url, bob.token)
    try:
        a.recv_type("synced"), b.recv_type("synced")
        before = scrape(embedded_server.base_url)
        a.send({"type": "send", "id": "m1", "to": bob.user_id, "body": "hi"})
        a.recv_type("ack")
        msg = b.recv_type("msg")
        b.send({"type": "delivered", "conversation_id": msg["conversation_id"], "seq": msg["seq"]})
        a.send("not json")
        a.recv_type("error")
        b.ping()
        after = scrape(embedded_server.base_url)
    finally:
        a.close(), b.close()

    def grew(name: str, **labels: str) -> bool:
        return value(after, name, **labels) > value(before, name, **labels)

    assert value(after, "imchat_connections") >= 2
    assert grew("imchat_messages_accepted_total", kind="direct")
    assert grew("imchat_messages_delivered_total", via="live")
    assert grew("imchat_history_stored_total")
    assert grew("imchat_pending_confirmed_total")
    assert grew("imchat_ack_latency_seconds_count")
    assert grew("imchat_delivery_latency_seconds_count")
    assert grew("imchat_errors_total", code="bad_request", where="ws")
    assert grew("imchat_bus_batch_seconds_count")
    assert grew("imchat_task_seconds_count", task="imchat.move_marks")
    assert grew("imchat_route_lookups_total")
    assert ("imchat_bus_consumer_lag", ()) in after


def test_http_errors_are_counted(embedded_server: EmbeddedServer) -> None:
    before = value(
        scrape(embedded_server.base_url), "imchat_errors_total", code="not_found", where="http"
    )
    urllib.request.urlopen(embedded_server.base_url + "/healthz").close()
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(embedded_server.base_url + "/no/such/page")
    after = value(
        scrape(embedded_server.base_url), "imchat_errors_total", code="not_found", where="http"
    )
    assert after == before + 1


def test_gunicorn_workers_add_up(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMCHAT_")}
    env.update(IMCHAT_DATA_DIR=str(tmp_path / "var"), IMCHAT_METRICS_DIR=str(tmp_path / "metrics"))
    env.update(IMCHAT_REGISTER_LIMIT_PER_ADDRESS="0", IMCHAT_LOGIN_LIMIT_PER_ADDRESS="0")
    env.update(IMCHAT_PASSWORD_HASH_TIME_COST="1", IMCHAT_PASSWORD_HASH_MEMORY_KIB="1024")
    # Migrated first: two workers must not race to create the SQLite schema.
    subprocess.run([sys.executable, "-m", "imchat", "db", "upgrade"], env=env, cwd=ROOT, check=True)
    argv = [sys.executable, "-m", "gunicorn", "-k", "gevent", "--workers", "2"]
    argv += ["-c", "deploy/gunicorn.conf.py", "--bind", f"127.0.0.1:{port}", "app:app"]
    server = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    sockets: list[RawSocket] = []
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                scrape(base)
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        # Whichever worker answers a scrape, the gauge counts every worker's sockets.
        users = register_users(base, 20)
        sockets = [RawSocket(base, user.token) for user in users]
        for sock in sockets:
            sock.recv_type("synced")
        counts = {value(scrape(base), "imchat_connections") for _ in range(10)}
        assert counts == {20.0}
    finally:
        for sock in sockets:
            sock.close()
        server.terminate()
        server.wait(10)


METRICS_TOKEN = "metrics-" + "x" * 32


@pytest.fixture(scope="module")
def guarded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    env = {"IMCHAT_METRICS_TOKEN": METRICS_TOKEN}
    yield from run_server(tmp_path_factory.mktemp("guarded-metrics"), env)


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        f"Bearer {METRICS_TOKEN[:-1]}",
        f"Bearer {METRICS_TOKEN}x",
        f"Basic {METRICS_TOKEN}",
        METRICS_TOKEN,
        "Bearer \u00e9t\u00e9",
    ],
)
def test_metrics_token_is_required_when_set(
    guarded_server: EmbeddedServer, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = requests.get(guarded_server.base_url + "/metrics", headers=headers, timeout=5)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert response.headers["Cache-Control"] == "no-store"
    assert "imchat_" not in response.text


def test_metrics_with_the_token_and_health_without(guarded_server: EmbeddedServer) -> None:
    samples = scrape(guarded_server.base_url, METRICS_TOKEN)
    assert ("imchat_bus_consumer_lag", ()) in samples
    lower_scheme = {"Authorization": f"bearer {METRICS_TOKEN}"}
    response = requests.get(guarded_server.base_url + "/metrics", headers=lower_scheme, timeout=5)
    assert response.status_code == 200
    # Only /metrics is guarded: probes stay open.
    for path in ("/healthz", "/readyz"):
        assert requests.get(guarded_server.base_url + path, timeout=5).status_code == 200


@pytest.mark.parametrize(
    ("extra", "starts"),
    [
        ({}, False),
        ({"IMCHAT_METRICS_PUBLIC": "1"}, True),
        ({"IMCHAT_METRICS_TOKEN": METRICS_TOKEN}, True),
    ],
)
def test_production_refuses_to_start_with_open_metrics(
    tmp_path: Path, extra: dict[str, str], starts: bool
) -> None:
    """A real backend configured (here the database) and no token: app.py exits."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMCHAT_")}
    env.update(IMCHAT_DATA_DIR=str(tmp_path / "var"), IMCHAT_SECRET_KEY="k" * 32, **extra)
    env["IMCHAT_DATABASE_URL"] = f"sqlite:///{tmp_path / 'prod.sqlite3'}"
    argv = [sys.executable, "-c", "import app"]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    if starts:
        assert done.returncode == 0, done.stderr
    else:
        assert done.returncode != 0
        assert "IMCHAT_METRICS_TOKEN must be set" in done.stderr
