"""The caller's conversations and their history under /api/v1/conversations."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from imchat.api import history_schemas as hs
from imchat.api import schemas
from imchat.api.auth_guard import current_user_id, require_auth
from imchat.api.openapi import operation
from imchat.container import services_of
from imchat.services import conversations as conversation_service

bp = Blueprint("conversations", __name__, url_prefix="/api/v1/conversations")


@bp.get("")
@operation(
    "the caller's conversations, most recent activity first",
    200,
    hs.ConversationPageSchema,
    errors=(400,),
    tag="conversations",
    query=hs.ConversationListQuery,
)
@require_auth
def list_conversations() -> Response:
    query = schemas.load(hs.ConversationListQuery(), request.args.to_dict())
    page = conversation_service.list_conversations(
        services_of(current_app), current_user_id(), query["limit"], query.get("before")
    )
    return jsonify(page)


@bp.get("/<conversation_id>")
@operation(
    "one conversation of the caller",
    200,
    hs.ConversationSchema,
    errors=(403, 404),
    tag="conversations",
)
@require_auth
def get_conversation(conversation_id: str) -> Response:
    view = conversation_service.get_conversation(
        services_of(current_app), current_user_id(), conversation_id
    )
    return jsonify(view)


@bp.get("/<conversation_id>/messages")
@operation(
    "a page of history, ascending: the newest, or just below before_seq, or just above after_seq",
    200,
    hs.HistoryPageSchema,
    errors=(400, 403, 404),
    tag="conversations",
    query=hs.HistoryQuery,
)
@require_auth
def history(conversation_id: str) -> Response:
    query = schemas.load(hs.HistoryQuery(), request.args.to_dict())
    page = conversation_service.history_page(
        services_of(current_app),
        current_user_id(),
        conversation_id,
        query["limit"],
        before_seq=query.get("before_seq"),
        after_seq=query.get("after_seq"),
    )
    return jsonify(page)
