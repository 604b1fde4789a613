"""A Python client for imchat (docs/api.md, docs/protocol.md): the REST calls and a
WebSocket connection that sends with client ids, waits for acks, receives,
confirms delivery and reconnects.

Threads, not asyncio: a background reader thread per connection keeps the
API a plain blocking one that works from scripts, tests, bots and, after
``gevent.monkey.patch_all()``, from greenlets (the threads become greenlets).

    api = ApiClient("http://127.0.0.1:8000")
    alice = api.register_and_login("alice", "correct horse")
    with api.connect(alice.token) as chat:
        ack = chat.send(to=bob_id, body="hi")   # blocks until the ack
        msg = chat.receive()                    # the next msg frame for alice
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import queue
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import websocket

Frame = dict[str, Any]


class ChatError(Exception):
    """An ``error`` frame, or an HTTP error body of the contract."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status = code, message, status


@dataclass(frozen=True)
class Session:
    """A login: the short-lived access ``token`` and the refresh token that
    renews it (``ApiClient.refresh``, or ``TokenKeeper`` to do it silently)."""

    user_id: str
    username: str
    token: str
    refresh_token: str = ""
    expires_at: float = 0.0  # time.time() at which ``token`` expires


TokenSource = str | Callable[[], str]


class _SourceAddressHandler(urllib.request.HTTPHandler):
    """Opens HTTP connections from a given local address."""

    def __init__(self, source_ip: str) -> None:
        super().__init__()
        self.source_ip = source_ip

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        connect = functools.partial(http.client.HTTPConnection, source_address=(self.source_ip, 0))
        return self.do_open(connect, req)


def http_opener(source_ip: str | None = None) -> urllib.request.OpenerDirector:
    """A urllib opener whose connections leave from ``source_ip`` (any local
    address when None): what ``ApiClient`` sends through, for callers that
    need the raw answer of a request the client has no method for."""
    handlers = [_SourceAddressHandler(source_ip)] if source_ip else []
    return urllib.request.build_opener(*handlers)


