"""The running worker: finds its queues (waiting while AWS is away), wires the parts, consumes.

Queue URLs are resolved here rather than in the app's startup so that a worker started before
its AWS dependencies stays up (and says so on `/readyz`) instead of crashing.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from typing import Any

from shared.media_records import MediaStore
from shared.sqs_consumer import Consumer, ConsumerConfig
from transcode_worker.commit import CommitStep
from transcode_worker.metrics import WorkerMetrics
from transcode_worker.processing import NoProcessing, Processor
from transcode_worker.publisher import EventPublisher
from transcode_worker.settings import Settings
from transcode_worker.uploads import UploadsHandler

log = logging.getLogger("ferry.worker")

MAX_RESOLVE_PAUSE_SECONDS = 30.0


class Worker:
    def __init__(
        self,
        *,
        settings: Settings,
        s3: Any,
        sqs: Any,
        store: MediaStore,
        metrics: WorkerMetrics,
        processor: Processor | None = None,
    ) -> None:
        self._settings = settings
        self._s3 = s3
        self._sqs = sqs
        self._store = store
        self._metrics = metrics
        self._processor = processor or NoProcessing()
        self._stopping = asyncio.Event()
        self._consumer: Consumer | None = None
        self.uploads_queue_url: str | None = None

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
        commit = CommitStep(
            s3=self._s3,
            bucket=settings.resources.bucket,
            store=self._store,
            publisher=EventPublisher(self._sqs, events_url),
            processor=self._processor,
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
        """(uploads queue URL, media-events queue URL), retried with backoff until stopped."""
        pause = 1.0
        while not self._stopping.is_set():
            attempt = asyncio.create_task(self._queue_urls(), name="resolve-queues")
            stopped = asyncio.create_task(self._stopping.wait(), name="resolve-stop")
            # A call to an unreachable endpoint spends seconds in botocore's own retries: a stop
            # must not wait for them.
            await asyncio.wait({attempt, stopped}, return_when=asyncio.FIRST_COMPLETED)
            for task in (attempt, stopped):
                task.cancel()
            await asyncio.wait({attempt, stopped})
            if attempt.cancelled():
                return None
            try:
                return attempt.result()
            except Exception as error:
                log.warning(
                    "queues not reachable yet (%s: %s); retrying in %.0f s",
                    type(error).__name__,
                    error,
                    pause,
                )
            with suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), pause)
            pause = min(MAX_RESOLVE_PAUSE_SECONDS, pause * 2)
        return None

    async def _queue_urls(self) -> tuple[str, str]:
        names = self._settings.resources
        uploads = await self._sqs.get_queue_url(QueueName=names.uploads_queue)
        events = await self._sqs.get_queue_url(QueueName=names.media_events_queue)
        return str(uploads["QueueUrl"]), str(events["QueueUrl"])
