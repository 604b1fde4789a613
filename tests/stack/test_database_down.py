"""MySQL down under the production stack: reached through a proxy the test
cuts, so the shared MariaDB keeps serving everyone else."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from imchat.client import ChatError

from .conftest import Stack, running_stack
from .tcp_proxy import TcpProxy

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.faults]


@pytest.fixture
def proxied_stack(
    mysql_url: str,
    kafka_bootstrap: str,
    etcd_endpoints: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Stack, TcpProxy]]:
    url = make_url(mysql_url)
    proxy = TcpProxy(url.port or 3306, url.host or "127.0.0.1")
    through = url.set(port=proxy.port).render_as_string(hide_password=False)
    try:
        with running_stack(through, tmp_path_factory.mktemp("db-down-stack")) as stack:
            yield stack, proxy
    finally:
        proxy.close()


def readiness(stack: Stack) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(stack.url(0) + "/readyz", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_database_down_no_false_ack_and_recovery_by_itself(
    proxied_stack: tuple[Stack, TcpProxy],
) -> None:
    stack, proxy = proxied_stack
    alice, bob = stack.user(), stack.user()
    with stack.api(0).connect(alice.token) as a, stack.api(1).connect(bob.token) as b:
        a.wait_synced()
        b.wait_synced()
        assert a.send("before", to=bob.user_id)["seq"] == 1
        assert b.receive(timeout=10)["body"] == "before"

        proxy.cut()
        status, body = readiness(stack)
        assert status == 503
        assert body["backends"]["database"] != "ok"
        assert body["backends"]["redis"] == "ok"
        with pytest.raises(ChatError) as refused:  # the API answers in JSON, no 500
            stack.api(0).login(alice.username, "password123")
        assert (refused.value.code, refused.value.status) == ("unavailable", 503)

        # The send goes on the bus, but nothing is acked before its pending
        # row is stored: an `unavailable` error or no answer, never an ack.
        cid = a.send_nowait("while down", to=bob.user_id)
        answer = "no answer"
        try:
            early = a.wait_ack(cid, timeout=3)
            pytest.fail(f"acked while the database was down: {early}")
        except ChatError as err:
            assert err.code == "unavailable"
            answer = "unavailable"
        except TimeoutError:
            pass

        proxy.restore()
        restored = time.monotonic()
        deadline = time.monotonic() + 60
        while True:  # the gateway and the consumer recover by themselves
            try:
                ack = a.send("while down", to=bob.user_id, cid=cid)
                break
            except ChatError as err:
                assert err.code == "unavailable"
            except TimeoutError:
                pass
            assert time.monotonic() < deadline, "no ack after the database came back"
            time.sleep(0.5)
        print(f"while down: {answer}; acked {time.monotonic() - restored:.1f} s after the restore")
        assert ack["seq"] == 2
        got = b.receive(timeout=30)
        assert (got["body"], got["seq"], got["msg_id"]) == ("while down", 2, ack["msg_id"])
        assert a.send("after", to=bob.user_id)["seq"] == 3
        assert b.receive(timeout=30)["seq"] == 3
        assert b.messages.empty(), "a message arrived twice"
    assert readiness(stack)[0] == 200
