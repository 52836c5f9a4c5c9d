"""The running worker: finds its queues (waiting while AWS is away), wires the parts, consumes.

Queue URLs are resolved here rather than in the app's startup so that a worker started before
its AWS dependencies stays up (and says so on `/readyz`) instead of crashing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from shared.media_records import MediaRecords
from shared.sqs_consumer import Consumer, ConsumerConfig, wait_for_queue_urls
from transcode_worker.commit import CommitStep
from transcode_worker.deriving import DerivingProcessor
from transcode_worker.metrics import WorkerMetrics
from transcode_worker.plans import derive_plans
from transcode_worker.pool import DerivePool
from transcode_worker.processing import NoProcessing, Processor
from transcode_worker.publisher import EventPublisher
from transcode_worker.settings import Settings
from transcode_worker.uploads import UploadsHandler

log = logging.getLogger("ferry.worker")


class Worker:
    def __init__(
        self,
        *,
        settings: Settings,
        s3: Any,
        sqs: Any,
        store: MediaRecords,
        metrics: WorkerMetrics,
        pool: DerivePool | None = None,
    ) -> None:
        self._settings = settings
        self._s3 = s3
        self._sqs = sqs
        self._store = store
        self._metrics = metrics
        # Without a pool (tests of the commit step alone), media are ready once verified.
        self._pool = pool
        self._stopping = asyncio.Event()
        self._consumer: Consumer | None = None
        self.uploads_queue_url: str | None = None

    def _processor(self, publisher: EventPublisher) -> Processor:
        if self._pool is None:
            return NoProcessing()
        settings = self._settings
        return DerivingProcessor(
            s3=self._s3,
            bucket=settings.resources.bucket,
            store=self._store,
            publisher=publisher,
            pool=self._pool,
            plans=derive_plans(settings),
            metrics=self._metrics,
            read_chunk_bytes=settings.read_chunk_bytes,
            work_dir=settings.work_dir,
            upload_concurrency=settings.upload_concurrency,
            progress_poll_seconds=settings.progress_poll_seconds,
        )

    def stop(self) -> None:
        self._stopping.set()
        if self._consumer is not None:
            self._consumer.stop()

    async def run(self) -> None:
        resolved = await self._resolve_queues()
        if resolved is None:
            return  # stopped before AWS answered
        uploads_url, events_url = resolved
        settings = self._settings
        publisher = EventPublisher(self._sqs, events_url)
        commit = CommitStep(
            s3=self._s3,
            bucket=settings.resources.bucket,
            store=self._store,
            publisher=publisher,
            processor=self._processor(publisher),
            metrics=self._metrics,
            read_chunk_bytes=settings.read_chunk_bytes,
        )
        self._consumer = Consumer(
            self._sqs,
            uploads_url,
            UploadsHandler(commit),
            config=ConsumerConfig(
                concurrency=settings.worker_concurrency,
                wait_seconds=settings.queue_wait_seconds,
                visibility_timeout_seconds=settings.visibility_timeout_seconds,
                retry_base_seconds=settings.retry_base_seconds,
                shutdown_grace_seconds=settings.shutdown_grace_seconds,
            ),
            metrics=self._metrics.uploads_queue,
        )
        self.uploads_queue_url = uploads_url
        if self._stopping.is_set():
            return
        log.info("consuming uploads", extra={"queue_url": uploads_url})
        await self._consumer.run()
        log.info("stopped consuming uploads")

    async def _resolve_queues(self) -> tuple[str, str] | None:
        """(uploads queue URL, media-events queue URL), once AWS answers; None if stopped."""
        names = self._settings.resources
        urls = await wait_for_queue_urls(
            self._sqs, [names.uploads_queue, names.media_events_queue], self._stopping
        )
        return None if urls is None else (urls[0], urls[1])
