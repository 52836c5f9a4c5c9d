"""Failing a media that must not stay stuck: `processing_failed`, announced, counted.

Every path that gives up on a media's processing comes here: the last try of a message, a
message arriving on its last allowed receive, a dead letter, a job that crashed its process too
often, the reconciler. The write is conditional (from a live state only), so settling twice,
or racing a job that finished meanwhile, changes nothing.
"""

from __future__ import annotations

import logging

from shared.logging import request_id_var
from shared.media_records import MediaRecords, StaleTransition
from transcode_worker.commit import PROCESSING_FAILED, PROCESSING_FAILED_MESSAGE
from transcode_worker.metrics import WorkerMetrics
from transcode_worker.pipeline import record_ids
from transcode_worker.publisher import Publisher

log = logging.getLogger("ferry.worker.settle")


class MediaSettler:
    def __init__(
        self, *, store: MediaRecords, publisher: Publisher, metrics: WorkerMetrics
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._metrics = metrics

    async def fail(self, media_id: str, reason: str) -> bool:
        """Fail the media from whatever live state it is in; False if it had settled already
        (or is gone)."""
        try:
            failed = await self._store.fail(media_id, PROCESSING_FAILED, PROCESSING_FAILED_MESSAGE)
        except StaleTransition:
            return False
        token = request_id_var.set(failed.request_id) if failed.request_id else None
        try:
            self._metrics.stuck_media_failed.labels(reason).inc()
            log.error(
                "media failed so it does not stay stuck (%s)",
                reason,
                extra={**record_ids(failed), "reason": reason},
            )
            await self._publisher.publish(failed)
        finally:
            if token is not None:
                request_id_var.reset(token)
        return True
