"""Builds the gateway app; the lifespan opens every long-lived client and runs the heartbeat."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from gateway.batching import backlogs, registrations
from gateway.connections import LocalConnections
from gateway.gateway import Gateway
from gateway.heartbeat import Heartbeat
from gateway.message_client import MessageClient
from gateway.metrics import GatewayMetrics
from gateway.routes import router
from gateway.settings import Settings
from gateway.web_client import install_web_client
from gateway.websocket import GATEWAY_STATE_KEY
from shared.aws import open_aws_clients
from shared.connections import ConnectionRegistry
from shared.consumers import background
from shared.http import build_app, table_check, task_check
from shared.internal_client import internal_client

# Connections to the Message Service shared by every client connection's sends.
MESSAGE_SERVICE_CONNECTIONS = 100


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    registry = CollectorRegistry()
    metrics = GatewayMetrics(registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with AsyncExitStack() as stack:
            aws = await open_aws_clients(stack, settings, "dynamodb")
            http = await stack.enter_async_context(
                internal_client(
                    settings.internal_token,
                    base_url=settings.message_service_url,
                    timeout=settings.internal_call_timeout_seconds,
                    max_connections=MESSAGE_SERVICE_CONNECTIONS,
                    mint_request_ids=True,
                )
            )
            registry = ConnectionRegistry(aws.dynamodb, settings.resources.connections_table)
            messages = MessageClient(http)
            gateway = Gateway(
                settings=settings,
                metrics=metrics,
                connections=LocalConnections(metrics),
                registry=registry,
                messages=messages,
                registrations=registrations(registry),
                backlogs=backlogs(messages),
                verifier=app.state.token_verifier,
            )
            # Under uvicorn the sessions have ended by the time this stops (its graceful
            # shutdown closes each WebSocket with 1001, see gateway.websocket); `shutdown`
            # closes whatever remains. Clients close after both.
            stack.push_async_callback(gateway.shutdown)
            heartbeat = await stack.enter_async_context(
                background(Heartbeat(gateway).run(), name="registry-heartbeat")
            )
            app.state.gateway = gateway
            app.state.readiness_checks = [
                task_check(heartbeat, "the registry heartbeat", name="registry_heartbeat"),
                table_check(
                    aws.dynamodb, settings.resources.connections_table, name="connections_table"
                ),
            ]
            # The lifespan state reaches uvicorn's WebSocket protocol class as `app_state`.
            yield {GATEWAY_STATE_KEY: gateway}

    app = build_app(
        title="Ferry Edge Gateway",
        lifespan=lifespan,
        registry=registry,
        settings=settings,
    )
    app.include_router(router)
    install_web_client(app, settings)
    return app
