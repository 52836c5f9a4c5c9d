"""Builds the Media Service app; the lifespan opens and closes every long-lived client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING

import aioboto3
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from media_service.access import (
    AccessPolicy,
    ConversationReaders,
    DeviceGate,
    open_message_service_client,
)
from media_service.admin_routes import router as admin_router
from media_service.audit import AuditLog
from media_service.cdn import CloudFrontUrlSigner
from media_service.erasure import Erasure
from media_service.events import NamedQueueEvents
from media_service.governance_routes import me_router
from media_service.governance_routes import router as governance_router
from media_service.hls import PlaylistSigner
from media_service.holds import Holds
from media_service.internal_routes import router as internal_router
from media_service.lifecycle_records import LifecycleRecords
from media_service.lifecycle_storage import LifecycleBucket
from media_service.lookup import MediaLookup
from media_service.metrics import MediaMetrics
from media_service.moderation_routes import router as moderation_router
from media_service.parts import MediaParts
from media_service.quarantine import Quarantine
from media_service.quotas import Quotas
from media_service.reclaim import Reclaimer
from media_service.routes import router
from media_service.serving import Serving
from media_service.settings import Settings
from media_service.storage import MediaBucket
from media_service.uploads import Uploads
from media_service.uppy_routes import router as uppy_router
from media_service.user_counters import UserCounters
from shared.aws import client_config, open_aws_clients
from shared.http import build_app, table_check
from shared.media_records import MediaRecords
from shared.usage import UsageCounters

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    registry = CollectorRegistry()
    metrics = MediaMetrics(registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            aws = await open_aws_clients(stack, settings, "s3", "dynamodb", "sqs")
            resources = settings.resources
            readers = None
            client = await open_message_service_client(stack, settings)
            if client is not None:
                readers = ConversationReaders(client)
                app.state.device_gate = DeviceGate(client)
            records = MediaRecords(
                aws.dynamodb,
                media_table=resources.media_table,
                blobs_table=resources.blobs_table,
                usage_table=resources.usage_table,
            )
            bucket = MediaBucket(
                aws.s3,
                resources.bucket,
                presigner=await _open_presigner(stack, settings),
                cdn=_cdn_signer(settings),
            )
            lookup = MediaLookup(
                records=records,
                bucket=bucket,
                expiry_grace=timedelta(seconds=settings.expiry_grace_seconds),
            )
            lifecycle = LifecycleRecords(records)
            storage = LifecycleBucket(aws.s3, resources.bucket)
            holds = Holds(lifecycle=lifecycle, storage=storage)
            parts = MediaParts(
                settings=settings,
                records=records,
                bucket=bucket,
                lookup=lookup,
                access=AccessPolicy(readers),
                metrics=metrics,
                lifecycle=lifecycle,
                reclaimer=Reclaimer(records=records, lifecycle=lifecycle, storage=storage),
                holds=holds,
            )
            app.state.holds = holds
            # Governance: usage, quarantine (announced like the worker's events), erasure, audit.
            events = NamedQueueEvents(aws.sqs, resources.media_events_queue)
            app.state.quotas = Quotas(
                UsageCounters(aws.dynamodb, resources.usage_table),
                quota_bytes=settings.quota_bytes_per_user,
            )
            app.state.quarantine = Quarantine(records=records, events=events)
            app.state.erasure = Erasure(
                records=records,
                reclaimer=Reclaimer(
                    records=records, lifecycle=lifecycle, storage=storage, events=events
                ),
            )
            app.state.audit = AuditLog(aws.dynamodb, resources.audit_table)
            app.state.records = records
            app.state.uploads = Uploads(
                parts, counters=UserCounters(aws.dynamodb, resources.rate_limits_table)
            )
            app.state.serving = Serving(
                parts, playlist_signer=PlaylistSigner(settings.auth_jwt_secret)
            )
            app.state.readiness_checks = [
                bucket.check,
                table_check(aws.dynamodb, resources.media_table, name="media_table"),
            ]
            yield

    app = build_app(
        title="Ferry Media Service",
        lifespan=lifespan,
        registry=registry,
        settings=settings,
        cors=True,
    )
    app.include_router(router)
    app.include_router(admin_router)
    app.include_router(governance_router)
    app.include_router(me_router)
    app.include_router(moderation_router)
    app.include_router(internal_router)
    app.include_router(uppy_router)
    return app


async def _open_presigner(stack: AsyncExitStack, settings: Settings) -> S3Client | None:
    """An S3 client for signing only, naming the endpoint clients reach (None: sign with the
    service's own client). Same credentials, region and SigV4 config; it never calls out."""
    if settings.s3_public_endpoint_url is None:
        return None
    # aioboto3 has no stubs: the client is Any until it lands in this typed name.
    presigner: S3Client = await stack.enter_async_context(
        aioboto3.Session().client(
            "s3", endpoint_url=settings.s3_public_endpoint_url, config=client_config(settings)
        )
    )
    return presigner


def _cdn_signer(settings: Settings) -> CloudFrontUrlSigner | None:
    if not (settings.cdn_base_url and settings.cdn_key_pair_id and settings.cdn_private_key):
        return None
    return CloudFrontUrlSigner(
        base_url=settings.cdn_base_url,
        key_pair_id=settings.cdn_key_pair_id,
        private_key_pem=settings.cdn_private_key.get_secret_value(),
    )
