"""The registry heartbeat: one loop per gateway renews the rows of every local connection.

One loop (not a task per connection) keeps idle connections cheap. A renewal refused because
another connection took the device over (a reconnect elsewhere) closes this one as replaced;
a row that could not be renewed before it expired closes its connection too, so the client
reconnects and registers again instead of silently missing pushes.
"""

from __future__ import annotations

import asyncio
import logging
import time

from gateway.connections import LocalConnection
from gateway.gateway import Gateway
from gateway.metrics import DisconnectReason

log = logging.getLogger("ferry.gateway.heartbeat")

# Renewals in flight at once: enough to renew thousands of rows well within one interval
# without a burst of thousands of requests.
CONCURRENT_RENEWALS = 16


class Heartbeat:
    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._limit = asyncio.Semaphore(CONCURRENT_RENEWALS)

    async def run(self) -> None:
        """Renew every `registry_ttl / 3` seconds until cancelled."""
        interval = self._gateway.settings.heartbeat_interval_seconds
        while True:
            await asyncio.sleep(interval)
            await self.beat()

    async def beat(self) -> None:
        """Renew every registered local connection whose row was written an interval ago or
        more. A younger row lives past the next beat anyway (it has more than `ttl - interval`
        left, the next beat comes within an interval, and the interval is a third of the ttl),
        so a connect storm is not followed by a heartbeat storm of rows just written."""
        settings = self._gateway.settings
        fresh = time.time() + settings.registry_ttl_seconds - settings.heartbeat_interval_seconds
        async with asyncio.TaskGroup() as renewals:
            for connection in self._gateway.connections:
                due = connection.registered and connection.row.expires_at <= fresh
                if due and not connection.closing:
                    renewals.create_task(self._renew(connection))

    async def _renew(self, connection: LocalConnection) -> None:
        gateway = self._gateway
        async with self._limit:
            row = connection.renewed(int(time.time()) + gateway.settings.registry_ttl_seconds)
            try:
                alive = await gateway.registry.heartbeat(row)
            except Exception as error:
                gateway.metrics.registry_errors.labels("heartbeat").inc()
                log.warning("a registry heartbeat failed: %s", error)
                if time.time() >= connection.row.expires_at:
                    connection.close(DisconnectReason.REGISTRY_LOST)
                return
        if alive:
            connection.row = row
        else:
            connection.close(DisconnectReason.REPLACED)
