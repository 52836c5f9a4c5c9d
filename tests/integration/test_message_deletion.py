"""Deleting messages (issue 10): tombstones in history and pending deliveries, `message_deleted`
frames, media references released in the same step, and when a media's last one went."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests.integration.conftest import Fleet
from tests.integration.test_message_path import create_conversation, ready_photo, send
from tests.integration.ws_client import next_frame, of_type, open_socket
from tests.waiting import eventually

TOMBSTONE_FIELDS = {"message_id", "conversation_id", "seq", "sender", "created_at", "deleted"}


async def _history(
    fleet: Fleet, http: httpx.AsyncClient, caller: str, conversation_id: str
) -> list[dict[str, Any]]:
    response = await http.get(
        f"{fleet.message_url}/v1/conversations/{conversation_id}/messages",
        headers=fleet.auth(caller),
    )
    assert response.status_code == 200, response.text
    return list(response.json()["messages"])


def _message_frame(message_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda frame: frame.get("message", {}).get("message_id") == message_id


async def _references(fleet: Fleet, http: httpx.AsyncClient, media_id: str) -> dict[str, Any]:
    response = await http.get(
        f"{fleet.message_url}/internal/media/{media_id}/references",
        headers=fleet.internal_headers(),
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_deleting_a_message_tombstones_it_everywhere_and_releases_its_media(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    alice, bob, carol = user("alice"), user("bob"), user("carol")
    conversation_id = (await create_conversation(fleet, http, alice, bob))["conversation_id"]
    base = f"{fleet.message_url}/v1/conversations/{conversation_id}/messages"
    _, media_id = await ready_photo(fleet, http, alice, seed=4242)
    # Bob's phone is known (it connected once) but offline for the whole story.
    known = await http.get(
        f"{fleet.message_url}/internal/devices/{bob}/phone/pending",
        headers=fleet.internal_headers(),
    )
    assert known.status_code == 200

    async with open_socket(fleet, 1, bob, "laptop") as laptop:
        photo_twice = []
        for n in range(2):  # the same photo in two messages: two references in one conversation
            sent = await send(
                fleet, http, alice, conversation_id, f"p{n}", media=[{"media_id": media_id}]
            )
            assert sent.status_code == 201, sent.text
            photo_twice.append(sent.json())
            await next_frame(laptop, _message_frame(sent.json()["message_id"]))
        text = (await send(fleet, http, bob, conversation_id, "t", text="bob's words")).json()
        assert (await _references(fleet, http, media_id))["references"] == 2

        # Only the sender or an admin may delete; everyone else learns nothing (404).
        first = photo_twice[0]
        for stranger in (bob, carol):
            refused = await http.delete(
                f"{base}/{first['message_id']}", headers=fleet.auth(stranger)
            )
            assert refused.status_code == 404, refused.text
        missing = await http.delete(f"{base}/{conversation_id}.999", headers=fleet.auth(alice))
        assert missing.status_code == 404

        deleted = await http.delete(f"{base}/{first['message_id']}", headers=fleet.auth(alice))
        assert deleted.status_code == 204
        frame = await next_frame(laptop, of_type("message_deleted"))
        assert frame == {
            "type": "message_deleted",
            "conversation_id": conversation_id,
            "message_id": first["message_id"],
            "seq": first["seq"],
        }
        # Once more: the same outcome.
        again = await http.delete(f"{base}/{first['message_id']}", headers=fleet.auth(alice))
        assert again.status_code == 204

        # One reference left: Bob still reads the photo.
        assert (await _references(fleet, http, media_id))["references"] == 1
        readable = await http.get(f"{fleet.media_url}/v1/media/{media_id}", headers=fleet.auth(bob))
        assert readable.status_code == 200

        # The admin (Alice, the creator) deletes Bob's message too; then the last photo message.
        by_admin = await http.delete(f"{base}/{text['message_id']}", headers=fleet.auth(alice))
        assert by_admin.status_code == 204
        last = await http.delete(
            f"{base}/{photo_twice[1]['message_id']}", headers=fleet.auth(alice)
        )
        assert last.status_code == 204

    history = await _history(fleet, http, bob, conversation_id)
    assert [m["seq"] for m in history] == [1, 2, 3]
    for message in history:
        assert set(message) == TOMBSTONE_FIELDS
        assert message["deleted"] is True
    assert history[2]["sender"] == bob

    # Nothing references the photo now: Bob cannot read it, and the Media Service can learn
    # since when (the sweeper's "unsent from that moment").
    unread = await http.get(f"{fleet.media_url}/v1/media/{media_id}", headers=fleet.auth(bob))
    assert unread.status_code == 404
    references = await _references(fleet, http, media_id)
    assert references["referenced"] is False
    assert references["references"] == 0
    assert references["unreferenced_since"] is not None
    listed = await http.get(
        f"{fleet.message_url}/internal/media-unreferenced",
        params={"before": "2999-01-01T00:00:00Z", "limit": 1000},
        headers=fleet.internal_headers(),
    )
    assert media_id in {m["media_id"] for m in listed.json()["media"]}

    # Bob's phone, offline throughout, gets tombstones where the messages were.
    async with open_socket(fleet, 0, bob, "phone") as phone:
        frames = [await next_frame(phone, of_type("message_deleted")) for _ in range(3)]
    assert sorted(f["seq"] for f in frames) == [1, 2, 3]

    # Sent again (forwarded to another conversation): referenced again, no longer "unsent".
    other = (await create_conversation(fleet, http, alice, carol))["conversation_id"]
    resent = await send(fleet, http, alice, other, "again", media=[{"media_id": media_id}])
    assert resent.status_code == 201, resent.text
    references = await _references(fleet, http, media_id)
    assert references["references"] == 1
    assert references["unreferenced_since"] is None


async def test_a_send_stored_but_never_fanned_out_is_delivered_by_the_repair_loop(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str], aws: Any
) -> None:
    """The state a kill -9 between the send's commit and its fan-out leaves (and nobody
    retries): written here as the transaction writes it; the service's loop delivers it."""
    from datetime import UTC, datetime

    from message_service.media_refs import MediaRefStore
    from message_service.messages import MessageStore
    from shared.models import Message

    alice, bob = user("alice"), user("bob")
    conversation_id = (await create_conversation(fleet, http, alice, bob))["conversation_id"]
    pending_url = f"{fleet.message_url}/internal/devices/{bob}/phone/pending"
    assert (await http.get(pending_url, headers=fleet.internal_headers())).status_code == 200
    names = fleet.resources
    store = MessageStore(
        aws.dynamodb,
        messages_table=names.messages_table,
        idempotency_table=names.idempotency_table,
        conversations_table=names.conversations_table,
        refs=MediaRefStore(aws.dynamodb, names.media_refs_table),
    )
    message = Message(
        message_id=f"{conversation_id}.1",
        conversation_id=conversation_id,
        seq=1,
        sender=alice,
        sender_device="default",
        client_msg_id="orphaned",
        text="stored, then the process died",
        created_at=datetime.now(UTC),
    )
    await store.store(message, expected_last_seq=0)

    async def delivered() -> bool:
        response = await http.get(pending_url, headers=fleet.internal_headers())
        return [m["message_id"] for m in response.json()["messages"]] == [message.message_id]

    await eventually(delivered, timeout=30)
    # The conversation moved up Bob's list too.
    listed = await http.get(f"{fleet.message_url}/v1/conversations", headers=fleet.auth(bob))
    top = listed.json()["conversations"][0]
    assert top["conversation_id"] == conversation_id
    assert top["last_seq"] == 1
