"""Issue 9 on the session fleet: privacy of originals, media type families in dedup, no timing
oracle between missing and hidden media, and HLS links that re-check access when signing."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from PIL import Image

from tests.integration.conftest import Fleet
from tests.integration.media_client import (
    download,
    sha256_hex,
    slot_request,
    upload_single,
    wait_for_state,
)
from tests.integration.prometheus import scrape
from tests.integration.test_message_path import create_conversation, send
from tests.media_factory import av as av_media
from tests.media_factory import images

GPS_IFD = 0x8825
READERS_ROUTE = "/internal/media/{media_id}/readers/{user_id}"


async def _ready(fleet: Fleet, http: httpx.AsyncClient, owner: str, data: bytes, kind: str) -> str:
    media_id = await upload_single(http, fleet.media_url, fleet.auth(owner), data, kind)
    document = await wait_for_state(http, fleet.media_url, fleet.auth(owner), media_id, within=60.0)
    assert document["state"] == "ready", document
    return media_id


async def _document(fleet: Fleet, http: httpx.AsyncClient, who: str, media_id: str) -> Any:
    response = await http.get(f"{fleet.media_url}/v1/media/{media_id}", headers=fleet.auth(who))
    assert response.status_code == 200, response.text
    return response.json()


async def test_recipients_get_originals_without_location_and_the_owner_the_exact_bytes(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str], tmp_path: Path
) -> None:
    alice, bob = user("alice"), user("bob")
    photo = images.jpeg(480, 320, seed=77, orientation=6, gps=True, xmp=True, icc=True)
    clip = av_media.mp4_with_location(
        tmp_path / "clip.mp4", faststart=True, location="+52.0900+005.1200/"
    ).read_bytes()
    assert b"\xa9xyz" in clip
    photo_id = await _ready(fleet, http, alice, photo, "image/jpeg")
    clip_id = await _ready(fleet, http, alice, clip, "video/mp4")
    conversation_id = (await create_conversation(fleet, http, alice, bob))["conversation_id"]
    sent = await send(
        fleet,
        http,
        alice,
        conversation_id,
        "privacy-1",
        media=[{"media_id": photo_id}, {"media_id": clip_id}],
    )
    assert sent.status_code == 201, sent.text

    # Alice, the owner: the exact bytes she uploaded, and their hash.
    for media_id, original in ((photo_id, photo), (clip_id, clip)):
        assert await download(http, fleet.media_url, fleet.auth(alice), media_id) == original
        mine = await _document(fleet, http, alice, media_id)
        assert (mine["sha256"], mine["size"]) == (sha256_hex(original), len(original))

    # Bob: a photo without GPS/camera/XMP (same pixels, still upright), the hash he downloads.
    bobs_photo = await download(http, fleet.media_url, fleet.auth(bob), photo_id)
    seen = await _document(fleet, http, bob, photo_id)
    assert seen["sha256"] == hashlib.sha256(bobs_photo).hexdigest()
    assert seen["size"] == len(bobs_photo)
    assert bobs_photo != photo
    stripped = Image.open(io.BytesIO(bobs_photo))
    assert not stripped.getexif().get_ifd(GPS_IFD)
    assert dict(stripped.getexif()) == {images.ORIENTATION: 6}
    assert b"FerryCam" not in bobs_photo
    assert stripped.tobytes() == Image.open(io.BytesIO(photo)).tobytes()
    assert "original_clean" not in {variant["name"] for variant in seen["variants"]}

    # Bob: a video without its ©xyz location, the same samples, the hash he downloads.
    bobs_clip = await download(http, fleet.media_url, fleet.auth(bob), clip_id)
    seen = await _document(fleet, http, bob, clip_id)
    assert seen["sha256"] == hashlib.sha256(bobs_clip).hexdigest()
    assert seen["size"] == len(bobs_clip)
    assert b"\xa9xyz" not in bobs_clip
    assert b"+52.0900" not in bobs_clip
    assert len(bobs_clip) < len(clip)


async def test_the_same_bytes_as_audio_never_poison_the_videos_dedup(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str], tmp_path: Path
) -> None:
    victim, attacker, third = user("victim"), user("mallory"), user("third")
    clip = av_media.mp4_with_location(
        tmp_path / "v.mp4", location="+10.0000+010.0000/"
    ).read_bytes()
    video_id = await _ready(fleet, http, victim, clip, "video/mp4")
    assert {"hls", "poster"} <= {
        v["name"] for v in (await _document(fleet, http, victim, video_id))["variants"]
    }

    # The attacker declares the same bytes as audio: a fresh slot, processed as a voice note.
    as_audio = await upload_single(http, fleet.media_url, fleet.auth(attacker), clip, "audio/mp4")
    await wait_for_state(http, fleet.media_url, fleet.auth(attacker), as_audio, within=60.0)

    # Whoever deduplicates the video still gets the video's outcome.
    answer = await http.post(
        f"{fleet.media_url}/v1/media/uploads",
        json=slot_request(clip, "video/mp4"),
        headers=fleet.auth(third),
    )
    assert answer.status_code == 200, answer.text
    challenge = answer.json()["dedup"]
    chunk = clip[challenge["offset"] : challenge["offset"] + challenge["length"]]
    proof = hashlib.sha256(bytes.fromhex(challenge["nonce"]) + chunk).hexdigest()
    proved = await http.post(
        f"{fleet.media_url}/v1/media/{answer.json()['media_id']}/proof",
        json={"proof": proof},
        headers=fleet.auth(third),
    )
    assert proved.status_code == 200, proved.text
    names = {variant["name"] for variant in proved.json()["variants"]}
    assert {"hls", "poster"} <= names
    assert "voice_low" not in names
    assert proved.json()["media_type"] == "video"
    # And the audio upload's derivatives live apart from the video's.
    audio_doc = await _document(fleet, http, attacker, as_audio)
    assert "hls" not in {variant["name"] for variant in audio_doc["variants"]}


async def _readers_asked(fleet: Fleet, http: httpx.AsyncClient) -> float:
    assert fleet.message_url is not None
    samples = await scrape(http, fleet.message_url)
    return samples.value("ferry_http_requests_total", route=READERS_ROUTE)


async def test_missing_and_hidden_media_cost_the_same_access_check(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    owner, prober = user("alice"), user("eve")
    hidden = await upload_single(
        http, fleet.media_url, fleet.auth(owner), images.jpeg(64, 48, seed=78)
    )
    missing = "m_" + "Q" * 22
    for media_id in (hidden, missing):
        for path in ("", "/url"):
            before = await _readers_asked(fleet, http)
            refused = await http.get(
                f"{fleet.media_url}/v1/media/{media_id}{path}", headers=fleet.auth(prober)
            )
            assert refused.status_code == 404
            assert refused.json() == {"error": {"code": "not_found", "message": "no such media"}}
            # One question to the Message Service each time, existing or not.
            assert await _readers_asked(fleet, http) == before + 1


async def test_a_rendition_link_fetched_before_leaving_stops_signing_segments(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str], tmp_path: Path
) -> None:
    alice, bob = user("alice"), user("bob")
    clip = av_media.mp4_with_location(
        tmp_path / "hls.mp4", location="+20.0000+020.0000/"
    ).read_bytes()
    clip_id = await _ready(fleet, http, alice, clip, "video/mp4")
    conversation_id = (await create_conversation(fleet, http, alice, bob))["conversation_id"]
    sent = await send(fleet, http, alice, conversation_id, "hls-1", media=[{"media_id": clip_id}])
    assert sent.status_code == 201, sent.text

    master = await http.get(
        f"{fleet.media_url}/v1/media/{clip_id}/hls/master.m3u8", headers=fleet.auth(bob)
    )
    assert master.status_code == 200, master.text
    link = next(line for line in master.text.splitlines() if line.startswith("http"))
    assert parse_qs(urlsplit(link).query)["reader"] == [bob]
    assert (await http.get(link)).status_code == 200

    left = await http.delete(
        f"{fleet.message_url}/v1/conversations/{conversation_id}/members/{bob}",
        headers=fleet.auth(bob),
    )
    assert left.status_code == 204
    refused = await http.get(link)
    assert refused.status_code == 404
    assert ".ts" not in refused.text
    # Alice's own link still plays.
    own = await http.get(
        f"{fleet.media_url}/v1/media/{clip_id}/hls/master.m3u8", headers=fleet.auth(alice)
    )
    alices = next(line for line in own.text.splitlines() if line.startswith("http"))
    assert (await http.get(alices)).status_code == 200
