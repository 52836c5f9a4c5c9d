"""Calls that carry many connections' requests at once, for connect storms.

Each handshake asks for its own registration and its own backlog; a `Batcher` sends those
that wait together in one call (a registry `BatchWriteItem`, one Message Service request).
No waiting is added to collect a batch: a request goes out at once while fewer than
`in_flight` calls are running, and requests that arrive meanwhile go together in the next
call. A quiet gateway therefore makes one call per connection, as before; a storm of
thousands makes one per `size`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

from gateway.message_client import Backlog, MessageClient
from shared.connections import Connection, ConnectionRegistry

T = TypeVar("T")
R = TypeVar("R")

# The results of one call, in the order of its requests: a value, or the exception for that
# request. An exception raised by the call itself fails every request in it.
BatchCall = Callable[[list[T]], Awaitable[list[R | Exception]]]


class Batcher(Generic[T, R]):
    def __init__(
        self, call: BatchCall[T, R], *, size: int, in_flight: int, key: Callable[[T], Hashable]
    ) -> None:
        self._call = call
        self._size = size
        self._in_flight = in_flight
        # Two requests with the same key never share a call (DynamoDB refuses a batch that
        # names a key twice); the later one goes in a later call, so it is applied last.
        self._key = key
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, request: T) -> R:
        """This request's result, or the exception for it."""
        loop = asyncio.get_running_loop()
        result: asyncio.Future[R] = loop.create_future()
        self._waiting.append((request, result))
        if self._running < self._in_flight:
            self._running += 1
            task = loop.create_task(self._run())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await result

    async def _run(self) -> None:
        try:
            while batch := self._take():
                try:
                    results = await self._call([request for request, _ in batch])
                except Exception as error:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    continue
                for (_, future), outcome in zip(batch, results, strict=True):
                    if future.done():  # its handshake was cancelled meanwhile
                        continue
                    if isinstance(outcome, Exception):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        finally:
            self._running -= 1

    def _take(self) -> list[tuple[T, asyncio.Future[R]]]:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        later: list[tuple[T, asyncio.Future[R]]] = []
        keys: set[Hashable] = set()
        for entry in self._waiting:
            key = self._key(entry[0])
            if len(batch) < self._size and key not in keys and not entry[1].done():
                keys.add(key)
                batch.append(entry)
            elif not entry[1].done():
                later.append(entry)
        self._waiting = later
        return batch


# DynamoDB's limit per BatchWriteItem.
REGISTRATIONS_PER_CALL = 25
# Devices per backlog request: small enough that one call answers well within its timeout
# even when the Message Service is busy (a timed-out call fails every device in it).
BACKLOGS_PER_CALL = 10
CALLS_IN_FLIGHT = 4


def registrations(registry: ConnectionRegistry) -> Batcher[Connection, None]:
    """Registry rows, written 25 a call (a registration is an unconditional put)."""

    async def put(rows: list[Connection]) -> list[Exception | None]:
        if len(rows) == 1:
            await registry.register(rows[0])
        else:
            await registry.register_many(rows)
        return [None] * len(rows)

    return Batcher(
        put,
        size=REGISTRATIONS_PER_CALL,
        in_flight=CALLS_IN_FLIGHT,
        key=lambda row: (row.user_id, row.device_id),
    )


def backlogs(messages: MessageClient) -> Batcher[tuple[str, str], list[dict[str, Any]]]:
    """Pending messages of connecting devices, many devices a Message Service call."""

    async def fetch(devices: list[tuple[str, str]]) -> list[list[dict[str, Any]] | Exception]:
        results: list[Backlog] = await messages.pending_many(devices)
        return list(results)

    return Batcher(fetch, size=BACKLOGS_PER_CALL, in_flight=CALLS_IN_FLIGHT, key=lambda d: d)
