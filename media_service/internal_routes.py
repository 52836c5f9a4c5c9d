"""Internal routes (`/internal/...`): other Ferry services ask, with the internal token."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request, Response

from media_service.deps import ServingDep
from shared import keys
from shared.clock import iso
from shared.errors import NotFound
from shared.http import InternalCaller
from shared.models import MediaInfo, MediaUnreferenced

router = APIRouter(prefix="/internal", tags=["internal"], include_in_schema=False)


@router.get("/media/{media_id}", response_model=MediaInfo)
async def media_info(media_id: str, _: InternalCaller, serving: ServingDep) -> MediaInfo:
    """What the Message Service checks before a message may reference a media."""
    return await serving.info(media_id)


@router.post("/media/{media_id}/unreferenced", status_code=204)
async def media_unreferenced(
    media_id: str, body: MediaUnreferenced, _: InternalCaller, request: Request
) -> Response:
    """The Message Service says the last message referencing the media went at `at`: the
    unsent TTL counts from then, so the sweeper looks at it exactly when it may go."""
    holds = request.app.state.holds
    settings = request.app.state.settings
    if not keys.is_media_id(media_id):
        raise NotFound("no such media")
    due = body.at + timedelta(seconds=settings.unsent_media_ttl_seconds)
    if not await holds.lifecycle.wake(media_id, due, last_referenced_at=iso(body.at)):
        raise NotFound("no such media")
    return Response(status_code=204)
