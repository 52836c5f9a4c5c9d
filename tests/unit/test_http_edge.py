"""The shared HTTP edge: dependency failures become 503 `dependency_unavailable`, readiness
is reported as a gauge and logged once per change, request ids go in and out."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import aiohttp
import httpx
import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from shared.http import ReadinessCheck, build_app
from shared.logging import REQUEST_ID_HEADER, JsonFormatter, TextFormatter, request_id_var

ENDPOINT = "http://127.0.0.1:1"

FAILURES: dict[str, Exception] = {
    "endpoint": EndpointConnectionError(endpoint_url=ENDPOINT),
    "connect_timeout": ConnectTimeoutError(endpoint_url=ENDPOINT),
    "read_timeout": ReadTimeoutError(endpoint_url=ENDPOINT),
    "throttled": ClientError(
        {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
        "GetItem",
    ),
    "aiohttp": aiohttp.ClientConnectionError("connection reset"),
    "aiohttp_payload": aiohttp.ClientPayloadError("response payload is not completed"),
}


class Dependency:
    def __init__(self) -> None:
        self.up = True

    async def check(self) -> None:
        if not self.up:
            raise EndpointConnectionError(endpoint_url=ENDPOINT)


def _app(dependency: Dependency) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield

    def readiness(_: FastAPI) -> Sequence[ReadinessCheck]:
        return [dependency.check]

    app = build_app(
        title="edge",
        lifespan=lifespan,
        readiness_checks=readiness,
        registry=CollectorRegistry(),
    )

    @app.get("/fail/{kind}")
    async def fail(kind: str) -> None:
        raise FAILURES[kind]

    @app.get("/whoami")
    async def whoami() -> dict[str, str | None]:
        return {"request_id": request_id_var.get()}

    return app


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://edge")


@pytest.mark.parametrize("kind", sorted(FAILURES))
async def test_dependency_failures_are_a_clear_503(kind: str) -> None:
    async with _client(_app(Dependency())) as client:
        response = await client.get(f"/fail/{kind}")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "dependency_unavailable"
    assert response.headers["Retry-After"] == "2"


async def test_readiness_follows_the_dependency_and_logs_each_change_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dependency = Dependency()
    app = _app(dependency)
    registry: CollectorRegistry = app.state.registry

    def ready() -> float | None:
        return registry.get_sample_value("ferry_ready")

    caplog.set_level(logging.INFO, logger="ferry.http")
    async with _client(app) as client:
        assert (await client.get("/readyz")).status_code == 200
        assert ready() == 1
        dependency.up = False
        for _ in range(3):
            response = await client.get("/readyz")
            assert response.status_code == 503
            assert "EndpointConnectionError" in response.json()["error"]["message"]
        assert ready() == 0
        dependency.up = True
        # A scrape runs the same checks: the gauge is fresh without a /readyz probe.
        assert (await client.get("/metrics")).status_code == 200
        assert ready() == 1
    changes = [r.getMessage() for r in caplog.records if "ready" in r.getMessage()]
    assert changes == [
        "ready: every dependency answers",
        "not ready: Dependency.check: EndpointConnectionError",
        "ready: every dependency answers",
    ]


async def test_a_request_id_is_taken_from_the_caller_or_made() -> None:
    async with _client(_app(Dependency())) as client:
        given = await client.get("/whoami", headers={REQUEST_ID_HEADER: "trace-1234"})
        assert given.json() == {"request_id": "trace-1234"}
        assert given.headers[REQUEST_ID_HEADER] == "trace-1234"
        made = await client.get("/whoami", headers={REQUEST_ID_HEADER: "short"})
        assert made.json()["request_id"] != "short"
        assert made.headers[REQUEST_ID_HEADER] == made.json()["request_id"]


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("ferry.test", logging.INFO, __file__, 1, message, None, None)
    record.__dict__.update(extra)
    return record


def test_both_log_formats_carry_the_request_id_and_fields() -> None:
    token = request_id_var.set("trace-5678")
    try:
        entry = json.loads(JsonFormatter("worker").format(_record("media settled", state="ready")))
        text = TextFormatter("worker").format(_record("media settled", state="ready"))
    finally:
        request_id_var.reset(token)
    assert entry["request_id"] == "trace-5678"
    assert entry["state"] == "ready"
    assert entry["msg"] == "media settled"
    assert text.endswith("worker INFO media settled [request_id=trace-5678 state=ready]")
    assert TextFormatter("worker").format(_record("plain")).endswith("worker INFO plain")
