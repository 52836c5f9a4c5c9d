"""Media events from the Media Service itself (quarantine, restore, erasure's reclaimer), on the
media-events queue the worker publishes to.

The queue's URL is looked up on the first event, not at start: the service starts (and
answers `/readyz`) without calling SQS, as before it published anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from media_service.reclaim import QueueEvents
from shared.models import MediaEvent

if TYPE_CHECKING:
    from types_aiobotocore_sqs.client import SQSClient


class NamedQueueEvents:
    def __init__(self, sqs: SQSClient, queue_name: str) -> None:
        self._sqs = sqs
        self._queue_name = queue_name
        self._events: QueueEvents | None = None

    async def publish(self, event: MediaEvent) -> None:
        if self._events is None:
            queue = await self._sqs.get_queue_url(QueueName=self._queue_name)
            self._events = QueueEvents(self._sqs, queue["QueueUrl"])
        await self._events.publish(event)
