"""Builds the Media Service app; the lifespan opens and closes every long-lived client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import aioboto3
import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from media_service.access import AccessPolicy, ConversationReaders
from media_service.cdn import CloudFrontUrlSigner
from media_service.hls import PlaylistSigner
from media_service.internal_routes import router as internal_router
from media_service.metrics import MediaMetrics
from media_service.routes import router
from media_service.service import MediaService
from media_service.settings import Settings
from media_service.storage import MediaStorage
from shared.aws import client_config, open_aws_clients
from shared.http import build_app, table_check
from shared.media_records import MediaStore
from shared.rate_limits import RateLimiter


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    registry = CollectorRegistry()
    metrics = MediaMetrics(registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            aws = await open_aws_clients(stack, settings, "s3", "dynamodb")
            resources = settings.resources
            readers = None
            if settings.message_service_url:
                client = await stack.enter_async_context(
                    httpx.AsyncClient(
                        base_url=settings.message_service_url,
                        timeout=settings.internal_call_timeout_seconds,
                    )
                )
                readers = ConversationReaders(client, settings.internal_token)
            store = MediaStore(
                aws.dynamodb,
                media_table=resources.media_table,
                blobs_table=resources.blobs_table,
            )
            app.state.media_service = service = MediaService(
                settings=settings,
                store=store,
                storage=MediaStorage(
                    aws.s3,
                    resources.bucket,
                    presigner=await _open_presigner(stack, settings),
                    cdn=_cdn_signer(settings),
                ),
                access=AccessPolicy(readers),
                rate_limiter=RateLimiter(aws.dynamodb, resources.rate_limits_table),
                playlist_signer=PlaylistSigner(settings.auth_jwt_secret),
                metrics=metrics,
            )
            app.state.readiness_checks = [
                service.storage.check,
                table_check(aws.dynamodb, resources.media_table, name="media_table"),
            ]
            yield

    app = build_app(
        title="Ferry Media Service",
        lifespan=lifespan,
        registry=registry,
        settings=settings,
    )
    app.include_router(router)
    app.include_router(internal_router)
    return app


async def _open_presigner(stack: AsyncExitStack, settings: Settings) -> Any:
    """An S3 client for signing only, naming the endpoint clients reach (None: sign with the
    service's own client). Same credentials, region and SigV4 config; it never calls out."""
    if settings.s3_public_endpoint_url is None:
        return None
    return await stack.enter_async_context(
        aioboto3.Session().client(
            "s3", endpoint_url=settings.s3_public_endpoint_url, config=client_config(settings)
        )
    )


def _cdn_signer(settings: Settings) -> CloudFrontUrlSigner | None:
    if not (settings.cdn_base_url and settings.cdn_key_pair_id and settings.cdn_private_key):
        return None
    return CloudFrontUrlSigner(
        base_url=settings.cdn_base_url,
        key_pair_id=settings.cdn_key_pair_id,
        private_key_pem=settings.cdn_private_key.get_secret_value(),
    )
