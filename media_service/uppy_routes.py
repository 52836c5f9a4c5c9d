"""Companion-style S3 routes for Uppy's `@uppy/aws-s3` plugin (docs/uppy.md).

The page creates the Ferry slot itself (hash, `POST /v1/media/uploads`, the dedup proof when the
bytes are already stored) and hands the plugin only multipart slots, with the media id as the
file's `media_id` meta field; the plugin's calls map onto the slot's multipart upload:

| plugin call | Ferry |
| --- | --- |
| `POST /s3/multipart` `{metadata: {media_id}}` | that slot → `{key, uploadId}` (the media id) |
| `GET /s3/multipart/{uploadId}/{n}?key=` | `POST /v1/media/{id}/parts` → `{url}` |
| `GET /s3/multipart/{uploadId}?key=` | `GET /v1/media/{id}/parts` → `[{PartNumber, Size, ETag}]` |
| `POST /s3/multipart/{uploadId}/complete?key=` | `POST /v1/media/{id}/complete` → `{location}` |
| `DELETE /s3/multipart/{uploadId}?key=` | `DELETE /v1/media/{id}` |
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from media_service.deps import UploadsDep
from media_service.uppy import Capability, CapabilitySigner
from shared.clock import utcnow
from shared.errors import Conflict, NotFound
from shared.http import Caller
from shared.models import CompletedPart, MediaState

router = APIRouter(prefix="/v1/uppy", tags=["uppy"])
CAPABILITY_TTL_SECONDS = 3600


class CompanionEndpoint(BaseModel):
    companion_endpoint: str = Field(description="Uppy's `companionEndpoint` for this user")
    expires_at: datetime


class MultipartStart(BaseModel):
    filename: str | None = None
    type: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class UppyPart(BaseModel):
    PartNumber: Annotated[int, Field(ge=1, le=10000)]
    ETag: Annotated[str, Field(min_length=1, max_length=128)]


class UppyComplete(BaseModel):
    parts: Annotated[list[UppyPart], Field(min_length=1)]


def _signer(request: Request) -> CapabilitySigner:
    return CapabilitySigner(request.app.state.settings.auth_jwt_secret)


def _capability(capability: str, request: Request) -> Capability:
    granted = _signer(request).read(capability, now=time.time())
    if granted is None:
        raise NotFound("no such endpoint, or its capability expired")
    return granted


Granted = Annotated[Capability, Depends(_capability)]


@router.post("/capabilities", response_model=CompanionEndpoint, summary="Mint Uppy's endpoint")
async def mint(request: Request, caller: Caller) -> CompanionEndpoint:
    expires = int(time.time()) + CAPABILITY_TTL_SECONDS
    token = _signer(request).mint(caller.user_id, expires)
    public = request.app.state.settings.public_url or str(request.base_url)
    return CompanionEndpoint(
        companion_endpoint=f"{public.rstrip('/')}/v1/uppy/{token}",
        expires_at=datetime.fromtimestamp(expires, UTC),
    )


@router.get("/{capability}/s3/params", include_in_schema=False)
async def single_upload(request: Request, granted: Granted, uploads: UploadsDep) -> dict[str, Any]:
    """A single-upload slot as a form POST (`{url, fields}`): `metadata[media_id]` names it."""
    media_id = request.query_params.get("metadata[media_id]")
    if not media_id:
        raise NotFound("create the Ferry slot first and pass its media_id as file meta")
    record = await uploads.lookup.owned(granted.owner, media_id)
    if record.state is not MediaState.AWAITING_UPLOAD or record.upload_id:
        raise Conflict("this media is not waiting for a single upload", code="invalid_state")
    ttl = 60
    if record.upload_expires_at is not None:
        ttl = max(1, int((record.upload_expires_at - utcnow()).total_seconds()))
    url, fields = await uploads.bucket.sign_post(
        record.object_key, content_type=record.content_type, size=record.size, ttl_seconds=ttl
    )
    return {"url": url, "fields": fields}


@router.post("/{capability}/s3/multipart", include_in_schema=False)
async def start(body: MultipartStart, granted: Granted, uploads: UploadsDep) -> dict[str, str]:
    media_id = body.metadata.get("media_id")
    if not isinstance(media_id, str):
        raise NotFound("create the Ferry slot first and pass its media_id as file meta")
    await uploads.received_parts(granted.owner, media_id)  # owned, multipart, still open
    return {"key": media_id, "uploadId": media_id}


@router.get("/{capability}/s3/multipart/{upload_id}/{part_number}", include_in_schema=False)
async def sign_part(
    upload_id: str, part_number: int, granted: Granted, uploads: UploadsDep
) -> dict[str, str]:
    [signed] = await uploads.sign_parts(granted.owner, upload_id, [part_number])
    return {"url": signed.url}


@router.get("/{capability}/s3/multipart/{upload_id}", include_in_schema=False)
async def list_parts(upload_id: str, granted: Granted, uploads: UploadsDep) -> list[dict[str, Any]]:
    parts = await uploads.received_parts(granted.owner, upload_id)
    return [{"PartNumber": p.part_number, "Size": p.size, "ETag": p.etag} for p in parts]


@router.post("/{capability}/s3/multipart/{upload_id}/complete", include_in_schema=False)
async def complete(
    upload_id: str, body: UppyComplete, granted: Granted, uploads: UploadsDep
) -> dict[str, str]:
    parts = [CompletedPart(part_number=p.PartNumber, etag=p.ETag) for p in body.parts]
    document = await uploads.complete(granted.owner, upload_id, parts)
    return {"location": document.media_id, "key": document.media_id}


@router.delete("/{capability}/s3/multipart/{upload_id}", status_code=204, include_in_schema=False)
async def abort(upload_id: str, granted: Granted, uploads: UploadsDep) -> Response:
    await uploads.delete(granted.owner, upload_id)
    return Response(status_code=204)
