"""The worker's dead-letter consumers: whatever reached a DLQ, its media does not stay stuck.

A message lands in a dead-letter queue after its last allowed receive, most often because the
process handling it died each time (a crash skips every in-process last-try hook; on some SQS
implementations a long poll whose client died still takes a message). Each dead letter's media
is failed with `processing_failed` (if still live), counted on `ferry_dead_letters_total`, and
the message is deleted: the log line keeps what it said.
"""

from __future__ import annotations

import logging

from shared.sqs_consumer import QueueMessage
from transcode_worker.events import ObjectsCreated, parse_uploads_message
from transcode_worker.lanes import parse_derive_job
from transcode_worker.metrics import WorkerMetrics
from transcode_worker.settle import MediaSettler

log = logging.getLogger("ferry.worker.dead_letters")

# How much of an unreadable dead letter's body the log keeps.
LOGGED_BODY_CHARS = 2000


def media_ids_of(queue: str, body: str) -> list[str] | None:
    """The media a dead letter of `queue` was about; None when the body says nothing readable."""
    if queue == "uploads":
        parsed = parse_uploads_message(body)
        if not isinstance(parsed, ObjectsCreated):
            return None
        return [created.media_id for created in parsed.objects]
    job = parse_derive_job(body)
    return None if job is None else [job.media_id]


class DeadLetterHandler:
    def __init__(self, *, queue: str, settler: MediaSettler, metrics: WorkerMetrics) -> None:
        self._queue = queue  # the source queue's role: "uploads", "derive", "derive_video"
        self._settler = settler
        self._metrics = metrics

    async def handle(self, message: QueueMessage) -> str:
        media_ids = media_ids_of(self._queue, message.body)
        if media_ids is None:
            log.error(
                "unreadable dead letter dropped",
                extra={"queue": self._queue, "body": message.body[:LOGGED_BODY_CHARS]},
            )
            outcome = "unreadable"
        else:
            settled = [await self._settler.fail(media_id, "dead_letter") for media_id in media_ids]
            outcome = "settled" if any(settled) else "already_settled"
            log.warning(
                "dead letter settled",
                extra={"queue": self._queue, "media_ids": media_ids, "outcome": outcome},
            )
        self._metrics.dead_letters.labels(self._queue, outcome).inc()
        return outcome

    async def give_up(self, message: QueueMessage) -> None:
        """A dead-letter queue has no dead-letter queue: nothing to do before one."""
