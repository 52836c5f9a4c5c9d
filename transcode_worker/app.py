"""The worker's app: /healthz, /readyz and /metrics over HTTP; the lifespan runs the consumer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from shared.aws import open_aws_clients
from shared.consumers import background, running_consumer
from shared.http import build_app, table_check, task_check
from shared.media_records import MediaRecords
from shared.queue_depth import QueueDepthSampler, SampledQueue
from transcode_worker.metrics import WorkerMetrics
from transcode_worker.pool import DerivePool
from transcode_worker.settings import Settings
from transcode_worker.spool import OriginalSpool
from transcode_worker.worker import Worker


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
            store = MediaRecords(
                aws.dynamodb,
                media_table=resources.media_table,
                blobs_table=resources.blobs_table,
                usage_table=resources.usage_table,
            )
            pool = DerivePool(settings.process_pool_size, niceness=settings.process_pool_niceness)
            stack.push_async_callback(pool.close)
            video_pool = DerivePool(
                settings.video_process_pool_size, niceness=settings.video_pool_niceness
            )
            stack.push_async_callback(video_pool.close)
            spool = None
            if settings.original_spool_bytes > 0:
                # Off the loop: it makes a folder (and removes those dead workers left).
                spool = await asyncio.to_thread(
                    OriginalSpool.create,
                    settings.work_dir,
                    max_bytes=settings.original_spool_bytes,
                    max_file_bytes=settings.original_spool_file_bytes,
                )
                stack.push_async_callback(asyncio.to_thread, spool.close)
            worker = Worker(
                settings=settings,
                s3=aws.s3,
                sqs=sqs,
                store=store,
                metrics=metrics,
                pool=pool,
                video_pool=video_pool,
                spool=spool,
            )
            consuming, task = await stack.enter_async_context(
                running_consumer(sqs, worker.queue_names(), worker.consumer, what="uploads")
            )
            checks = [task_check(task, "the consumer", name="consumer")]
            for spec in worker.other_consumers():
                _, other = await stack.enter_async_context(
                    running_consumer(sqs, spec.queue_names, spec.build, what=spec.what)
                )
                checks.append(task_check(other, f"the {spec.what} consumer", name=spec.what))
            reconciler = worker.reconciler()
            reconciling = await stack.enter_async_context(
                background(reconciler.run(), name="reconciler", stop=reconciler.stop)
            )
            checks.append(task_check(reconciling, "the reconciler", name="reconciler"))
            sampler = QueueDepthSampler(
                sqs,
                [
                    SampledQueue(
                        role="uploads", name=resources.uploads_queue, dlq_name=resources.uploads_dlq
                    ),
                    SampledQueue(
                        role="derive", name=resources.derive_queue, dlq_name=resources.derive_dlq
                    ),
                    SampledQueue(
                        role="derive_video",
                        name=resources.derive_video_queue,
                        dlq_name=resources.derive_video_dlq,
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
            await stack.enter_async_context(
                background(sampler.run(), name="queue-depth", stop=sampler.stop)
            )

            async def uploads_queue() -> None:
                if consuming.queue_urls is None:
                    raise RuntimeError("the uploads queue is not resolved yet")
                await sqs.get_queue_attributes(
                    QueueUrl=consuming.queue_urls[0], AttributeNames=["QueueArn"]
                )

            app.state.readiness_checks = [
                *checks,
                uploads_queue,
                table_check(aws.dynamodb, resources.media_table, name="media_table"),
            ]
            # On exit the sampler and the consumer stop (jobs in flight get the grace period),
            # then the pool and the clients close.
            yield

    return build_app(
        title="Ferry Transcode Worker",
        lifespan=lifespan,
        registry=registry,
        settings=settings,
    )
