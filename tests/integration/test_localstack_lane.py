"""On an S3 that checks presigned signatures (LocalStack), storage itself refuses tampered,
expired, re-sized and wrong-checksum PUTs, and the normal upload path still ends `ready`: the
worker gets LocalStack's S3 event notifications through LocalStack's SQS."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from shared.aws import AwsClients
from tests.integration.helpers import Fleet
from tests.integration.localstack_lane import require_localstack
from tests.integration.media_client import make_jpeg, put_to_slot, slot_request, wait_for_state

pytestmark = pytest.mark.localstack
require_localstack()


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


async def _slot(http: httpx.AsyncClient, fleet: Fleet, who: str, data: bytes) -> dict[str, Any]:
    answer = await http.post(
        f"{fleet.media_url}/v1/media/uploads", json=slot_request(data), headers=fleet.auth(who)
    )
    assert answer.status_code == 201, answer.text
    upload: dict[str, Any] = answer.json()["upload"]
    return upload


async def test_storage_refuses_tampered_expired_resized_and_wrong_checksum_puts(
    localstack_fleet: Fleet,
    lane_aws: AwsClients,
    http: httpx.AsyncClient,
    user: Callable[..., str],
) -> None:
    fleet = localstack_fleet
    photo = make_jpeg(seed=91)
    upload = await _slot(http, fleet, user(), photo)
    url: str = upload["url"]
    headers: dict[str, str] = upload["headers"]
    signature = dict(parse_qsl(urlsplit(url).query))["X-Amz-Signature"]
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]

    tampered = await http.put(
        _with_query(url, **{"X-Amz-Signature": flipped}), content=photo, headers=headers
    )
    assert tampered.status_code == 403, tampered.text
    assert b"SignatureDoesNotMatch" in tampered.content

    # Moving the expiry is a change to what was signed: refused the same way.
    stretched = await http.put(
        _with_query(url, **{"X-Amz-Expires": "604800"}), content=photo, headers=headers
    )
    assert stretched.status_code == 403, stretched.text

    # A date a week back with its original lifetime: the URL has expired (or no longer matches).
    backdated = await http.put(
        _with_query(url, **{"X-Amz-Date": "20200101T000000Z"}), content=photo, headers=headers
    )
    assert backdated.status_code == 403, backdated.text

    # The slot lists the Content-Length it signed; a client sending more bytes declares more.
    unsized = {name: value for name, value in headers.items() if name.lower() != "content-length"}
    longer = await http.put(url, content=photo + b"\0", headers=unsized)
    assert longer.status_code == 403, longer.text  # Content-Length is a signed header

    wrong = bytearray(photo)
    wrong[-3] ^= 0xFF
    wrong_bytes = await http.put(url, content=bytes(wrong), headers=headers)
    assert wrong_bytes.status_code == 400, wrong_bytes.text
    assert b"BadDigest" in wrong_bytes.content

    other_checksum = base64.b64encode(hashlib.sha256(bytes(wrong)).digest()).decode()
    swapped = await http.put(
        url, content=bytes(wrong), headers={**headers, "x-amz-checksum-sha256": other_checksum}
    )
    assert swapped.status_code == 403, swapped.text  # the checksum header is signed too

    # None of those stored anything; the honest PUT then does.
    key = urlsplit(url).path.split("/", 2)[2]
    listed = await lane_aws.s3.list_objects_v2(Bucket=fleet.resources.bucket, Prefix=key)
    assert listed.get("KeyCount", 0) == 0
    stored = await put_to_slot(http, upload, photo)
    assert stored.status_code == 200, stored.text


async def test_an_upload_becomes_ready_from_localstack_s3_events(
    localstack_fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    fleet = localstack_fleet
    alice = fleet.auth(user())
    photo = make_jpeg(seed=92)
    answer = await http.post(
        f"{fleet.media_url}/v1/media/uploads", json=slot_request(photo), headers=alice
    )
    assert answer.status_code == 201, answer.text
    slot = answer.json()
    stored = await put_to_slot(http, slot["upload"], photo)
    assert stored.status_code == 200, stored.text

    document = await wait_for_state(http, fleet.media_url, alice, slot["media_id"], within=60)
    assert document["state"] == "ready", document
    # Thumbnails written by the worker to LocalStack's S3 with its own (header-signed) calls.
    assert any(variant["name"].startswith("thumb_") for variant in document["variants"])

    link = await http.get(f"{fleet.media_url}/v1/media/{slot['media_id']}/url", headers=alice)
    assert link.status_code == 200, link.text
    fetched = await http.get(link.json()["url"])
    assert fetched.status_code == 200
    assert fetched.content == photo
