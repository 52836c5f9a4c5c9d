"""Pushes frames to online devices through the gateway instance that holds each one.

Delivery is persist first, then push: a push that fails or finds no connection costs nothing,
the device gets the message from its pending deliveries on reconnect. Pushes run as tracked
tasks so a send answers without waiting for every gateway, and shutdown waits for them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import httpx
from pydantic import ValidationError

from shared.connections import Connection, ConnectionRegistry
from shared.models import Delivery, PushRequest, PushResult

log = logging.getLogger("ferry.messages.push")

DRAIN_SECONDS = 5.0


class Pusher:
    def __init__(self, client: httpx.AsyncClient, registry: ConnectionRegistry) -> None:
        # From `shared.internal_client`: it adds the internal token and the request id.
        self._client = client
        self._registry = registry
        self._tasks: set[asyncio.Task[int]] = set()

    def push_soon(
        self,
        user_ids: Iterable[str],
        frame: dict[str, Any],
        *,
        skip: tuple[str, str] | None = None,
    ) -> None:
        """Push `frame` to every online device of `user_ids` (but `skip`), in the background."""
        task = asyncio.create_task(self.push(list(user_ids), frame, skip=skip), name="push")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def push(
        self, user_ids: list[str], frame: dict[str, Any], *, skip: tuple[str, str] | None = None
    ) -> int:
        """Push now; returns how many devices the gateways delivered to."""
        try:
            connections = await self._registry.online(user_ids)
        except Exception:
            log.warning("registry unreadable: push skipped (pending rows remain)", exc_info=True)
            return 0
        by_gateway: dict[str, list[Connection]] = defaultdict(list)
        for connection in connections:
            if (connection.user_id, connection.device_id) != skip:
                by_gateway[connection.gateway_url].append(connection)
        results = await asyncio.gather(
            *(self._post(url, held, frame) for url, held in by_gateway.items())
        )
        return sum(results)

    async def _post(
        self, gateway_url: str, connections: list[Connection], frame: dict[str, Any]
    ) -> int:
        body = PushRequest(
            deliveries=[
                Delivery(user_id=c.user_id, device_id=c.device_id, frame=frame) for c in connections
            ]
        )
        try:
            response = await self._client.post(
                f"{gateway_url.rstrip('/')}/internal/push",
                content=body.model_dump_json(),
                headers={"Content-Type": "application/json"},
            )
            response.raise_for_status()
            return PushResult.model_validate_json(response.content).delivered
        except (httpx.HTTPError, ValidationError) as error:
            # The pending rows stay: the device gets the frame on its next connection.
            log.warning("push to %s failed: %s", gateway_url, error)
            return 0

    async def drain(self) -> None:
        """Let pushes in flight finish (briefly) before the client closes."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=DRAIN_SECONDS)
        for task in list(self._tasks):
            task.cancel()
