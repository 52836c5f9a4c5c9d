"""Builds the Message Service app; the lifespan opens and closes every long-lived client and
runs the media-events consumer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from message_service.conversations import ConversationStore
from message_service.deliveries import DeliveryStore
from message_service.devices import DeviceStore
from message_service.internal_routes import router as internal_router
from message_service.media_client import MediaServiceClient
from message_service.media_events import MediaEventsHandler
from message_service.media_refs import MediaRefStore
from message_service.messages import MessageStore
from message_service.metrics import MessageMetrics
from message_service.pusher import Pusher
from message_service.routes import me_router, router
from message_service.service import MessagingService
from message_service.settings import Settings
from shared.aws import open_aws_clients
from shared.connections import ConnectionRegistry
from shared.consumers import background, running_consumer
from shared.http import build_app, table_check, task_check
from shared.internal_client import internal_client
from shared.rate_limits import RateLimiter
from shared.sqs_consumer import Consumer, ConsumerConfig


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
                internal_client(
                    settings.internal_token,
                    base_url=settings.media_service_url,
                    timeout=settings.internal_call_timeout_seconds,
                )
            )
            gateway_http = await stack.enter_async_context(
                internal_client(settings.internal_token, timeout=settings.push_timeout_seconds)
            )
            refs = MediaRefStore(aws.dynamodb, names.media_refs_table)
            pusher = Pusher(
                gateway_http,
                ConnectionRegistry(aws.dynamodb, names.connections_table),
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
                    conversations_table=names.conversations_table,
                    refs=refs,
                ),
                deliveries=DeliveryStore(
                    aws.dynamodb,
                    pending_table=names.pending_table,
                    devices_table=names.devices_table,
                ),
                devices=DeviceStore(
                    aws.dynamodb,
                    devices_table=names.devices_table,
                    pending_table=names.pending_table,
                ),
                refs=refs,
                media=MediaServiceClient(media_http),
                pusher=pusher,
                metrics=metrics,
                limiter=RateLimiter(aws.dynamodb, names.message_rate_limits_table),
            )
            app.state.messaging = service
            consuming = running_consumer(
                aws.sqs,
                [names.media_events_queue],
                lambda urls: Consumer(
                    aws.sqs,
                    urls[0],
                    MediaEventsHandler(service),
                    config=ConsumerConfig.from_settings(
                        settings, concurrency=settings.consumer_concurrency
                    ),
                    metrics=metrics.media_events_queue,
                ),
                what="media events",
            )
            # Exits before the stack: the consumer stops, then the pushes drain, then the
            # clients close.
            stack.push_async_callback(pusher.drain)
            _, consumer_task = await stack.enter_async_context(consuming)
            # Sends a crash left stored but undelivered: at start, then every few seconds.
            await stack.enter_async_context(
                background(service.run_repairs(), name="fan-out repair")
            )
            app.state.readiness_checks = [
                table_check(aws.dynamodb, names.messages_table, name="messages_table"),
                task_check(consumer_task, "the media-events consumer", name="consumer"),
            ]
            yield

    app = build_app(
        title="Ferry Message Service",
        lifespan=lifespan,
        registry=registry,
        settings=settings,
        cors=True,
    )
    app.include_router(router)
    app.include_router(me_router)
    app.include_router(internal_router)
    return app
