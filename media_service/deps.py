"""Typed dependencies: routes receive the parts built in the lifespan, never a global."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from media_service.holds import Holds
from media_service.serving import Serving
from media_service.uploads import Uploads
from shared.media_records import MediaRecords


def get_uploads(request: Request) -> Uploads:
    uploads: Uploads = request.app.state.uploads
    return uploads


def get_serving(request: Request) -> Serving:
    serving: Serving = request.app.state.serving
    return serving


def get_records(request: Request) -> MediaRecords:
    records: MediaRecords = request.app.state.records
    return records


UploadsDep = Annotated[Uploads, Depends(get_uploads)]
ServingDep = Annotated[Serving, Depends(get_serving)]
RecordsDep = Annotated[MediaRecords, Depends(get_records)]


def get_holds(request: Request) -> Holds:
    holds: Holds = request.app.state.holds
    return holds


HoldsDep = Annotated[Holds, Depends(get_holds)]
