"""Typed dependencies: routes receive the service built in the lifespan, never a global."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from media_service.service import MediaService


def get_media_service(request: Request) -> MediaService:
    service: MediaService = request.app.state.media_service
    return service


MediaServiceDep = Annotated[MediaService, Depends(get_media_service)]
