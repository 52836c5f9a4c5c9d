"""One gateway instance: everything it holds, and its orderly shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from gateway.batching import Batcher
from gateway.connections import LocalConnections
from gateway.message_client import MessageClient
from gateway.metrics import DisconnectReason, GatewayMetrics
from gateway.settings import Settings
from shared.auth import TokenVerifier
from shared.connections import Connection, ConnectionRegistry

log = logging.getLogger("ferry.gateway")


@dataclass(frozen=True, kw_only=True)
class Gateway:
    """Everything one gateway instance holds; one per app, no module globals."""

    settings: Settings
    metrics: GatewayMetrics
    connections: LocalConnections
    registry: ConnectionRegistry
    messages: MessageClient
    # Registrations and backlog fetches of connecting devices, batched in connect storms.
    registrations: Batcher[Connection, None]
    backlogs: Batcher[tuple[str, str], list[dict[str, Any]]]
    verifier: TokenVerifier
    # The short tasks of every connection (handshakes, sends in flight, deregistrations): held
    # here so none is garbage-collected mid-flight, and shutdown can wait for them.
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def start(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run one short piece of a connection's work; a bug in it is logged, never raised."""
        task = asyncio.get_running_loop().create_task(_logged(work, name))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def shutdown(self) -> None:
        """Close every connection with 1001 and wait (bounded) for their sessions to end.

        Each session deregisters its own row as it ends; rows of sessions that did not end in
        time are deregistered here. Safe to call twice.
        """
        self.connections.close_all(DisconnectReason.SHUTDOWN)
        budget = self.settings.close_timeout_seconds + self.settings.internal_call_timeout_seconds
        try:
            async with asyncio.timeout(budget):
                await self.connections.wait_empty()
        except TimeoutError:
            leftovers = list(self.connections)
            log.warning("sessions still open at shutdown", extra={"count": len(leftovers)})
            for connection in leftovers:
                try:
                    await self.registry.deregister(connection.row)
                except Exception as error:  # best effort: the row's TTL is the backstop
                    log.warning("could not deregister at shutdown: %s", error)
        # Sends in flight finish (bounded by the call timeout): their messages are stored even
        # though the answer can no longer reach the client.
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=budget)


async def _logged(work: Coroutine[Any, Any, None], name: str) -> None:
    try:
        await work
    except Exception:
        log.exception("a WebSocket %s failed", name)
