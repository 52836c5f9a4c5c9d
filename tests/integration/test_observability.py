"""Operating signals through the running fleet: every documented metric on `/metrics`, moving
with a real scenario, and one upload followed by its request id across three services' logs."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any

import httpx

from tests.integration.conftest import Fleet
from tests.integration.media_client import (
    make_jpeg,
    put_to_slot,
    slot_request,
    upload_single,
    wait_for_state,
)
from tests.integration.prometheus import Samples, scrape
from tests.integration.test_message_path import create_conversation, send
from tests.integration.ws_client import next_frame, of_type, open_socket
from tests.metric_catalogue import documented_for
from tests.waiting import eventually

# A 2-core box runs the rest of the suite's processing meanwhile.
PROCESSING_WITHIN = 60.0


def _fresh_photo(width: int = 640, height: int = 480) -> bytes:
    # A seed no other test uses: identical bytes would be deduplicated instead of uploaded.
    return make_jpeg(width, height, seed=10**6 + secrets.randbelow(10**9))


def _service_urls(fleet: Fleet) -> dict[str, str]:
    assert fleet.message_url is not None
    return {
        "media_service": fleet.media_url,
        "message_service": fleet.message_url,
        "transcode_worker": fleet.worker_url,
        "gateway": fleet.gateway_urls[0],
    }


async def _scrape_all(fleet: Fleet, http: httpx.AsyncClient) -> dict[str, Samples]:
    return {name: await scrape(http, url) for name, url in _service_urls(fleet).items()}


async def test_every_documented_metric_is_exposed_and_moves_with_a_scenario(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    alice, bob = user("alice"), user("bob")
    before = await _scrape_all(fleet, http)
    for service, samples in before.items():
        missing = [name for name in documented_for(service) if not samples.has(name)]
        assert not missing, f"{service} does not expose {missing}"

    # A photo to ready, sent in a message over HTTP, then downloaded.
    photo = _fresh_photo()
    media_id = await upload_single(http, fleet.media_url, fleet.auth(alice), photo)
    document = await wait_for_state(
        http, fleet.media_url, fleet.auth(alice), media_id, within=PROCESSING_WITHIN
    )
    assert document["state"] == "ready", document
    conversation_id = (await create_conversation(fleet, http, alice, bob))["conversation_id"]
    sent = await send(fleet, http, alice, conversation_id, "obs-1", media=[{"media_id": media_id}])
    assert sent.status_code == 201, sent.text
    url = f"{fleet.media_url}/v1/media/{media_id}/url"
    assert (await http.get(url, headers=fleet.auth(bob))).status_code == 200
    missing_variant = await http.get(url, params={"variant": "nope"}, headers=fleet.auth(bob))
    assert missing_variant.status_code == 404

    # A failed upload: the right length and type, other bytes.
    declared = _fresh_photo()
    wrong = bytearray(declared)
    wrong[-10] ^= 0xFF
    slot = await http.post(
        f"{fleet.media_url}/v1/media/uploads",
        json=slot_request(declared),
        headers=fleet.auth(alice),
    )
    assert slot.status_code == 201, slot.text
    assert (await put_to_slot(http, slot.json()["upload"], bytes(wrong))).status_code == 200
    failed = await wait_for_state(http, fleet.media_url, fleet.auth(alice), slot.json()["media_id"])
    assert failed["error"]["code"] == "checksum_mismatch"

    after = await _scrape_all(fleet, http)

    def moved(service: str, name: str, *, by: float = 1, **labels: str) -> bool:
        # At least: the rest of the suite may be moving the same counters meanwhile.
        return after[service].value(name, **labels) >= before[service].value(name, **labels) + by

    assert moved(
        "media_service", "ferry_upload_slots_total", by=2, kind="single", media_type="image"
    )
    assert moved("media_service", "ferry_upload_declared_bytes_count", by=2, media_type="image")
    assert moved("media_service", "ferry_download_urls_total", outcome="ok")
    assert moved("media_service", "ferry_download_urls_total", outcome="no_such_variant")

    worker = "transcode_worker"
    assert moved(worker, "ferry_uploads_verified_total", outcome="ok", media_type="image")
    assert moved(
        worker, "ferry_uploads_verified_total", outcome="checksum_mismatch", media_type="image"
    )
    assert moved(worker, "ferry_upload_bytes_count", media_type="image")
    assert moved(worker, "ferry_upload_bytes_sum", by=len(photo), media_type="image")
    assert moved(worker, "ferry_processing_latency_seconds_count", media_type="image")
    assert moved(worker, "ferry_moderation_total", outcome="ok")
    assert moved(worker, "ferry_derivations_total", outcome="ok", media_type="image")
    assert moved(worker, "ferry_stored_bytes_total", by=len(photo), kind="original")
    assert moved(worker, "ferry_stored_bytes_total", kind="derivative")
    assert moved(worker, "ferry_queue_messages_total", queue="uploads", outcome="ok")

    assert moved("message_service", "ferry_message_sends_total", outcome="ok")
    assert moved("message_service", "ferry_message_send_seconds_count")
    assert moved("message_service", "ferry_queue_messages_total", queue="media_events")

    # Queue depths, sampled from SQS, for both queues and their dead-letter queues.
    async def sampled() -> Samples | None:
        samples = await scrape(http, fleet.worker_url)
        return samples if samples.value("ferry_queue_depth_sampled_timestamp_seconds") else None

    depths = await eventually(sampled)
    for queue in ("uploads", "media_events"):
        states = {
            labels["state"]
            for labels in depths.labels_of("ferry_queue_depth")
            if labels["queue"] == queue
        }
        assert states == {"visible", "in_flight", "delayed"}
        assert any(labels["queue"] == queue for labels in depths.labels_of("ferry_dlq_depth"))
    for service, samples in after.items():
        assert samples.value("ferry_ready") == 1, service


def _json_lines(text: str) -> list[dict[str, Any]]:
    entries = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # not every line a process writes is ours (a warning from a library)
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def _with_request_id(fleet: Fleet, process: str, request_id: str) -> list[dict[str, Any]]:
    return [e for e in _json_lines(fleet.log(process)) if e.get("request_id") == request_id]


async def test_one_upload_is_one_request_id_from_slot_to_delivery(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    alice, bob = user("alice"), user("bob")
    request_id = f"upload-{secrets.token_hex(8)}"
    conversation_id = (await create_conversation(fleet, http, alice, bob))["conversation_id"]
    photo = _fresh_photo(2400, 1800)  # big enough that a send usually beats its processing

    async with open_socket(fleet, 0, bob) as bob_ws:
        slot = await http.post(
            f"{fleet.media_url}/v1/media/uploads",
            json=slot_request(photo),
            headers={**fleet.auth(alice), "X-Request-ID": request_id},
        )
        assert slot.status_code == 201, slot.text
        assert slot.headers["X-Request-ID"] == request_id
        media_id = slot.json()["media_id"]
        assert (await put_to_slot(http, slot.json()["upload"], photo)).status_code == 200
        await wait_for_state(
            http,
            fleet.media_url,
            fleet.auth(alice),
            media_id,
            {"uploaded", "processing", "ready"},
            within=PROCESSING_WITHIN,
        )
        sent = await send(
            fleet, http, alice, conversation_id, "rid", media=[{"media_id": media_id}]
        )
        assert sent.status_code == 201, sent.text
        pushed = sent.json()["media"][0]["state"] != "ready"
        if pushed:
            # Sent before it was ready: the ready state reaches members as a media_update.
            update = await next_frame(
                bob_ws,
                of_type("media_update", media_id=media_id, state="ready"),
                within=PROCESSING_WITHIN,
            )
            assert update["variants"]

        # The Media Service granted the slot under the caller's id...
        media_lines = _with_request_id(fleet, "media_service", request_id)
        assert any(line["msg"] == "POST /v1/media/uploads 201" for line in media_lines)

        # ...the worker verified, processed and published every state under it...
        async def worker_done() -> list[dict[str, Any]] | None:
            lines = _with_request_id(fleet, "transcode_worker", request_id)
            ours = [line for line in lines if line.get("media_id") == media_id]
            messages = {line["msg"] for line in ours}
            published = {line["state"] for line in ours if line["msg"] == "published media event"}
            wanted = {"upload verified", "media processing", "media settled"}
            done = wanted <= messages and {"uploaded", "processing", "ready"} <= published
            return ours if done else None

        worker_lines = await eventually(worker_done)
        settled = next(line for line in worker_lines if line["msg"] == "media settled")
        assert settled["state"] == "ready"
        assert settled["latency_seconds"] >= 0

        # ...and the Message Service handled the ready event, pushing it, under it too.
        async def delivered() -> dict[str, Any] | None:
            for line in _with_request_id(fleet, "message_service", request_id):
                if line.get("media_id") == media_id and line.get("state") == "ready":
                    return line
            return None

        handled = await eventually(delivered)
        assert handled["msg"].startswith("media event handled")
        if pushed:
            assert handled["delivered"] >= 1
            # The push to Bob's gateway carried it as well.
            gateway_lines = _with_request_id(fleet, "gateway", request_id)
            assert any(line["msg"] == "POST /internal/push 200" for line in gateway_lines)

    # The id is this upload's alone: every worker line under it names this media.
    named = _with_request_id(fleet, "transcode_worker", request_id)
    assert {line.get("media_id") for line in named} == {media_id}
