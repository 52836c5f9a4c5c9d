"""What moderation concluded about a media, as stored on its record and listed to admins.

The worker sets these fields when a media settles: `moderation` is `blocked` (a scanner or the
NSFW policy blocked it: hash_match, nsfw, malware) or `flagged` (the NSFW classifier scored it
at or above the threshold: clients blur it). It is the hash key of a sparse index
(`MODERATION_INDEX`, range key `moderated_at`), so `GET /v1/admin/moderation?state=...` is one
query, newest first, whatever the size of the table: media nobody moderated are not in it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from shared.clock import iso
from shared.models import ErrorDetail, MediaState

MODERATION_INDEX = "moderation-by-state"
ModerationState = Literal["blocked", "flagged"]
MODERATION_STATES: tuple[ModerationState, ...] = ("blocked", "flagged")
# Error codes that are moderation verdicts (other `blocked` media: an admin's quarantine).
BLOCK_REASONS = frozenset({"hash_match", "nsfw", "malware"})
FLAGGED_REASON = "sensitive"


def moderation_fields(
    state: MediaState,
    error: ErrorDetail | None,
    meta: dict[str, Any],
    nsfw_score: float | None,
    at: datetime,
) -> dict[str, Any]:
    """The record fields for a settled media (empty when moderation had nothing to say)."""
    fields: dict[str, Any] = {}
    if nsfw_score is not None:
        fields["nsfw_score"] = round(nsfw_score, 4)
    if state is MediaState.BLOCKED and error is not None and error.code in BLOCK_REASONS:
        fields.update(moderation="blocked", moderation_reason=error.code)
    elif meta.get("sensitive") is True:
        fields.update(moderation="flagged", moderation_reason=FLAGGED_REASON)
    if "moderation" in fields:
        fields["moderated_at"] = iso(at)
    return fields
