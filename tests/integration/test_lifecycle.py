"""Media lifetime end to end: the sweeper as a real process with a clock the test drives.

A fleet of its own (media, message and worker services), so that sweeping far into the future
never touches the session fleet's media. Each sweep is `python -m media_service.sweeper --now T`
run to completion; what it did is read back from storage and the public API, never from timing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.fleet import LocalFleet, aws_environment, start_fleet
from devstack.processes import REPO_ROOT, available_services
from shared.aws import AwsClients, open_aws_clients
from tests.integration.media_client import (
    download,
    make_jpeg,
    sha256_hex,
    slot_request,
    upload_single,
    wait_for_state,
)
from tests.media_factory import av
from tests.waiting import eventually

SERVICES = [s for s in available_services() if s != "gateway"]
TTL = 600  # unsent media
RETAIN_ORIGINAL = 3600
RETAIN_DERIVATIVES = 7200
LIFECYCLE_SETTINGS = {
    "UNSENT_MEDIA_TTL_SECONDS": str(TTL),
    "RETENTION_ORIGINAL_SECONDS": str(RETAIN_ORIGINAL),
    "RETENTION_DERIVATIVES_SECONDS": str(RETAIN_DERIVATIVES),
    "SWEEP_BATCH_SIZE": "3",  # several pages per shard even with few media
    "QUEUE_WAIT_SECONDS": "1",
    "RETRY_BASE_SECONDS": "0",
    "VISIBILITY_TIMEOUT_SECONDS": "5",
    "PROCESS_POOL_SIZE": "1",
    "LOG_JSON": "true",
}
ADMIN = ("admin",)

pytestmark = pytest.mark.skipif(
    not {"media_service", "message_service", "transcode_worker"} <= set(SERVICES),
    reason="media lifetime needs the media, message and worker services",
)


@pytest.fixture(scope="module")
async def life(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalFleet]:
    async with start_fleet(
        log_dir=tmp_path_factory.mktemp("lifecycle-fleet"),
        prefix=f"lc{secrets.token_hex(4)}",
        extra_env=LIFECYCLE_SETTINGS,
        services=SERVICES,
    ) as fleet:
        yield fleet
    assert not fleet.unclean_exits, fleet.describe_unclean_exits()


@pytest.fixture(scope="module")
async def s3(life: LocalFleet) -> AsyncIterator[AwsClients]:
    """Clients on the lifecycle fleet's emulator, to see what storage holds."""
    with aws_environment(life.emulator_url):
        async with AsyncExitStack() as stack:
            yield await open_aws_clients(stack, life.settings, "s3", "dynamodb")


def sweeper_argv(now: datetime) -> list[str]:
    return [sys.executable, "-m", "media_service.sweeper", "--now", now.isoformat()]


