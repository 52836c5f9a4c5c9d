"""Races of one send with itself, now that no claim serialises them (issue 12 item 2): first
attempts of the same `client_msg_id` at once store exactly one message, and the same id sent to
two conversations at once is stored in one and refused in the other."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx

from tests.integration.conftest import Fleet
from tests.integration.test_message_path import create_conversation, send


async def test_concurrent_first_attempts_of_one_send_store_one_message(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    alice, bob = user("alice"), user("bob")
    conversation_id = (await create_conversation(fleet, http, alice, bob))["conversation_id"]
    attempts = await asyncio.gather(
        *(send(fleet, http, alice, conversation_id, "racing", text="once") for _ in range(8))
    )
    assert sorted(r.status_code for r in attempts) == [200] * 7 + [201]
    assert len({r.json()["message_id"] for r in attempts}) == 1
    history = await http.get(
        f"{fleet.message_url}/v1/conversations/{conversation_id}/messages",
        headers=fleet.auth(bob),
    )
    assert [m["seq"] for m in history.json()["messages"]] == [1]
    # The next send gets the next number: the losers took none.
    following = await send(fleet, http, alice, conversation_id, "next", text="two")
    assert following.json()["seq"] == 2


async def test_one_client_msg_id_for_two_conversations_at_once_is_stored_once(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    alice, bob = user("alice"), user("bob")
    first = (await create_conversation(fleet, http, alice, bob))["conversation_id"]
    second = (await create_conversation(fleet, http, alice, bob))["conversation_id"]
    answers = await asyncio.gather(
        *(send(fleet, http, alice, c, "shared-id", text="x") for c in [first, second] * 3)
    )
    created = [r for r in answers if r.status_code == 201]
    assert len(created) == 1
    home = created[0].json()["conversation_id"]
    for answer, conversation_id in zip(answers, [first, second] * 3, strict=True):
        if conversation_id == home:
            assert answer.status_code in (200, 201)
        else:
            assert answer.status_code == 409
            assert answer.json()["error"]["code"] == "client_msg_id_reused"
