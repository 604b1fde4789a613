"""SQL for groups and their members."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, delete, select, update
from sqlalchemy.orm import Session

from imchat.stores.models import Group, GroupMember


@dataclass(frozen=True)
class GroupRecord:
    group_id: str
    name: str
    creator_id: str
    owner_id: str
    member_count: int
    created_at: datetime | None


@dataclass(frozen=True)
class MemberRecord:
    user_id: str
    role: str
    joined_at: datetime | None


def _record(group: Group) -> GroupRecord:
    return GroupRecord(
        group_id=group.group_id,
        name=group.name,
        creator_id=group.creator_id,
        owner_id=group.owner_id,
        member_count=group.member_count,
        created_at=group.created_at,
    )


def insert(
    session: Session,
    group_id: str,
    name: str,
    owner_id: str,
    members: Sequence[tuple[str, str]],
    now: datetime,
) -> GroupRecord:
    """Create a group with its first (user_id, role) members, the owner among them."""
    group = Group(
        group_id=group_id,
        name=name,
        creator_id=owner_id,
        owner_id=owner_id,
        member_count=len(members),
        created_at=now,
        updated_at=now,
    )
    session.add(group)
    session.flush()  # the group row first: members refer to it
    session.add_all(
        GroupMember(group_id=group_id, user_id=u, role=r, joined_at=now) for u, r in members
    )
    session.flush()
    return _record(group)


def get(session: Session, group_id: str) -> GroupRecord | None:
    group = session.get(Group, group_id)
    return _record(group) if group else None


def lock(session: Session, group_id: str) -> GroupRecord | None:
    """Read the group row FOR UPDATE: membership changes of one group run one at a time."""
    group = session.scalars(
        select(Group).where(Group.group_id == group_id).with_for_update()
    ).first()
    return _record(group) if group else None


def role_of(session: Session, group_id: str, user_id: str) -> str | None:
    """The member's role, None when ``user_id`` is not a member."""
    return session.scalar(
        select(GroupMember.role).where(
            GroupMember.group_id == group_id, GroupMember.user_id == user_id
        )
    )


def of_user(session: Session, user_id: str) -> list[tuple[GroupRecord, str]]:
    """Every group the user is a member of, with their role, by name (one query)."""
    rows = session.execute(
        select(Group, GroupMember.role)
        .join(GroupMember, GroupMember.group_id == Group.group_id)
        .where(GroupMember.user_id == user_id)
        .order_by(Group.name, Group.group_id)
    )
    return [(_record(group), role) for group, role in rows]


# Longest-standing first; user_id breaks ties within a second deterministically.
SENIORITY = (GroupMember.joined_at, GroupMember.user_id)


def members(session: Session, group_id: str) -> list[MemberRecord]:
    """Every member, longest-standing first."""
    rows = session.execute(
        select(GroupMember.user_id, GroupMember.role, GroupMember.joined_at)
        .where(GroupMember.group_id == group_id)
        .order_by(*SENIORITY)
    )
    return [MemberRecord(u, r, j) for u, r, j in rows]


def member_ids(session: Session, group_id: str) -> list[str]:
    return list(
        session.scalars(
            select(GroupMember.user_id).where(GroupMember.group_id == group_id).order_by(*SENIORITY)
        )
    )


def _count_by(session: Session, group_id: str, delta: int) -> None:
    session.execute(
        update(Group)
        .where(Group.group_id == group_id)
        .values(member_count=Group.member_count + delta)
    )


def add_member(session: Session, group_id: str, user_id: str, role: str, now: datetime) -> None:
    """Insert a member; IntegrityError on flush when already a member."""
    session.add(GroupMember(group_id=group_id, user_id=user_id, role=role, joined_at=now))
    session.flush()
    _count_by(session, group_id, +1)


def remove_member(session: Session, group_id: str, user_id: str) -> bool:
    """Delete a member; False when there was none."""
    result = session.execute(
        delete(GroupMember).where(GroupMember.group_id == group_id, GroupMember.user_id == user_id)
    )
    removed = bool(result.rowcount)  # type: ignore[attr-defined]
    if removed:
        _count_by(session, group_id, -1)
    return removed


def set_role(session: Session, group_id: str, user_id: str, role: str) -> None:
    session.execute(
        update(GroupMember)
        .where(GroupMember.group_id == group_id, GroupMember.user_id == user_id)
        .values(role=role)
    )


def set_owner(session: Session, group_id: str, owner_id: str) -> None:
    session.execute(update(Group).where(Group.group_id == group_id).values(owner_id=owner_id))


def successor(session: Session, group_id: str, leaving: str) -> str | None:
    """Who inherits the group when its owner leaves: the longest-standing admin,
    else the longest-standing member; None when nobody else is left."""
    admins_first = case((GroupMember.role == "admin", 0), else_=1)
    return session.scalar(
        select(GroupMember.user_id)
        .where(GroupMember.group_id == group_id, GroupMember.user_id != leaving)
        .order_by(admins_first, *SENIORITY)
        .limit(1)
    )


def delete_group(session: Session, group_id: str) -> None:
    """Drop the group and (explicitly, for databases without cascades) its members."""
    session.execute(delete(GroupMember).where(GroupMember.group_id == group_id))
    session.execute(delete(Group).where(Group.group_id == group_id))
