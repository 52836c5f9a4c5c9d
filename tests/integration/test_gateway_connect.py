"""Connecting to the gateway (issue 14 item 3): the handshake outside ASGI, and many devices
connecting at once (their registrations and backlog fetches go in batches)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from contextlib import AsyncExitStack

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.integration.helpers import Fleet
from tests.integration.test_gateway import WAIT, gateway_url, receive, ws_url
from tests.integration.test_message_path import create_conversation, send

__all__ = ["gateway_url"]  # the fixture, imported to be used here

# Devices connecting at once: more than one batch of backlog fetches (10) and of registry
# writes (25), small enough for the shared fleet.
STORM = 30


async def test_a_websocket_to_any_other_path_gets_404(fleet: Fleet, gateway_url: str) -> None:
    other = ws_url(gateway_url).replace("/v1/ws", "/v1/elsewhere")
    with pytest.raises(InvalidStatus) as refused:
        async with connect(other, open_timeout=WAIT):
            pass
    response = refused.value.response
    assert response.status_code == 404
    assert json.loads(response.body or b"{}")["error"]["code"] == "not_found"


async def test_devices_connecting_all_at_once_each_get_their_backlog_first(
    fleet: Fleet, http: httpx.AsyncClient, gateway_url: str, user: Callable[..., str]
) -> None:
    alice = user("alice")
    members = [user(f"m{n}") for n in range(STORM)]
    conversation_id = (await create_conversation(fleet, http, alice, *members))["conversation_id"]
    # Each member's phone is known before the message (one call with its token admits it),
    # so the message is kept pending for every one of them.
    for member in members:
        known = await http.get(
            f"{fleet.message_url}/v1/conversations", headers=fleet.auth(member, "phone")
        )
        assert known.status_code == 200, known.text
    sent = await send(fleet, http, alice, conversation_id, "storm-1", text="while you were away")
    assert sent.status_code == 201, sent.text
    message_id = sent.json()["message_id"]

    async with AsyncExitStack() as stack:
        sockets = await asyncio.gather(
            *(
                stack.enter_async_context(
                    connect(
                        ws_url(gateway_url),
                        additional_headers=fleet.auth(member, "phone"),
                        open_timeout=WAIT,
                    )
                )
                for member in members
            )
        )
        firsts = await asyncio.gather(*(receive(websocket) for websocket in sockets))
    assert [frame["type"] for frame in firsts] == ["message"] * STORM
    assert {frame["message"]["message_id"] for frame in firsts} == {message_id}


async def test_the_batched_pending_call_is_internal_and_answers_each_device_in_order(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    alice, bob = user("alice"), user("bob")
    conversation_id = (await create_conversation(fleet, http, alice, bob))["conversation_id"]
    known = await http.get(f"{fleet.message_url}/v1/conversations", headers=fleet.auth(bob))
    assert known.status_code == 200, known.text
    sent = await send(fleet, http, alice, conversation_id, "batch-1", text="hello")
    assert sent.status_code == 201, sent.text
    url = f"{fleet.message_url}/internal/devices/pending"
    body = {
        "devices": [
            {"user_id": bob, "device_id": "default"},
            {"user_id": user("carol"), "device_id": "phone"},
        ]
    }
    refused = await http.post(url, json=body, headers=fleet.auth(alice))
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "internal_only"
    answered = await http.post(url, json=body, headers=fleet.internal_headers())
    assert answered.status_code == 200, answered.text
    bobs, carols = answered.json()["results"]
    assert bobs["status"] == 200
    assert [m["message_id"] for m in bobs["messages"]] == [sent.json()["message_id"]]
    assert carols == {"status": 200, "messages": []}
    empty = await http.post(url, json={"devices": []}, headers=fleet.internal_headers())
    assert empty.status_code == 422
