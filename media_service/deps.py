"""Typed dependencies: routes receive the parts built in the lifespan, never a global.

Each is `async def`: FastAPI runs a plain `def` dependency in its thread pool, a thread hop
per request for what is one attribute read.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from media_service.audit import AuditLog
from media_service.erasure import Erasure
from media_service.holds import Holds
from media_service.quarantine import Quarantine
from media_service.quotas import Quotas
from media_service.serving import Serving
from media_service.uploads import Uploads
from shared.media_records import MediaRecords


async def get_uploads(request: Request) -> Uploads:
    uploads: Uploads = request.app.state.uploads
    return uploads


async def get_serving(request: Request) -> Serving:
    serving: Serving = request.app.state.serving
    return serving


async def get_records(request: Request) -> MediaRecords:
    records: MediaRecords = request.app.state.records
    return records


UploadsDep = Annotated[Uploads, Depends(get_uploads)]
ServingDep = Annotated[Serving, Depends(get_serving)]
RecordsDep = Annotated[MediaRecords, Depends(get_records)]


async def get_holds(request: Request) -> Holds:
    holds: Holds = request.app.state.holds
    return holds


HoldsDep = Annotated[Holds, Depends(get_holds)]


# --- governance (media_service.governance_routes); AdminCaller is in shared.http ------------


async def get_quotas(request: Request) -> Quotas:
    quotas: Quotas = request.app.state.quotas
    return quotas


async def get_quarantine(request: Request) -> Quarantine:
    quarantine: Quarantine = request.app.state.quarantine
    return quarantine


async def get_erasure(request: Request) -> Erasure:
    erasure: Erasure = request.app.state.erasure
    return erasure


async def get_audit(request: Request) -> AuditLog:
    """The audit log: every admin route records what it did (`await audit.record(...)`)."""
    audit: AuditLog = request.app.state.audit
    return audit


UsageDep = Annotated[Quotas, Depends(get_quotas)]
QuarantineDep = Annotated[Quarantine, Depends(get_quarantine)]
ErasureDep = Annotated[Erasure, Depends(get_erasure)]
AuditDep = Annotated[AuditLog, Depends(get_audit)]
