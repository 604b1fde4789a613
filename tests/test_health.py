"""/healthz and /readyz."""

from __future__ import annotations

import time

import pytest

from imchat.factory import create_app, services_of

pytestmark = pytest.mark.unit


@pytest.fixture
def client(settings):  # type: ignore[no-untyped-def]
    return create_app(overrides={"data_dir": settings.data_dir}, environ={}).test_client()


def test_healthz(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_embedded_checks_every_twin(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/readyz")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["backends"] == {
        "database": "ok",
        "redis": "ok",
        "kafka": "ok",
        "etcd": "ok",
        "celery": "ok",
    }


def test_readyz_names_the_backend_that_is_down(settings) -> None:  # type: ignore[no-untyped-def]
    # Nothing listens on port 1: the database check must fail fast and be named.
    app = create_app(
        overrides={
            "data_dir": settings.data_dir,
            "database_url": "mysql+pymysql://root@127.0.0.1:1/none",
            "secret_key": "x" * 32,
        },
        environ={},
    )
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["error"]["code"] == "unavailable"
    assert "database" in body["error"]["message"]
    assert body["backends"]["redis"] == "ok"
    assert body["backends"]["database"] != "ok"


def test_unknown_route_is_a_json_404(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/no/such/route")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_wrong_method_is_a_json_405(client) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/healthz")
    assert response.status_code == 405
    assert response.get_json()["error"]["code"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]


@pytest.mark.parametrize(
    ("backend", "setting", "dead_endpoint"),
    [
        ("redis", "redis_url", "redis://127.0.0.1:1/0"),
        ("kafka", "kafka_bootstrap_servers", "127.0.0.1:1"),
        ("etcd", "etcd_endpoints", "http://127.0.0.1:1"),
        ("celery", "celery_broker_url", "redis://127.0.0.1:1/1"),
    ],
)
def test_readyz_names_each_backend_that_is_down(
    settings, backend: str, setting: str, dead_endpoint: str
) -> None:  # type: ignore[no-untyped-def]
    overrides = {"data_dir": settings.data_dir, "secret_key": "x" * 32, setting: dead_endpoint}
    app = create_app(overrides=overrides, environ={})
    started = time.monotonic()
    response = app.test_client().get("/readyz")
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    body = response.get_json()
    assert body["error"]["message"] == f"backend down: {backend}"
    assert body["backends"][backend] != "ok"
    assert elapsed < 5, "readiness must answer quickly even when a backend hangs"
    services_of(app).close()
