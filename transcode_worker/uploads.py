"""The uploads queue's handler: an S3 event in, the commit step run on each original it names."""

from __future__ import annotations

import logging

from shared.sqs_consumer import PoisonMessage, QueueMessage
from transcode_worker.commit import CommitStep, Outcome
from transcode_worker.events import ObjectsCreated, Poison, TestEvent, parse_uploads_message
from transcode_worker.settle import MediaSettler

log = logging.getLogger("ferry.worker.uploads")

# When one event names several originals, the message is labelled by its most telling outcome.
_PRECEDENCE: tuple[Outcome, ...] = ("ok", "orphan", "duplicate", "ignored")


class UploadsHandler:
    def __init__(self, commit: CommitStep, settler: MediaSettler) -> None:
        self._commit = commit
        self._settler = settler

    async def handle(self, message: QueueMessage) -> str:
        parsed = parse_uploads_message(message.body)
        if isinstance(parsed, Poison):
            raise PoisonMessage(parsed.reason)
        if isinstance(parsed, TestEvent):
            return "ignored"
        outcomes = {
            await self._commit.run(created, redelivered=message.redelivered)
            for created in parsed.objects
        }
        return next((outcome for outcome in _PRECEDENCE if outcome in outcomes), "ignored")

    async def give_up(self, message: QueueMessage) -> None:
        parsed = parse_uploads_message(message.body)
        if not isinstance(parsed, ObjectsCreated):
            return
        for created in parsed.objects:
            # One media's failure to settle must not keep the others stuck.
            try:
                await self._settler.fail(created.media_id, "last_receive")
            except Exception:
                log.exception("could not fail media", extra={"media_id": created.media_id})
