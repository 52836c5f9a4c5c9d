"""The upload path end to end: slot → PUT straight to storage → commit step → ready → download."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.integration.conftest import TEST_SETTINGS, Fleet
from tests.integration.media_client import (
    download,
    make_jpeg,
    put_to_slot,
    sha256_hex,
    slot_request,
    upload_single,
    wait_for_state,
)
from tests.integration.prometheus import scrape
from tests.media_factory import documents
from tests.waiting import eventually

MIB = 1024 * 1024


async def test_a_real_jpeg_goes_ready_and_downloads_identical(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    alice = fleet.auth(user("alice"))
    photo = make_jpeg(seed=1)

    media_id = await upload_single(http, fleet.media_url, alice, photo)
    document = await wait_for_state(http, fleet.media_url, alice, media_id)

    assert document["state"] == "ready"
    assert document["media_type"] == "image"
    assert document["sha256"] == sha256_hex(photo)
    assert document["size"] == len(photo)
    assert document["error"] is None
    assert await download(http, fleet.media_url, alice, media_id) == photo


async def test_single_put_url_signs_type_length_checksum_and_expires(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    photo = make_jpeg(seed=2)
    response = await http.post(
        f"{fleet.media_url}/v1/media/uploads",
        json=slot_request(photo, filename="IMG_1.jpg"),
        headers=fleet.auth(user("alice")),
    )
    assert response.status_code == 201
    slot = response.json()
    assert slot["state"] == "awaiting_upload"
    upload = slot["upload"]
    assert upload["method"] == "PUT"
    url = urlsplit(upload["url"])
    query = parse_qs(url.query)
    assert url.path.endswith(f"/o/{slot['media_id']}")
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Expires"] == ["300"]
    signed = set(query["X-Amz-SignedHeaders"][0].split(";"))
    assert {"content-type", "content-length", "x-amz-checksum-sha256", "host"} <= signed
    assert upload["headers"]["Content-Type"] == "image/jpeg"
    assert upload["headers"]["Content-Length"] == str(len(photo))
    digest = hashlib.sha256(photo).digest()
    import base64

    assert upload["headers"]["x-amz-checksum-sha256"] == base64.b64encode(digest).decode()


async def test_a_20_mib_multipart_upload_resumes_and_goes_ready(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    alice = fleet.auth(user("alice"))
    # A document: its bytes are checked but not decoded, so random content is fine here.
    video = documents.sized_pdf(20 * MIB)  # a real PDF: the worker opens PDFs
    response = await http.post(
        f"{fleet.media_url}/v1/media/uploads",
        json=slot_request(video, "application/pdf"),
        headers=alice,
    )
    assert response.status_code == 201, response.text
    slot = response.json()
    plan = slot["upload"]
    assert plan["method"] == "MULTIPART"
    assert plan["part_size"] == 8 * MIB
    assert plan["part_count"] == 3
    media_id = slot["media_id"]
    base = f"{fleet.media_url}/v1/media/{media_id}"

    def part(number: int) -> bytes:
        return video[(number - 1) * plan["part_size"] : number * plan["part_size"]]

    # First session: only part 1 gets through.
    signed = (await http.post(f"{base}/parts", json={"part_numbers": [1]}, headers=alice)).json()
    first = signed["parts"][0]
    assert first["headers"]["Content-Length"] == str(8 * MIB)
    assert (
        await http.put(first["url"], content=part(1), headers=first["headers"])
    ).status_code == 200

    # Resume: storage says what it has, the client sends the rest.
    received = (await http.get(f"{base}/parts", headers=alice)).json()["parts"]
    assert [(p["part_number"], p["size"]) for p in received] == [(1, 8 * MIB)]
    signed = (await http.post(f"{base}/parts", json={"part_numbers": [2, 3]}, headers=alice)).json()
    for item in signed["parts"]:
        stored = await http.put(
            item["url"], content=part(item["part_number"]), headers=item["headers"]
        )
        assert stored.status_code == 200
    received = (await http.get(f"{base}/parts", headers=alice)).json()["parts"]
    assert [p["part_number"] for p in received] == [1, 2, 3]
    assert received[2]["size"] == 20 * MIB - 2 * 8 * MIB

    done = await http.post(
        f"{base}/complete",
        json={"parts": [{"part_number": p["part_number"], "etag": p["etag"]} for p in received]},
        headers=alice,
    )
    assert done.status_code == 202, done.text

    # 20 MiB streamed and hashed once: allow for a busy 2-core machine.
    document = await wait_for_state(http, fleet.media_url, alice, media_id, within=60)
    assert document["state"] == "ready", document
    assert await download(http, fleet.media_url, alice, media_id) == video


async def test_wrong_bytes_fail_with_checksum_mismatch(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    alice = fleet.auth(user("alice"))
    declared, sent = make_jpeg(seed=3), bytearray(make_jpeg(seed=3))
    sent[-10] ^= 0xFF  # same length, same type, other bytes
    slot = (
        await http.post(
            f"{fleet.media_url}/v1/media/uploads", json=slot_request(declared), headers=alice
        )
    ).json()
    assert (await put_to_slot(http, slot["upload"], bytes(sent))).status_code == 200

    document = await wait_for_state(http, fleet.media_url, alice, slot["media_id"])
    assert document["state"] == "failed"
    assert document["error"]["code"] == "checksum_mismatch"
    refused = await http.get(f"{fleet.media_url}/v1/media/{slot['media_id']}/url", headers=alice)
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "media_unusable"

    # Wrong bytes are never deduplicable: the same declaration gets an upload slot, no challenge.
    again = await http.post(
        f"{fleet.media_url}/v1/media/uploads", json=slot_request(bytes(sent)), headers=alice
    )
    assert again.status_code == 201


async def test_wrong_length_fails_with_size_mismatch(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    alice = fleet.auth(user("alice"))
    photo = make_jpeg(seed=4)
    slot = (
        await http.post(
            f"{fleet.media_url}/v1/media/uploads", json=slot_request(photo), headers=alice
        )
    ).json()
    # The emulator does not enforce the signed length; the commit step does.
    headers = {k: v for k, v in slot["upload"]["headers"].items() if k != "Content-Length"}
    stored = await http.put(slot["upload"]["url"], content=photo + b"tail", headers=headers)
    assert stored.status_code == 200

    document = await wait_for_state(http, fleet.media_url, alice, slot["media_id"])
    assert document["state"] == "failed"
    assert document["error"]["code"] == "size_mismatch"


async def test_a_lying_content_type_fails_with_type_mismatch(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    alice = fleet.auth(user("alice"))
    not_a_jpeg = b"MZ\x90\x00" + os.urandom(4000)  # an executable's header, declared as a photo
    media_id = await upload_single(http, fleet.media_url, alice, not_a_jpeg, "image/jpeg")

    document = await wait_for_state(http, fleet.media_url, alice, media_id)
    assert document["state"] == "failed"
    assert document["error"]["code"] == "type_mismatch"


async def _ready_photo(
    fleet: Fleet, http: httpx.AsyncClient, owner: str, seed: int
) -> tuple[bytes, str]:
    headers = fleet.auth(owner)
    photo = make_jpeg(seed=seed)
    media_id = await upload_single(http, fleet.media_url, headers, photo)
    assert (await wait_for_state(http, fleet.media_url, headers, media_id))["state"] == "ready"
    return photo, media_id


async def test_dedup_with_the_right_proof_shares_the_stored_bytes(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    photo, first_id = await _ready_photo(fleet, http, user("alice"), seed=5)
    bob = fleet.auth(user("bob"))

    answer = await http.post(
        f"{fleet.media_url}/v1/media/uploads", json=slot_request(photo), headers=bob
    )
    assert answer.status_code == 200, answer.text
    slot = answer.json()
    assert slot["state"] == "awaiting_proof"
    assert "upload" not in slot
    challenge = slot["dedup"]
    chunk = photo[challenge["offset"] : challenge["offset"] + challenge["length"]]
    assert challenge["length"] == min(len(photo), 65536)
    proof = hashlib.sha256(bytes.fromhex(challenge["nonce"]) + chunk).hexdigest()

    proved = await http.post(
        f"{fleet.media_url}/v1/media/{slot['media_id']}/proof", json={"proof": proof}, headers=bob
    )
    assert proved.status_code == 200, proved.text
    assert proved.json()["state"] == "ready"
    assert slot["media_id"] != first_id
    assert await download(http, fleet.media_url, bob, slot["media_id"]) == photo

    # The challenge was single use.
    replay = await http.post(
        f"{fleet.media_url}/v1/media/{slot['media_id']}/proof", json={"proof": proof}, headers=bob
    )
    assert replay.status_code == 409


async def test_dedup_with_a_wrong_proof_leaves_the_media_unusable(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    photo, _ = await _ready_photo(fleet, http, user("alice"), seed=6)
    mallory = fleet.auth(user("mallory"))

    # Mallory knows the hash, not the bytes.
    slot = (
        await http.post(
            f"{fleet.media_url}/v1/media/uploads", json=slot_request(photo), headers=mallory
        )
    ).json()
    guess = hashlib.sha256(bytes.fromhex(slot["dedup"]["nonce"])).hexdigest()
    refused = await http.post(
        f"{fleet.media_url}/v1/media/{slot['media_id']}/proof",
        json={"proof": guess},
        headers=mallory,
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "bad_proof"

    document = (
        await http.get(f"{fleet.media_url}/v1/media/{slot['media_id']}", headers=mallory)
    ).json()
    assert document["state"] == "failed"
    url = await http.get(f"{fleet.media_url}/v1/media/{slot['media_id']}/url", headers=mallory)
    assert url.status_code == 409

    # One try only: even the right answer now is refused.
    challenge = slot["dedup"]
    chunk = photo[challenge["offset"] : challenge["offset"] + challenge["length"]]
    right = hashlib.sha256(bytes.fromhex(challenge["nonce"]) + chunk).hexdigest()
    late = await http.post(
        f"{fleet.media_url}/v1/media/{slot['media_id']}/proof",
        json={"proof": right},
        headers=mallory,
    )
    assert late.status_code == 409


async def test_a_stranger_sees_404_for_the_media_and_its_url(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    _, media_id = await _ready_photo(fleet, http, user("alice"), seed=7)
    carol = fleet.auth(user("carol"))

    for path in ("", "/url", "/parts"):
        response = await http.get(f"{fleet.media_url}/v1/media/{media_id}{path}", headers=carol)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"
    unknown = await http.get(f"{fleet.media_url}/v1/media/m_doesnotexist000000000", headers=carol)
    assert unknown.status_code == 404
    assert unknown.json() == response.json()  # existence cannot be probed
    delete = await http.delete(f"{fleet.media_url}/v1/media/{media_id}", headers=carol)
    assert delete.status_code == 404


async def test_tokens_are_required(fleet: Fleet, http: httpx.AsyncClient) -> None:
    body = {"content_type": "image/jpeg", "size": 10, "sha256": "a" * 64}
    missing = await http.post(f"{fleet.media_url}/v1/media/uploads", json=body)
    forged = await http.post(
        f"{fleet.media_url}/v1/media/uploads", json=body, headers={"Authorization": "Bearer x.y.z"}
    )
    for response in (missing, forged):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"


async def test_limits_refuse_with_the_contract_codes(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    alice = fleet.auth(user("alice"))
    uploads = f"{fleet.media_url}/v1/media/uploads"

    async def refused(body: dict[str, object]) -> tuple[int, str]:
        response = await http.post(uploads, json=body, headers=alice)
        return response.status_code, response.json()["error"]["code"]

    sha = "b" * 64
    assert await refused(
        {"content_type": "application/x-msdownload", "size": 10, "sha256": sha}
    ) == (
        415,
        "unsupported_media_type",
    )
    assert await refused({"content_type": "image/jpeg", "size": 26 * MIB, "sha256": sha}) == (
        413,
        "too_large",
    )
    assert await refused({"content_type": "image/jpeg", "size": 10, "sha256": "XYZ"}) == (
        422,
        "validation_error",
    )
    assert await refused({"content_type": "image/jpeg", "size": -1, "sha256": sha}) == (
        422,
        "validation_error",
    )
    assert await refused({"content_type": "image/jpeg", "size": "big", "sha256": sha}) == (
        422,
        "validation_error",
    )


async def test_too_many_pending_uploads_is_429_with_retry_after(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    alice = fleet.auth(user("alice"))
    # The test fleet allows 5 pending uploads per user.
    pending = []
    for seed in range(5):
        body = {"content_type": "image/jpeg", "size": 100, "sha256": f"{seed:064x}"}
        response = await http.post(f"{fleet.media_url}/v1/media/uploads", json=body, headers=alice)
        assert response.status_code == 201, response.text
        pending.append(response.json()["media_id"])
    extra = {"content_type": "image/jpeg", "size": 100, "sha256": "f" * 64}
    response = await http.post(f"{fleet.media_url}/v1/media/uploads", json=extra, headers=alice)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "too_many_pending_uploads"
    assert int(response.headers["Retry-After"]) >= 1

    # Abandoning one frees a place.
    first = (
        await http.post(
            f"{fleet.media_url}/v1/media/uploads", json=extra, headers=fleet.auth(user("bob"))
        )
    ).json()
    assert first["state"] == "awaiting_upload"


async def test_slot_rate_is_limited_per_user_with_retry_after(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    alice = fleet.auth(user("alice"))
    # The test fleet allows 12 slots a minute; abandoning keeps the pending count low.
    for seed in range(12):
        body = {"content_type": "image/png", "size": 100, "sha256": f"{seed + 100:064x}"}
        response = await http.post(f"{fleet.media_url}/v1/media/uploads", json=body, headers=alice)
        assert response.status_code == 201, response.text
        abandoned = await http.delete(
            f"{fleet.media_url}/v1/media/{response.json()['media_id']}", headers=alice
        )
        assert abandoned.status_code == 204
    body = {"content_type": "image/png", "size": 100, "sha256": "c" * 64}
    response = await http.post(f"{fleet.media_url}/v1/media/uploads", json=body, headers=alice)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(response.headers["Retry-After"]) <= 60


async def test_abandoning_a_multipart_upload_forgets_it(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    alice = fleet.auth(user("alice"))
    body = {"content_type": "video/mp4", "size": 40 * MIB, "sha256": "d" * 64}
    slot = (await http.post(f"{fleet.media_url}/v1/media/uploads", json=body, headers=alice)).json()
    base = f"{fleet.media_url}/v1/media/{slot['media_id']}"
    assert slot["upload"]["part_count"] == 5

    bad = await http.post(f"{base}/parts", json={"part_numbers": [6]}, headers=alice)
    assert bad.status_code == 422
    assert (await http.delete(base, headers=alice)).status_code == 204
    assert (await http.get(base, headers=alice)).status_code == 404
    assert (await http.get(f"{base}/parts", headers=alice)).status_code == 404


async def test_a_replayed_s3_event_changes_nothing(
    fleet: Fleet, http: httpx.AsyncClient, aws: object, user: Callable[..., str]
) -> None:
    alice = user("alice")
    _, media_id = await _ready_photo(fleet, http, alice, seed=8)
    owner = fleet.auth(alice)
    before = (await http.get(f"{fleet.media_url}/v1/media/{media_id}", headers=owner)).json()

    sqs = aws.sqs  # type: ignore[attr-defined]
    dynamodb = aws.dynamodb  # type: ignore[attr-defined]
    queue_url = (await sqs.get_queue_url(QueueName=fleet.resources.uploads_queue))["QueueUrl"]
    event = {
        "Records": [
            {
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "bucket": {"name": fleet.resources.bucket},
                    "object": {"key": f"o%2F{media_id}", "size": before["size"]},
                },
            }
        ]
    }
    for _ in range(3):
        await sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(event))

    async def drained() -> bool:
        attributes = (
            await sqs.get_queue_attributes(
                QueueUrl=queue_url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                ],
            )
        )["Attributes"]
        return all(value == "0" for value in attributes.values())

    await eventually(drained)
    after = (await http.get(f"{fleet.media_url}/v1/media/{media_id}", headers=owner)).json()
    assert after == before
    blob = await dynamodb.get_item(
        TableName=fleet.resources.blobs_table, Key={"blob_key": {"S": f"image/{before['sha256']}"}}
    )
    assert blob["Item"]["refcount"]["N"] == "1"


async def test_a_message_that_keeps_failing_settles_its_media_and_poison_is_drained(
    fleet: Fleet, http: httpx.AsyncClient, aws: object, user: Callable[..., str]
) -> None:
    alice = fleet.auth(user("alice"))
    # A slot whose object never arrives, and an event that claims it did: every try fails.
    body = {"content_type": "image/jpeg", "size": 100, "sha256": "e" * 64}
    slot = (await http.post(f"{fleet.media_url}/v1/media/uploads", json=body, headers=alice)).json()
    media_id = slot["media_id"]
    sqs = aws.sqs  # type: ignore[attr-defined]
    queue_url = (await sqs.get_queue_url(QueueName=fleet.resources.uploads_queue))["QueueUrl"]
    before = await scrape(http, fleet.worker_url)
    event = {
        "Records": [{"eventName": "ObjectCreated:Put", "s3": {"object": {"key": f"o/{media_id}"}}}]
    }
    await sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(event))
    await sqs.send_message(QueueUrl=queue_url, MessageBody="this is not json {")

    document = await wait_for_state(http, fleet.media_url, alice, media_id, within=60)
    assert document["state"] == "failed"
    assert document["error"]["code"] == "processing_failed"

    # The event was settled on its last allowed receive (never tried a fifth time); both went
    # to the dead-letter queue, whose consumer in the worker found the media settled already
    # and logged and dropped the poison.
    async def counted() -> bool:
        after = await scrape(http, fleet.worker_url)

        def moved(name: str, **labels: str) -> float:
            return after.value(name, **labels) - before.value(name, **labels)

        return (
            moved("ferry_queue_messages_total", queue="uploads", outcome="last_receive") >= 1
            and moved("ferry_stuck_media_failed_total", reason="last_receive") >= 1
            and moved("ferry_dead_letters_total", queue="uploads", outcome="unreadable") >= 1
            and moved("ferry_dead_letters_total", queue="uploads", outcome="already_settled") >= 1
        )

    await eventually(counted, timeout=60)


async def _dedup(
    fleet: Fleet, http: httpx.AsyncClient, headers: dict[str, str], content: bytes
) -> str:
    slot = await http.post(
        f"{fleet.media_url}/v1/media/uploads", json=slot_request(content), headers=headers
    )
    assert slot.status_code == 200, slot.text
    challenge = slot.json()["dedup"]
    chunk = content[challenge["offset"] : challenge["offset"] + challenge["length"]]
    proof = hashlib.sha256(bytes.fromhex(challenge["nonce"]) + chunk).hexdigest()
    media_id = str(slot.json()["media_id"])
    proved = await http.post(
        f"{fleet.media_url}/v1/media/{media_id}/proof", json={"proof": proof}, headers=headers
    )
    assert proved.status_code == 200, proved.text
    return media_id


async def test_shared_bytes_outlive_the_first_owner_and_go_with_the_last(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    alice, bob = user("alice"), user("bob")
    photo, first_id = await _ready_photo(fleet, http, alice, seed=9)
    second_id = await _dedup(fleet, http, fleet.auth(bob), photo)

    # Alice deletes hers: Bob's copy shares the bytes and still downloads.
    gone = await http.delete(f"{fleet.media_url}/v1/media/{first_id}", headers=fleet.auth(alice))
    assert gone.status_code == 204
    assert (
        await http.get(f"{fleet.media_url}/v1/media/{first_id}", headers=fleet.auth(alice))
    ).status_code == 404
    assert await download(http, fleet.media_url, fleet.auth(bob), second_id) == photo

    # Bob deletes the last reference: the bytes are no longer offered for deduplication.
    gone = await http.delete(f"{fleet.media_url}/v1/media/{second_id}", headers=fleet.auth(bob))
    assert gone.status_code == 204
    fresh = await http.post(
        f"{fleet.media_url}/v1/media/uploads", json=slot_request(photo), headers=fleet.auth(bob)
    )
    assert fresh.status_code == 201


async def test_one_users_concurrent_slots_do_not_race_each_other(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    """A phone sending a batch asks for its slots at once: each takes its own token (no
    `rate_limited` from contention), and the pending cap still holds exactly."""
    alice = fleet.auth(user("alice"))
    limit = int(TEST_SETTINGS["MAX_PENDING_UPLOADS"])

    async def ask(seed: int) -> httpx.Response:
        body = {"content_type": "image/png", "size": 100, "sha256": f"{seed + 900:064x}"}
        return await http.post(f"{fleet.media_url}/v1/media/uploads", json=body, headers=alice)

    responses = await asyncio.gather(*(ask(seed) for seed in range(limit)))
    assert [response.status_code for response in responses] == [201] * limit
    over = await ask(limit)
    assert over.status_code == 429
    assert over.json()["error"]["code"] == "too_many_pending_uploads"
    # Abandoning one frees its place (the counter is recounted at the limit).
    first = responses[0].json()["media_id"]
    deleted = await http.delete(f"{fleet.media_url}/v1/media/{first}", headers=alice)
    assert deleted.status_code == 204
    assert (await ask(limit + 1)).status_code == 201
