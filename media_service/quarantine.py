"""Quarantine: an admin blocks a media for everyone, its owner included, and may restore it.

The block is two fields on the record (`quarantined_at`, `quarantine_reason`), not a state: the
state underneath is kept (processing may even finish meanwhile), every reader is shown
`blocked` (`MediaRecord.visible_state`), and restoring removes the fields. Each change is
announced on the media-events queue like the worker's, so members get a `media_update`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from media_service.reclaim import EventSink, media_event
from shared import keys
from shared.clock import iso, utcnow
from shared.dynamo import conditional, from_item
from shared.errors import NotFound
from shared.media_records import MediaRecord, StaleTransition

if TYPE_CHECKING:
    from shared.media_records import MediaRecords

log = logging.getLogger("ferry.media.quarantine")

# A real media row has a state; the marker rows sharing the media table do not.
_IS_MEDIA = "attribute_exists(#state)"


class Quarantine:
    def __init__(self, *, records: MediaRecords, events: EventSink) -> None:
        self.records = records
        self.events = events

    async def block(self, media_id: str, reason: str) -> MediaRecord:
        """Quarantine a media (again: the reason and time are renewed); 404 if there is none."""
        now = utcnow()
        record = await self._update(
            media_id,
            "SET quarantined_at = :at, quarantine_reason = :reason",
            {":at": {"S": iso(now)}, ":reason": {"S": reason}},
        )
        await self.events.publish(media_event(record).model_copy(update={"occurred_at": now}))
        log.info("media quarantined", extra={"media_id": media_id})
        return record

    async def restore(self, media_id: str) -> MediaRecord:
        """Lift a quarantine: the media shows its own state again (idempotent)."""
        record = await self._update(media_id, "REMOVE quarantined_at, quarantine_reason", {})
        event = media_event(record).model_copy(update={"occurred_at": utcnow(), "restored": True})
        await self.events.publish(event)
        log.info("media restored", extra={"media_id": media_id})
        return record

    async def _update(
        self, media_id: str, expression: str, values: dict[str, dict[str, str]]
    ) -> MediaRecord:
        if not keys.is_media_id(media_id):
            raise NotFound("no such media")
        request: dict[str, Any] = {
            "TableName": self.records.media_table,
            "Key": {"media_id": {"S": media_id}},
            "UpdateExpression": expression,
            "ConditionExpression": _IS_MEDIA,
            "ExpressionAttributeNames": {"#state": "state"},
            "ReturnValues": "ALL_NEW",
        }
        if values:
            request["ExpressionAttributeValues"] = values
        try:
            with conditional(StaleTransition(f"{media_id} does not exist")):
                response = await self.records._db.update_item(**request)
        except StaleTransition as error:
            raise NotFound("no such media") from error
        return MediaRecord.model_validate(from_item(response["Attributes"]))
