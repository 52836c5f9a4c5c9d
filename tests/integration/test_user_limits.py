"""Per-user limits (issue 9 item 9): HTTP sends and conversation creation are rate limited
(429 `rate_limited` with Retry-After), and an account has at most `MAX_DEVICES_PER_USER` (10)
devices: an 11th gets 403 `too_many_devices` on every service and on the WebSocket until one
is removed with `DELETE /v1/me/devices/{device_id}`."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from devstack.fleet import LocalFleet, start_fleet
from tests.integration.conftest import Fleet
from tests.integration.test_message_path import create_conversation
from tests.integration.ws_client import next_frame, of_type, open_socket, send_frame

MAX_DEVICES = 10  # the default


@pytest.fixture(scope="module")
async def strict_fleet(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalFleet]:
    """A Message Service of its own with tiny budgets, so refusals come without timing."""
    async with start_fleet(
        log_dir=tmp_path_factory.mktemp("strict-fleet"),
        prefix=f"lim{secrets.token_hex(4)}",
        extra_env=STRICT,
        services=["message_service"],
    ) as fleet:
        yield fleet
    assert not fleet.unclean_exits, fleet.describe_unclean_exits()


STRICT = {
    "SEND_RATE_PER_SECOND": "0.01",
    "SEND_BURST": "3",
    "CONVERSATION_RATE_PER_MINUTE": "2",
    "LOG_JSON": "true",
}


async def test_http_sends_are_rate_limited_per_user(
    strict_fleet: LocalFleet, http: httpx.AsyncClient
) -> None:
    url = strict_fleet.url("message_service")
    created = await http.post(
        f"{url}/v1/conversations", json={"members": ["bob"]}, headers=strict_fleet.auth("alice")
    )
    assert created.status_code == 201
    conversation_id = created.json()["conversation_id"]

    async def send_as(sender: str, client_msg_id: str) -> httpx.Response:
        return await http.post(
            f"{url}/v1/conversations/{conversation_id}/messages",
            json={"client_msg_id": client_msg_id, "text": "x"},
            headers=strict_fleet.auth(sender),
        )

    statuses = [(await send_as("alice", f"m{n}")).status_code for n in range(3)]
    assert statuses == [201, 201, 201]
    limited = await send_as("alice", "m3")
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) >= 1
    # A replay of a stored send is never limited (it stores nothing); other users are apart.
    assert (await send_as("alice", "m0")).status_code == 200
    assert (await send_as("bob", "b0")).status_code == 201


async def test_conversation_creation_is_rate_limited_per_user(
    strict_fleet: LocalFleet, http: httpx.AsyncClient
) -> None:
    url = strict_fleet.url("message_service")
    statuses = []
    for n in range(3):
        response = await http.post(
            f"{url}/v1/conversations",
            json={"members": [f"stranger-{n}"]},
            headers=strict_fleet.auth("carol"),
        )
        statuses.append(response.status_code)
    assert statuses == [201, 201, 429]
    assert response.json()["error"]["code"] == "rate_limited"
    assert int(response.headers["Retry-After"]) >= 1


async def test_an_eleventh_device_is_refused_everywhere_until_one_is_removed(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    alice, bob = user("alice"), user("bob")
    conversation_id = (await create_conversation(fleet, http, alice, bob))["conversation_id"]
    for n in range(1, MAX_DEVICES):  # "default" (above) and nine more
        listed = await http.get(
            f"{fleet.message_url}/v1/conversations", headers=fleet.auth(alice, f"d{n}")
        )
        assert listed.status_code == 200, listed.text

    extra = fleet.auth(alice, "one-too-many")
    for response in (
        await http.get(f"{fleet.message_url}/v1/conversations", headers=extra),
        await http.post(
            f"{fleet.message_url}/v1/conversations/{conversation_id}/messages",
            json={"client_msg_id": "m2", "text": "hi"},
            headers=extra,
        ),
        await http.get(f"{fleet.media_url}/v1/media/m_unknown", headers=extra),
    ):
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "too_many_devices"
    with pytest.raises(InvalidStatus) as refused:
        async with open_socket(fleet, 0, alice, "one-too-many"):
            pass
    assert refused.value.response.status_code == 403

    # The extra device's own token may free a place (it cannot do anything else yet).
    gone = await http.delete(f"{fleet.message_url}/v1/me/devices/d1", headers=extra)
    assert gone.status_code == 204
    again = await http.delete(f"{fleet.message_url}/v1/me/devices/d1", headers=extra)
    assert again.status_code == 404
    async with open_socket(fleet, 0, alice, "one-too-many") as ws:
        await send_frame(
            ws, type="send", client_msg_id="m3", conversation_id=conversation_id, text="in"
        )
        assert (await next_frame(ws, of_type("sent")))["seq"] >= 1
    listed = await http.get(f"{fleet.media_url}/v1/media/m_unknown", headers=extra)
    assert listed.status_code == 404
    # The removed device is now the one without a place.
    late = await http.get(f"{fleet.message_url}/v1/conversations", headers=fleet.auth(alice, "d1"))
    assert late.status_code == 403
