"""Conversation ids, as clients and every process see them: one name for a
direct chat on both sides (``d:<smaller user id>:<larger user id>``), one per
group (``g:<group id>``)."""

from __future__ import annotations

GROUP_PREFIX = "g:"


def direct_conversation_id(user_a: str, user_b: str) -> str:
    low, high = sorted((user_a, user_b))
    return f"d:{low}:{high}"


def group_conversation_id(group_id: str) -> str:
    return f"{GROUP_PREFIX}{group_id}"


def group_of(conversation_id: str) -> str | None:
    """The group of a group conversation id; None for any other id."""
    if conversation_id.startswith(GROUP_PREFIX):
        return conversation_id.removeprefix(GROUP_PREFIX)
    return None
