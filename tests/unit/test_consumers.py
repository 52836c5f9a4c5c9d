"""Loops run in a lifespan: a crash is reported, a stop is graceful; internal calls are signed."""

import asyncio
import logging

import httpx
import pytest

from shared.auth import INTERNAL_TOKEN_HEADER
from shared.consumers import background
from shared.internal_client import internal_client
from shared.logging import REQUEST_ID_HEADER, request_id_var


async def test_a_crashed_loop_is_reported_and_its_task_is_done(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def crash() -> None:
        raise RuntimeError("boom")

    with caplog.at_level(logging.CRITICAL, logger="ferry.consumers"):
        async with background(crash(), name="the loop") as task:
            await asyncio.wait({task})
            assert task.done()
    assert "the loop stopped on an error" in caplog.text


async def test_leaving_the_block_asks_the_loop_to_stop_and_waits_for_it() -> None:
    stopping = asyncio.Event()
    finished: list[str] = []

    async def loop() -> None:
        await stopping.wait()
        finished.append("cleaned up")

    async with background(loop(), name="the loop", stop=stopping.set) as task:
        assert not task.done()
    assert task.done()
    assert not task.cancelled()
    assert finished == ["cleaned up"]


async def test_without_a_stop_the_loop_is_cancelled() -> None:
    async def forever() -> None:
        await asyncio.Event().wait()

    async with background(forever(), name="the loop") as task:
        pass
    assert task.cancelled()


async def test_internal_calls_carry_the_token_and_the_request_id() -> None:
    seen: list[httpx.Headers] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers)
        return httpx.Response(204)

    transport = httpx.MockTransport(answer)
    async with internal_client(
        "t0ken", timeout=1, base_url="http://peer", transport=transport
    ) as client:
        await client.get("/a")
        reset = request_id_var.set("req-1")
        try:
            await client.get("/b")
        finally:
            request_id_var.reset(reset)
    assert [headers[INTERNAL_TOKEN_HEADER] for headers in seen] == ["t0ken", "t0ken"]
    assert REQUEST_ID_HEADER not in seen[0]
    assert seen[1][REQUEST_ID_HEADER] == "req-1"
