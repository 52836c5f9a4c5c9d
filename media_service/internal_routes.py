"""Internal routes (`/internal/...`): other Ferry services ask, with the internal token."""

from __future__ import annotations

from fastapi import APIRouter

from media_service.deps import ServingDep
from shared.http import InternalCaller
from shared.models import MediaInfo

router = APIRouter(prefix="/internal", tags=["internal"], include_in_schema=False)


@router.get("/media/{media_id}", response_model=MediaInfo)
async def media_info(media_id: str, _: InternalCaller, serving: ServingDep) -> MediaInfo:
    """What the Message Service checks before a message may reference a media."""
    return await serving.info(media_id)
