"""Internal routes (`/internal/...`): gateways and the Media Service, with the internal token."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse

from message_service.deps import Messaging
from shared.errors import FerryError
from shared.http import InternalCaller
from shared.models import (
    DevicePending,
    DeviceRef,
    ErrorDetail,
    InternalSend,
    MediaReadAccess,
    MediaReferences,
    MessagePage,
    PendingBatch,
    PendingBatchResult,
    ReceivedAck,
    UnreferencedMedia,
    UnreferencedMediaPage,
)

log = logging.getLogger("ferry.message_service.internal")

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


@router.post("/devices/{user_id}/{device_id}/admit", status_code=204)
async def admit_device(
    user_id: str, device_id: str, _: InternalCaller, service: Messaging
) -> Response:
    """May this device be used? 204, or 403 `too_many_devices` (gateways and the Media
    Service ask before serving a token's device)."""
    await service.admit_device(user_id, device_id)
    return Response(status_code=204)


@router.get("/devices/{user_id}/{device_id}/pending", response_model=MessagePage)
async def pending(
    user_id: str, device_id: str, _: InternalCaller, service: Messaging
) -> MessagePage:
    return MessagePage(messages=await service.pending_for(user_id, device_id))


@router.post("/devices/pending")
async def pending_batch(body: PendingBatch, _: InternalCaller, service: Messaging) -> JSONResponse:
    """`GET .../pending` for many devices in one call (a gateway's connect storm): one result
    per device, in order (403 `too_many_devices`; 503 when the device's backlog could not be
    read)."""

    async def one(device: DeviceRef) -> DevicePending:
        try:
            messages = await service.pending_for(device.user_id, device.device_id)
        except FerryError as error:
            detail = ErrorDetail(code=error.error_code, message=error.message)
            return DevicePending(status=error.status, error=detail)
        except Exception as error:  # this device's answer only; the others still count
            log.warning("pending messages not read for a batch: %r", error)
            detail = ErrorDetail(code="dependency_unavailable", message="try again later")
            return DevicePending(status=503, error=detail)
        page = MessagePage(messages=messages).model_dump(mode="json")
        return DevicePending(status=200, messages=page["messages"])

    results = await asyncio.gather(*(one(device) for device in body.devices))
    return JSONResponse(
        PendingBatchResult(results=results).model_dump(mode="json", exclude_none=True)
    )


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
    """How many messages reference the media (its owner may not delete it then), and since
    when none does once the last was deleted (the sweeper's "unsent from that moment")."""
    summary = await service.refs.summary(media_id)
    if summary is None:
        # Never referenced, or referenced only before reference counts existed.
        referenced = bool(await service.refs.conversations_of(media_id))
        return MediaReferences(referenced=referenced, references=int(referenced))
    return MediaReferences(
        referenced=summary.references > 0,
        references=summary.references,
        first_referenced_at=summary.first_referenced_at,
        last_referenced_at=summary.last_referenced_at,
        unreferenced_since=summary.unreferenced_since,
    )


@router.get("/media-unreferenced", response_model=UnreferencedMediaPage)
async def unreferenced_media(
    _: InternalCaller,
    service: Messaging,
    before: datetime,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> UnreferencedMediaPage:
    """Media whose last referencing message was deleted before `before`, oldest first: one
    query of a sparse index, for the sweeper (a media referenced again leaves the list)."""
    found = await service.refs.unreferenced(before=before, limit=limit)
    return UnreferencedMediaPage(
        media=[
            UnreferencedMedia(media_id=s.media_id, unreferenced_since=s.unreferenced_since)
            for s in found
            if s.unreferenced_since is not None
        ]
    )
