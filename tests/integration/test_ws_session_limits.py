"""Issue 9 items 4 and 5 against a real gateway and Message Service.

4. A WebSocket does not outlive its token: it is closed with 4001 at expiry, unless an
   `{"type": "auth", "token": ...}` frame of the same user and device extends it.
5. A frame of deeply nested brackets (under the size limit) gets an error frame; the connection
   lives on (it used to end the session with 1011: `RecursionError`).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from datetime import timedelta

import httpx
from websockets.asyncio.client import connect

from shared.auth import issue_token
from tests.integration.helpers import Fleet
from tests.integration.test_gateway import WAIT, read_until_closed, receive_type
from tests.integration.ws_client import quiet_for, ws_url

SHORT = timedelta(seconds=3)
# Longer than SHORT with margin: reading this long shows the first token's expiry passed by.
PAST_THE_FIRST_EXPIRY_SECONDS = 6.0


def token(fleet: Fleet, user: str, device: str, ttl: timedelta) -> str:
    return issue_token(user, fleet.secret, device_id=device, ttl=ttl)


async def conversation_with(fleet: Fleet, http: httpx.AsyncClient, user: str, peer: str) -> str:
    assert fleet.message_url
    created = await http.post(
        f"{fleet.message_url}/v1/conversations",
        json={"members": [peer]},
        headers=fleet.auth(user, "phone"),
    )
    assert created.status_code == 201, created.text
    conversation_id: str = created.json()["conversation_id"]
    return conversation_id


async def test_a_websocket_is_closed_with_4001_when_its_token_expires(
    fleet: Fleet, user: Callable[..., str]
) -> None:
    alice = user()
    url = ws_url(fleet.gateway_urls[0])
    async with connect(
        f"{url}?token={token(fleet, alice, 'phone', SHORT)}", open_timeout=WAIT
    ) as websocket:
        await read_until_closed(websocket)
        assert websocket.close_code == 4001
        assert "expired" in (websocket.close_reason or "")


async def test_an_auth_frame_extends_the_session_past_the_first_token(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    alice, bob = user(), user("bob")
    conversation = await conversation_with(fleet, http, alice, bob)
    url = ws_url(fleet.gateway_urls[0])
    async with connect(
        f"{url}?token={token(fleet, alice, 'phone', SHORT)}", open_timeout=WAIT
    ) as websocket:
        fresh = token(fleet, alice, "phone", timedelta(minutes=5))
        await websocket.send(json.dumps({"type": "auth", "token": fresh}))
        authenticated = await receive_type(websocket, "authenticated")
        assert authenticated["expires_at"] > 60

        # The first token's expiry passes by: no close frame comes.
        await quiet_for(websocket, PAST_THE_FIRST_EXPIRY_SECONDS)
        assert websocket.close_code is None
        client_msg_id = f"c-{secrets.token_hex(4)}"
        await websocket.send(
            json.dumps(
                {
                    "type": "send",
                    "client_msg_id": client_msg_id,
                    "conversation_id": conversation,
                    "text": "still here",
                }
            )
        )
        sent = await receive_type(websocket, "sent")
        assert sent["client_msg_id"] == client_msg_id


async def test_an_auth_frame_for_someone_else_or_invalid_is_refused_and_changes_nothing(
    fleet: Fleet, user: Callable[..., str]
) -> None:
    alice, mallory = user(), user("mallory")
    url = ws_url(fleet.gateway_urls[0])
    async with connect(
        f"{url}?token={token(fleet, alice, 'phone', SHORT)}", open_timeout=WAIT
    ) as websocket:
        refusals = {
            "forbidden": token(fleet, mallory, "phone", timedelta(minutes=5)),
            "unauthorized": "not-a-jwt",
        }
        for code, other in (*refusals.items(), ("forbidden", token(fleet, alice, "tablet", SHORT))):
            await websocket.send(json.dumps({"type": "auth", "token": other}))
            error = await receive_type(websocket, "error")
            assert error["code"] == code, error
        # The session still ends with the first token.
        await read_until_closed(websocket)
        assert websocket.close_code == 4001


async def test_deeply_nested_brackets_get_an_error_frame_and_the_connection_lives(
    fleet: Fleet, user: Callable[..., str]
) -> None:
    depth = 30_000  # 60 KB: under the 64 KiB frame limit
    url = ws_url(fleet.gateway_urls[0])
    async with connect(
        url, additional_headers=fleet.auth(user(), "phone"), open_timeout=WAIT
    ) as ws:
        for frame in ("[" * depth + "]" * depth, '{"a":' * 10_000 + "1" + "}" * 10_000):
            await ws.send(frame)
            error = await receive_type(ws, "error")
            assert error["code"] == "bad_frame"
            await ws.send(json.dumps({"type": "ping"}))
            assert await receive_type(ws, "pong") == {"type": "pong"}
