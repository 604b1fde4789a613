"""Conversation ids: one name for a direct chat on both sides, one per group."""

from __future__ import annotations


def direct_conversation_id(user_a: str, user_b: str) -> str:
    low, high = sorted((user_a, user_b))
    return f"d:{low}:{high}"


def group_conversation_id(group_id: str) -> str:
    return f"g:{group_id}"
