"""Governance routes: usage and quotas, quarantine, erasure and the audit log (docs/admin.md).

Thin: decisions live in `quarantine`, `erasure`, `audit` and `shared.usage`. Every `/v1/admin`
route takes `AdminCaller` (403 `forbidden` without the `admin` role) and records what it did in
the audit log once it applied.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse

from media_service.audit import AuditPage
from media_service.deps import AuditDep, ErasureDep, QuarantineDep, ServingDep, UsageDep
from media_service.erasure import ErasureReport
from shared.http import AdminCaller, Caller
from shared.models import ErrorBody, LegalHoldRequest, MediaDocument
from shared.usage import Usage

router = APIRouter(prefix="/v1/admin", tags=["admin"])
me_router = APIRouter(prefix="/v1/me", tags=["usage"])

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (401, 403, 404, 422, 503)
}

# The reason of a quarantine has the shape of a legal hold's: a short human sentence.
QuarantineRequest = LegalHoldRequest


@me_router.get("/usage", response_model=Usage, responses=ERRORS)
async def my_usage(caller: Caller, usage: UsageDep) -> Usage:
    """Stored (verified) bytes, pending declared bytes, media count and the quota."""
    return await usage.of(caller.user_id)


@router.get("/users/{user_id}/usage", response_model=Usage, responses=ERRORS)
async def user_usage(user_id: str, _: AdminCaller, usage: UsageDep) -> Usage:
    return await usage.of(user_id)


@router.post(
    "/media/{media_id}/quarantine",
    response_model=MediaDocument,
    responses={**ERRORS, 200: {"description": "the admin's view of the media document"}},
    summary="Block a media for everyone, owner included (451), until restored",
)
async def quarantine_media(
    media_id: str,
    body: QuarantineRequest,
    caller: AdminCaller,
    quarantine: QuarantineDep,
    serving: ServingDep,
    audit: AuditDep,
) -> Response:
    await quarantine.block(media_id, body.reason)
    await audit.record(
        actor=caller.user_id,
        action="media.quarantine",
        target=f"media/{media_id}",
        reason=body.reason,
    )
    document = await serving.document(caller.user_id, media_id, admin=True)
    return JSONResponse(document.body())


@router.delete(
    "/media/{media_id}/quarantine", status_code=204, response_class=Response, responses=ERRORS
)
async def restore_media(
    media_id: str, caller: AdminCaller, quarantine: QuarantineDep, audit: AuditDep
) -> Response:
    """Lift a quarantine: the media is back in the state it was in."""
    await quarantine.restore(media_id)
    await audit.record(actor=caller.user_id, action="media.restore", target=f"media/{media_id}")
    return Response(status_code=204)


@router.delete(
    "/users/{user_id}/media",
    status_code=202,
    response_model=ErasureReport,
    responses=ERRORS,
    summary="Erase every media a user owns that no legal hold keeps (right to erasure)",
)
async def erase_user_media(
    user_id: str, caller: AdminCaller, erasure: ErasureDep, audit: AuditDep
) -> ErasureReport:
    report = await erasure.erase_user(user_id)
    await audit.record(
        actor=caller.user_id,
        action="user.erase_media",
        target=f"user/{user_id}",
        reason=f"deleted {report.deleted}, held {report.held}",
    )
    return report


@router.get("/audit", response_model=AuditPage, responses=ERRORS)
async def audit_log(
    _: AdminCaller,
    audit: AuditDep,
    after: Annotated[str | None, Query(max_length=64, description="`next` of a page")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AuditPage:
    """Every admin action, oldest first."""
    return await audit.page(after=after, limit=limit)
