"""The VAPID key pair (RFC 8292) that signs every push request.

Configured (``IMCHAT_VAPID_PRIVATE_KEY``, the private key as 32 bytes
base64url), or generated once into the data dir in the embedded default
like the token secret. The public key is what browsers subscribe with
(``applicationServerKey``): the uncompressed P-256 point, base64url.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02

from imchat.config import Settings

KEY_FILE = "vapid_private_key"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    """Base64url with or without padding; ValueError when it is not."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not base64url: {exc}") from None


def private_key_of(raw_b64: str) -> ec.EllipticCurvePrivateKey:
    raw = b64url_decode(raw_b64.strip())
    if len(raw) != 32:
        raise ValueError(f"a VAPID private key is 32 bytes, base64url; got {len(raw)} bytes")
    return ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())


def public_key_of(private_key: ec.EllipticCurvePrivateKey) -> str:
    point = private_key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return b64url(point)


def generate_private_key() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return b64url(key.private_numbers().private_value.to_bytes(32, "big"))


@dataclass(frozen=True)
class VapidKeys:
    private_key: str  # 32 bytes, base64url
    public_key: str  # the uncompressed point, base64url

    def signer(self) -> Vapid02:
        return Vapid02(private_key_of(self.private_key))


def vapid_keys(settings: Settings, data_file: Callable[[str], Path]) -> VapidKeys:
    """The configured key pair, or the embedded default's own; a RuntimeError
    naming the setting when production has none or a bad one."""
    private = settings.vapid_private_key.strip()
    if not private:
        if not settings.embedded:
            raise RuntimeError(
                "IMCHAT_VAPID_PRIVATE_KEY must be set when real backends are configured"
            )
        path = data_file(KEY_FILE)
        if not path.exists():
            path.write_text(generate_private_key())
            path.chmod(0o600)
        private = path.read_text().strip()
    try:
        public = public_key_of(private_key_of(private))
    except ValueError as exc:
        raise RuntimeError(f"IMCHAT_VAPID_PRIVATE_KEY: {exc}") from None
    configured = settings.vapid_public_key.strip().rstrip("=")
    if configured and configured != public:
        raise RuntimeError(
            "IMCHAT_VAPID_PUBLIC_KEY is not the public key of IMCHAT_VAPID_PRIVATE_KEY"
        )
    return VapidKeys(private, public)
