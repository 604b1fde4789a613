"""Users registered through the HTTP API, each from a loopback address of its
own, and raw HTTP calls that return whatever the server answered."""

from __future__ import annotations

import itertools
import json
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

from imchat.client import ApiClient, Session, http_opener

PASSWORD = "correct horse battery"

# The server allows 10 logins a minute per client address: each user comes
# from a loopback address of its own, as real users come from their own.
_addresses = itertools.cycle(f"127.0.0.{i}" for i in range(2, 255))


def next_address() -> str:
    """The next loopback address of the cycle the users' clients leave from."""
    return next(_addresses)


def new_username() -> str:
    return f"u{uuid.uuid4().hex[:10]}"


def register_users(base_url: str, count: int) -> list[Session]:
    """``count`` fresh users, registered and logged in through the HTTP API."""
    return [
        ApiClient(base_url, source_ip=next_address()).register_and_login(new_username(), PASSWORD)
        for _ in range(count)
    ]


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
    opener = http_opener(source_ip or next_address())
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
