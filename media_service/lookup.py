"""Finding a media record, settling on the way an upload nobody finished in time as `expired`."""

from __future__ import annotations

from datetime import datetime, timedelta

from media_service.storage import MediaBucket
from shared import keys
from shared.clock import utcnow
from shared.errors import NotFound
from shared.media_records import MediaRecord, MediaRecords, StaleTransition
from shared.models import MediaState

UPLOAD_EXPIRED = "the upload slot expired before its bytes (or proof) arrived"


def upload_abandoned(record: MediaRecord, now: datetime, grace: timedelta) -> bool:
    """Whether a slot or challenge is past its expiry plus `grace` with nothing done (pure).

    The grace lets an upload that started just before its URL expired, and its storage event,
    still land."""
    if record.state is MediaState.AWAITING_UPLOAD and record.upload_expires_at is not None:
        return now > record.upload_expires_at + grace
    if record.state is MediaState.AWAITING_PROOF:
        # A proof takes the challenge first; if its process died before settling the media the
        # challenge is gone, so the slot's own expiry (the challenge's, set with it) decides.
        expires_at = record.challenge.expires_at if record.challenge else record.upload_expires_at
        return expires_at is not None and now > expires_at + grace
    return False


class MediaLookup:
    def __init__(self, *, records: MediaRecords, bucket: MediaBucket, expiry_grace: timedelta):
        self.records = records
        self.bucket = bucket
        self.expiry_grace = expiry_grace

    async def load(self, media_id: str, *, hidden: bool = False) -> MediaRecord | None:
        """A media record, with a slot or challenge nobody used in time settled as `expired`
        (an abandoned upload must not wait forever). A media its owner deleted while it was
        under legal hold is kept but found only with `hidden` (admins)."""
        record = await self.records.get(media_id) if keys.is_media_id(media_id) else None
        if record is not None and record.owner_deleted_at is not None and not hidden:
            return None
        if record is None or not upload_abandoned(record, utcnow(), self.expiry_grace):
            return record
        if record.upload_id:
            await self.bucket.abort_multipart(record.object_key, upload_id=record.upload_id)
        try:
            return await self.records.transition(
                record.media_id,
                MediaState.EXPIRED,
                set_fields={"error": {"code": "upload_expired", "message": UPLOAD_EXPIRED}},
                remove_fields=("pending_owner", "challenge"),
                only_from=frozenset({record.state}),
            )
        except StaleTransition:
            return await self.records.get(media_id)  # the bytes arrived just in time

    async def owned(self, owner: str, media_id: str) -> MediaRecord:
        """The media if `owner` owns it; 404 alike for missing media and someone else's."""
        record = await self.load(media_id)
        if record is None or record.owner != owner:
            raise NotFound("no such media")
        return record
