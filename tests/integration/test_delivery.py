"""Delivery over WebSockets across two gateways: the message path end to end."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx

from tests.integration.conftest import Fleet
from tests.integration.media_client import make_jpeg, upload_single, wait_for_state
from tests.integration.test_message_path import create_conversation, ready_photo
from tests.integration.ws_client import next_frame, of_type, open_socket, quiet_for, send_frame
from tests.media_factory.av import h264_mp4
from tests.waiting import eventually


async def test_alice_on_gateway_1_sends_a_photo_to_bob_on_gateway_2(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    alice, bob, carol = user("alice"), user("bob"), user("carol")
    conversation_id = (await create_conversation(fleet, http, alice, bob))["conversation_id"]
    photo = make_jpeg(seed=31)
    thumbnail = base64.b64encode(b"\xff\xd8\xff tiny preview").decode()

    async with open_socket(fleet, 0, alice) as alice_ws, open_socket(fleet, 1, bob) as bob_ws:
        media_id = await upload_single(http, fleet.media_url, fleet.auth(alice), photo)
        # Send as soon as storage has the verified bytes (the worker may not be done yet).
        await wait_for_state(
            http, fleet.media_url, fleet.auth(alice), media_id, {"uploaded", "processing", "ready"}
        )
        await send_frame(
            alice_ws,
            type="send",
            client_msg_id="photo-1",
            conversation_id=conversation_id,
            text="the view from here",
            media=[{"media_id": media_id, "thumbnail": thumbnail}],
        )
        sent = await next_frame(alice_ws, of_type("sent", client_msg_id="photo-1"))
        assert sent["seq"] == 1

        received = await next_frame(bob_ws, of_type("message"))
        message = received["message"]
        assert message["message_id"] == sent["message_id"]
        assert message["sender"] == alice
        assert message["text"] == "the view from here"
        assert message["media"][0]["media_id"] == media_id
        assert message["media"][0]["thumbnail"] == thumbnail
        if message["media"][0]["state"] != "ready":
            # A `processing` update may come first when the send beat the worker.
            update = await next_frame(
                bob_ws, of_type("media_update", media_id=media_id, state="ready")
            )
            assert {variant["name"] for variant in update["variants"]} >= {"thumb_320"}

    url = await http.get(f"{fleet.media_url}/v1/media/{media_id}/url", headers=fleet.auth(bob))
    assert url.status_code == 200
    assert (await http.get(url.json()["url"])).content == photo
    for address in (
        f"{fleet.media_url}/v1/media/{media_id}",
        f"{fleet.message_url}/v1/conversations/{conversation_id}",
    ):
        assert (await http.get(address, headers=fleet.auth(carol))).status_code == 404


async def test_media_updates_reach_members_on_every_gateway(
    fleet: Fleet, http: httpx.AsyncClient, aws: object, user: Callable[..., str]
) -> None:
    alice, bob = user("alice"), user("bob")
    _, media_id = await ready_photo(fleet, http, alice, seed=32)
    conversation_id = (await create_conversation(fleet, http, alice, bob))["conversation_id"]
    sent = await http.post(
        f"{fleet.message_url}/v1/conversations/{conversation_id}/messages",
        json={"client_msg_id": "m", "media": [{"media_id": media_id}]},
        headers=fleet.auth(alice),
    )
    assert sent.status_code == 201

    sqs = aws.sqs  # type: ignore[attr-defined]
    queue_url = (await sqs.get_queue_url(QueueName=fleet.resources.media_events_queue))["QueueUrl"]
    async with open_socket(fleet, 0, alice) as alice_ws, open_socket(fleet, 1, bob) as bob_ws:
        # What the worker publishes when moderation blocks a media (the processing issue).
        event = {
            "media_id": media_id,
            "state": "blocked",
            "media_type": "image",
            "meta": {"mime": "image/jpeg"},
            "variants": [],
            "occurred_at": datetime.now(UTC).isoformat(),
        }
        await sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(event))
        for ws in (alice_ws, bob_ws):
            update = await next_frame(ws, of_type("media_update", media_id=media_id))
            assert update["state"] == "blocked"

    # Stored messages read with the media's current state.
    history = await http.get(
        f"{fleet.message_url}/v1/conversations/{conversation_id}/messages",
        headers=fleet.auth(bob),
    )
    assert history.json()["messages"][0]["media"][0]["state"] == "blocked"


async def test_an_offline_device_gets_its_messages_first_on_reconnect_and_once(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    alice, bob = user("alice"), user("bob")
    conversation_id = (await create_conversation(fleet, http, alice, bob))["conversation_id"]
    # Bob's phone has connected before, so Ferry keeps deliveries for it.
    async with open_socket(fleet, 1, bob, "phone") as bob_ws:
        await send_frame(bob_ws, type="ping")
        await next_frame(bob_ws, of_type("pong"))

    async with open_socket(fleet, 0, alice) as alice_ws:
        for n in range(1, 4):
            await send_frame(
                alice_ws,
                type="send",
                client_msg_id=f"offline-{n}",
                conversation_id=conversation_id,
                text=f"while you were away {n}",
            )
            await next_frame(alice_ws, of_type("sent", client_msg_id=f"offline-{n}"))

    async with open_socket(fleet, 1, bob, "phone") as bob_ws:
        frames = [await next_frame(bob_ws, lambda f: True) for _ in range(3)]
        assert [f["type"] for f in frames] == ["message"] * 3
        assert [f["message"]["seq"] for f in frames] == [1, 2, 3]
        await send_frame(
            bob_ws, type="received", message_ids=[f["message"]["message_id"] for f in frames]
        )
        await send_frame(bob_ws, type="ping")
        await next_frame(bob_ws, of_type("pong"))

    async def acknowledged() -> bool:
        pending = await http.get(
            f"{fleet.message_url}/internal/devices/{bob}/phone/pending",
            headers=fleet.internal_headers(),
        )
        return pending.status_code == 200 and pending.json()["messages"] == []

    await eventually(acknowledged)
    async with open_socket(fleet, 0, bob, "phone") as bob_ws:
        await send_frame(bob_ws, type="ping")
        assert [f["type"] for f in await quiet_for(bob_ws, 1.0)] == ["pong"]


async def test_the_senders_other_devices_get_the_message_too(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    alice, bob = user("alice"), user("bob")
    conversation_id = (await create_conversation(fleet, http, alice, bob))["conversation_id"]
    async with (
        open_socket(fleet, 0, alice, "phone") as phone,
        open_socket(fleet, 1, alice, "laptop") as laptop,
    ):
        await send_frame(
            phone, type="send", client_msg_id="multi", conversation_id=conversation_id, text="hi"
        )
        sent = await next_frame(phone, of_type("sent"))
        echoed = await next_frame(laptop, of_type("message"))
        assert echoed["message"]["message_id"] == sent["message_id"]
        assert echoed["message"]["sender_device"] == "phone"


async def test_send_errors_come_back_as_error_frames(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    alice, bob = user("alice"), user("bob")
    conversation_id = (await create_conversation(fleet, http, alice, bob))["conversation_id"]
    slot = await http.post(
        f"{fleet.media_url}/v1/media/uploads",
        json={"content_type": "image/jpeg", "size": 10, "sha256": "a" * 64},
        headers=fleet.auth(alice),
    )
    async with open_socket(fleet, 0, alice) as ws:
        await send_frame(
            ws,
            type="send",
            client_msg_id="early",
            conversation_id=conversation_id,
            media=[{"media_id": slot.json()["media_id"]}],
        )
        error = await next_frame(ws, of_type("error", client_msg_id="early"))
        assert error["code"] == "media_not_uploaded"
        await send_frame(
            ws,
            type="send",
            client_msg_id="nowhere",
            conversation_id="c_nosuchconversation",
            text="x",
        )
        error = await next_frame(ws, of_type("error", client_msg_id="nowhere"))
        assert error["code"] == "not_found"


async def test_a_video_sent_while_processing_reaches_ready_with_media_updates(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str], tmp_path: Path
) -> None:
    alice, bob = user("alice"), user("bob")
    conversation_id = (await create_conversation(fleet, http, alice, bob))["conversation_id"]
    clip = h264_mp4(tmp_path / "clip.mp4", width=640, height=360, seconds=2.0).read_bytes()

    async with open_socket(fleet, 0, alice) as alice_ws, open_socket(fleet, 1, bob) as bob_ws:
        media_id = await upload_single(http, fleet.media_url, fleet.auth(alice), clip, "video/mp4")
        await wait_for_state(
            http, fleet.media_url, fleet.auth(alice), media_id, {"uploaded", "processing", "ready"}
        )
        await send_frame(
            alice_ws,
            type="send",
            client_msg_id="clip",
            conversation_id=conversation_id,
            media=[{"media_id": media_id}],
        )
        await next_frame(alice_ws, of_type("sent", client_msg_id="clip"))
        message = (await next_frame(bob_ws, of_type("message")))["message"]
        state = message["media"][0]["state"]
        if state != "ready":
            update = await next_frame(
                bob_ws, of_type("media_update", media_id=media_id, state="ready"), within=90
            )
            assert {"poster", "hls"} <= {variant["name"] for variant in update["variants"]}
            assert update["meta"]["duration_ms"] > 0
