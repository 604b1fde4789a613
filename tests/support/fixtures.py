"""The live-server fixtures, loaded for every suite by tests/conftest.py
(``pytest_plugins``): a server per module or per test, fresh users on it, the
sockets a test opens, and the server's output beside a failed test's."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

from imchat.client import ApiClient, Session

from .clients import register_users
from .server import EmbeddedServer, run_server
from .sockets import Sockets


@pytest.fixture(scope="module")
def embedded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """One server for a whole module: its tests keep apart by using fresh users."""
    yield from run_server(tmp_path_factory.mktemp("imchat"))


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A server of the test's own, which the test may kill and restart: what
    one test breaks cannot fail the next."""
    yield from run_server(tmp_path)


@pytest.fixture
def api(embedded_server: EmbeddedServer) -> ApiClient:
    return ApiClient(embedded_server.base_url)


@pytest.fixture
def users(embedded_server: EmbeddedServer) -> Callable[[int], list[Session]]:
    """``users(n)``: n fresh users on the module's server."""
    return lambda count: register_users(embedded_server.base_url, count)


@pytest.fixture
def sockets(embedded_server: EmbeddedServer) -> Iterator[Sockets]:
    opened = Sockets(embedded_server.base_url)
    yield opened
    opened.close_all()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On a failure, show the server's output next to the test's."""
    report = yield
    if report.failed:
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, EmbeddedServer):
                report.sections.append(("imchat server output", value.output()[-20_000:]))
    return report
