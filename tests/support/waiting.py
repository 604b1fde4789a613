"""Free loopback ports and waiting for a condition, for every suite."""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def free_port() -> int:
    """A loopback port nothing listens on (just released by the kernel)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports (free_port alone may hand out one twice)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
    except OSError:
        return False
    return True


def wait_for(
    condition: Callable[[], T],
    timeout: float,
    what: str,
    *,
    interval: float = 0.01,
    ignoring: tuple[type[Exception], ...] = (),
) -> T:
    """The first truthy value of ``condition()``, polled every ``interval``;
    an AssertionError naming ``what`` when none came within ``timeout`` seconds
    (an assertion, not pytest.fail: the benchmarks wait with it too).
    Exceptions of the ``ignoring`` types count as "not yet"; any other fails
    the test at once (a condition may raise to say "this will never happen")."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = condition()
        except ignoring as exc:
            last_error = exc
        else:
            if value:
                return value
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error!r})" if last_error is not None else ""
            raise AssertionError(f"not within {timeout:g}s: {what}{detail}")
        time.sleep(interval)


def http_get(url: str) -> tuple[int, bytes]:
    """(status, body) of a GET that answered 2xx or 3xx; HTTP errors and a
    refused connection raise ``OSError``."""
    with urllib.request.urlopen(url, timeout=2) as response:
        return int(response.status), bytes(response.read())


def wait_http(url: str, timeout: float = 30.0, interval: float = 0.1) -> tuple[int, bytes]:
    """(status, body) of the first GET of ``url`` that answers without an HTTP error."""
    answer = f"{url} to answer"
    return wait_for(lambda: http_get(url), timeout, answer, interval=interval, ignoring=(OSError,))