async def sweep(life: LocalFleet, now: datetime) -> dict[str, int]:
    """One sweeper pass at `now`, as a process; its report (the last line it prints)."""
    process = await asyncio.create_subprocess_exec(
        *sweeper_argv(now),
        env=life.env,
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, err.decode()[-3000:]
    report: dict[str, int] = json.loads(out.decode().strip().splitlines()[-1])["sweep"]
    return report


async def object_bytes(s3: AwsClients, life: LocalFleet, prefix: str) -> int:
    """Bytes of every object version under `prefix`."""
    total = 0
    request: dict[str, Any] = {"Bucket": life.settings.resources.bucket, "Prefix": prefix}
    while True:
        response = await s3.s3.list_object_versions(**request)
        total += sum(int(v["Size"]) for v in response.get("Versions", []))
        if not response.get("IsTruncated"):
            return total
        request.update(
            KeyMarker=response["NextKeyMarker"], VersionIdMarker=response["NextVersionIdMarker"]
        )


def auth(life: LocalFleet, user: str, admin: bool = False) -> dict[str, str]:
    return life.auth(user, roles=ADMIN if admin else ())


async def ready_upload(
    life: LocalFleet, http: httpx.AsyncClient, owner: str, data: bytes, content_type: str
) -> str:
    media_id = await upload_single(http, life.media_url, auth(life, owner), data, content_type)
    document = await wait_for_state(http, life.media_url, auth(life, owner), media_id, within=60.0)
    assert document["state"] == "ready", document
    return media_id


async def converse(
    life: LocalFleet, http: httpx.AsyncClient, sender: str, member: str, media_id: str
) -> str:
    base = life.url("message_service")
    created = await http.post(
        f"{base}/v1/conversations", json={"members": [member]}, headers=auth(life, sender)
    )
    assert created.status_code == 201, created.text
    conversation_id = str(created.json()["conversation_id"])
    sent = await http.post(
        f"{base}/v1/conversations/{conversation_id}/messages",
        json={"client_msg_id": secrets.token_hex(4), "media": [{"media_id": media_id}]},
        headers=auth(life, sender),
    )
    assert sent.status_code == 201, sent.text
    return conversation_id


async def status(http: httpx.AsyncClient, life: LocalFleet, user: str, path: str) -> int:
    response = await http.get(f"{life.media_url}{path}", headers=auth(life, user))
    return response.status_code


def fresh(base: str) -> str:
    return f"{base}-{secrets.token_hex(4)}"


def later(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


# --- unsent media, references, dedup ------------------------------------------------------------


async def test_an_upload_never_sent_is_gone_after_the_ttl(
    life: LocalFleet, s3: AwsClients, http: httpx.AsyncClient
) -> None:
    alice = fresh("alice")
    photo = make_jpeg(seed=101)
    media_id = await ready_upload(life, http, alice, photo, "image/jpeg")
    sha = sha256_hex(photo)
    before = await object_bytes(s3, life, f"o/{media_id}") + await object_bytes(
        s3, life, f"d/image/{sha}/"
    )
    assert before > len(photo)  # the original and its thumbnails

    await sweep(life, later(TTL - 60))
    assert await status(http, life, alice, f"/v1/media/{media_id}") == 200

    report = await sweep(life, later(TTL + 60))
    assert report["deleted"] >= 1
    assert report["reclaimed_bytes"] >= before
    assert await status(http, life, alice, f"/v1/media/{media_id}") == 404
    assert await object_bytes(s3, life, f"o/{media_id}") == 0
    assert await object_bytes(s3, life, f"d/image/{sha}/") == 0


async def test_a_referenced_photo_stays_and_its_owner_cannot_delete_it(
    life: LocalFleet, s3: AwsClients, http: httpx.AsyncClient
) -> None:
    alice, bob, carol = fresh("alice"), fresh("bob"), fresh("carol")
    photo = make_jpeg(seed=102)
    media_id = await ready_upload(life, http, alice, photo, "image/jpeg")
    await converse(life, http, alice, bob, media_id)
    await converse(life, http, bob, carol, media_id)  # forwarded into a second conversation

    await sweep(life, later(TTL + 60))
    await sweep(life, later(2 * TTL + 120))
    assert await download(http, life.media_url, auth(life, alice), media_id) == photo
    assert await download(http, life.media_url, auth(life, carol), media_id)  # her clean copy
    refused = await http.delete(f"{life.media_url}/v1/media/{media_id}", headers=auth(life, alice))
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "media_referenced"


async def test_a_photo_goes_only_after_its_last_message_is_deleted(
    life: LocalFleet, s3: AwsClients, http: httpx.AsyncClient
) -> None:
    alice, bob, carol = fresh("alice"), fresh("bob"), fresh("carol")
    photo = make_jpeg(seed=108)
    media_id = await ready_upload(life, http, alice, photo, "image/jpeg")
    base = life.url("message_service")
    sent = []
    for member in (bob, carol):  # the same photo in two conversations
        created = await http.post(
            f"{base}/v1/conversations", json={"members": [member]}, headers=auth(life, alice)
        )
        conversation_id = created.json()["conversation_id"]
        message = await http.post(
            f"{base}/v1/conversations/{conversation_id}/messages",
            json={"client_msg_id": secrets.token_hex(4), "media": [{"media_id": media_id}]},
            headers=auth(life, alice),
        )
        assert message.status_code == 201, message.text
        sent.append((conversation_id, message.json()["message_id"]))

    async def delete_message(conversation_id: str, message_id: str) -> None:
        deleted = await http.delete(
            f"{base}/v1/conversations/{conversation_id}/messages/{message_id}",
            headers=auth(life, alice),
        )
        assert deleted.status_code == 204, deleted.text

    await delete_message(*sent[0])
    await sweep(life, later(3 * TTL))
    assert await download(http, life.media_url, auth(life, alice), media_id) == photo
    assert await object_bytes(s3, life, f"o/{media_id}") > 0

    await delete_message(*sent[1])
    await sweep(life, later(5 * TTL))
    assert await status(http, life, alice, f"/v1/media/{media_id}") == 404
    assert await object_bytes(s3, life, f"o/{media_id}") == 0
    assert await object_bytes(s3, life, f"d/image/{sha256_hex(photo)}/") == 0


async def test_shared_bytes_go_only_with_the_last_of_a_dedup_pair(
    life: LocalFleet, s3: AwsClients, http: httpx.AsyncClient
) -> None:
    alice, bob = fresh("alice"), fresh("bob")
    photo = make_jpeg(seed=103)
    first = await ready_upload(life, http, alice, photo, "image/jpeg")
    slot = await http.post(
        f"{life.media_url}/v1/media/uploads", json=slot_request(photo), headers=auth(life, bob)
    )
    assert slot.status_code == 200, slot.text
    challenge = slot.json()["dedup"]
    content = photo[challenge["offset"] : challenge["offset"] + challenge["length"]]
    proof = hashlib.sha256(bytes.fromhex(challenge["nonce"]) + content).hexdigest()
    second = slot.json()["media_id"]
    proved = await http.post(
        f"{life.media_url}/v1/media/{second}/proof", json={"proof": proof}, headers=auth(life, bob)
    )
    assert proved.status_code == 200, proved.text
    sha = sha256_hex(photo)

    deleted = await http.delete(f"{life.media_url}/v1/media/{first}", headers=auth(life, alice))
    assert deleted.status_code == 204
    assert await status(http, life, alice, f"/v1/media/{first}") == 404
    assert await download(http, life.media_url, auth(life, bob), second) == photo
    assert await download(http, life.media_url, auth(life, bob), second, "thumb_320")
    # The orphan scan leaves the shared original alone: the blob still accounts for it.
    await sweep(life, later(60))
    assert await download(http, life.media_url, auth(life, bob), second) == photo

    deleted = await http.delete(f"{life.media_url}/v1/media/{second}", headers=auth(life, bob))
    assert deleted.status_code == 204
    assert await object_bytes(s3, life, f"o/{first}") == 0
    assert await object_bytes(s3, life, f"d/image/{sha}/") == 0


async def test_bytes_put_after_an_abandon_are_deleted(
    life: LocalFleet, s3: AwsClients, http: httpx.AsyncClient
) -> None:
    alice = fresh("alice")
    photo = make_jpeg(seed=104)
    slot = await http.post(
        f"{life.media_url}/v1/media/uploads", json=slot_request(photo), headers=auth(life, alice)
    )
    upload, media_id = slot.json()["upload"], slot.json()["media_id"]
    abandoned = await http.delete(
        f"{life.media_url}/v1/media/{media_id}", headers=auth(life, alice)
    )
    assert abandoned.status_code == 204
    late = await http.put(upload["url"], content=photo, headers=upload["headers"])
    assert late.status_code == 200  # the emulator enforces no expiry: the bytes land
    assert await object_bytes(s3, life, f"o/{media_id}") == len(photo)

    async def swept() -> bool | None:
        await sweep(life, later(60))  # the orphan scan goes a page a pass
        return True if await object_bytes(s3, life, f"o/{media_id}") == 0 else None

    assert await eventually(swept, timeout=120, interval=0.5)


async def test_an_unused_slot_and_an_unanswered_challenge_end_as_404(
    life: LocalFleet, http: httpx.AsyncClient
) -> None:
    alice, bob = fresh("alice"), fresh("bob")
    photo = make_jpeg(seed=106)
    await ready_upload(life, http, alice, photo, "image/jpeg")
    unused = await http.post(
        f"{life.media_url}/v1/media/uploads",
        json=slot_request(make_jpeg(seed=107)),
        headers=auth(life, alice),
    )
    challenged = await http.post(
        f"{life.media_url}/v1/media/uploads", json=slot_request(photo), headers=auth(life, bob)
    )
    assert (unused.status_code, challenged.status_code) == (201, 200)
    slot_id, challenge_id = unused.json()["media_id"], challenged.json()["media_id"]
    # Past the slot's expiry and grace (300 + 600 s) and the unsent TTL: settled, then deleted.
    report = await sweep(life, later(1000))
    assert report["abandoned"] >= 2
    assert await status(http, life, alice, f"/v1/media/{slot_id}") == 404
    assert await status(http, life, bob, f"/v1/media/{challenge_id}") == 404


# --- retention and legal hold --------------------------------------------------------------------


async def test_retention_expires_a_video_while_a_held_one_stays(
    life: LocalFleet, s3: AwsClients, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    alice, bob, ops = fresh("alice"), fresh("bob"), fresh("ops")
    clips = [
        av.h264_mp4(tmp_path / f"clip{i}.mp4", width=160 + 16 * i, height=96, seconds=0.5)
        for i in range(2)
    ]
    plain, held = [
        await ready_upload(life, http, alice, clip.read_bytes(), "video/mp4") for clip in clips
    ]
    conversation = await converse(life, http, alice, bob, plain)
    await converse(life, http, alice, bob, held)
    hold = await http.put(
        f"{life.media_url}/v1/admin/media/{held}/legal-hold",
        json={"reason": "case 42"},
        headers=auth(life, ops, admin=True),
    )
    assert hold.status_code == 200, hold.text
    assert hold.json()["legal_hold"] is True
    refused = await http.put(
        f"{life.media_url}/v1/admin/media/{held}/legal-hold",
        json={"reason": "case 42"},
        headers=auth(life, bob),
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"

    await sweep(life, later(RETAIN_ORIGINAL + 60))
    document = (
        await http.get(f"{life.media_url}/v1/media/{plain}", headers=auth(life, bob))
    ).json()
    assert document["state"] == "expired"
    gone = await http.get(
        f"{life.media_url}/v1/media/{plain}/url",
        params={"variant": "original"},
        headers=auth(life, bob),
    )
    assert gone.status_code == 410
    assert gone.json()["error"]["code"] == "media_expired"
    assert await download(http, life.media_url, auth(life, bob), plain, "poster")
    assert await object_bytes(s3, life, f"o/{plain}") == 0

    async def members_told() -> bool | None:
        page = await http.get(
            f"{life.url('message_service')}/v1/conversations/{conversation}/messages",
            headers=auth(life, bob),
        )
        states = [m["media"][0]["state"] for m in page.json()["messages"]]
        return True if states == ["expired"] else None

    assert await eventually(members_told, timeout=30)

    await sweep(life, later(RETAIN_DERIVATIVES + 60))
    poster = await http.get(
        f"{life.media_url}/v1/media/{plain}/url",
        params={"variant": "poster"},
        headers=auth(life, bob),
    )
    assert poster.status_code == 410
    assert await status(http, life, bob, f"/v1/media/{plain}") == 200  # the document stays

    # The held video is untouched, and storage itself refuses to delete its original.
    assert await download(http, life.media_url, auth(life, bob), held, "original")
    admin_view = (
        await http.get(f"{life.media_url}/v1/media/{held}", headers=auth(life, ops, admin=True))
    ).json()
    assert admin_view["state"] == "ready"
    assert admin_view["legal_hold"] is True
    assert (
        "legal_hold"
        not in (
            await http.get(f"{life.media_url}/v1/media/{held}", headers=auth(life, alice))
        ).json()
    )
    version = (
        await s3.s3.list_object_versions(Bucket=life.settings.resources.bucket, Prefix=f"o/{held}")
    )["Versions"][0]["VersionId"]
    with pytest.raises(Exception, match="AccessDenied"):
        await s3.s3.delete_object(
            Bucket=life.settings.resources.bucket, Key=f"o/{held}", VersionId=version
        )

    released = await http.delete(
        f"{life.media_url}/v1/admin/media/{held}/legal-hold", headers=auth(life, ops, admin=True)
    )
    assert released.status_code == 204
    await sweep(life, later(RETAIN_DERIVATIVES + 120))
    assert (await http.get(f"{life.media_url}/v1/media/{held}", headers=auth(life, bob))).json()[
        "state"
    ] == "expired"
    assert await object_bytes(s3, life, f"o/{held}") == 0


async def test_a_user_hold_covers_media_uploaded_after_it(
    life: LocalFleet, s3: AwsClients, http: httpx.AsyncClient
) -> None:
    carol, ops = fresh("carol"), fresh("ops")
    hold = await http.put(
        f"{life.media_url}/v1/admin/users/{carol}/legal-hold",
        json={"reason": "litigation"},
        headers=auth(life, ops, admin=True),
    )
    assert hold.status_code == 200, hold.text
    photo = make_jpeg(seed=105)
    media_id = await ready_upload(life, http, carol, photo, "image/jpeg")
    await sweep(life, later(5))  # applies the storage hold to the new objects
    await sweep(life, later(TTL + 60))
    admin_view = await http.get(
        f"{life.media_url}/v1/media/{media_id}", headers=auth(life, ops, admin=True)
    )
    assert admin_view.json()["legal_hold"] is True
    bucket = life.settings.resources.bucket
    versions = (await s3.s3.list_object_versions(Bucket=bucket, Prefix=f"o/{media_id}"))["Versions"]
    lock = await s3.s3.get_object_legal_hold(
        Bucket=bucket, Key=f"o/{media_id}", VersionId=versions[0]["VersionId"]
    )
    assert lock["LegalHold"]["Status"] == "ON"
    # The owner's delete hides it from everyone but keeps the bytes while held.
    deleted = await http.delete(f"{life.media_url}/v1/media/{media_id}", headers=auth(life, carol))
    assert deleted.status_code == 204
    assert await status(http, life, carol, f"/v1/media/{media_id}") == 404
    assert await object_bytes(s3, life, f"o/{media_id}") == len(photo)

    released = await http.delete(
        f"{life.media_url}/v1/admin/users/{carol}/legal-hold", headers=auth(life, ops, admin=True)
    )
    assert released.status_code == 204
    await sweep(life, later(TTL + 120))
    assert await object_bytes(s3, life, f"o/{media_id}") == 0


# --- several sweepers, killed sweepers ----------------------------------------------------------


async def test_two_sweepers_at_once_and_a_killed_one_lose_nothing(
    life: LocalFleet, s3: AwsClients, http: httpx.AsyncClient
) -> None:
    alice, bob = fresh("alice"), fresh("bob")
    unsent = [
        await ready_upload(life, http, alice, make_jpeg(seed=200 + i), "image/jpeg")
        for i in range(6)
    ]
    kept = await ready_upload(life, http, alice, make_jpeg(seed=299), "image/jpeg")
    await converse(life, http, alice, bob, kept)
    now = later(TTL + 60)

    # A sweeper killed mid-pass (whenever the signal lands), then two at once.
    victim = await asyncio.create_subprocess_exec(
        *sweeper_argv(now),
        env=life.env,
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await asyncio.sleep(0)
    os.kill(victim.pid, signal.SIGKILL)
    await victim.wait()
    reports = await asyncio.gather(sweep(life, now), sweep(life, now))
    await sweep(life, now)  # and once more: the orphan scan finishes what a kill cut short

    for media_id in unsent:
        assert await status(http, life, alice, f"/v1/media/{media_id}") == 404
        assert await object_bytes(s3, life, f"o/{media_id}") == 0
    assert sum(r["deleted"] for r in reports) <= len(unsent)  # nobody deleted anything twice
    assert await download(http, life.media_url, auth(life, bob), kept)


async def test_admin_endpoints_need_the_admin_role(
    life: LocalFleet, http: httpx.AsyncClient
) -> None:
    alice = fresh("alice")
    for method, path in [
        ("PUT", f"/v1/admin/users/{alice}/legal-hold"),
        ("DELETE", f"/v1/admin/users/{alice}/legal-hold"),
        ("PUT", "/v1/admin/media/m_0123456789abcdefgh/legal-hold"),
    ]:
        response = await http.request(
            method, f"{life.media_url}{path}", json={"reason": "x"}, headers=auth(life, alice)
        )
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "forbidden"
    missing = await http.put(
        f"{life.media_url}/v1/admin/media/m_0123456789abcdefgh/legal-hold",
        json={"reason": "x"},
        headers=auth(life, "ops", admin=True),
    )
    assert missing.status_code == 404