class ApiClient:
    """The HTTP API under /api/v1.

    ``source_ip`` makes requests leave from that local address (a load
    generator or a test standing in for many clients on one machine).
    """

    def __init__(self, base_url: str, timeout: float = 10.0, source_ip: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._opener = http_opener(source_ip)

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
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

    def register(self, username: str, password: str, **profile: Any) -> Frame:
        result: Frame = self.call(
            "POST", "/api/v1/auth/register", {"username": username, "password": password, **profile}
        )
        return result

    def login(self, username: str, password: str) -> Session:
        body = self.call("POST", "/api/v1/auth/login", {"username": username, "password": password})
        return _session(username, body)

    def refresh(self, session: Session) -> Session:
        """New tokens for the session (its refresh token works once)."""
        body = self.call("POST", "/api/v1/auth/refresh", {"refresh_token": session.refresh_token})
        return _session(session.username, body)

    def logout(self, token: str) -> None:
        self.call("POST", "/api/v1/auth/logout", token=token)

    def change_password(self, token: str, old: str, new: str) -> None:
        """Every other session of the user ends."""
        body = {"old_password": old, "new_password": new}
        self.call("POST", "/api/v1/users/me/password", body, token)

    def ws_ticket(self, token: str) -> str:
        """A one-use ticket for the WebSocket URL (30 s)."""
        ticket: str = self.call("POST", "/api/v1/auth/ws-ticket", token=token)["ticket"]
        return ticket

    def register_and_login(self, username: str, password: str, **profile: Any) -> Session:
        self.register(username, password, **profile)
        return self.login(username, password)

    def create_group(self, token: str, name: str, member_ids: list[str]) -> Frame:
        body = {"name": name, "member_ids": member_ids}
        result: Frame = self.call("POST", "/api/v1/groups", body, token)
        return result

    def add_member(self, token: str, group_id: str, user_id: str, role: str = "member") -> None:
        body = {"user_id": user_id, "role": role}
        self.call("POST", f"/api/v1/groups/{group_id}/members", body, token)

    def remove_member(self, token: str, group_id: str, user_id: str) -> None:
        self.call("DELETE", f"/api/v1/groups/{group_id}/members/{user_id}", token=token)

    def block(self, token: str, user_id: str) -> None:
        self.call("POST", "/api/v1/users/me/blocks", {"user_id": user_id}, token)

    def unblock(self, token: str, user_id: str) -> None:
        self.call("DELETE", f"/api/v1/users/me/blocks/{user_id}", token=token)

    def groups(self, token: str) -> list[Frame]:
        """Every group of the caller, with the caller's ``role``."""
        groups: list[Frame] = self.call("GET", "/api/v1/groups", token=token)["groups"]
        return groups

    def conversations(self, token: str, limit: int = 50, before: str | None = None) -> Frame:
        """A page ``{"conversations", "next"}``, most recent activity first."""
        query = {"limit": limit, **({"before": before} if before else {})}
        page: Frame = self.call("GET", f"/api/v1/conversations?{urlencode(query)}", token=token)
        return page

    def conversation(self, token: str, conversation_id: str) -> Frame:
        path = f"/api/v1/conversations/{quote(conversation_id, safe='')}"
        found: Frame = self.call("GET", path, token=token)
        return found

    def history(
        self,
        token: str,
        conversation_id: str,
        before_seq: int | None = None,
        after_seq: int | None = None,
        limit: int = 50,
    ) -> Frame:
        """A page ``{"messages", "has_more"}`` of the conversation, ascending."""
        query: dict[str, int] = {"limit": limit}
        if before_seq is not None:
            query["before_seq"] = before_seq
        if after_seq is not None:
            query["after_seq"] = after_seq
        path = f"/api/v1/conversations/{quote(conversation_id, safe='')}/messages"
        page: Frame = self.call("GET", f"{path}?{urlencode(query)}", token=token)
        return page

    def all_messages(self, token: str, conversation_id: str) -> list[Frame]:
        """The whole history the caller may read, oldest first (paged forward)."""
        messages: list[Frame] = []
        while True:
            after = messages[-1]["seq"] if messages else 0
            page = self.history(token, conversation_id, after_seq=after, limit=100)
            messages += page["messages"]
            if not page["has_more"]:
                return messages

    # ------------------------------------------------------------ Web Push
    def vapid_public_key(self, token: str) -> str:
        """The key browsers subscribe with (``applicationServerKey``), base64url."""
        key: str = self.call("GET", "/api/v1/push/vapid-public-key", token=token)["key"]
        return key

    def subscribe_push(self, token: str, subscription: Frame) -> None:
        """Register a ``PushSubscription`` JSON (``{endpoint, keys: {p256dh, auth}}``)."""
        self.call("POST", "/api/v1/users/me/push-subscriptions", subscription, token)

    def unsubscribe_push(self, token: str, endpoint: str) -> None:
        self.call("DELETE", "/api/v1/users/me/push-subscriptions", {"endpoint": endpoint}, token)

    def push_switch(self, token: str, conversation_id: str) -> Frame:
        """``{conversation_id, push, setting}``: whether the caller is notified."""
        path = f"/api/v1/conversations/{quote(conversation_id, safe='')}/push"
        found: Frame = self.call("GET", path, token=token)
        return found

    def set_push_switch(self, token: str, conversation_id: str, push: bool | None) -> Frame:
        """Turn Web Push of the conversation on, off, or back to the default rule (None)."""
        path = f"/api/v1/conversations/{quote(conversation_id, safe='')}/push"
        found: Frame = self.call("PUT", path, {"push": push}, token)
        return found

    def connect(self, token: TokenSource, timeout: float = 10.0) -> ChatConnection:
        return ChatConnection(self.base_url, token, timeout)


def _session(username: str, body: Frame) -> Session:
    expires_at = time.time() + float(body["expires_in"])
    return Session(
        body["user_id"], username, body["access_token"], body.get("refresh_token", ""), expires_at
    )


class TokenKeeper:
    """Hands out an access token that is always good: refreshed silently a
    minute before it expires. Pass the keeper itself where a token goes
    (``api.connect(keeper)``) so that reconnects use a fresh one."""

    MARGIN = 60.0

    def __init__(self, api: ApiClient, session: Session) -> None:
        self.api = api
        self.session = session
        self._lock = threading.Lock()

    def __call__(self) -> str:
        with self._lock:
            if time.time() > self.session.expires_at - self.MARGIN:
                self.session = self.api.refresh(self.session)
            return self.session.token


class ChatConnection:
    """One WebSocket. Frames are sorted into acks (by client id), messages,
    events and errors as they arrive; every call blocks at most ``timeout``."""

    def __init__(self, base_url: str, token: TokenSource, timeout: float = 10.0) -> None:
        parts = urlsplit(base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        self.api = ApiClient(base_url, timeout)
        self.token = token
        self.ws_base = f"{scheme}://{parts.netloc}/ws"
        self.timeout = timeout
        self.messages: queue.Queue[Frame] = queue.Queue()
        self.events: queue.Queue[Frame] = queue.Queue()
        self.errors: queue.Queue[Frame] = queue.Queue()
        self._acks: dict[str, queue.Queue[Frame]] = {}
        # Sends without an ack yet, resent by ``reconnect`` (same id: idempotent).
        self.unacked: dict[str, Frame] = {}
        self._lock = threading.Lock()
        self._synced: queue.Queue[int] = queue.Queue()
        self._pongs: queue.Queue[Frame] = queue.Queue()
        self.receipts: queue.Queue[Frame] = queue.Queue()
        self.typing_frames: queue.Queue[Frame] = queue.Queue()
        self.updates: queue.Queue[Frame] = queue.Queue()
        self.presence: queue.Queue[Frame] = queue.Queue()
        self.synced_count: int | None = None
        self._open()

    def _open(self) -> None:
        self.last_url = self._url()
        # Not a browser: no Origin header (websocket-client would invent one from
        # the URL, which a server behind a proxy that rewrites Host refuses).
        self.ws = websocket.create_connection(
            self.last_url, timeout=self.timeout, suppress_origin=True
        )
        self.ws.settimeout(None)
        self._reader = threading.Thread(target=self._read_loop, args=(self.ws,), daemon=True)
        self._reader.start()

    def _url(self) -> str:
        """With a one-use ticket, so that no token sits in a URL (proxies log
        URLs); with the token itself when tickets are unavailable (503)."""
        token = self.token() if callable(self.token) else self.token
        try:
            return f"{self.ws_base}?ticket={self.api.ws_ticket(token)}"
        except ChatError as err:
            if err.status != 503:
                raise
        return f"{self.ws_base}?token={token}"

    def _read_loop(self, ws: websocket.WebSocket) -> None:
        while True:
            try:
                raw = ws.recv()
            except Exception:
                return
            if not raw:
                return
            self._route(json.loads(raw))

    def _route(self, frame: Frame) -> None:
        kind = frame.get("type")
        if kind == "ack" or (kind == "error" and frame.get("id") in self._acks):
            if kind == "ack" or frame.get("code") != "unavailable":
                self.unacked.pop(frame["id"], None)
            self._ack_queue(frame["id"]).put(frame)
        elif kind == "msg":
            self.messages.put(frame)
        elif kind == "event":
            self.events.put(frame)
        elif kind == "synced":
            self.synced_count = int(frame["count"])
            self._synced.put(self.synced_count)
        elif kind == "pong":
            self._pongs.put(frame)
        elif kind == "receipt":
            self.receipts.put(frame)
        elif kind == "typing":
            self.typing_frames.put(frame)
        elif kind == "update":
            self.updates.put(frame)
        elif kind == "presence":
            self.presence.put(frame)
        else:
            self.errors.put(frame)

    def _ack_queue(self, cid: str) -> queue.Queue[Frame]:
        with self._lock:
            return self._acks.setdefault(cid, queue.Queue())

    # ------------------------------------------------------------- sending
    def send_frame(self, frame: Frame) -> None:
        self.ws.send(json.dumps(frame))

    def send_nowait(
        self,
        body: str,
        to: str | None = None,
        group: str | None = None,
        cid: str | None = None,
        reply_to: int | None = None,
    ) -> str:
        """Send a message; return its client id (wait for it with ``wait_ack``).

        On a dead socket the send is kept, not lost: ``reconnect`` resends it.
        """
        cid = cid or uuid.uuid4().hex
        self._ack_queue(cid)
        frame: Frame = {"type": "send", "id": cid, "body": body}
        frame.update({"to": to} if to is not None else {"group": group})
        if reply_to is not None:
            frame["reply_to"] = reply_to
        self.unacked[cid] = frame
        with contextlib.suppress(websocket.WebSocketException, OSError):
            self.send_frame(frame)
        return cid

    def wait_ack(self, cid: str, timeout: float | None = None) -> Frame:
        """The ack of ``cid``; ChatError when the server answered with an error."""
        try:
            frame = self._ack_queue(cid).get(timeout=timeout or self.timeout)
        except queue.Empty:
            raise TimeoutError(f"no ack for {cid}") from None
        if frame["type"] == "error":
            raise ChatError(frame["code"], frame["message"])
        return frame

    def send(
        self,
        body: str,
        to: str | None = None,
        group: str | None = None,
        cid: str | None = None,
        reply_to: int | None = None,
    ) -> Frame:
        """Send and wait for the ack; safe to call again with the same ``cid``."""
        return self.wait_ack(self.send_nowait(body, to, group, cid, reply_to))

    def change(
        self, kind: str, conversation_id: str, seq: int, cid: str | None = None, **fields: Any
    ) -> Frame:
        """An ``edit`` (``body=``), ``delete`` or ``react`` (``emoji=``, ``on=``) of the
        message at ``seq``, and its ack; safe to call again with the same ``cid``."""
        cid = cid or uuid.uuid4().hex
        self._ack_queue(cid)
        frame: Frame = {"type": kind, "id": cid, "conversation_id": conversation_id, "seq": seq}
        frame.update(fields)
        self.unacked[cid] = frame
        with contextlib.suppress(websocket.WebSocketException, OSError):
            self.send_frame(frame)
        return self.wait_ack(cid)

    def confirm(self, conversation_id: str, seq: int) -> None:
        """Tell the server everything of the conversation up to ``seq`` arrived."""
        self.send_frame({"type": "delivered", "conversation_id": conversation_id, "seq": seq})

    def read(self, conversation_id: str, seq: int) -> None:
        """Tell the server the user has read the conversation up to ``seq`` (and has it)."""
        self.send_frame({"type": "read", "conversation_id": conversation_id, "seq": seq})

    def typing(self, conversation_id: str) -> None:
        """Tell the other participants the user is typing (relayed at most once per 2 s)."""
        self.send_frame({"type": "typing", "conversation_id": conversation_id})

    def ping(self) -> Frame:
        self.send_frame({"type": "ping"})
        return self._pongs.get(timeout=self.timeout)

    # ----------------------------------------------------------- receiving
    def wait_synced(self, timeout: float | None = None) -> int:
        """The count of pending messages pushed on connect, once ``synced`` arrives."""
        return self._synced.get(timeout=timeout or self.timeout)

    def receive(self, timeout: float | None = None) -> Frame:
        """The next ``msg`` frame."""
        return self.messages.get(timeout=timeout or self.timeout)

    def receive_event(self, timeout: float | None = None) -> Frame:
        return self.events.get(timeout=timeout or self.timeout)

    def next_error(self, timeout: float | None = None) -> Frame:
        return self.errors.get(timeout=timeout or self.timeout)

    # ------------------------------------------------------------ lifetime
    def reconnect(self) -> None:
        """Open a new socket and resume: pending messages arrive again, then
        ``synced``, and every send not acked yet goes out again with its id
        (the server answers a resend with the first ack, never a duplicate)."""
        self.close()
        self._open()
        for frame in list(self.unacked.values()):
            self.send_frame(frame)

    def close(self) -> None:
        """Close handshake: the reader thread takes the server's close frame
        (``ws.close()`` would wait for it on a socket the reader is draining)."""
        with contextlib.suppress(Exception):
            self.ws.send_close()
        self._reader.join(timeout=5)
        self.ws.shutdown()

    def __enter__(self) -> ChatConnection:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
