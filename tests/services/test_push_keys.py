"""The VAPID key pair: configured, generated once embedded, required and checked in production."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from imchat.config import Settings
from imchat.container import Services
from imchat.services.push import keys

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def test_embedded_generates_one_key_pair_and_keeps_it(settings: Settings) -> None:
    first = Services(settings).vapid
    again = Services(settings).vapid  # another process on the same data dir
    assert first == again
    path = settings.data_path / keys.KEY_FILE
    assert path.read_text().strip() == first.private_key
    assert path.stat().st_mode & 0o777 == 0o600
    assert keys.public_key_of(keys.private_key_of(first.private_key)) == first.public_key
    assert len(keys.b64url_decode(first.public_key)) == 65


def test_a_configured_key_is_used_and_its_public_key_checked(settings: Settings) -> None:
    private = keys.generate_private_key()
    public = keys.public_key_of(keys.private_key_of(private))
    production = settings.replace(redis_url="redis://127.0.0.1:1/0", vapid_private_key=private)
    assert Services(production).vapid == keys.VapidKeys(private, public)
    assert Services(production.replace(vapid_public_key=public + "=")).vapid.public_key == public
    other = keys.public_key_of(keys.private_key_of(keys.generate_private_key()))
    with pytest.raises(RuntimeError, match="IMCHAT_VAPID_PUBLIC_KEY"):
        _ = Services(production.replace(vapid_public_key=other)).vapid
    assert not (settings.data_path / keys.KEY_FILE).exists()


@pytest.mark.parametrize("bad", ["", "not base64!", "AAAA", keys.generate_private_key() + "AA"])
def test_production_needs_a_good_private_key(settings: Settings, bad: str) -> None:
    production = settings.replace(redis_url="redis://127.0.0.1:1/0", vapid_private_key=bad)
    with pytest.raises(RuntimeError, match="IMCHAT_VAPID_PRIVATE_KEY"):
        _ = Services(production).vapid


def test_the_vapid_keys_command_prints_a_matching_pair() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "imchat", "vapid-keys"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    values = dict(line.split("=", 1) for line in out.splitlines())
    private = values["IMCHAT_VAPID_PRIVATE_KEY"]
    assert values["IMCHAT_VAPID_PUBLIC_KEY"] == keys.public_key_of(keys.private_key_of(private))
