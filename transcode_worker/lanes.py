"""The derivation lanes: which queue derives which media, and the job a lane's message carries.

The commit step only verifies; a verified media that needs derivatives goes to a lane as a
`DeriveJob`. Videos have their own lane (queue, concurrency, process pool), so a few long videos
can never hold the slots photos and voice notes wait for.
"""

from __future__ import annotations

import logging
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from shared.media_records import MediaRecord
from shared.models import MediaType
from transcode_worker.events import CreatedObject
from transcode_worker.pipeline import DerivePlans, record_ids

log = logging.getLogger("ferry.worker.lanes")


class Lane(StrEnum):
    # Values are the queue roles of the metrics (`ferry_queue_*{queue}`).
    DERIVE = "derive"
    VIDEO = "derive_video"


def lane_of(media_type: MediaType) -> Lane:
    return Lane.VIDEO if media_type is MediaType.VIDEO else Lane.DERIVE


class DeriveJob(BaseModel):
    """A derive-queue message: derive this media (its record says everything else)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    media_id: str
    # When the original was created in storage (the S3 event's time): where latency starts.
    created_at: datetime | None = None

    def created(self) -> CreatedObject:
        return CreatedObject(media_id=self.media_id, created_at=self.created_at)


def parse_derive_job(body: str) -> DeriveJob | None:
    """The job a body carries; None when it is not one (a poison message)."""
    try:
        return DeriveJob.model_validate_json(body)
    except ValidationError:
        return None


class LaneFeeder:
    """Sends derive jobs to the lane of each media type (the commit step's handoff)."""

    def __init__(self, sqs: Any, queue_urls: dict[Lane, str], plans: DerivePlans) -> None:
        self._sqs = sqs
        self._queue_urls = queue_urls
        self._plans = plans

    async def __call__(self, record: MediaRecord, created: CreatedObject) -> bool:
        if self._plans.for_type(record.media_type) is None:
            return False  # nothing to derive: the commit step settles it at once
        await self.send(
            record.media_type, DeriveJob(media_id=record.media_id, created_at=created.created_at)
        )
        log.info("media handed to its derivation lane", extra=record_ids(record))
        return True

    async def send(self, media_type: MediaType, job: DeriveJob) -> None:
        await self._sqs.send_message(
            QueueUrl=self._queue_urls[lane_of(media_type)],
            MessageBody=job.model_dump_json(exclude_none=True),
        )
