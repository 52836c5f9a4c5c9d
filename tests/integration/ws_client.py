"""A WebSocket client as a chat app would be one, for the delivery tests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from tests.integration.helpers import Fleet
from tests.waiting import scaled


def ws_url(http_url: str) -> str:
    return http_url.replace("http://", "ws://", 1) + "/v1/ws"


def open_socket(fleet: Fleet, gateway: int, user: str, device: str = "default") -> Any:
    """`async with open_socket(...) as ws:` a device of `user` on gateway number `gateway`."""
    return connect(
        ws_url(fleet.gateway_urls[gateway]),
        additional_headers={"Authorization": f"Bearer {fleet.token(user, device)}"},
        open_timeout=10,
    )


async def next_frame(
    ws: ClientConnection,
    wanted: Callable[[dict[str, Any]], bool],
    *,
    within: float = 20.0,
) -> dict[str, Any]:
    """The next frame `wanted` accepts; frames before it are skipped."""
    async with asyncio.timeout(scaled(within)):
        while True:
            frame: dict[str, Any] = json.loads(await ws.recv())
            if wanted(frame):
                return frame


def of_type(kind: str, **fields: Any) -> Callable[[dict[str, Any]], bool]:
    return lambda frame: (
        frame.get("type") == kind and all(frame.get(key) == value for key, value in fields.items())
    )


async def send_frame(ws: ClientConnection, **frame: Any) -> None:
    await ws.send(json.dumps(frame))


async def quiet_for(ws: ClientConnection, seconds: float) -> list[dict[str, Any]]:
    """Every frame that arrives within `seconds` (to show that something does NOT come)."""
    frames: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(seconds):
            while True:
                frames.append(json.loads(await ws.recv()))
    except TimeoutError:
        return frames
