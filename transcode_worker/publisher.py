"""Media events to the media-events queue, one per state change (the Message Service consumes)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

from shared.media_records import MediaRecord
from shared.models import MediaEvent

if TYPE_CHECKING:
    from types_aiobotocore_sqs.client import SQSClient

log = logging.getLogger("ferry.worker.publisher")


def media_event(record: MediaRecord) -> MediaEvent:
    """The event announcing the state `record` is in (its last update is when it happened)."""
    return MediaEvent(
        media_id=record.media_id,
        # A quarantined media stays `blocked` to everyone, whatever processing concluded.
        state=record.visible_state,
        media_type=record.media_type,
        meta=record.meta,
        variants=[variant.public() for variant in record.variants],
        error=record.visible_error,
        occurred_at=record.updated_at,
    )


class Publisher(Protocol):
    async def publish(self, record: MediaRecord) -> None: ...


class EventPublisher:
    """Sends a `MediaEvent` (JSON body) per call; at least once, so consumers deduplicate."""

    def __init__(self, sqs: SQSClient, queue_url: str) -> None:
        self._sqs = sqs
        self._queue_url = queue_url

    async def publish(self, record: MediaRecord) -> None:
        request: dict[str, Any] = {
            "QueueUrl": self._queue_url,
            "MessageBody": media_event(record).model_dump_json(),
        }
        if record.request_id:
            # Lets the consumer's logs carry the id of the request that started it all.
            request["MessageAttributes"] = {
                "request_id": {"DataType": "String", "StringValue": record.request_id}
            }
        await self._sqs.send_message(**request)
        log.info(
            "published media event",
            extra={"media_id": record.media_id, "state": record.state.value},
        )
