"""The batcher of connect storms: batches form while calls run, never name a key twice,
and each request gets its own result or error."""

from __future__ import annotations

import asyncio

import pytest

from gateway.batching import Batcher
from gateway.message_client import (
    MessageServiceUnavailable,
    SendRejected,
    _backlog,
)
from shared.models import DevicePending


class Recorder:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.gate = asyncio.Event()

    async def call(self, requests: list[str]) -> list[str | Exception]:
        self.calls.append(requests)
        await self.gate.wait()
        return [ValueError(r) if r.startswith("bad") else r.upper() for r in requests]


async def test_requests_that_wait_go_together_and_each_gets_its_own_result() -> None:
    recorder = Recorder()
    batcher: Batcher[str, str] = Batcher(
        recorder.call, size=3, in_flight=1, key=lambda r: r.split("#")[0]
    )
    first = asyncio.ensure_future(batcher.submit("a"))
    await asyncio.sleep(0)
    rest = [asyncio.ensure_future(batcher.submit(r)) for r in ("b", "bad", "b#2", "c", "d")]
    await asyncio.sleep(0)
    recorder.gate.set()
    assert await first == "A"
    results = await asyncio.gather(*rest, return_exceptions=True)
    assert results[0] == "B"
    assert isinstance(results[1], ValueError)
    assert results[2:] == ["B#2", "C", "D"]
    # The first alone (nothing waited), then at most 3 a call, "b" and "b#2" never together.
    assert recorder.calls == [["a"], ["b", "bad", "c"], ["b#2", "d"]]


async def test_a_failed_call_fails_every_request_in_it() -> None:
    async def broken(requests: list[str]) -> list[str | Exception]:
        raise RuntimeError("down")

    batcher: Batcher[str, str] = Batcher(broken, size=5, in_flight=2, key=lambda r: r)
    results = await asyncio.gather(*(batcher.submit(r) for r in "xyz"), return_exceptions=True)
    assert all(isinstance(result, RuntimeError) for result in results)


def test_a_device_result_in_a_batch_becomes_messages_or_the_right_error() -> None:
    assert _backlog(DevicePending(status=200, messages=[{"message_id": "m"}])) == [
        {"message_id": "m"}
    ]
    refused = _backlog(
        DevicePending.model_validate(
            {"status": 403, "error": {"code": "too_many_devices", "message": "no room"}}
        )
    )
    assert isinstance(refused, SendRejected)
    assert (refused.status, refused.code) == (403, "too_many_devices")
    for status, code in ((403, "forbidden"), (503, "dependency_unavailable")):
        other = _backlog(
            DevicePending.model_validate(
                {"status": status, "error": {"code": code, "message": "x"}}
            )
        )
        assert isinstance(other, MessageServiceUnavailable)


@pytest.mark.parametrize("size", [1, 2])
async def test_a_lone_request_goes_at_once(size: int) -> None:
    recorder = Recorder()
    recorder.gate.set()
    batcher: Batcher[str, str] = Batcher(recorder.call, size=size, in_flight=1, key=lambda r: r)
    assert await batcher.submit("q") == "Q"
    assert recorder.calls == [["q"]]
