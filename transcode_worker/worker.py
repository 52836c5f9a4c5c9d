"""The worker's wiring: from the queue URLs to a consumer of uploads with every part in place.

`shared.consumers.running_consumer` resolves the URLs (waiting while AWS is away) and runs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from shared.media_records import MediaRecords
from shared.sqs_consumer import Consumer, ConsumerConfig
from transcode_worker.commit import CommitStep
from transcode_worker.metrics import WorkerMetrics
from transcode_worker.pipeline import DerivingProcessor, NoProcessing, Processor
from transcode_worker.pool import DerivePool
from transcode_worker.publisher import EventPublisher
from transcode_worker.settings import Settings
from transcode_worker.uploads import UploadsHandler
from transcode_worker.variant_plans import derive_plans

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client
    from types_aiobotocore_sqs.client import SQSClient


class Worker:
    def __init__(
        self,
        *,
        settings: Settings,
        s3: S3Client,
        sqs: SQSClient,
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

    def consumer(self, queue_urls: Sequence[str]) -> Consumer:
        """The uploads consumer, given the URLs of `QUEUES` (uploads, media events)."""
        uploads_url, events_url = queue_urls
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
            expiry_grace=timedelta(seconds=settings.expiry_grace_seconds),
        )
        return Consumer(
            self._sqs,
            uploads_url,
            UploadsHandler(commit),
            config=ConsumerConfig.from_settings(settings, concurrency=settings.worker_concurrency),
            metrics=self._metrics.uploads_queue,
        )

    def queue_names(self) -> list[str]:
        """The queues `consumer` wants the URLs of, in its order."""
        names = self._settings.resources
        return [names.uploads_queue, names.media_events_queue]
