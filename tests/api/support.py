"""Helpers of the API tests: a client with its own address, users, groups, errors."""

from __future__ import annotations

import itertools
import json
import random
import uuid
from dataclasses import dataclass
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from imchat.container import Services
from imchat.factory import services_of
from imchat.wire.topics import MEMBERSHIP_CHANGE

# 198.18.0.0/15 (benchmarking addresses), from a random start so that two runs
# within one rate-limit window on one Redis database are unlikely to meet.
_START = random.randrange(2**17)
ADDRESSES = (
    f"198.{18 + (n >> 16) % 2}.{(n >> 8) % 256}.{n % 256}" for n in itertools.count(_START)
)

SECRET = "test-secret-" + "x" * 40  # PyJWT warns on HMAC keys under 32 bytes
PASSWORD = "correct horse battery"


@dataclass
class User:
    user_id: str
    username: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class ApiClient:
    """A test client from its own address, with helpers for the common steps."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.services: Services = services_of(app)
        self.client: FlaskClient = app.test_client()
        # A made-up address of its own per client (the test client sends nothing
        # on a network): never shared within a run, so no client inherits
        # another's rate-limit counters in Redis.
        self.address = next(ADDRESSES)
        self.client.environ_base["REMOTE_ADDR"] = self.address
        self._consumer = self.services.bus.subscribe(
            [MEMBERSHIP_CHANGE.name], f"test-{uuid.uuid4().hex}"
        )

    def call(self, method: str, path: str, user: User | None = None, **kwargs: Any) -> TestResponse:
        headers = dict(kwargs.pop("headers", {}))
        if user is not None:
            headers.update(user.auth)
        return self.client.open(f"/api/v1{path}", method=method, headers=headers, **kwargs)

    def register(self, name: str = "u", **extra: Any) -> dict[str, Any]:
        username = f"{name}_{uuid.uuid4().hex[:12]}"
        response = self.call(
            "POST", "/auth/register", json={"username": username, "password": PASSWORD, **extra}
        )
        assert response.status_code == 201, response.json
        body: dict[str, Any] = response.json  # type: ignore[assignment]
        return body

    def user(self, name: str = "u", **extra: Any) -> User:
        """Register and log in a new user."""
        profile = self.register(name, **extra)
        response = self.call(
            "POST",
            "/auth/login",
            json={"username": profile["username"], "password": PASSWORD},
        )
        assert response.status_code == 200, response.json
        return User(profile["user_id"], profile["username"], response.json["access_token"])  # type: ignore[index]

    def group(self, owner: User, *members: User, name: str = "team") -> str:
        body = {"name": name, "member_ids": [m.user_id for m in members]}
        response = self.call("POST", "/groups", owner, json=body)
        assert response.status_code == 201, response.json
        return str(response.json["group_id"])  # type: ignore[index]

    def events(self, group_id: str) -> list[dict[str, Any]]:
        """The membership events of ``group_id`` published since the last call."""
        found: list[dict[str, Any]] = []
        while records := self._consumer.poll_batch(500, timeout=0.05):
            found += [json.loads(r.value) for r in records if r.key == group_id]
        return found


def assert_error(response: TestResponse, status: int) -> dict[str, Any]:
    """The contract's error body with ``status``; returns the inner error object."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    assert response.mimetype == "application/json"
    body = response.json
    assert isinstance(body, dict) and set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    return error
