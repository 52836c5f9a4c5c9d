"""Admin routes (`/v1/admin/...`, role `admin` in the token; 403 `forbidden` otherwise).

Thin: every decision is in `holds`. Later admin jobs (quarantine, erasure, usage, audit) add
their routes here, behind the same `AdminCaller` dependency.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from media_service.deps import AuditDep, HoldsDep, ServingDep
from shared.http import AdminCaller
from shared.models import ErrorBody, LegalHoldRequest, MediaDocument, UserLegalHold

router = APIRouter(prefix="/v1/admin", tags=["admin"])

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (401, 403, 404, 422, 503)
}


@router.put(
    "/media/{media_id}/legal-hold",
    response_model=MediaDocument,
    responses=ERRORS,
    summary="Hold a media: nothing deletes or retires it; Object Lock holds every object",
)
async def hold_media(
    media_id: str,
    body: LegalHoldRequest,
    caller: AdminCaller,
    holds: HoldsDep,
    serving: ServingDep,
    audit: AuditDep,
) -> Response:
    """200 with the admin's view of the media document (`legal_hold: true`)."""
    await holds.hold(media_id, body.reason)
    await audit.record(
        actor=caller.user_id,
        action="media.legal_hold",
        target=f"media/{media_id}",
        reason=body.reason,
    )
    document = await serving.document(caller.user_id, media_id, admin=True)
    return JSONResponse(document.body())


@router.delete(
    "/media/{media_id}/legal-hold", status_code=204, response_class=Response, responses=ERRORS
)
async def release_media(
    media_id: str, caller: AdminCaller, holds: HoldsDep, audit: AuditDep
) -> Response:
    await holds.release(media_id)
    await audit.record(
        actor=caller.user_id, action="media.legal_hold_release", target=f"media/{media_id}"
    )
    return Response(status_code=204)


@router.put(
    "/users/{user_id}/legal-hold",
    response_model=UserLegalHold,
    responses=ERRORS,
    summary="Hold every media a user owns, now and until released (new uploads too)",
)
async def hold_user(
    user_id: str, body: LegalHoldRequest, caller: AdminCaller, holds: HoldsDep, audit: AuditDep
) -> UserLegalHold:
    count = await holds.hold_user(user_id, body.reason)
    await audit.record(
        actor=caller.user_id,
        action="user.legal_hold",
        target=f"user/{user_id}",
        reason=body.reason,
    )
    return UserLegalHold(user_id=user_id, legal_hold=True, reason=body.reason, media_held=count)


@router.delete(
    "/users/{user_id}/legal-hold", status_code=204, response_class=Response, responses=ERRORS
)
async def release_user(
    user_id: str, caller: AdminCaller, holds: HoldsDep, audit: AuditDep
) -> Response:
    await holds.release_user(user_id)
    await audit.record(
        actor=caller.user_id, action="user.legal_hold_release", target=f"user/{user_id}"
    )
    return Response(status_code=204)
