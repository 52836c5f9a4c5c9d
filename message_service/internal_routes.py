"""Internal routes (`/internal/...`): gateways and the Media Service, with the internal token."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from message_service.deps import Messaging
from shared.http import InternalCaller
from shared.models import (
    InternalSend,
    MediaReadAccess,
    MediaReferences,
    MessagePage,
    ReceivedAck,
)

router = APIRouter(prefix="/internal", tags=["internal"], include_in_schema=False)


@router.post("/conversations/{conversation_id}/messages")
async def send_from_gateway(
    conversation_id: str, body: InternalSend, _: InternalCaller, service: Messaging
) -> Response:
    """A WebSocket `send`: the gateway vouches for who sends, from which device."""
    message, created = await service.send(
        body.sender, body.sender_device, conversation_id, body.message
    )
    return JSONResponse(message.model_dump(mode="json"), status_code=201 if created else 200)


@router.get("/devices/{user_id}/{device_id}/pending", response_model=MessagePage)
async def pending(
    user_id: str, device_id: str, _: InternalCaller, service: Messaging
) -> MessagePage:
    return MessagePage(messages=await service.pending_for(user_id, device_id))


@router.post("/devices/{user_id}/{device_id}/received", status_code=204)
async def received(
    user_id: str, device_id: str, body: ReceivedAck, _: InternalCaller, service: Messaging
) -> Response:
    await service.acknowledge(user_id, device_id, list(body.message_ids))
    return Response(status_code=204)


@router.get("/media/{media_id}/readers/{user_id}", response_model=MediaReadAccess)
async def media_reader(
    media_id: str, user_id: str, _: InternalCaller, service: Messaging
) -> MediaReadAccess:
    return MediaReadAccess(readable=await service.can_read_media(media_id, user_id))


@router.get("/media/{media_id}/references", response_model=MediaReferences)
async def media_references(media_id: str, _: InternalCaller, service: Messaging) -> MediaReferences:
    """Whether any message references the media (its owner may not delete it then)."""
    return MediaReferences(referenced=bool(await service.refs.conversations_of(media_id)))
