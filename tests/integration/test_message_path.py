"""The message path over HTTP: conversations, sends, idempotency, seq, access to media."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import Any

import httpx

from tests.integration.conftest import Fleet
from tests.integration.media_client import (
    download,
    make_jpeg,
    slot_request,
    upload_single,
    wait_for_state,
)


async def create_conversation(
    fleet: Fleet, http: httpx.AsyncClient, owner: str, *members: str, title: str | None = None
) -> dict[str, Any]:
    response = await http.post(
        f"{fleet.message_url}/v1/conversations",
        json={"members": list(members), "title": title},
        headers=fleet.auth(owner),
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def send(
    fleet: Fleet,
    http: httpx.AsyncClient,
    sender: str,
    conversation_id: str,
    client_msg_id: str,
    **fields: Any,
) -> httpx.Response:
    return await http.post(
        f"{fleet.message_url}/v1/conversations/{conversation_id}/messages",
        json={"client_msg_id": client_msg_id, **fields},
        headers=fleet.auth(sender),
    )


async def ready_photo(
    fleet: Fleet, http: httpx.AsyncClient, owner: str, seed: int
) -> tuple[bytes, str]:
    photo = make_jpeg(seed=seed)
    media_id = await upload_single(http, fleet.media_url, fleet.auth(owner), photo)
    document = await wait_for_state(http, fleet.media_url, fleet.auth(owner), media_id)
    assert document["state"] == "ready"
    return photo, media_id


async def test_a_conversation_always_includes_its_creator(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    alice, bob = user("alice"), user("bob")
    conversation = await create_conversation(fleet, http, alice, bob, title="lunch")
    assert conversation["members"] == sorted([alice, bob])
    assert conversation["title"] == "lunch"
    read = await http.get(
        f"{fleet.message_url}/v1/conversations/{conversation['conversation_id']}",
        headers=fleet.auth(bob),
    )
    assert read.status_code == 200
    assert read.json() == conversation


async def test_only_members_read_a_conversation(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    alice, bob, carol = user("alice"), user("bob"), user("carol")
    conversation_id = (await create_conversation(fleet, http, alice, bob))["conversation_id"]
    base = f"{fleet.message_url}/v1/conversations/{conversation_id}"
    for response in (
        await http.get(base, headers=fleet.auth(carol)),
        await http.get(f"{base}/messages", headers=fleet.auth(carol)),
        await send(fleet, http, carol, conversation_id, "c1", text="let me in"),
        await http.post(f"{base}/members", json={"user_id": carol}, headers=fleet.auth(carol)),
    ):
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "not_found"
    unknown = await http.get(
        f"{fleet.message_url}/v1/conversations/c_doesnotexist", headers=fleet.auth(carol)
    )
    assert unknown.status_code == 404
    assert unknown.json() == response.json()


async def test_a_photo_message_lets_members_download_and_ex_members_not(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    alice, bob, carol = user("alice"), user("bob"), user("carol")
    photo, media_id = await ready_photo(fleet, http, alice, seed=21)
    conversation_id = (await create_conversation(fleet, http, alice, bob))["conversation_id"]

    # Before any message references it, Bob cannot see Alice's photo.
    before = await http.get(f"{fleet.media_url}/v1/media/{media_id}", headers=fleet.auth(bob))
    assert before.status_code == 404

    thumbnail = base64.b64encode(b"\xff\xd8\xff" + b"t" * 500).decode()
    sent = await send(
        fleet,
        http,
        alice,
        conversation_id,
        "m1",
        text="look",
        media=[{"media_id": media_id, "thumbnail": thumbnail}],
    )
    assert sent.status_code == 201, sent.text
    message = sent.json()
    assert message["seq"] == 1
    assert message["sender"] == alice
    assert message["text"] == "look"
    assert message["media"] == [
        {
            "media_id": media_id,
            "media_type": "image",
            "state": "ready",
            "meta": message["media"][0]["meta"],
            "thumbnail": thumbnail,
        }
    ]

    # Bob, a member, now reads and downloads it; Carol, a stranger, still gets 404.
    assert await download(http, fleet.media_url, fleet.auth(bob), media_id) == photo
    for path in ("", "/url"):
        stranger = await http.get(
            f"{fleet.media_url}/v1/media/{media_id}{path}", headers=fleet.auth(carol)
        )
        assert stranger.status_code == 404

    # Bob leaves: from that moment, new download URLs for him are refused.
    left = await http.delete(
        f"{fleet.message_url}/v1/conversations/{conversation_id}/members/{bob}",
        headers=fleet.auth(bob),
    )
    assert left.status_code == 204
    refused = await http.get(f"{fleet.media_url}/v1/media/{media_id}/url", headers=fleet.auth(bob))
    assert refused.status_code == 404
    history = await http.get(
        f"{fleet.message_url}/v1/conversations/{conversation_id}/messages",
        headers=fleet.auth(bob),
    )
    assert history.status_code == 404
    # Alice, the owner, still can.
    assert await download(http, fleet.media_url, fleet.auth(alice), media_id) == photo


async def test_a_replayed_client_msg_id_stores_one_message(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    alice, bob = user("alice"), user("bob")
    conversation_id = (await create_conversation(fleet, http, alice, bob))["conversation_id"]

    first = await send(fleet, http, alice, conversation_id, "same-id", text="hello")
    again = await send(fleet, http, alice, conversation_id, "same-id", text="hello")
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json() == first.json()
    # Concurrent replays too.
    replays = await asyncio.gather(
        *(send(fleet, http, alice, conversation_id, "same-id", text="hello") for _ in range(5))
    )
    assert {r.status_code for r in replays} == {200}
    history = await http.get(
        f"{fleet.message_url}/v1/conversations/{conversation_id}/messages",
        headers=fleet.auth(bob),
    )
    assert [m["message_id"] for m in history.json()["messages"]] == [first.json()["message_id"]]


async def test_50_concurrent_sends_get_seqs_1_to_50_with_no_gap(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    alice, bob = user("alice"), user("bob")
    conversation_id = (await create_conversation(fleet, http, alice, bob))["conversation_id"]

    responses = await asyncio.gather(
        *(
            send(fleet, http, sender, conversation_id, f"burst-{n}", text=f"#{n}")
            for n, sender in enumerate([alice, bob] * 25)
        )
    )
    assert all(r.status_code == 201 for r in responses), [r.text for r in responses]
    assert sorted(r.json()["seq"] for r in responses) == list(range(1, 51))

    seen: list[int] = []
    after = 0
    while True:
        page = await http.get(
            f"{fleet.message_url}/v1/conversations/{conversation_id}/messages",
            params={"after": after, "limit": 20},
            headers=fleet.auth(alice),
        )
        messages = page.json()["messages"]
        if not messages:
            break
        seen += [m["seq"] for m in messages]
        after = messages[-1]["seq"]
    assert seen == list(range(1, 51))


async def test_media_whose_bytes_never_arrived_is_refused(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    alice, bob = user("alice"), user("bob")
    slot = await http.post(
        f"{fleet.media_url}/v1/media/uploads",
        json=slot_request(make_jpeg(seed=22)),
        headers=fleet.auth(alice),
    )
    media_id = slot.json()["media_id"]
    conversation_id = (await create_conversation(fleet, http, alice, bob))["conversation_id"]

    refused = await send(fleet, http, alice, conversation_id, "m", media=[{"media_id": media_id}])
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "media_not_uploaded"
    # Nothing was stored, and the seq was not spent.
    ok = await send(fleet, http, alice, conversation_id, "m2", text="text only")
    assert ok.json()["seq"] == 1


async def test_failed_media_is_unusable_and_unknown_media_is_404(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    alice, bob = user("alice"), user("bob")
    lie = b"not a jpeg at all" * 100
    media_id = await upload_single(http, fleet.media_url, fleet.auth(alice), lie)
    assert (await wait_for_state(http, fleet.media_url, fleet.auth(alice), media_id))[
        "state"
    ] == "failed"
    conversation_id = (await create_conversation(fleet, http, alice, bob))["conversation_id"]

    unusable = await send(fleet, http, alice, conversation_id, "a", media=[{"media_id": media_id}])
    assert unusable.status_code == 409
    assert unusable.json()["error"]["code"] == "media_unusable"
    unknown = await send(
        fleet, http, alice, conversation_id, "b", media=[{"media_id": "m_nosuchmedia00000000"}]
    )
    assert unknown.status_code == 404


async def test_forwarding_needs_read_access(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    alice, bob, carol, mallory = user("alice"), user("bob"), user("carol"), user("mallory")
    photo, media_id = await ready_photo(fleet, http, alice, seed=23)
    first = (await create_conversation(fleet, http, alice, bob))["conversation_id"]
    assert (
        await send(fleet, http, alice, first, "x", media=[{"media_id": media_id}])
    ).status_code == 201

    # Bob can read it through the first conversation, so he may forward it to Carol.
    second = (await create_conversation(fleet, http, bob, carol))["conversation_id"]
    forwarded = await send(fleet, http, bob, second, "fwd", media=[{"media_id": media_id}])
    assert forwarded.status_code == 201, forwarded.text
    assert await download(http, fleet.media_url, fleet.auth(carol), media_id) == photo

    # Mallory only knows the id.
    third = (await create_conversation(fleet, http, mallory, carol))["conversation_id"]
    stolen = await send(fleet, http, mallory, third, "steal", media=[{"media_id": media_id}])
    assert stolen.status_code == 404


async def test_message_shape_is_checked(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    alice, bob = user("alice"), user("bob")
    _, media_id = await ready_photo(fleet, http, alice, seed=24)
    conversation_id = (await create_conversation(fleet, http, alice, bob))["conversation_id"]

    big = base64.b64encode(b"x" * 4097).decode()
    too_big = await send(
        fleet, http, alice, conversation_id, "t", media=[{"media_id": media_id, "thumbnail": big}]
    )
    assert too_big.status_code == 413
    assert too_big.json()["error"]["code"] == "thumbnail_too_large"
    at_limit = base64.b64encode(b"x" * 4096).decode()
    fits = await send(
        fleet,
        http,
        alice,
        conversation_id,
        "t2",
        media=[{"media_id": media_id, "thumbnail": at_limit}],
    )
    assert fits.status_code == 201
    empty = await send(fleet, http, alice, conversation_id, "e")
    assert empty.status_code == 422
    assert empty.json()["error"]["code"] == "empty_message"
    not_base64 = await send(
        fleet,
        http,
        alice,
        conversation_id,
        "b",
        media=[{"media_id": media_id, "thumbnail": "@@@"}],
    )
    assert not_base64.status_code == 422


async def test_members_can_be_added_and_see_history(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    alice, bob, dave = user("alice"), user("bob"), user("dave")
    conversation_id = (await create_conversation(fleet, http, alice, bob))["conversation_id"]
    await send(fleet, http, alice, conversation_id, "h1", text="before dave")
    added = await http.post(
        f"{fleet.message_url}/v1/conversations/{conversation_id}/members",
        json={"user_id": dave},
        headers=fleet.auth(alice),
    )
    assert added.status_code == 200
    assert dave in added.json()["members"]
    history = await http.get(
        f"{fleet.message_url}/v1/conversations/{conversation_id}/messages",
        headers=fleet.auth(dave),
    )
    assert [m["text"] for m in history.json()["messages"]] == ["before dave"]


async def test_media_a_message_references_cannot_be_deleted(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    alice, bob = user("alice"), user("bob")
    photo, media_id = await ready_photo(fleet, http, alice, seed=25)
    conversation_id = (await create_conversation(fleet, http, alice, bob))["conversation_id"]
    assert (
        await send(fleet, http, alice, conversation_id, "keep", media=[{"media_id": media_id}])
    ).status_code == 201

    refused = await http.delete(f"{fleet.media_url}/v1/media/{media_id}", headers=fleet.auth(alice))
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "media_referenced"
    assert await download(http, fleet.media_url, fleet.auth(bob), media_id) == photo
