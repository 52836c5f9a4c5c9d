"""The edge of every HTTP service: app construction, error bodies, request ids, health, metrics.

`build_app` gives each service the same outer shell so the routes stay about the domain.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Annotated, Any

import aiohttp
from botocore.exceptions import BotoCoreError, ClientError
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth import (
    INTERNAL_TOKEN_HEADER,
    Identity,
    TokenVerifier,
    bearer_token,
    check_internal_token,
)
from shared.cors import install_cors, parse_origins
from shared.errors import FerryError, Forbidden
from shared.logging import REQUEST_ID_HEADER, accepted_request_id, request_id_var
from shared.metrics import HttpMetrics
from shared.offline_docs import offline_docs_app
from shared.request_limits import RequestLimitsMiddleware
from shared.settings import CommonSettings
from shared.version import __version__

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient

log = logging.getLogger("ferry.http")

ReadinessCheck = Callable[[], Awaitable[None]]
READINESS_TIMEOUT_SECONDS = 2.0


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def _http_error_code(status: int) -> str:
    return {
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        413: "too_large",
        415: "unsupported_media_type",
    }.get(status, "http_error")


def _describe_validation(error: RequestValidationError) -> str:
    parts = []
    for problem in error.errors()[:5]:
        where = ".".join(str(item) for item in problem.get("loc", ()) if item != "body")
        parts.append(f"{where or 'body'}: {problem.get('msg', 'invalid')}")
    return "; ".join(parts) or "the request is malformed"


def install_error_handlers(app: FastAPI) -> None:
    async def on_ferry_error(_: Request, error: Exception) -> Response:
        assert isinstance(error, FerryError)
        return error_response(error.status, error.error_code, error.message, error.headers)

    async def on_validation_error(_: Request, error: Exception) -> Response:
        assert isinstance(error, RequestValidationError)
        return error_response(422, "validation_error", _describe_validation(error))

    async def on_http_error(_: Request, error: Exception) -> Response:
        assert isinstance(error, StarletteHTTPException)
        return error_response(
            error.status_code, _http_error_code(error.status_code), str(error.detail)
        )

    async def on_aws_error(_: Request, error: Exception) -> Response:
        # An AWS dependency failed after botocore's own retries (connection refused, timeouts,
        # throttling, a 5xx...): the caller may retry later. aiobotocore wraps aiohttp's errors
        # in botocore's; the few it may let through (a broken response stream) land here too.
        log.warning("aws dependency failed (%s): %s", type(error).__name__, error)
        return error_response(
            503,
            "dependency_unavailable",
            "a storage dependency is unavailable; retry shortly",
            {"Retry-After": "2"},
        )

    app.add_exception_handler(FerryError, on_ferry_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(BotoCoreError, on_aws_error)
    app.add_exception_handler(ClientError, on_aws_error)
    app.add_exception_handler(aiohttp.ClientError, on_aws_error)


class RequestContextMiddleware:
    """Request id in and out (`X-Request-ID`), one access log line, request metrics.

    Pure ASGI (not BaseHTTPMiddleware) so streaming and WebSocket scopes pass untouched.
    """

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        incoming = headers.get(REQUEST_ID_HEADER.lower().encode(), b"").decode("latin-1")
        request_id = accepted_request_id(incoming)
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (REQUEST_ID_HEADER.lower().encode(), request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if scope["type"] == "http":
                route = scope.get("route")
                template = getattr(route, "path", "unmatched")
                elapsed = time.perf_counter() - started
                self.metrics.requests.labels(template, scope["method"], str(status)).inc()
                self.metrics.latency.labels(template, scope["method"]).observe(elapsed)
                if template not in ("/healthz", "/readyz", "/metrics"):
                    log.info(
                        "%s %s %s",
                        scope["method"],
                        template,
                        status,
                        extra={"status": status, "duration_ms": round(elapsed * 1000, 1)},
                    )
            request_id_var.reset(token)


async def _not_started() -> None:
    raise RuntimeError("the service has not finished starting")


def published_checks(app: FastAPI) -> Sequence[ReadinessCheck]:
    """The checks the lifespan set on `app.state.readiness_checks` once its clients were open;
    until then one that fails (the service has not finished starting)."""
    checks: Sequence[ReadinessCheck] | None = getattr(app.state, "readiness_checks", None)
    return (_not_started,) if checks is None else checks


def table_check(dynamodb: DynamoDBClient, table: str, *, name: str) -> ReadinessCheck:
    """DynamoDB describes `table`; `/readyz` calls the check `name` when it fails."""

    async def check() -> None:
        await dynamodb.describe_table(TableName=table)

    check.__name__ = name
    return check


def task_check(task: asyncio.Task[Any], what: str, *, name: str) -> ReadinessCheck:
    """`task`, a loop the service cannot work without (`what`), is still running."""

    async def check() -> None:
        if task.done():
            raise RuntimeError(f"{what} is not running")

    check.__name__ = name
    return check


def _check_name(check: ReadinessCheck) -> str:
    """A check's name: its function's, with its class for a bound method (`MediaBucket.check`)."""
    name = getattr(check, "__name__", "dependency")
    owner = getattr(check, "__self__", None)
    return f"{type(owner).__name__}.{name}" if owner is not None else name


async def _run_checks(checks: Sequence[ReadinessCheck]) -> str | None:
    """None when every check passes, else a sentence naming the first failure."""
    for check in checks:
        try:
            await asyncio.wait_for(check(), READINESS_TIMEOUT_SECONDS)
        except Exception as error:  # any failure means not ready
            return f"{_check_name(check)}: {type(error).__name__}"
    return None


class ReadinessReport:
    """What the readiness checks found (on `/readyz`, and on each `/metrics` scrape): the
    `ferry_ready` gauge, and one log line per change, not per probe."""

    def __init__(self, metrics: HttpMetrics) -> None:
        self._metrics = metrics
        self._last: str | None = "not probed yet"

    def record(self, failure: str | None) -> None:
        self._metrics.ready.set(0 if failure else 1)
        if failure == self._last:
            return
        if failure is None:
            log.info("ready: every dependency answers")
        else:
            log.warning("not ready: %s", failure, extra={"readiness": failure})
        self._last = failure


def build_app(
    *,
    title: str,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[Any]],
    registry: CollectorRegistry,
    readiness_checks: Callable[[FastAPI], Sequence[ReadinessCheck]] = published_checks,
    settings: CommonSettings | None = None,
    cors: bool = False,
) -> FastAPI:
    """A FastAPI app with the fleet's error bodies, request ids, `/healthz`, `/readyz`, `/metrics`.

    `readiness_checks(app)` is called per request, so checks may use clients the lifespan opened;
    by default they are those the lifespan published on `app.state.readiness_checks`.
    `cors`: browsers on `settings.cors_allowed_origins` may call it (the public HTTP services).
    """
    # `/docs` and `/redoc` from assets in the fastapi-offline wheel: no CDN, no internet needed.
    app = offline_docs_app(title=title, version=__version__, lifespan=lifespan)
    app.state.registry = registry
    if settings is not None:
        # Identity dependencies read the internal token and the token verifier from here.
        app.state.settings = settings
        app.state.token_verifier = token_verifier(settings)
    install_error_handlers(app)
    http_metrics = HttpMetrics(registry)
    # Added first, so it runs inside the request-id middleware: refusals carry an id and a log line.
    if settings is None:
        app.add_middleware(RequestLimitsMiddleware)
    else:
        app.add_middleware(
            RequestLimitsMiddleware,
            max_body_bytes=settings.max_request_bytes,
            max_header_bytes=settings.max_header_bytes,
            internal_token=settings.internal_token,
        )
    app.add_middleware(RequestContextMiddleware, metrics=http_metrics)
    if cors and settings is not None:
        # Last added, so outermost: every answer, refusals by the layers above included.
        install_cors(app, parse_origins(settings.cors_allowed_origins))
    readiness = ReadinessReport(http_metrics)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        failure = await _run_checks(readiness_checks(app))
        readiness.record(failure)
        if failure:
            return error_response(503, "not_ready", f"a dependency is not answering ({failure})")
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        # `ferry_ready` is as fresh as the scrape, whether or not anything probes /readyz.
        readiness.record(await _run_checks(readiness_checks(app)))
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


def token_verifier(settings: CommonSettings) -> TokenVerifier:
    """The verifier of a service's bearer tokens (one per app: it holds the JWKS key cache)."""
    return TokenVerifier(
        settings.auth_jwt_secret,
        jwks_url=settings.auth_jwks_url,
        issuer=settings.auth_issuer,
        audience=settings.auth_audience,
        roles_claim=settings.auth_roles_claim,
        jwks_cache_seconds=settings.auth_jwks_cache_seconds,
        refresh_cooldown_seconds=settings.auth_jwks_refresh_cooldown_seconds,
    )


