"""HTTP routes of the Media Service (docs/api.md): thin, every decision is in `uploads` or
`serving`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from media_service.deps import ServingDep, UploadsDep
from media_service.hls import PLAYLIST_CONTENT_TYPE
from shared.http import Caller, current_identity
from shared.models import (
    CompleteRequest,
    DownloadUrl,
    ErrorBody,
    MediaDocument,
    PartsRequest,
    ProofRequest,
    ReceivedParts,
    SignedParts,
    UploadRequest,
    UploadSlot,
)

router = APIRouter(prefix="/v1/media", tags=["media"])

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody}
    for status in (401, 403, 404, 409, 410, 413, 415, 422, 429, 451, 503)
}


@router.post(
    "/uploads",
    status_code=201,
    response_model=UploadSlot,
    response_model_exclude_none=True,
    responses={**ERRORS, 200: {"model": UploadSlot, "description": "already stored: prove it"}},
    summary="Ask for an upload slot (single PUT, multipart plan, or dedup challenge)",
)
async def request_upload_slot(body: UploadRequest, caller: Caller, uploads: UploadsDep) -> Response:
    slot = await uploads.request_slot(caller.user_id, body)
    status = 200 if slot.dedup is not None else 201
    return JSONResponse(slot.model_dump(mode="json", exclude_none=True), status_code=status)


@router.post("/{media_id}/proof", response_model=MediaDocument, responses=ERRORS)
async def prove_possession(
    media_id: str, body: ProofRequest, caller: Caller, uploads: UploadsDep
) -> MediaDocument:
    return await uploads.prove(caller.user_id, media_id, body.proof)


@router.post("/{media_id}/parts", response_model=SignedParts, responses=ERRORS)
async def sign_parts(
    media_id: str, body: PartsRequest, caller: Caller, uploads: UploadsDep
) -> SignedParts:
    return SignedParts(parts=await uploads.sign_parts(caller.user_id, media_id, body.part_numbers))


@router.get("/{media_id}/parts", response_model=ReceivedParts, responses=ERRORS)
async def received_parts(media_id: str, caller: Caller, uploads: UploadsDep) -> ReceivedParts:
    return ReceivedParts(parts=await uploads.received_parts(caller.user_id, media_id))


@router.post(
    "/{media_id}/complete", status_code=202, response_model=MediaDocument, responses=ERRORS
)
async def complete_multipart(
    media_id: str, body: CompleteRequest, caller: Caller, uploads: UploadsDep
) -> MediaDocument:
    return await uploads.complete(caller.user_id, media_id, list(body.parts))


@router.delete("/{media_id}", status_code=204, response_class=Response, responses=ERRORS)
async def delete_media(media_id: str, caller: Caller, uploads: UploadsDep) -> Response:
    await uploads.delete(caller.user_id, media_id)
    return Response(status_code=204)


@router.get("/{media_id}", response_model=MediaDocument, responses=ERRORS)
async def get_media(media_id: str, caller: Caller, serving: ServingDep) -> Response:
    """Admins read any media, and see `legal_hold` and `nsfw_score`; nobody else sees them."""
    document = await serving.document(caller.user_id, media_id, admin=caller.is_admin)
    return JSONResponse(document.body())


@router.get("/{media_id}/url", response_model=DownloadUrl, responses=ERRORS)
async def download_url(
    media_id: str,
    request: Request,
    caller: Caller,
    serving: ServingDep,
    variant: Annotated[str, Query(max_length=64)] = "original",
) -> DownloadUrl:
    """`variant=hls` answers a signed master playlist link that plays with no headers."""
    return await serving.download_url(caller.user_id, media_id, variant, str(request.base_url))


@router.get(
    "/{media_id}/hls/master.m3u8",
    response_class=Response,
    responses={**ERRORS, 200: {"content": {PLAYLIST_CONTENT_TYPE: {}}}},
    summary="The HLS master playlist of a ready video, with signed links",
)
async def hls_master(
    media_id: str,
    request: Request,
    serving: ServingDep,
    expires: Annotated[int | None, Query()] = None,
    reader: Annotated[str | None, Query(max_length=256)] = None,
    signature: Annotated[str | None, Query(max_length=128)] = None,
) -> Response:
    """With the playback link's `expires`, `reader` and `signature` (from `url?variant=hls`) no
    header is needed; otherwise the bearer token says who reads."""
    base_url = str(request.base_url)
    if expires is not None and reader is not None and signature is not None:
        text = await serving.hls_master_by_link(media_id, reader, expires, signature, base_url)
    else:
        caller = await current_identity(request)
        text = await serving.hls_master(caller.user_id, media_id, base_url)
    return Response(text, media_type=PLAYLIST_CONTENT_TYPE, headers=_PRIVATE_SHORT_CACHE)


@router.get(
    "/{media_id}/hls/{rendition}/index.m3u8",
    response_class=Response,
    responses={404: {"model": ErrorBody}, 200: {"content": {PLAYLIST_CONTENT_TYPE: {}}}},
    summary="A rendition playlist (reached through the signed links of the master playlist)",
)
async def hls_rendition(
    media_id: str,
    rendition: str,
    serving: ServingDep,
    expires: Annotated[int, Query()],
    signature: Annotated[str, Query(max_length=128)],
    reader: Annotated[str, Query(max_length=256)],
) -> Response:
    text = await serving.hls_rendition(media_id, rendition, expires, signature, reader)
    return Response(text, media_type=PLAYLIST_CONTENT_TYPE, headers=_PRIVATE_SHORT_CACHE)


# Playlists carry short-lived signed URLs: never cached by shared caches, nor for long.
_PRIVATE_SHORT_CACHE = {"Cache-Control": "private, max-age=30"}
