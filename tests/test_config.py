"""Settings: embedded by default, each IMCHAT_* variable switches one part."""

from __future__ import annotations

import pytest

from imchat.config import load_settings
from imchat.container import Services

pytestmark = pytest.mark.unit


def test_no_variables_is_the_embedded_default() -> None:
    settings = load_settings(environ={})
    assert settings.embedded
    assert settings.effective_database_url.startswith("sqlite:///")
    assert settings.effective_database_url.endswith("var/imchat.sqlite3")
    assert settings.effective_log_format == "text"


def test_seed_production_defaults() -> None:
    settings = load_settings(environ={})
    assert (settings.db_pool_size, settings.db_pool_size + settings.db_max_overflow) == (5, 25)
    assert settings.dedup_ttl_seconds == 7 * 24 * 3600
    assert (settings.etcd_lease_ttl_seconds, settings.etcd_lease_renew_seconds) == (90, 30)
    assert (settings.kafka_replication_factor, settings.kafka_min_insync_replicas) == (3, 2)
    assert settings.seq_snapshot_interval == 10_000


def test_each_variable_switches_one_backend() -> None:
    env = {"IMCHAT_REDIS_URL": "redis://127.0.0.1:6379/0", "IMCHAT_DB_POOL_SIZE": "7"}
    settings = load_settings(environ=env)
    assert not settings.embedded
    assert settings.backends() == {
        "database": "",
        "redis": "redis://127.0.0.1:6379/0",
        "kafka": "",
        "etcd": "",
        "celery": "",
    }
    assert settings.db_pool_size == 7
    assert settings.effective_log_format == "json"


def test_bad_integer_names_the_variable() -> None:
    with pytest.raises(ValueError, match="IMCHAT_DB_POOL_SIZE"):
        load_settings(environ={"IMCHAT_DB_POOL_SIZE": "many"})


def test_unknown_override_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown settings"):
        load_settings(environ={}, overrides={"no_such_knob": 1})


def test_embedded_secret_is_generated_once_and_kept(settings) -> None:  # type: ignore[no-untyped-def]
    first = Services(settings).secret_key
    assert len(first) >= 48
    assert Services(settings).secret_key == first
    assert (settings.data_path / "secret_key").stat().st_mode & 0o777 == 0o600


def test_real_backends_require_a_configured_secret(settings) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RuntimeError, match="IMCHAT_SECRET_KEY"):
        _ = Services(settings.replace(redis_url="redis://127.0.0.1:6379/15")).secret_key