async def current_identity(request: Request) -> Identity:
    """The caller of a public endpoint, from `Authorization: Bearer <JWT>` (401 otherwise)."""
    verifier: TokenVerifier = request.app.state.token_verifier
    return await verifier.verify(bearer_token(request.headers.get("authorization")))


# Set by a service's lifespan on `app.state.device_gate`: raises (403 `too_many_devices`) for a
# device beyond the account's limit. Services without one admit every device.
DeviceGate = Callable[[Identity], Awaitable[None]]


async def admitted_identity(
    request: Request, identity: Annotated[Identity, Depends(current_identity)]
) -> Identity:
    """The caller, once the service's device gate (if any) let its device in."""
    gate: DeviceGate | None = getattr(request.app.state, "device_gate", None)
    if gate is not None:
        await gate(identity)
    return identity


async def require_internal_caller(request: Request) -> None:
    """Internal endpoints (`/internal/...`) answer only holders of the shared internal token."""
    settings: CommonSettings = request.app.state.settings
    check_internal_token(request.headers.get(INTERNAL_TOKEN_HEADER), settings.internal_token)


async def admin_identity(
    identity: Annotated[Identity, Depends(admitted_identity)],
) -> Identity:
    """The caller of an `/v1/admin/...` endpoint: a valid token with role `admin` (403 else)."""
    if not identity.is_admin:
        raise Forbidden("this endpoint is for admins only", code="forbidden")
    return identity


Caller = Annotated[Identity, Depends(admitted_identity)]
AdminCaller = Annotated[Identity, Depends(admin_identity)]
InternalCaller = Annotated[None, Depends(require_internal_caller)]
