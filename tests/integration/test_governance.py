"""Governance over the session fleet: the admin role, usage and quotas, quarantine, erasure and
the audit log, through the public API only (plus storage, to see that bytes are gone)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from shared.auth import issue_token
from shared.aws import AwsClients
from tests.integration.conftest import TEST_SETTINGS
from tests.integration.helpers import Fleet
from tests.integration.media_client import (
    download,
    make_jpeg,
    put_to_slot,
    slot_request,
    upload_single,
    wait_for_state,
)
from tests.integration.ws_client import next_frame, of_type, open_socket

MIB = 1024 * 1024
QUOTA = int(TEST_SETTINGS["QUOTA_BYTES_PER_USER"])
MEDIA = "m_" + "A" * 22  # shaped like a media id; need not exist for a 403


def admin(fleet: Fleet) -> tuple[str, dict[str, str]]:
    """A fresh admin (a unique name, so the audit log can be read for this test alone)."""
    name = f"ops-{secrets.token_hex(4)}"
    token = issue_token(name, fleet.secret, roles=("admin",))
    return name, {"Authorization": f"Bearer {token}"}


async def usage(http: httpx.AsyncClient, fleet: Fleet, headers: dict[str, str]) -> dict[str, Any]:
    response = await http.get(f"{fleet.media_url}/v1/me/usage", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def ready_image(
    http: httpx.AsyncClient, fleet: Fleet, headers: dict[str, str], seed: int
) -> tuple[str, bytes]:
    data = make_jpeg(seed=seed)
    media_id = await upload_single(http, fleet.media_url, headers, data)
    document = await wait_for_state(http, fleet.media_url, headers, media_id)
    assert document["state"] == "ready", document
    return media_id, data


async def dedup_copy(
    http: httpx.AsyncClient, fleet: Fleet, headers: dict[str, str], data: bytes
) -> str:
    """The same bytes by someone else: a dedup challenge answered right."""
    response = await http.post(
        f"{fleet.media_url}/v1/media/uploads", json=slot_request(data), headers=headers
    )
    assert response.status_code == 200, response.text
    slot = response.json()
    challenge = slot["dedup"]
    chunk = data[challenge["offset"] : challenge["offset"] + challenge["length"]]
    proof = hashlib.sha256(bytes.fromhex(challenge["nonce"]) + chunk).hexdigest()
    proved = await http.post(
        f"{fleet.media_url}/v1/media/{slot['media_id']}/proof",
        json={"proof": proof},
        headers=headers,
    )
    assert proved.status_code == 200, proved.text
    return str(slot["media_id"])


ADMIN_ROUTES = [
    ("PUT", f"/v1/admin/media/{MEDIA}/legal-hold", {"reason": "x"}),
    ("DELETE", f"/v1/admin/media/{MEDIA}/legal-hold", None),
    ("PUT", "/v1/admin/users/alice/legal-hold", {"reason": "x"}),
    ("DELETE", "/v1/admin/users/alice/legal-hold", None),
    ("POST", f"/v1/admin/media/{MEDIA}/quarantine", {"reason": "x"}),
    ("DELETE", f"/v1/admin/media/{MEDIA}/quarantine", None),
    ("DELETE", "/v1/admin/users/alice/media", None),
    ("GET", "/v1/admin/users/alice/usage", None),
    ("GET", "/v1/admin/audit", None),
    ("GET", "/v1/admin/moderation?state=blocked", None),
]


async def test_every_admin_route_refuses_a_token_without_the_admin_role(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    plain = fleet.auth(user("mallory"))
    other_role = {
        "Authorization": f"Bearer {issue_token(user('eve'), fleet.secret, roles=('support',))}"
    }
    for method, path, body in ADMIN_ROUTES:
        for headers in (plain, other_role):
            response = await http.request(
                method, f"{fleet.media_url}{path}", json=body, headers=headers
            )
            assert response.status_code == 403, (method, path, response.text)
            assert response.json()["error"]["code"] == "forbidden"
        anonymous = await http.request(method, f"{fleet.media_url}{path}", json=body)
        assert anonymous.status_code == 401, (method, path)


async def test_usage_counts_verified_and_pending_bytes_and_releases_them(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    alice_name = user("alice")
    alice = fleet.auth(alice_name)
    assert await usage(http, fleet, alice) == {
        "stored_bytes": 0,
        "pending_bytes": 0,
        "media_count": 0,
        "quota_bytes": QUOTA,
    }
    # A slot counts its declared bytes as pending; verified, they are stored.
    media_id, data = await ready_image(http, fleet, alice, seed=9101)
    after_upload = await usage(http, fleet, alice)
    assert after_upload["stored_bytes"] == len(data)
    assert after_upload["pending_bytes"] == 0
    assert after_upload["media_count"] == 1

    # Wrong bytes fail verification: their pending bytes are released, nothing is stored.
    declared, sent = make_jpeg(seed=9102), bytearray(make_jpeg(seed=9102))
    sent[-10] ^= 0xFF
    slot = (
        await http.post(
            f"{fleet.media_url}/v1/media/uploads", json=slot_request(declared), headers=alice
        )
    ).json()
    assert (await usage(http, fleet, alice))["pending_bytes"] == len(declared)
    assert (await put_to_slot(http, slot["upload"], bytes(sent))).status_code == 200
    failed = await wait_for_state(http, fleet.media_url, alice, slot["media_id"])
    assert failed["state"] == "failed"
    assert await usage(http, fleet, alice) == after_upload

    # A deduplicated copy counts for its owner too.
    bob_name = user("bob")
    bob = fleet.auth(bob_name)
    copy = await dedup_copy(http, fleet, bob, data)
    bob_usage = await usage(http, fleet, bob)
    assert (bob_usage["stored_bytes"], bob_usage["media_count"]) == (len(data), 1)

    # Deleting gives the bytes back; never below zero, however often it is asked.
    for owner, headers, media in ((alice, alice, media_id), (bob, bob, copy)):
        assert (
            await http.delete(f"{fleet.media_url}/v1/media/{media}", headers=headers)
        ).status_code == 204
        again = await http.delete(f"{fleet.media_url}/v1/media/{media}", headers=headers)
        assert again.status_code == 404
        assert await usage(http, fleet, owner) == {
            "stored_bytes": 0,
            "pending_bytes": 0,
            "media_count": 0,
            "quota_bytes": QUOTA,
        }
    # Admins read anyone's figures.
    _, ops = admin(fleet)
    seen = await http.get(f"{fleet.media_url}/v1/admin/users/{alice_name}/usage", headers=ops)
    assert seen.status_code == 200
    assert seen.json()["media_count"] == 0


async def test_a_slot_past_the_quota_is_refused_until_room_is_made(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    alice = fleet.auth(user("alice"))
    half = QUOTA // 2 + MIB  # two of these pass the quota together, one does not

    def big(seed: int) -> dict[str, Any]:
        return {"content_type": "video/mp4", "size": half, "sha256": f"{seed:064x}"}

    first = await http.post(f"{fleet.media_url}/v1/media/uploads", json=big(1), headers=alice)
    assert first.status_code == 201, first.text
    assert (await usage(http, fleet, alice))["pending_bytes"] == half

    refused = await http.post(f"{fleet.media_url}/v1/media/uploads", json=big(2), headers=alice)
    assert refused.status_code == 413
    assert refused.json()["error"]["code"] == "quota_exceeded"
    alone = await http.post(
        f"{fleet.media_url}/v1/media/uploads",
        json={"content_type": "video/mp4", "size": QUOTA + 1, "sha256": "e" * 64},
        headers=alice,
    )
    assert alone.status_code == 413
    assert alone.json()["error"]["code"] == "quota_exceeded"
    assert (await usage(http, fleet, alice))["pending_bytes"] == half  # refusals count nothing

    # Abandoning the first slot makes room.
    abandoned = await http.delete(
        f"{fleet.media_url}/v1/media/{first.json()['media_id']}", headers=alice
    )
    assert abandoned.status_code == 204
    assert (await usage(http, fleet, alice))["pending_bytes"] == 0
    second = await http.post(f"{fleet.media_url}/v1/media/uploads", json=big(2), headers=alice)
    assert second.status_code == 201, second.text


async def test_quarantine_blocks_everyone_then_restore_brings_it_back(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    if fleet.message_url is None:
        pytest.skip("needs the Message Service")
    alice_name, bob_name = user("alice"), user("bob")
    alice, bob = fleet.auth(alice_name), fleet.auth(bob_name)
    media_id, _ = await ready_image(http, fleet, alice, seed=9201)
    created = await http.post(
        f"{fleet.message_url}/v1/conversations", json={"members": [bob_name]}, headers=alice
    )
    conversation_id = created.json()["conversation_id"]
    ops_name, ops = admin(fleet)

    async with open_socket(fleet, 0, bob_name) as ws:
        sent = await http.post(
            f"{fleet.message_url}/v1/conversations/{conversation_id}/messages",
            json={"client_msg_id": "q1", "media": [{"media_id": media_id}]},
            headers=alice,
        )
        assert sent.status_code == 201, sent.text
        await next_frame(ws, of_type("message"))
        blocked = await http.post(
            f"{fleet.media_url}/v1/admin/media/{media_id}/quarantine",
            json={"reason": "reported"},
            headers=ops,
        )
        assert blocked.status_code == 200, blocked.text
        assert blocked.json()["quarantined"] is True
        assert blocked.json()["state"] == "blocked"
        frame = await next_frame(ws, of_type("media_update", media_id=media_id, state="blocked"))
        assert frame["state"] == "blocked"

        for headers in (alice, bob):  # the owner too
            url = await http.get(f"{fleet.media_url}/v1/media/{media_id}/url", headers=headers)
            assert url.status_code == 451, url.text
            assert url.json()["error"]["code"] == "blocked"
        document = (await http.get(f"{fleet.media_url}/v1/media/{media_id}", headers=alice)).json()
        assert document["state"] == "blocked"
        assert "quarantined" not in document  # admins only

        restored = await http.delete(
            f"{fleet.media_url}/v1/admin/media/{media_id}/quarantine", headers=ops
        )
        assert restored.status_code == 204
        await next_frame(ws, of_type("media_update", media_id=media_id, state="ready"))

    for headers in (alice, bob):
        url = await http.get(f"{fleet.media_url}/v1/media/{media_id}/url", headers=headers)
        assert url.status_code == 200, url.text
    seen = (await http.get(f"{fleet.media_url}/v1/media/{media_id}", headers=ops)).json()
    assert (seen["state"], seen["quarantined"], seen["legal_hold"]) == ("ready", False, False)
    unknown = await http.post(
        f"{fleet.media_url}/v1/admin/media/{MEDIA}/quarantine", json={"reason": "x"}, headers=ops
    )
    assert unknown.status_code == 404

    events = await audit_of(http, fleet, ops, ops_name)
    assert [(e["action"], e["target"], e["reason"]) for e in events] == [
        ("media.quarantine", f"media/{media_id}", "reported"),
        ("media.restore", f"media/{media_id}", None),
    ]


async def test_erasure_takes_everything_not_held_and_is_safe_to_repeat(
    fleet: Fleet, http: httpx.AsyncClient, aws: AwsClients, user: Callable[..., str]
) -> None:
    alice_name, bob_name = user("alice"), user("bob")
    alice, bob = fleet.auth(alice_name), fleet.auth(bob_name)
    only_hers, only_data = await ready_image(http, fleet, alice, seed=9301)
    shared, shared_data = await ready_image(http, fleet, alice, seed=9302)
    held, _ = await ready_image(http, fleet, alice, seed=9303)
    bobs_copy = await dedup_copy(http, fleet, bob, shared_data)
    ops_name, ops = admin(fleet)
    hold = await http.put(
        f"{fleet.media_url}/v1/admin/media/{held}/legal-hold",
        json={"reason": "litigation"},
        headers=ops,
    )
    assert hold.status_code == 200, hold.text
    bucket = fleet.resources.bucket
    derivatives = f"d/image/{hashlib.sha256(only_data).hexdigest()}/"
    assert (await aws.s3.list_objects_v2(Bucket=bucket, Prefix=derivatives)).get("KeyCount", 0)

    erased = await http.delete(f"{fleet.media_url}/v1/admin/users/{alice_name}/media", headers=ops)
    assert erased.status_code == 202, erased.text
    assert erased.json() == {"deleted": 2, "held": 1}

    for media_id in (only_hers, shared):
        for headers in (alice, ops):
            gone = await http.get(f"{fleet.media_url}/v1/media/{media_id}", headers=headers)
            assert gone.status_code == 404, (media_id, gone.text)
    # Her own bytes and derivatives are gone from storage, every version.
    versions = await aws.s3.list_object_versions(Bucket=bucket, Prefix=derivatives)
    assert not versions.get("Versions")
    original = await aws.s3.list_object_versions(Bucket=bucket, Prefix=f"o/{only_hers}")
    assert not original.get("Versions")
    # Bob's deduplicated copy shares the bytes: they stay for him.
    assert await download(http, fleet.media_url, bob, bobs_copy) == shared_data
    assert (await http.get(f"{fleet.media_url}/v1/media/{held}", headers=alice)).status_code == 200
    assert (await usage(http, fleet, alice))["media_count"] == 1

    again = await http.delete(f"{fleet.media_url}/v1/admin/users/{alice_name}/media", headers=ops)
    assert again.json() == {"deleted": 0, "held": 1}

    events = await audit_of(http, fleet, ops, ops_name)
    assert [(e["action"], e["target"]) for e in events] == [
        ("media.legal_hold", f"media/{held}"),
        ("user.erase_media", f"user/{alice_name}"),
        ("user.erase_media", f"user/{alice_name}"),
    ]
    release = await http.delete(f"{fleet.media_url}/v1/admin/media/{held}/legal-hold", headers=ops)
    assert release.status_code == 204


async def audit_of(
    http: httpx.AsyncClient, fleet: Fleet, headers: dict[str, str], actor: str
) -> list[dict[str, Any]]:
    """Every audit event by `actor`, paging through the log with small pages (order kept)."""
    events: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 7}
        if after:
            params["after"] = after
        response = await http.get(
            f"{fleet.media_url}/v1/admin/audit", params=params, headers=headers
        )
        assert response.status_code == 200, response.text
        page = response.json()
        events += [event for event in page["events"] if event["actor"] == actor]
        if page["next"] is None:
            break
        after = page["next"]
    times = [event["at"] for event in events]
    assert times == sorted(times)
    return events
