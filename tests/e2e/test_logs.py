"""One message can be followed through the logs by its msg_id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import websocket

from tests.support.clients import register_users
from tests.support.server import ROOT, EmbeddedServer, run_server
from tests.support.sockets import RawSocket
from tests.support.waiting import free_port, wait_for, wait_http

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def tracing_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    env = {"IMCHAT_LOG_LEVEL": "DEBUG", "IMCHAT_LOG_FORMAT": "json"}
    yield from run_server(tmp_path_factory.mktemp("tracing"), env)


def test_a_message_is_traced_from_socket_to_delivery(tracing_server: EmbeddedServer) -> None:
    alice, bob = register_users(tracing_server.base_url, 2)
    a = RawSocket(tracing_server.base_url, alice.token)
    b = RawSocket(tracing_server.base_url, bob.token)
    try:
        a.recv_type("synced"), b.recv_type("synced")
        a.send({"type": "send", "id": "trace-me", "to": bob.user_id, "body": "hi"})
        msg_id = a.recv_type("ack")["msg_id"]
        b.recv_type("msg")
    finally:
        a.close(), b.close()
    lines = [
        json.loads(line) for line in tracing_server.output().splitlines() if line.startswith("{")
    ]
    trail = [line["message"] for line in lines if line.get("msg_id") == msg_id]
    assert trail[0] == "accepted: on the bus"
    assert trail[1].startswith("assigned seq 1, in history, pushed to 1")
    assert trail[2] == "delivered to a socket"
    assert {line["logger"] for line in lines if line.get("msg_id") == msg_id} == {
        "imchat.gateway",
        "imchat.delivery",
    }


def test_a_token_is_in_no_log_of_python_app(tracing_server: EmbeddedServer) -> None:
    """DEBUG logs of a session that connects with ?token= and calls the API."""
    (alice,) = register_users(tracing_server.base_url, 1)
    mark = tracing_server.log_mark()
    sock = RawSocket(tracing_server.base_url, alice.token)
    try:
        sock.recv_type("synced")
        sock.send({"type": "send", "id": "t1", "to": alice.user_id, "body": "me"})
        sock.recv()
    finally:
        sock.close()
    headers = {"Authorization": f"Bearer {alice.token}"}
    url = f"{tracing_server.base_url}/api/v1/users/me?token={alice.token}"
    assert requests.get(url, headers=headers, timeout=5).status_code == 200
    output = tracing_server.output()[mark:]
    assert "accepted: on the bus" in output  # the session was logged at all
    assert alice.token not in output


# Every atom that carries the URL, the query or the credentials' headers.
ACCESS_FORMAT = '%(h)s "%(r)s" %(s)s q=%(q)s raw=%({raw_uri}e)s auth=%({authorization}i)s'


def test_a_token_is_in_no_log_of_gunicorn(tmp_path: Path) -> None:
    """gunicorn as deployed (deploy/gunicorn.conf.py), its access log turned on
    with a format that names every URL-bearing atom: the token of a WebSocket
    upgrade and of an API call is logged as [redacted], everywhere."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMCHAT_")}
    env.update(IMCHAT_DATA_DIR=str(tmp_path / "var"), IMCHAT_LOG_LEVEL="DEBUG")
    env.update(IMCHAT_PASSWORD_HASH_TIME_COST="1", IMCHAT_PASSWORD_HASH_MEMORY_KIB="1024")
    argv = [sys.executable, "-m", "gunicorn", "-k", "gevent", "--workers", "1"]
    argv += ["-c", "deploy/gunicorn.conf.py", "--bind", f"127.0.0.1:{port}", "--no-control-socket"]
    argv += ["--log-level", "debug", "--access-logfile", "-", "--error-logfile", "-"]
    argv += ["--access-logformat", ACCESS_FORMAT]
    argv += ["app:app"]
    log_path = tmp_path / "gunicorn.log"
    base = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        server = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_http(base + "/healthz", timeout=30)
        (alice,) = register_users(base, 1)
        sock = RawSocket(base, alice.token)
        try:
            sock.recv_type("synced")
        finally:
            sock.close()
        # A refused upgrade is an ordinary answer, and logged with its URL.
        ws_url = base.replace("http://", "ws://") + f"/ws?token={alice.token}"
        with pytest.raises(websocket.WebSocketBadStatusException):
            websocket.create_connection(ws_url, timeout=5, origin="https://evil.example")
        headers = {"Authorization": f"Bearer {alice.token}"}
        url = f"{base}/api/v1/users/me?a=1&token={alice.token}&ticket={alice.token}"
        assert requests.get(url, headers=headers, timeout=5).status_code == 200

        def logged() -> bool:
            return "/api/v1/users/me?" in log_path.read_text()

        wait_for(logged, 10, "the access log of the API call")
    finally:
        server.terminate()
        server.wait(10)
    output = log_path.read_text()
    assert alice.token not in output
    lines = output.splitlines()
    upgrade = [line for line in lines if '"GET /ws?' in line]
    assert upgrade and all("token=[redacted]" in line for line in upgrade), output
    api_call = [line for line in lines if '"GET /api/v1/users/me?' in line]
    assert len(api_call) == 1, output
    query = "a=1&token=[redacted]&ticket=[redacted]"
    for part in (
        f"?{query} HTTP/1.1",
        f"q={query}",
        f"raw=/api/v1/users/me?{query}",
        "auth=[redacted]",
    ):
        assert part in api_call[0], api_call[0]
