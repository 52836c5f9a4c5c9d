"""The worker's app: /healthz, /readyz and /metrics over HTTP; the lifespan runs the consumer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from shared.aws import open_aws_clients
from shared.http import build_app, table_check, task_check
from shared.media_records import MediaStore
from shared.queue_depth import QueueDepthSampler, SampledQueue
from transcode_worker.metrics import WorkerMetrics
from transcode_worker.pool import DerivePool
from transcode_worker.settings import Settings
from transcode_worker.worker import Worker

log = logging.getLogger("ferry.worker.app")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            # Opening clients connects nowhere: a worker started before AWS still starts.
            aws = await open_aws_clients(
                stack,
                settings,
                "s3",
                "sqs",
                "dynamodb",
                sqs_long_poll_seconds=settings.queue_wait_seconds,
            )
            sqs = aws.sqs
            resources = settings.resources
            store = MediaStore(
                aws.dynamodb, media_table=resources.media_table, blobs_table=resources.blobs_table
            )
            pool = DerivePool(settings.process_pool_size)
            stack.push_async_callback(pool.close)
            worker = Worker(
                settings=settings, s3=aws.s3, sqs=sqs, store=store, metrics=metrics, pool=pool
            )
            task = asyncio.create_task(worker.run(), name="worker")
            task.add_done_callback(_report_crash)
            sampler = QueueDepthSampler(
                sqs,
                [
                    SampledQueue(
                        role="uploads", name=resources.uploads_queue, dlq_name=resources.uploads_dlq
                    ),
                    SampledQueue(
                        role="media_events",
                        name=resources.media_events_queue,
                        dlq_name=resources.media_events_dlq,
                    ),
                ],
                interval_seconds=settings.queue_sample_seconds,
                metrics=metrics.queue_depth,
            )
            sampling = asyncio.create_task(sampler.run(), name="queue-depth")
            sampling.add_done_callback(_report_crash)

            async def uploads_queue() -> None:
                if worker.uploads_queue_url is None:
                    raise RuntimeError("the uploads queue is not resolved yet")
                await sqs.get_queue_attributes(
                    QueueUrl=worker.uploads_queue_url, AttributeNames=["QueueArn"]
                )

            app.state.readiness_checks = [
                task_check(task, "the consumer", name="consumer"),
                uploads_queue,
                table_check(aws.dynamodb, resources.media_table, name="media_table"),
            ]
            try:
                yield
            finally:
                # Jobs in flight get the grace period inside `run()`; clients close after it.
                worker.stop()
                sampler.stop()
                await asyncio.wait({task, sampling})

    return build_app(
        title="Ferry Transcode Worker",
        lifespan=lifespan,
        registry=registry,
        settings=settings,
    )


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        # The consumer's crash turns /readyz 503; the orchestrator replaces the process.
        log.critical("%s stopped on an error", task.get_name(), exc_info=task.exception())
