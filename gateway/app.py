"""Builds the gateway app; the lifespan opens every long-lived client and runs the heartbeat."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from gateway.connections import LocalConnections
from gateway.deps import Gateway
from gateway.heartbeat import Heartbeat
from gateway.message_client import MessageClient
from gateway.metrics import GatewayMetrics
from gateway.routes import router, websocket_routes
from gateway.settings import Settings
from gateway.web_client import install_web_client
from shared.aws import open_aws_clients
from shared.connections import ConnectionRegistry
from shared.http import build_app, table_check, task_check

log = logging.getLogger("ferry.gateway.app")

# Connections to the Message Service shared by every client connection's sends.
MESSAGE_SERVICE_CONNECTIONS = 100


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    registry = CollectorRegistry()
    metrics = GatewayMetrics(registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            aws = await open_aws_clients(stack, settings, "dynamodb")
            http = await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=settings.message_service_url,
                    timeout=settings.internal_call_timeout_seconds,
                    limits=httpx.Limits(max_connections=MESSAGE_SERVICE_CONNECTIONS),
                )
            )
            gateway = Gateway(
                settings=settings,
                metrics=metrics,
                connections=LocalConnections(metrics),
                registry=ConnectionRegistry(aws.dynamodb, settings.resources.connections_table),
                messages=MessageClient(http, settings.internal_token),
            )
            heartbeat = asyncio.create_task(Heartbeat(gateway).run(), name="registry-heartbeat")
            heartbeat.add_done_callback(_report_crash)
            app.state.gateway = gateway
            app.state.readiness_checks = [
                task_check(heartbeat, "the registry heartbeat", name="registry_heartbeat"),
                table_check(
                    aws.dynamodb, settings.resources.connections_table, name="connections_table"
                ),
            ]
            try:
                yield
            finally:
                # Under uvicorn the sessions have ended by now (see gateway.protocol); under
                # any other server this closes them. Clients close after both.
                heartbeat.cancel()
                await asyncio.wait({heartbeat})
                await gateway.shutdown()

    app = build_app(
        title="Ferry Edge Gateway",
        version="1.0.0",
        lifespan=lifespan,
        registry=registry,
        settings=settings,
    )
    app.include_router(router)
    app.router.routes.extend(websocket_routes)
    install_web_client(app, settings)
    return app


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        # /readyz turns 503 from here on; the orchestrator replaces the process.
        log.critical("the registry heartbeat stopped on an error", exc_info=task.exception())
