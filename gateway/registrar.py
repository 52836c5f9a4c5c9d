"""Registrations in batches: a connect storm writes its registry rows 25 to a call.

A registration is an unconditional put (the newest connection of a device wins), so puts of
different devices can share one `BatchWriteItem`. No waiting is added to collect a batch: a
registration goes out at once when a writer is free, and those that arrive while
`WRITERS` batches are in flight go together in the next one. A quiet gateway therefore writes
one row a call, as before; a storm of thousands writes ~25 a call.
"""

from __future__ import annotations

import asyncio
import logging

from shared.connections import Connection, ConnectionRegistry

log = logging.getLogger("ferry.gateway.registrar")

BATCH = 25  # DynamoDB's limit per BatchWriteItem
WRITERS = 4  # batches in flight at once


class Registrar:
    def __init__(self, registry: ConnectionRegistry) -> None:
        self._registry = registry
        self._waiting: list[tuple[Connection, asyncio.Future[None]]] = []
        self._writers = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def register(self, row: Connection) -> None:
        """Write this row (with others waiting, if any); raises what the write raised."""
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((row, done))
        if self._writers < WRITERS:
            self._writers += 1
            task = asyncio.get_running_loop().create_task(self._write())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await done

    async def _write(self) -> None:
        try:
            while batch := self._take():
                try:
                    if len(batch) == 1:
                        await self._registry.register(batch[0][0])
                    else:
                        await self._registry.register_many([row for row, _ in batch])
                except Exception as error:
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(error)
                else:
                    for _, done in batch:
                        if not done.done():
                            done.set_result(None)
        finally:
            self._writers -= 1

    def _take(self) -> list[tuple[Connection, asyncio.Future[None]]]:
        """Up to BATCH waiting rows, each device once (a later row of the same device waits
        for the next batch, so the newest connection's row is written last and wins)."""
        batch: list[tuple[Connection, asyncio.Future[None]]] = []
        later: list[tuple[Connection, asyncio.Future[None]]] = []
        devices: set[tuple[str, str]] = set()
        for entry in self._waiting:
            key = (entry[0].user_id, entry[0].device_id)
            if len(batch) < BATCH and key not in devices:
                devices.add(key)
                batch.append(entry)
            else:
                later.append(entry)
        self._waiting = later
        return batch
