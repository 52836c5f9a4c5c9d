"""Typed dependencies: routes receive the parts built in the lifespan, never a global."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from media_service.holds import Holds
from media_service.serving import Serving
from media_service.uploads import Uploads


def get_uploads(request: Request) -> Uploads:
    uploads: Uploads = request.app.state.uploads
    return uploads


def get_serving(request: Request) -> Serving:
    serving: Serving = request.app.state.serving
    return serving


UploadsDep = Annotated[Uploads, Depends(get_uploads)]
ServingDep = Annotated[Serving, Depends(get_serving)]


def get_holds(request: Request) -> Holds:
    holds: Holds = request.app.state.holds
    return holds


HoldsDep = Annotated[Holds, Depends(get_holds)]
