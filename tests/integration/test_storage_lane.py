"""Issue 9, items 1 and 2, on an S3 that checks presigned signatures (LocalStack): a valid
upload URL keeps storing objects for its whole lifetime, so what it stores beyond the one
usable object (more PUTs, a PUT after an abandon) is deleted as its event arrives."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
import pytest

from shared.aws import AwsClients
from tests.integration.helpers import Fleet
from tests.integration.localstack_lane import require_localstack
from tests.integration.media_client import make_jpeg, put_to_slot, slot_request, wait_for_state
from tests.integration.prometheus import scrape
from tests.waiting import eventually

if TYPE_CHECKING:
    from types_aiobotocore_s3.type_defs import ObjectVersionTypeDef

pytestmark = pytest.mark.localstack
require_localstack()


async def _versions(aws: AwsClients, fleet: Fleet, key: str) -> list[ObjectVersionTypeDef]:
    listed = await aws.s3.list_object_versions(Bucket=fleet.resources.bucket, Prefix=key)
    return [entry for entry in listed.get("Versions", []) if entry["Key"] == key]


async def _discarded(http: httpx.AsyncClient, fleet: Fleet, reason: str) -> float:
    samples = await scrape(http, fleet.worker_url)
    return samples.value("ferry_discarded_objects_total", reason=reason)


async def test_one_upload_url_put_six_times_leaves_one_object(
    localstack_fleet: Fleet,
    lane_aws: AwsClients,
    http: httpx.AsyncClient,
    user: Callable[..., str],
) -> None:
    fleet = localstack_fleet
    alice = fleet.auth(user())
    photo = make_jpeg(seed=94)
    before = await _discarded(http, fleet, "extra_version")
    answer = await http.post(
        f"{fleet.media_url}/v1/media/uploads", json=slot_request(photo), headers=alice
    )
    assert answer.status_code == 201, answer.text
    slot = answer.json()
    media_id, key = slot["media_id"], f"o/{slot['media_id']}"
    for _ in range(6):  # storage accepts every one: the URL is valid, the bytes are right
        stored = await put_to_slot(http, slot["upload"], photo)
        assert stored.status_code == 200, stored.text

    document = await wait_for_state(http, fleet.media_url, alice, media_id, within=60)
    assert document["state"] == "ready", document

    async def one_left() -> list[ObjectVersionTypeDef] | None:
        versions = await _versions(lane_aws, fleet, key)
        return versions if len(versions) == 1 else None

    (kept,) = await eventually(one_left, "the extra versions deleted", timeout=60)
    row = await lane_aws.dynamodb.get_item(
        TableName=fleet.resources.media_table, Key={"media_id": {"S": media_id}}
    )
    assert kept["VersionId"] == row["Item"]["version_id"]["S"]  # the pinned one stays
    assert await _discarded(http, fleet, "extra_version") == before + 5
    link = await http.get(f"{fleet.media_url}/v1/media/{media_id}/url", headers=alice)
    fetched = await http.get(link.json()["url"])
    assert fetched.content == photo


async def test_bytes_put_after_an_abandon_are_deleted(
    localstack_fleet: Fleet,
    lane_aws: AwsClients,
    http: httpx.AsyncClient,
    user: Callable[..., str],
) -> None:
    fleet = localstack_fleet
    alice = fleet.auth(user())
    photo = make_jpeg(seed=95)
    before = await _discarded(http, fleet, "abandoned")
    answer = await http.post(
        f"{fleet.media_url}/v1/media/uploads", json=slot_request(photo), headers=alice
    )
    assert answer.status_code == 201, answer.text
    slot = answer.json()
    key = f"o/{slot['media_id']}"
    abandoned = await http.delete(f"{fleet.media_url}/v1/media/{slot['media_id']}", headers=alice)
    assert abandoned.status_code == 204

    # The URL still works at storage (it is signed and unexpired)...
    stored = await put_to_slot(http, slot["upload"], photo)
    assert stored.status_code == 200, stored.text

    # ...but what it stored does not stay (nor count anywhere).
    async def gone() -> bool:
        return not await _versions(lane_aws, fleet, key)

    await eventually(gone, "the abandoned slot's bytes deleted", timeout=60)
    assert await _discarded(http, fleet, "abandoned") == before + 1
    usage = await http.get(f"{fleet.media_url}/v1/media/{slot['media_id']}", headers=alice)
    assert usage.status_code == 404
