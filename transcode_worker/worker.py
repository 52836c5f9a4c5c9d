"""The worker's wiring: from queue URLs to consumers with every part in place.

Three lanes, each a queue with its own consumer and concurrency:
- uploads (`WORKER_CONCURRENCY`): the commit step only (stream, hash, sniff, commit), then a
  hand-off to a derivation lane; verification never waits behind derivation;
- derive (`DERIVE_CONCURRENCY`, pool of `PROCESS_POOL_SIZE`): images and voice notes;
- derive_video (`VIDEO_CONCURRENCY`, pool of `VIDEO_PROCESS_POOL_SIZE`): videos.
And one consumer per lane's dead-letter queue, which settles whatever reached it.
`shared.consumers.running_consumer` resolves the URLs (waiting while AWS is away) and runs each.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TYPE_CHECKING

from shared.media_records import MediaRecords
from shared.sqs_consumer import Consumer, ConsumerConfig, Handler, QueueMetrics
from transcode_worker.commit import CommitStep
from transcode_worker.dead_letters import DeadLetterHandler
from transcode_worker.derive_lane import DeriveHandler
from transcode_worker.lanes import Lane, LaneFeeder
from transcode_worker.metrics import WorkerMetrics
from transcode_worker.pipeline import DerivingProcessor, NoProcessing, Processor
from transcode_worker.pool import DerivePool
from transcode_worker.publisher import EventPublisher
from transcode_worker.reconciler import Reconciler
from transcode_worker.settings import Settings
from transcode_worker.settle import MediaSettler
from transcode_worker.spool import OriginalSpool
from transcode_worker.uploads import UploadsHandler
from transcode_worker.variant_plans import derive_plans

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client
    from types_aiobotocore_sqs.client import SQSClient

# Never reached: a dead-letter consumer retries for as long as it takes.
DEAD_LETTER_RECEIVES = 2**31


@dataclass(frozen=True)
class ConsumerSpec:
    """One consumer to run: what it is called, the queues it needs, how to build it."""

    what: str
    queue_names: list[str]
    build: Callable[[Sequence[str]], Consumer]


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
        video_pool: DerivePool | None = None,
        spool: OriginalSpool | None = None,
    ) -> None:
        self._settings = settings
        self._s3 = s3
        self._sqs = sqs
        self._store = store
        self._metrics = metrics
        # Without a pool (tests of the commit step alone), media are ready once verified.
        self._pool = pool
        self._video_pool = video_pool or pool
        # Verified originals kept on disk for the lanes (only with a pool: lanes derive).
        self._spool = spool if pool is not None else None
        self._plans = derive_plans(settings)

    # --- parts ------------------------------------------------------------------------------

    def _processor(self, publisher: EventPublisher, pool: DerivePool | None) -> Processor:
        if pool is None:
            return NoProcessing()
        settings = self._settings
        return DerivingProcessor(
            s3=self._s3,
            bucket=settings.resources.bucket,
            store=self._store,
            publisher=publisher,
            pool=pool,
            plans=self._plans,
            metrics=self._metrics,
            read_chunk_bytes=settings.read_chunk_bytes,
            work_dir=settings.work_dir,
            upload_concurrency=settings.upload_concurrency,
            progress_poll_seconds=settings.progress_poll_seconds,
            crash_on=frozenset(settings.fault_crash_sha256),
            spool=self._spool,
        )

    def _commit(
        self, publisher: EventPublisher, pool: DerivePool | None, feeder: LaneFeeder | None
    ) -> CommitStep:
        return CommitStep(
            s3=self._s3,
            bucket=self._settings.resources.bucket,
            store=self._store,
            publisher=publisher,
            processor=self._processor(publisher, pool),
            metrics=self._metrics,
            read_chunk_bytes=self._settings.read_chunk_bytes,
            expiry_grace=timedelta(seconds=self._settings.expiry_grace_seconds),
            handoff=feeder,
            # Only the uploads lane's commit step spools (it hands off to a lane).
            spool=self._spool if feeder is not None else None,
        )

    def _settler(self, publisher: EventPublisher) -> MediaSettler:
        return MediaSettler(store=self._store, publisher=publisher, metrics=self._metrics)

    def _feeder(self, derive_url: str, video_url: str) -> LaneFeeder:
        return LaneFeeder(self._sqs, {Lane.DERIVE: derive_url, Lane.VIDEO: video_url}, self._plans)

    def _consumer(
        self,
        url: str,
        handler: Handler,
        *,
        concurrency: int,
        metrics: QueueMetrics,
        dead_letters: bool = False,
    ) -> Consumer:
        config = ConsumerConfig.from_settings(self._settings, concurrency=concurrency)
        if dead_letters:
            # A dead letter has used up its receives already, and a DLQ has no DLQ: a failure
            # (AWS away) is retried with backoff for as long as it takes.
            config = replace(config, max_receive_count=DEAD_LETTER_RECEIVES)
        else:
            # A crash on the last try would skip every hook: settle before trying again.
            config = replace(config, settle_on_last_receive=True)
        return Consumer(self._sqs, url, handler, config=config, metrics=metrics)

    # --- consumers --------------------------------------------------------------------------

    def consumer(self, queue_urls: Sequence[str]) -> Consumer:
        """The uploads consumer (verification only, when there is a pool to derive with),
        given the URLs of `queue_names()`: uploads, media events, derive, derive_video."""
        uploads_url, events_url, derive_url, video_url = queue_urls
        publisher = EventPublisher(self._sqs, events_url)
        feeder = self._feeder(derive_url, video_url) if self._pool is not None else None
        commit = self._commit(publisher, self._pool, feeder)
        return self._consumer(
            uploads_url,
            UploadsHandler(commit, self._settler(publisher)),
            concurrency=self._settings.worker_concurrency,
            metrics=self._metrics.uploads_queue,
        )

    def queue_names(self) -> list[str]:
        """The queues `consumer` wants the URLs of, in its order."""
        names = self._settings.resources
        return [
            names.uploads_queue,
            names.media_events_queue,
            names.derive_queue,
            names.derive_video_queue,
        ]

    def _lane(self, lane: Lane) -> ConsumerSpec:
        names, settings = self._settings.resources, self._settings
        video = lane is Lane.VIDEO
        queue = names.derive_video_queue if video else names.derive_queue
        pool = self._video_pool if video else self._pool
        metrics = self._metrics.derive_video_queue if video else self._metrics.derive_queue
        concurrency = settings.video_concurrency if video else settings.derive_concurrency

        def build(urls: Sequence[str]) -> Consumer:
            lane_url, events_url = urls
            publisher = EventPublisher(self._sqs, events_url)
            handler = DeriveHandler(
                commit=self._commit(publisher, pool, None),
                store=self._store,
                settler=self._settler(publisher),
                max_job_crashes=settings.max_job_crashes,
                watch_every_seconds=max(1.0, settings.stuck_after_seconds / 3),
            )
            return self._consumer(lane_url, handler, concurrency=concurrency, metrics=metrics)

        return ConsumerSpec(
            what=lane.value, queue_names=[queue, names.media_events_queue], build=build
        )

    def _dead_letters(self, queue: str, dlq_name: str) -> ConsumerSpec:
        names = self._settings.resources

        def build(urls: Sequence[str]) -> Consumer:
            dlq_url, events_url = urls
            publisher = EventPublisher(self._sqs, events_url)
            handler = DeadLetterHandler(
                queue=queue, settler=self._settler(publisher), metrics=self._metrics
            )
            return self._consumer(
                dlq_url,
                handler,
                concurrency=2,
                metrics=self._metrics.dead_letter_queues[queue],
                dead_letters=True,
            )

        return ConsumerSpec(
            what=f"{queue} dead letters",
            queue_names=[dlq_name, names.media_events_queue],
            build=build,
        )

    def other_consumers(self) -> list[ConsumerSpec]:
        """Besides the uploads consumer: the derivation lanes and every dead-letter consumer."""
        names = self._settings.resources
        specs = [
            self._dead_letters("uploads", names.uploads_dlq),
        ]
        if self._pool is not None:
            specs += [
                self._lane(Lane.DERIVE),
                self._lane(Lane.VIDEO),
                self._dead_letters("derive", names.derive_dlq),
                self._dead_letters("derive_video", names.derive_video_dlq),
            ]
        return specs

    def reconciler(self) -> Reconciler:
        settings = self._settings
        names = settings.resources

        def wire(urls: Sequence[str]) -> tuple[LaneFeeder, MediaSettler]:
            events_url, derive_url, video_url = urls
            publisher = EventPublisher(self._sqs, events_url)
            return self._feeder(derive_url, video_url), self._settler(publisher)

        return Reconciler(
            store=self._store,
            s3=self._s3,
            sqs=self._sqs,
            bucket=names.bucket,
            queue_names=[
                names.uploads_queue,
                names.media_events_queue,
                names.derive_queue,
                names.derive_video_queue,
            ],
            wire=wire,
            metrics=self._metrics,
            interval_seconds=settings.reconcile_interval_seconds,
            stuck_after_seconds=settings.stuck_after_seconds,
            max_requeues=settings.reconcile_max_requeues,
            batch=settings.reconcile_batch,
        )
