"""The reconciler: no media stays in a state the worker must move on past a deadline.

Every `RECONCILE_INTERVAL_SECONDS` it reads the sparse `watch-by-time` index of the media table
(per watched state and shard, oldest first, `RECONCILE_BATCH` at most: never a scan) for media
whose `watch_at` is older than `STUCK_AFTER_SECONDS`. `watch_at` moves on at every transition
and, while a derivation runs, at every watch beat of its job, so only media nobody works on
are found:
- `awaiting_upload` whose original is in storage (its S3 event was lost, or failed for good
  before it was committed): an S3 event is sent again to the uploads queue;
- `uploaded` (verified, never handed to a lane): an S3 event again, and the commit step hands
  it to its lane;
- `processing` (its job and its message are gone): a derive job to its lane.
Each action starts with a conditional claim (`watch_at` unchanged since it was read), so with
several worker replicas exactly one acts on a media per deadline. A media sent round more than
`RECONCILE_MAX_REQUEUES` times fails with `processing_failed`. An `awaiting_upload` whose bytes
never came is the sweeper's (the slot expires), not the reconciler's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from botocore.exceptions import ClientError

from shared.aws import error_code
from shared.clock import iso, utcnow
from shared.keys import original_key
from shared.media_records import WATCH_SHARDS, WATCHED_STATES, MediaRecords
from shared.models import MediaState
from shared.sqs_consumer import wait_for_queue_urls
from transcode_worker.lanes import DeriveJob, LaneFeeder
from transcode_worker.metrics import WorkerMetrics
from transcode_worker.settle import MediaSettler

log = logging.getLogger("ferry.worker.reconciler")

# S3's answers for an object that is not there (403 without s3:ListBucket).
_ABSENT = frozenset({"404", "NoSuchKey", "NotFound", "403", "Forbidden", "AccessDenied"})


def s3_event(bucket: str, media_id: str) -> str:
    """An S3 event body announcing the original of `media_id`, as the bucket would send it."""
    record = {
        "eventSource": "ferry:reconciler",
        "eventName": "ObjectCreated:Put",
        "eventTime": iso(utcnow()),
        "s3": {"bucket": {"name": bucket}, "object": {"key": original_key(media_id)}},
    }
    return json.dumps({"Records": [record]})


class Reconciler:
    def __init__(
        self,
        *,
        store: MediaRecords,
        s3: Any,
        sqs: Any,
        bucket: str,
        queue_names: Sequence[str],
        wire: Callable[[Sequence[str]], tuple[LaneFeeder, MediaSettler]],
        metrics: WorkerMetrics,
        interval_seconds: float,
        stuck_after_seconds: float,
        max_requeues: int,
        batch: int,
    ) -> None:
        self._store = store
        self._s3 = s3
        self._sqs = sqs
        self._bucket = bucket
        # Uploads first; `wire` gets the rest and returns the feeder and settler they make.
        self._queue_names = list(queue_names)
        self._wire = wire
        self._uploads_url = ""
        self._feeder: LaneFeeder | None = None
        self._settler: MediaSettler | None = None
        self._metrics = metrics
        self._interval = interval_seconds
        self._stuck_after = timedelta(seconds=stuck_after_seconds)
        self._max_requeues = max_requeues
        self._batch = batch
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        urls = await wait_for_queue_urls(self._sqs, self._queue_names, self._stopping)
        if urls is None:
            return
        self._uploads_url = urls[0]
        self._feeder, self._settler = self._wire(urls[1:])
        while not self._stopping.is_set():
            try:
                acted = await self.reconcile_once()
            except Exception:
                self._metrics.reconciler_passes.labels("error").inc()
                log.warning("reconciler pass failed", exc_info=True)
            else:
                self._metrics.reconciler_passes.labels("ok").inc()
                if acted:
                    log.info("reconciler pass acted on %d media", acted)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)

    async def reconcile_once(self) -> int:
        """One bounded pass; returns how many media it acted on."""
        cutoff = utcnow() - self._stuck_after
        acted = 0
        for state in sorted(WATCHED_STATES):
            for shard in range(WATCH_SHARDS):
                found = await self._store.watched_before(state, shard, cutoff, self._batch)
                for media_id, watch_at in found:
                    if self._stopping.is_set():
                        return acted
                    acted += await self._reconcile(media_id, state, watch_at)
        return acted

    async def _reconcile(self, media_id: str, state: MediaState, watch_at: str) -> int:
        if self._feeder is None or self._settler is None:
            raise RuntimeError("the reconciler runs only once its queues are resolved")
        if state is MediaState.AWAITING_UPLOAD and not await self._original_exists(media_id):
            # Still waiting for its bytes: looked at, and left to the client or the sweeper.
            await self._store.claim_stuck(media_id, state, watch_at, count=False)
            return 0
        sent_round = await self._store.claim_stuck(media_id, state, watch_at, count=True)
        if sent_round is None:
            return 0  # moved on meanwhile, or another replica took it
        extra = {"media_id": media_id, "state": state.value, "reconciles": sent_round}
        if sent_round > self._max_requeues:
            if await self._settler.fail(media_id, "reconciler"):
                self._metrics.reconciler_actions.labels(state.value, "failed").inc()
                log.error("stuck media failed", extra=extra)
            return 1
        if state is MediaState.PROCESSING:
            record = await self._store.get(media_id)
            if record is None:
                return 0
            await self._feeder.send(record.media_type, DeriveJob(media_id=media_id))
        else:
            await self._sqs.send_message(
                QueueUrl=self._uploads_url, MessageBody=s3_event(self._bucket, media_id)
            )
        self._metrics.reconciler_actions.labels(state.value, "requeued").inc()
        log.warning("stuck media sent round again", extra=extra)
        return 1

    async def _original_exists(self, media_id: str) -> bool:
        try:
            await self._s3.head_object(Bucket=self._bucket, Key=original_key(media_id))
        except ClientError as error:
            if error_code(error) in _ABSENT:
                return False
            raise
        return True
