"""`GET /v1/admin/moderation?state=blocked|flagged`: what moderation blocked or flagged, with the
reason, newest first (admins only; 403 `forbidden` otherwise).

One query on the media table's sparse moderation index per page (shared.moderation), never a
scan. `next` is an opaque cursor: pass it back as `after` for the following page.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import Field

from media_service.deps import RecordsDep
from media_service.routes import ERRORS
from shared.errors import Forbidden, Unprocessable
from shared.http import Caller
from shared.models import ContractModel, MediaState, MediaType

router = APIRouter(prefix="/v1/admin", tags=["admin"])

_CURSOR_KEYS = frozenset({"media_id", "moderation", "moderated_at"})


class ModeratedMedia(ContractModel):
    media_id: str
    owner: str
    media_type: MediaType
    state: MediaState
    moderation: Literal["blocked", "flagged"]
    reason: str = Field(description="hash_match, nsfw, malware (blocked) or sensitive (flagged)")
    nsfw_score: float | None = None
    at: datetime = Field(description="when moderation concluded")


class ModerationPage(ContractModel):
    items: list[ModeratedMedia]
    next: str | None = None


def _encode(key: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, sort_keys=True).encode()).decode()


def _decode(cursor: str) -> dict[str, Any]:
    """A cursor we issued, checked: only the index's key attributes, all strings."""
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise Unprocessable("`after` is not a cursor this endpoint returned") from None
    valid = (
        isinstance(key, dict)
        and set(key) == _CURSOR_KEYS
        and all(
            isinstance(value, dict) and set(value) == {"S"} and isinstance(value["S"], str)
            for value in key.values()
        )
    )
    if not valid:
        raise Unprocessable("`after` is not a cursor this endpoint returned")
    checked: dict[str, Any] = key
    return checked


@router.get("/moderation", response_model=ModerationPage, responses=ERRORS)
async def moderation_queue(
    caller: Caller,
    records: RecordsDep,
    state: Annotated[Literal["blocked", "flagged"], Query()],
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    after: Annotated[str | None, Query(max_length=2048)] = None,
) -> ModerationPage:
    """Media moderation blocked (with the error code as reason) or flagged sensitive."""
    if not caller.is_admin:
        raise Forbidden("this endpoint is for admins")
    start = _decode(after) if after else None
    page, last = await records.moderated(state, limit=limit, start=start)
    items = [
        ModeratedMedia(
            media_id=record.media_id,
            owner=record.owner,
            media_type=record.media_type,
            state=record.state,
            moderation=state,
            reason=record.moderation_reason or "",
            nsfw_score=record.nsfw_score,
            at=record.moderated_at or record.updated_at,
        )
        for record in page
    ]
    return ModerationPage(items=items, next=_encode(last) if last else None)
