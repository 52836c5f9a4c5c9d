"""Public HTTP routes of the Message Service (docs/api.md): thin, decisions in `service`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse

from message_service.deps import Messaging
from shared.http import Caller
from shared.models import (
    Conversation,
    ConversationCreate,
    ErrorBody,
    MemberAdd,
    Message,
    MessagePage,
    SendMessage,
)

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (401, 404, 409, 413, 422, 503)
}


@router.post("", status_code=201, response_model=Conversation, responses=ERRORS)
async def create_conversation(
    body: ConversationCreate, caller: Caller, service: Messaging
) -> Conversation:
    return await service.create_conversation(caller.user_id, body)


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
    message, created = await service.send(caller.user_id, caller.device_id, conversation_id, body)
    return JSONResponse(message.model_dump(mode="json"), status_code=201 if created else 200)


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
