"""Conversations v1.1 over HTTP: the list (most recent first, cursor paging), direct
conversations found again (never two per pair), and admins (issues 9 item 10, 11)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx

from tests.integration.conftest import Fleet
from tests.integration.test_message_path import create_conversation, send


async def _direct(fleet: Fleet, http: httpx.AsyncClient, caller: str, other: str) -> httpx.Response:
    return await http.post(
        f"{fleet.message_url}/v1/conversations",
        json={"members": [other], "direct": True},
        headers=fleet.auth(caller),
    )


async def _list(
    fleet: Fleet, http: httpx.AsyncClient, caller: str, **params: Any
) -> dict[str, Any]:
    response = await http.get(
        f"{fleet.message_url}/v1/conversations", params=params, headers=fleet.auth(caller)
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_the_list_is_most_recent_first_and_pages_with_a_cursor(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    alice, bob, carol = user("alice"), user("bob"), user("carol")
    first = (await create_conversation(fleet, http, alice, bob, title="first"))["conversation_id"]
    second = (await create_conversation(fleet, http, alice, carol))["conversation_id"]
    third = (await create_conversation(fleet, http, alice, bob, carol))["conversation_id"]
    # A message in the oldest makes it the most recent.
    assert (await send(fleet, http, bob, first, "hello", text="hi")).status_code == 201

    whole = await _list(fleet, http, alice, limit=10)
    assert [c["conversation_id"] for c in whole["conversations"]] == [first, third, second]
    assert whole["next"] is None
    top = whole["conversations"][0]
    assert top["last_seq"] == 1
    assert top["title"] == "first"
    assert top["members"] == sorted([alice, bob])
    assert top["admins"] == [alice]
    assert set(top) >= {"conversation_id", "members", "title", "created_at", "last_message_at"}
    assert whole["conversations"][1]["last_seq"] == 0

    pages: list[str] = []
    cursor = None
    while True:
        page = await _list(fleet, http, alice, limit=2, **({"before": cursor} if cursor else {}))
        pages.extend(c["conversation_id"] for c in page["conversations"])
        cursor = page["next"]
        if cursor is None:
            break
    assert pages == [first, third, second]

    # Bob sees only his; a cursor of Alice's listing is refused to him.
    assert [c["conversation_id"] for c in (await _list(fleet, http, bob))["conversations"]] == [
        first,
        third,
    ]
    first_page = await _list(fleet, http, alice, limit=1)
    refused = await http.get(
        f"{fleet.message_url}/v1/conversations",
        params={"before": first_page["next"]},
        headers=fleet.auth(bob),
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "invalid_cursor"


async def test_a_direct_conversation_is_found_again_never_two_per_pair(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    alice, bob = user("alice"), user("bob")
    # Both ask at once, several times: exactly one is created.
    answers = await asyncio.gather(
        *(_direct(fleet, http, *pair) for pair in [(alice, bob), (bob, alice)] * 4)
    )
    assert sorted(r.status_code for r in answers) == [200] * 7 + [201], [r.text for r in answers]
    ids = {r.json()["conversation_id"] for r in answers}
    assert len(ids) == 1
    document = answers[0].json()
    assert document["direct"] is True
    assert document["members"] == sorted([alice, bob])

    again = await _direct(fleet, http, alice, bob)
    assert again.status_code == 200
    assert again.json()["conversation_id"] in ids
    # Exactly one other member; nobody joins a direct conversation.
    for members in ([], [bob, user("carol")]):
        refused = await http.post(
            f"{fleet.message_url}/v1/conversations",
            json={"members": members, "direct": True},
            headers=fleet.auth(alice),
        )
        assert refused.status_code == 422
        assert refused.json()["error"]["code"] == "direct_needs_one_member"
    added = await http.post(
        f"{fleet.message_url}/v1/conversations/{ids.pop()}/members",
        json={"user_id": user("dave")},
        headers=fleet.auth(document["admins"][0]),
    )
    assert added.status_code == 409
    assert added.json()["error"]["code"] == "direct_conversation"


async def test_the_creator_is_admin_only_admins_remove_others_anyone_leaves(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    alice, bob, carol, dave = user("alice"), user("bob"), user("carol"), user("dave")
    conversation = await create_conversation(fleet, http, alice, bob, carol)
    assert conversation["admins"] == [alice]
    base = f"{fleet.message_url}/v1/conversations/{conversation['conversation_id']}"

    # A member who is not an admin may neither remove the creator nor add anyone.
    refused = await http.delete(f"{base}/members/{alice}", headers=fleet.auth(bob))
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"
    refused = await http.post(f"{base}/members", json={"user_id": dave}, headers=fleet.auth(bob))
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"
    # A stranger learns nothing (404, as for a missing conversation).
    stranger = await http.delete(f"{base}/members/{bob}", headers=fleet.auth(dave))
    assert stranger.status_code == 404

    # The admin adds and removes; anyone leaves.
    added = await http.post(f"{base}/members", json={"user_id": dave}, headers=fleet.auth(alice))
    assert added.status_code == 200
    assert dave in added.json()["members"]
    removed = await http.delete(f"{base}/members/{dave}", headers=fleet.auth(alice))
    assert removed.status_code == 204
    left = await http.delete(f"{base}/members/{carol}", headers=fleet.auth(carol))
    assert left.status_code == 204

    # The last admin leaving hands the role on, so the conversation is never without one.
    left = await http.delete(f"{base}/members/{alice}", headers=fleet.auth(alice))
    assert left.status_code == 204
    after = await http.get(base, headers=fleet.auth(bob))
    assert after.status_code == 200
    assert after.json()["members"] == [bob]
    assert after.json()["admins"] == [bob]
