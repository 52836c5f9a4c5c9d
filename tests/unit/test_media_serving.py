"""Serving's decisions (`media_service.serving`): who reads what, which URL, which playlist."""

import time
from urllib.parse import parse_qs, urlsplit

import pytest

from shared import keys
from shared.errors import FerryError, NotFound
from shared.media_records import MediaRecord, StoredVariant
from shared.models import MediaState
from tests.unit.media_world import OWNER, MediaWorld, request

JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8
BASE_URL = "http://media.test/"
MASTER = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000\n360p/index.m3u8\n"
RENDITION = "#EXTM3U\n#EXTINF:4.0,\nseg0.ts\n#EXTINF:4.0,\n../escape.ts\n"


@pytest.fixture
def world() -> MediaWorld:
    return MediaWorld()


async def uploaded(world: MediaWorld, state: MediaState, **fields: object) -> MediaRecord:
    slot = await world.uploads.request_slot(OWNER, request(JPEG))
    return world.settle(slot.media_id, state, version_id="v1", **fields)


def downloads(world: MediaWorld, outcome: str) -> float:
    return world.sample("ferry_download_urls_total", outcome=outcome)


async def test_only_readers_see_a_media(world: MediaWorld) -> None:
    record = await uploaded(world, MediaState.READY)
    assert (await world.serving.document(OWNER, record.media_id)).state is MediaState.READY
    with pytest.raises(NotFound):
        await world.serving.document("mallory", record.media_id)
    with pytest.raises(NotFound):
        await world.serving.document(OWNER, "not-an-id")


async def test_the_internal_view_skips_the_access_check(world: MediaWorld) -> None:
    record = await uploaded(world, MediaState.READY, meta={"width": 4})
    info = await world.serving.info(record.media_id)
    assert info == record.info()
    assert (info.owner, info.meta) == (OWNER, {"width": 4})


async def test_the_original_is_signed_at_its_version(world: MediaWorld) -> None:
    record = await uploaded(world, MediaState.READY)
    url = await world.serving.download_url(OWNER, record.media_id, "original", BASE_URL)
    assert url.url == f"fake://get/{record.object_key}?version=v1"
    assert downloads(world, "ok") == 1


@pytest.mark.parametrize(
    ("state", "variant", "code"),
    [
        (MediaState.AWAITING_UPLOAD, "original", "no_such_variant"),
        (MediaState.READY, "thumb", "no_such_variant"),
        (MediaState.BLOCKED, "original", "blocked"),
        (MediaState.FAILED, "original", "media_unusable"),
    ],
)
async def test_refused_downloads_are_counted_by_code(
    world: MediaWorld, state: MediaState, variant: str, code: str
) -> None:
    record = await uploaded(world, state)
    with pytest.raises(FerryError) as raised:
        await world.serving.download_url(OWNER, record.media_id, variant, BASE_URL)
    assert raised.value.error_code == code
    assert downloads(world, code) == 1


async def test_hls_master_links_back_here_signed_and_renditions_sign_segments(
    world: MediaWorld,
) -> None:
    record = await uploaded(world, MediaState.PROCESSING)
    prefix = keys.hls_prefix(record.blob_key)
    hls = StoredVariant(
        name="hls", content_type="application/vnd.apple.mpegurl", size=1, key=f"{prefix}m.m3u8"
    )
    record = world.settle(record.media_id, MediaState.READY, variants=[hls])
    world.bucket.objects[hls.key] = MASTER.encode()
    world.bucket.objects[f"{prefix}360p/index.m3u8"] = RENDITION.encode()

    url = await world.serving.download_url(OWNER, record.media_id, "hls", BASE_URL)
    # A signed master link (no header needed), naming its reader.
    assert url.url.startswith(f"http://media.test/v1/media/{record.media_id}/hls/master.m3u8?")
    assert f"reader={OWNER}" in url.url
    master = await world.serving.hls_master(OWNER, record.media_id, BASE_URL)
    link = next(line for line in master.splitlines() if line.startswith("http"))
    query = parse_qs(urlsplit(link).query)
    expires, signature = int(query["expires"][0]), query["signature"][0]
    assert query["reader"] == [OWNER]

    playlist = await world.serving.hls_rendition(record.media_id, "360p", expires, signature, OWNER)
    assert f"fake://get/{prefix}360p/seg0.ts?version=None" in playlist
    assert "escape" not in playlist  # only segment names are signed; others are dropped
    with pytest.raises(NotFound):
        await world.serving.hls_rendition(record.media_id, "360p", expires, "0" * 64, OWNER)
    with pytest.raises(NotFound):  # another reader's link
        await world.serving.hls_rendition(record.media_id, "360p", expires, signature, "mallory")
    with pytest.raises(NotFound):  # a link past its expiry
        await world.serving.hls_rendition(
            record.media_id, "360p", int(time.time()) - 1, signature, OWNER
        )


# --- media lifetime ----------------------------------------------------------------------------


async def test_retired_parts_answer_410_and_the_rest_is_served(world: MediaWorld) -> None:
    poster = StoredVariant(name="poster", content_type="image/jpeg", size=3, key="d/x/poster.jpg")
    record = await uploaded(world, MediaState.EXPIRED, original_retired=True, variants=[poster])
    with pytest.raises(FerryError) as gone:
        await world.serving.download_url(OWNER, record.media_id, "original", BASE_URL)
    assert (gone.value.status, gone.value.error_code) == (410, "media_expired")
    served = await world.serving.download_url(OWNER, record.media_id, "poster", BASE_URL)
    assert "d/x/poster.jpg" in served.url
    world.settle(record.media_id, MediaState.EXPIRED, derivatives_retired=True)
    with pytest.raises(FerryError) as later:
        await world.serving.download_url(OWNER, record.media_id, "poster", BASE_URL)
    assert later.value.status == 410


async def test_an_archived_original_answers_409_media_archived() -> None:
    world = MediaWorld(cold_storage_class="GLACIER", cold_storage_after_seconds=86_400)
    record = await uploaded(world, MediaState.READY)
    # Young originals are not even checked; old ones in GLACIER need a restore first.
    assert await world.serving.download_url(OWNER, record.media_id, "original", BASE_URL)
    old = world.settle(
        record.media_id, MediaState.READY, created_at=record.created_at.replace(year=2020)
    )
    world.bucket.archived_keys.add(old.object_key)
    with pytest.raises(FerryError) as archived:
        await world.serving.download_url(OWNER, record.media_id, "original", BASE_URL)
    assert (archived.value.status, archived.value.error_code) == (409, "media_archived")


async def test_admins_read_any_media_and_see_its_hold(world: MediaWorld) -> None:
    record = await uploaded(world, MediaState.READY, legal_hold=True)
    document = await world.serving.document("ops", record.media_id, admin=True)
    assert document.legal_hold is True
    assert "legal_hold" not in document.model_dump()
    plain = await world.serving.document(OWNER, record.media_id)
    assert plain.legal_hold is None
