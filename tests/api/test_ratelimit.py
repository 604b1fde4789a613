"""Rate limits of register and login: the limiter twins and the 429 answers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from flask import Flask

from imchat.backends.base import BackendUnavailable
from imchat.backends.ratelimit import (
    Limit,
    MemoryRateLimiter,
    RateLimiter,
    RedisRateLimiter,
    auth_limits,
)
from imchat.config import load_settings
from imchat.container import Services
from imchat.factory import create_app, services_of

from .support import PASSWORD, SECRET, ApiClient, assert_error


class Clock:
    """A settable clock: windows are tested without sleeping."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
def limiter_and_clock(request: pytest.FixtureRequest) -> Iterator[tuple[RateLimiter, Clock]]:
    clock = Clock(1_000_000.0)
    if request.param == "memory":
        limiter: RateLimiter = MemoryRateLimiter(clock=clock)
    else:
        url = request.getfixturevalue("redis_url")
        limiter = RedisRateLimiter(url, prefix=f"test:{uuid.uuid4().hex}", clock=clock)
    yield limiter, clock
    limiter.close()


def test_limiter_allows_max_hits_per_window_then_says_how_long_to_wait(
    limiter_and_clock: tuple[RateLimiter, Clock],
) -> None:
    limiter, clock = limiter_and_clock
    limit = Limit("login:user", 3, 60)
    assert [limiter.hit(limit, "alice") for _ in range(3)] == [None, None, None]
    clock.now += 15  # 1_000_000 is 40 s into its window; now 55 s in
    assert limiter.hit(limit, "alice") == 5
    assert limiter.hit(limit, "bob") is None  # keys count apart
    assert limiter.hit(Limit("other", 3, 60), "alice") is None  # scopes count apart
    clock.now += 5  # the next window
    assert limiter.hit(limit, "alice") is None


def test_a_zero_limit_is_off(limiter_and_clock: tuple[RateLimiter, Clock]) -> None:
    limiter, _ = limiter_and_clock
    assert all(limiter.hit(Limit("x", 0, 60), "k") is None for _ in range(50))


def test_redis_counter_expires_with_its_window(redis_url: str, unique: str) -> None:
    clock = Clock(1_000_020.0)
    limiter = RedisRateLimiter(redis_url, prefix=f"test:{unique}", clock=clock)
    client = redis.Redis.from_url(redis_url)
    try:
        limiter.hit(Limit("s", 5, 60), "k")
        (key,) = client.keys(f"test:{unique}:*")
        assert int(client.get(key)) == 1  # type: ignore[arg-type]
        assert 0 < int(client.ttl(key)) <= 61  # type: ignore[arg-type]
    finally:
        client.close()
        limiter.close()


def test_redis_down_is_backend_unavailable() -> None:
    limiter = RedisRateLimiter("redis://127.0.0.1:1/0")
    try:
        with pytest.raises(BackendUnavailable):
            limiter.hit(Limit("s", 5, 60), "k")
    finally:
        limiter.close()


def test_redis_is_chosen_when_configured(redis_url: str) -> None:
    services = Services(load_settings(environ={}, overrides={"redis_url": redis_url}))
    assert isinstance(services.rate_limiter, RedisRateLimiter)
    services.close()
    assert isinstance(Services(load_settings(environ={})).rate_limiter, MemoryRateLimiter)


def test_default_limits() -> None:
    limits = auth_limits(load_settings(environ={}))
    assert (limits.login_per_address.max_hits, limits.login_per_address.window_seconds) == (10, 60)
    assert limits.login_per_username.max_hits == 5
    assert (limits.register_per_address.max_hits, limits.register_per_address.window_seconds) == (
        20,
        3600,
    )


# ---------------------------------------------------------------- the API
def assert_rate_limited(response: object, window: int) -> None:
    error = assert_error(response, 429)  # type: ignore[arg-type]
    assert error["code"] == "rate_limited"
    assert 1 <= int(response.headers["Retry-After"]) <= window  # type: ignore[attr-defined]


def test_login_is_limited_per_username_across_addresses(api: ApiClient) -> None:
    username = api.register()["username"]
    other = ApiClient(api.app)
    body = {"username": username, "password": PASSWORD}
    for client in (api, other, api, other, api):
        assert client.call("POST", "/auth/login", json=body).status_code == 200
    # The right password does not help once the username's attempts are used up.
    assert_rate_limited(other.call("POST", "/auth/login", json=body), 60)


def test_login_is_limited_per_address(api: ApiClient) -> None:
    for _ in range(10):
        body = {"username": f"nobody_{uuid.uuid4().hex[:8]}", "password": PASSWORD}
        assert_error(api.call("POST", "/auth/login", json=body), 401)
    response = api.call("POST", "/auth/login", json={"username": "x", "password": "y"})
    assert_rate_limited(response, 60)
    # Another address is not affected.
    assert_error(
        ApiClient(api.app).call("POST", "/auth/login", json={"username": "x", "password": "y"}), 401
    )


def test_register_is_limited_per_address(api: ApiClient) -> None:
    for _ in range(20):
        api.register()
    body = {"username": f"late_{uuid.uuid4().hex[:8]}", "password": PASSWORD}
    assert_rate_limited(api.call("POST", "/auth/register", json=body), 3600)


def test_register_is_limited_per_username(api: ApiClient) -> None:
    body = {"username": f"r_{uuid.uuid4().hex[:8]}", "password": PASSWORD}
    statuses = [
        ApiClient(api.app).call("POST", "/auth/register", json=body).status_code for _ in range(5)
    ]
    assert statuses == [201, 409, 409, 409, 409]
    assert_rate_limited(ApiClient(api.app).call("POST", "/auth/register", json=body), 3600)


def test_limiter_down_answers_503(data_dir: Path) -> None:
    overrides = {
        "data_dir": str(data_dir),
        "redis_url": "redis://127.0.0.1:1/0",
        "secret_key": SECRET,
    }
    flask_app: Flask = create_app(overrides=overrides, environ={})
    try:
        response = ApiClient(flask_app).call(
            "POST", "/auth/login", json={"username": "x", "password": "y"}
        )
        assert_error(response, 503)
    finally:
        services_of(flask_app).close()
