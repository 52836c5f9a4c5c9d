"""Public HTTP routes of the Message Service (docs/api.md): thin, decisions in `service`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse

from message_service.deps import Caller, Messaging
from shared.http import Caller as CallerAnyDevice
from shared.models import (
    Conversation,
    ConversationCreate,
    ConversationList,
    ErrorBody,
    MemberAdd,
    Message,
    MessagePage,
    SendMessage,
)

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])
me_router = APIRouter(prefix="/v1/me", tags=["me"])

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (401, 403, 404, 409, 413, 422, 429, 503)
}


@router.post(
    "",
    status_code=201,
    response_model=Conversation,
    responses={
        **ERRORS,
        200: {"model": Conversation, "description": "`direct`: the pair's existing conversation"},
    },
)
async def create_conversation(
    body: ConversationCreate, caller: Caller, service: Messaging
) -> Response:
    """The caller is a member and the admin. With `"direct": true` and one other member: the
    pair's one direct conversation, found (200) or created (201)."""
    conversation, created = await service.create_conversation(caller.user_id, body)
    return JSONResponse(conversation.model_dump(mode="json"), status_code=201 if created else 200)


@router.get("", response_model=ConversationList, responses=ERRORS)
async def list_conversations(
    caller: Caller,
    service: Messaging,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    before: Annotated[str | None, Query(max_length=2048)] = None,
) -> ConversationList:
    """The caller's conversations, most recent message first; `before` takes `next`."""
    return await service.list_conversations(caller.user_id, limit=limit, before=before)


@router.get("/{conversation_id}", response_model=Conversation, responses=ERRORS)
async def get_conversation(
    conversation_id: str, caller: Caller, service: Messaging
) -> Conversation:
    return await service.conversation(caller.user_id, conversation_id)


@router.post("/{conversation_id}/members", response_model=Conversation, responses=ERRORS)
async def add_member(
    conversation_id: str, body: MemberAdd, caller: Caller, service: Messaging
) -> Conversation:
    return await service.add_member(caller.user_id, conversation_id, body.user_id)


@router.delete(
    "/{conversation_id}/members/{user_id}",
    status_code=204,
    response_class=Response,
    responses=ERRORS,
)
async def remove_member(
    conversation_id: str, user_id: str, caller: Caller, service: Messaging
) -> Response:
    await service.remove_member(caller.user_id, conversation_id, user_id)
    return Response(status_code=204)


@router.post(
    "/{conversation_id}/messages",
    status_code=201,
    response_model=Message,
    responses={**ERRORS, 200: {"model": Message, "description": "a replay: the first message"}},
)
async def send_message(
    conversation_id: str, body: SendMessage, caller: Caller, service: Messaging
) -> Response:
    message, created = await service.send(
        caller.user_id, caller.device_id, conversation_id, body, rate_limited=True
    )
    return JSONResponse(message.model_dump(mode="json"), status_code=201 if created else 200)


@router.delete(
    "/{conversation_id}/messages/{message_id}",
    status_code=204,
    response_class=Response,
    responses=ERRORS,
)
async def delete_message(
    conversation_id: str, message_id: str, caller: Caller, service: Messaging
) -> Response:
    """For everyone (the sender or a conversation admin): members' devices get
    `message_deleted`, history keeps a tombstone, the media references are released."""
    await service.delete_message(caller.user_id, conversation_id, message_id)
    return Response(status_code=204)


@router.get("/{conversation_id}/messages", response_model=MessagePage, responses=ERRORS)
async def history(
    conversation_id: str,
    caller: Caller,
    service: Messaging,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> MessagePage:
    messages = await service.history(caller.user_id, conversation_id, after=after, limit=limit)
    return MessagePage(messages=messages)


@me_router.delete(
    "/devices/{device_id}",
    status_code=204,
    response_class=Response,
    responses={status: {"model": ErrorBody} for status in (401, 404, 503)},
)
async def remove_device(device_id: str, caller: CallerAnyDevice, service: Messaging) -> Response:
    """Forget one of the caller's devices (its place under `MAX_DEVICES_PER_USER` is free
    again; what was pending for it is dropped)."""
    await service.remove_device(caller.user_id, device_id)
    return Response(status_code=204)
