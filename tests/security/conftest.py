"""Fixtures of the security suite, copied from tests/e2e/conftest.py (tests/
has no __init__.py, so importing across the packages would load that conftest
twice): a real ``python app.py`` process in the embedded default, users
registered through the HTTP API, ``RawSocket`` that shows every frame in
arrival order, plus what only these tests need: raw HTTP calls that return
whatever the server answered, the server's signing secret and SQLite file,
and a check that the server log holds no traceback.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import itertools
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import websocket

from imchat.client import ApiClient, ChatConnection, ChatError, Session

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"
START_TIMEOUT = 20.0
# How long a test waits to be sure that something does NOT arrive.
QUIET = 0.5

Frame = dict[str, Any]


# ------------------------------------------------------------------ server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.process.returncode}:\n{self.output()}"
                )
            try:
                with urllib.request.urlopen(self.base_url + "/healthz", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not healthy in {START_TIMEOUT}s:\n{self.output()}")
            time.sleep(0.05)

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


def _run_server(tmp: Path, env: dict[str, str] | None = None) -> Iterator[EmbeddedServer]:
    server = EmbeddedServer(tmp / "var", tmp / "server.log", env)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def embedded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """One server for a whole module: its tests keep apart by using fresh users."""
    yield from _run_server(tmp_path_factory.mktemp("imchat"))


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


# ------------------------------------------------------------------- users
def new_username() -> str:
    return f"u{uuid.uuid4().hex[:10]}"


# The server allows 10 logins a minute per client address: each user comes
# from a loopback address of its own, as real users come from their own.
_addresses = itertools.cycle(f"127.0.0.{i}" for i in range(2, 255))


class _SourceAddressHandler(urllib.request.HTTPHandler):
    def __init__(self, source_ip: str) -> None:
        super().__init__()
        self.source_ip = source_ip

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        connect = functools.partial(http.client.HTTPConnection, source_address=(self.source_ip, 0))
        return self.do_open(connect, req)


class UserApiClient(ApiClient):
    """ApiClient whose requests leave from one given loopback address."""

    def __init__(self, base_url: str, source_ip: str) -> None:
        super().__init__(base_url)
        self._opener = urllib.request.build_opener(_SourceAddressHandler(source_ip))

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        # Same as ApiClient.call but through this client's opener.
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as err:
            error = json.loads(err.read() or b"{}").get("error", {})
            raise ChatError(error.get("code", "http"), error.get("message", ""), err.code) from None
        return json.loads(raw) if raw else None


@dataclass(frozen=True)
class Answer:
    """What the server answered to one raw HTTP request, whatever its status."""

    status: int
    content_type: str
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


def http_call(
    base_url: str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    source_ip: str | None = None,
) -> Answer:
    """One request over a fresh connection; 4xx and 5xx are answers, not exceptions."""
    handlers = [_SourceAddressHandler(source_ip or next(_addresses))]
    opener = urllib.request.build_opener(*handlers)
    request = urllib.request.Request(base_url + path, data=body, method=method)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with opener.open(request, timeout=10) as response:
            return Answer(
                response.status,
                response.headers.get_content_type(),
                response.read(),
                dict(response.headers),
            )
    except urllib.error.HTTPError as err:
        return Answer(err.code, err.headers.get_content_type(), err.read(), dict(err.headers))


def assert_error_shape(answer: Answer, status: int | None = None) -> dict[str, Any]:
    """The contract's error: JSON ``{"error": {"code": str, "message": str}}``."""
    context = (answer.status, answer.body[:300])
    if status is not None:
        assert answer.status == status, context
    assert 400 <= answer.status < 500 or answer.status == 503, context
    assert answer.content_type == "application/json", context
    error = answer.json()["error"]
    assert isinstance(error["code"], str) and error["code"], context
    assert isinstance(error["message"], str), context
    return dict(error)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def register_users(base_url: str, count: int) -> list[Session]:
    """``count`` fresh users, registered and logged in through the HTTP API."""
    return [
        UserApiClient(base_url, next(_addresses)).register_and_login(new_username(), PASSWORD)
        for _ in range(count)
    ]


@pytest.fixture
def api(embedded_server: EmbeddedServer) -> ApiClient:
    return ApiClient(embedded_server.base_url)


@pytest.fixture
def users(embedded_server: EmbeddedServer) -> Callable[[int], list[Session]]:
    """``users(n)``: n fresh users on the module's server."""
    return lambda count: register_users(embedded_server.base_url, count)


# ----------------------------------------------------------------- sockets
class Closed(Exception):
    """The server closed the WebSocket."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed by the server: {code} {reason}")
        self.code, self.reason = code, reason


class RawSocket:
    """A WebSocket that hands over every frame in arrival order."""

    def __init__(self, base_url: str, token: str | None) -> None:
        url = base_url.replace("http://", "ws://") + "/ws"
        if token is not None:
            url += f"?token={token}"
        self.ws = websocket.create_connection(url, timeout=5)

    def send(self, frame: Frame | str) -> None:
        self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    def recv(self, timeout: float = 5.0) -> Frame:
        """The next text frame as JSON; ``Closed`` when a close frame comes instead."""
        self.ws.settimeout(timeout)
        while True:
            opcode, frame = self.ws.recv_data_frame(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                data = frame.data or b""
                code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None
                raise Closed(code, data[2:].decode(errors="replace"))
            if opcode == websocket.ABNF.OPCODE_TEXT:
                return dict(json.loads(frame.data))
            # Pings and pongs of the keepalive are no protocol frames.

    def recv_type(self, kind: str, timeout: float = 5.0) -> Frame:
        frame = self.recv(timeout)
        assert frame["type"] == kind, f"expected a {kind} frame, got {frame}"
        return frame

    def assert_quiet(self, seconds: float = QUIET) -> None:
        """Nothing arrives for ``seconds``."""
        try:
            frame = self.recv(seconds)
        except websocket.WebSocketTimeoutException:
            return
        raise AssertionError(f"unexpected frame {frame}")

    def ping(self) -> None:
        """A ping answered by the very next frame, a pong: proves the socket is usable
        and, since frames are handled in order, that everything before was handled."""
        self.send({"type": "ping"})
        assert self.recv() == {"type": "pong"}

    def close(self) -> None:
        self.ws.close(timeout=2)


class Sockets:
    """Opens connections for one test and closes them all after it."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._chats: list[ChatConnection] = []
        self._raws: list[RawSocket] = []

    def chat(self, user: Session, synced: int | None = 0) -> ChatConnection:
        """A ChatConnection, ready for live messages once ``synced`` arrived
        (its count checked unless ``synced`` is None)."""
        conn = ChatConnection(self.base_url, user.token, timeout=5)
        self._chats.append(conn)
        count = conn.wait_synced()
        if synced is not None:
            assert count == synced
        return conn

    def raw(self, user: Session, synced: int | None = 0) -> RawSocket:
        """A RawSocket; with ``synced`` set, its first frame must be synced{count: 0}."""
        conn = RawSocket(self.base_url, user.token)
        self._raws.append(conn)
        if synced is not None:
            assert conn.recv() == {"type": "synced", "count": synced}
        return conn

    def close_all(self) -> None:
        for chat in self._chats:
            chat.close()
        for raw in self._raws:
            with contextlib.suppress(Exception):
                raw.ws.shutdown()


@pytest.fixture
def sockets(embedded_server: EmbeddedServer) -> Iterator[Sockets]:
    opened = Sockets(embedded_server.base_url)
    yield opened
    opened.close_all()


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A server of the test's own: what one test breaks cannot fail the next."""
    yield from _run_server(tmp_path)
