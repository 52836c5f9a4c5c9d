"""Builds the Message Service app; the lifespan opens and closes every long-lived client and
runs the media-events consumer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from message_service.conversations import ConversationStore
from message_service.deliveries import DeliveryStore
from message_service.internal_routes import router as internal_router
from message_service.media_client import MediaServiceClient
from message_service.media_events import MediaEventsHandler
from message_service.media_refs import MediaRefStore
from message_service.messages import MessageStore
from message_service.metrics import MessageMetrics
from message_service.pusher import Pusher
from message_service.routes import router
from message_service.service import MessagingService
from message_service.settings import Settings
from shared.aws import open_aws_clients
from shared.connections import ConnectionRegistry
from shared.http import build_app, table_check, task_check
from shared.sqs_consumer import Consumer, ConsumerConfig, wait_for_queue_urls

log = logging.getLogger("ferry.messages.app")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    registry = CollectorRegistry()
    metrics = MessageMetrics(registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            aws = await open_aws_clients(
                stack,
                settings,
                "sqs",
                "dynamodb",
                sqs_long_poll_seconds=settings.queue_wait_seconds,
            )
            names = settings.resources
            media_http = await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=settings.media_service_url,
                    timeout=settings.internal_call_timeout_seconds,
                )
            )
            gateway_http = await stack.enter_async_context(
                httpx.AsyncClient(timeout=settings.push_timeout_seconds)
            )
            refs = MediaRefStore(aws.dynamodb, names.media_refs_table)
            pusher = Pusher(
                gateway_http,
                ConnectionRegistry(aws.dynamodb, names.connections_table),
                settings.internal_token,
            )
            service = MessagingService(
                settings=settings,
                conversations=ConversationStore(
                    aws.dynamodb,
                    conversations_table=names.conversations_table,
                    members_table=names.members_table,
                ),
                messages=MessageStore(
                    aws.dynamodb,
                    messages_table=names.messages_table,
                    idempotency_table=names.idempotency_table,
                    refs=refs,
                ),
                deliveries=DeliveryStore(
                    aws.dynamodb,
                    pending_table=names.pending_table,
                    devices_table=names.devices_table,
                ),
                refs=refs,
                media=MediaServiceClient(media_http, settings.internal_token),
                pusher=pusher,
                metrics=metrics,
            )
            app.state.messaging = service
            stopping = asyncio.Event()
            consumer_task = asyncio.create_task(
                _consume_media_events(aws.sqs, service, settings, metrics, stopping),
                name="media-events",
            )
            app.state.readiness_checks = [
                table_check(aws.dynamodb, names.messages_table, name="messages_table"),
                task_check(consumer_task, "the media-events consumer", name="consumer"),
            ]
            try:
                yield
            finally:
                stopping.set()
                await asyncio.wait({consumer_task})
                await pusher.drain()

    app = build_app(
        title="Ferry Message Service",
        lifespan=lifespan,
        registry=registry,
        settings=settings,
    )
    app.include_router(router)
    app.include_router(internal_router)
    return app


async def _consume_media_events(
    sqs: object,
    service: MessagingService,
    settings: Settings,
    metrics: MessageMetrics,
    stopping: asyncio.Event,
) -> None:
    urls = await wait_for_queue_urls(sqs, [settings.resources.media_events_queue], stopping)
    if urls is None:
        return
    consumer = Consumer(
        sqs,
        urls[0],
        MediaEventsHandler(service),
        config=ConsumerConfig(
            concurrency=settings.consumer_concurrency,
            wait_seconds=settings.queue_wait_seconds,
            visibility_timeout_seconds=settings.visibility_timeout_seconds,
            retry_base_seconds=settings.retry_base_seconds,
            shutdown_grace_seconds=settings.shutdown_grace_seconds,
        ),
        metrics=metrics.media_events_queue,
    )
    stop_watch = asyncio.create_task(_stop_when(stopping, consumer), name="media-events-stop")
    try:
        log.info("consuming media events", extra={"queue_url": urls[0]})
        await consumer.run()
    finally:
        stop_watch.cancel()
        await asyncio.wait({stop_watch})


async def _stop_when(stopping: asyncio.Event, consumer: Consumer) -> None:
    await stopping.wait()
    consumer.stop()
