"""The API's side of Web Push: browsers' subscriptions and each member's
switch per conversation.

The switch (``conversation_members.push``) is on, off or unset; unset follows
the default rule: on in a direct conversation, on in a group of at most
``IMCHAT_PUSH_GROUP_MUTE_ABOVE`` members (100), off in a larger one. A reply
to one of the member's own messages is pushed unless the switch is off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec

from imchat.errors import APIError
from imchat.services.conversations import member_or_error
from imchat.services.push.keys import b64url_decode
from imchat.stores import push as push_store
from imchat.wire.ids import group_of

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from imchat.container import Services

# Browsers a user may keep subscribed at once; a new one past it drops the oldest.
MAX_SUBSCRIPTIONS_PER_USER = 20
AUTH_SECRET_BYTES = 16  # RFC 8291


def subscribe(services: Services, user_id: str, endpoint: str, p256dh: str, auth: str) -> None:
    """Keep a browser's subscription (validated here past its schema: the
    endpoint's scheme against the setting, the keys as RFC 8291 keys)."""
    check_endpoint(services, endpoint)
    check_keys(p256dh, auth)
    with services.db.session() as session:
        push_store.save(session, user_id, endpoint, p256dh, auth)
        session.flush()
        push_store.keep_newest(
            session, user_id, MAX_SUBSCRIPTIONS_PER_USER, push_store.endpoint_hash(endpoint)
        )


def unsubscribe(services: Services, user_id: str, endpoint: str) -> None:
    """Remove the caller's subscription of ``endpoint`` (nothing when there is none)."""
    with services.db.session() as session:
        push_store.remove(session, user_id, endpoint)


def check_endpoint(services: Services, endpoint: str) -> None:
    parts = urlsplit(endpoint)
    allowed = services.settings.push_endpoint_scheme_set
    if parts.scheme.lower() not in allowed or not parts.hostname:
        schemes = ", ".join(sorted(allowed)) or "none"
        raise APIError(
            400,
            f"endpoint must be an absolute URL ({schemes})",
            details={"endpoint": ["scheme not allowed"]},
        )


def check_keys(p256dh: str, auth: str) -> None:
    problems: dict[str, list[str]] = {}
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(p256dh))
    except ValueError:
        problems["keys.p256dh"] = ["not an uncompressed P-256 public key, base64url"]
    try:
        if len(b64url_decode(auth)) != AUTH_SECRET_BYTES:
            problems["keys.auth"] = [f"not {AUTH_SECRET_BYTES} bytes, base64url"]
    except ValueError:
        problems["keys.auth"] = ["not base64url"]
    if problems:
        raise APIError(400, "bad subscription keys", details=problems)


# ------------------------------------------------------- per conversation
def switch_view(services: Services, user_id: str, conversation_id: str) -> dict[str, Any]:
    with services.db.session() as session:
        member_or_error(session, user_id, conversation_id)
        setting = push_store.switches(session, [(user_id, conversation_id)]).get(
            (user_id, conversation_id)
        )
        return _view(services, session, conversation_id, setting)


def set_switch(
    services: Services, user_id: str, conversation_id: str, push: bool | None
) -> dict[str, Any]:
    with services.db.session() as session:
        member_or_error(session, user_id, conversation_id)
        push_store.set_switch(session, user_id, conversation_id, push)
        return _view(services, session, conversation_id, push)


def _view(
    services: Services, session: Session, conversation_id: str, setting: bool | None
) -> dict[str, Any]:
    """``push``: whether messages of the conversation are pushed to the caller;
    ``setting``: the caller's switch (null: the default rule)."""
    group = group_of(conversation_id)
    default = True
    if group is not None:
        size = push_store.groups(session, [group]).get(group, (0, ""))[0]
        default = size <= services.settings.push_group_mute_above
    effective = default if setting is None else setting
    return {"conversation_id": conversation_id, "push": effective, "setting": setting}
