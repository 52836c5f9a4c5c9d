"""Processing end to end: real media in, derivatives and metadata out, through the fleet."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import httpx
from PIL import Image

from tests.integration.conftest import Fleet, banned_photo
from tests.integration.media_client import download, upload_single, wait_for_state
from tests.integration.prometheus import scrape
from tests.media_factory import av as av_media
from tests.media_factory import images
from tests.waiting import eventually

# A 2-core CI box transcodes while the rest of the suite runs.
PROCESSING_WITHIN = 90.0


async def process(
    fleet: Fleet, http: httpx.AsyncClient, owner: str, data: bytes, content_type: str
) -> tuple[str, dict[str, Any]]:
    headers = fleet.auth(owner)
    media_id = await upload_single(http, fleet.media_url, headers, data, content_type)
    document = await wait_for_state(
        http, fleet.media_url, headers, media_id, within=PROCESSING_WITHIN
    )
    return media_id, document


def variant_names(document: dict[str, Any]) -> set[str]:
    return {variant["name"] for variant in document["variants"]}


async def test_a_phone_photo_gets_upright_thumbnails_without_location(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    alice = user("alice")
    media_id, document = await process(
        fleet, http, alice, images.oriented_jpeg_with_gps(400, 200), "image/jpeg"
    )

    assert document["state"] == "ready", document
    assert variant_names(document) == {"thumb_320", "thumb_640", "thumb_1280"}
    # Stored 400x200 with orientation 6: shown 200x400.
    assert (document["meta"]["width"], document["meta"]["height"]) == (200, 400)
    assert document["meta"]["blurhash"]
    sizes = {v["name"]: (v["width"], v["height"]) for v in document["variants"]}
    assert sizes == {"thumb_320": (160, 320), "thumb_640": (200, 400), "thumb_1280": (200, 400)}

    thumb = await download(http, fleet.media_url, fleet.auth(alice), media_id, "thumb_320")
    with Image.open(io.BytesIO(thumb)) as image:
        assert image.format == "WEBP"
        assert image.size == (160, 320)
        assert not image.getexif()
        assert "exif" not in image.info
        assert "xmp" not in image.info
    assert b"GPS" not in thumb
    assert b"Exif" not in thumb


async def test_png_alpha_animated_gif_and_heic(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    alice = user("alice")
    png_id, png = await process(fleet, http, alice, images.png_with_alpha(300, 200), "image/png")
    assert png["state"] == "ready"
    thumb = await download(http, fleet.media_url, fleet.auth(alice), png_id, "thumb_320")
    with Image.open(io.BytesIO(thumb)) as image:
        assert image.mode == "RGBA"

    _, gif = await process(fleet, http, alice, images.animated_gif(3), "image/gif")
    assert gif["state"] == "ready"
    assert gif["meta"]["animated"] is True

    _, heic = await process(fleet, http, alice, images.heic(640, 480), "image/heic")
    assert heic["state"] == "ready", heic
    assert (heic["meta"]["width"], heic["meta"]["height"]) == (640, 480)
    assert "thumb_320" in variant_names(heic)


async def test_a_voice_note_gets_a_low_bitrate_opus_copy_and_a_waveform(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str], tmp_path: Path
) -> None:
    alice = user("alice")
    note = av_media.voice_ogg_opus(tmp_path / "note.ogg", seconds=3.0).read_bytes()
    media_id, document = await process(fleet, http, alice, note, "audio/ogg")

    assert document["state"] == "ready", document
    assert variant_names(document) == {"voice_low"}
    assert abs(document["meta"]["duration_ms"] - 3000) <= 100
    waveform = document["meta"]["waveform"]
    assert len(waveform) == 64
    assert all(0 <= value <= 255 for value in waveform)

    low = tmp_path / "low.ogg"
    low.write_bytes(await download(http, fleet.media_url, fleet.auth(alice), media_id, "voice_low"))
    with av.open(str(low)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name == "opus"
        assert stream.codec_context.channels == 1


async def test_a_rotated_phone_video_gets_an_upright_poster_and_a_playable_hls_ladder(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str], tmp_path: Path
) -> None:
    alice, carol = user("alice"), user("carol")
    clip = av_media.h264_mp4(tmp_path / "clip.mp4", width=640, height=360, rotate=90).read_bytes()
    media_id, document = await process(fleet, http, alice, clip, "video/mp4")

    assert document["state"] == "ready", document
    assert {"poster", "hls"} <= variant_names(document)
    assert (document["meta"]["width"], document["meta"]["height"]) == (360, 640)
    assert abs(document["meta"]["duration_ms"] - 1000) <= 100
    poster = await download(http, fleet.media_url, fleet.auth(alice), media_id, "poster")
    with Image.open(io.BytesIO(poster)) as image:
        assert image.format == "JPEG"
        assert image.height > image.width

    # The master playlist plays: every URI in it, and in every playlist it names, resolves.
    master_path = f"{fleet.media_url}/v1/media/{media_id}/hls/master.m3u8"
    hls = await http.get(
        f"{fleet.media_url}/v1/media/{media_id}/url",
        params={"variant": "hls"},
        headers=fleet.auth(alice),
    )
    master_url = hls.json()["url"]
    assert master_url.startswith(master_path + "?")
    master = await http.get(master_url)  # no token: the signed link is the grant
    assert master.status_code == 200, master.text
    assert master.headers["content-type"].startswith("application/vnd.apple.mpegurl")
    renditions = [line for line in master.text.splitlines() if line and not line.startswith("#")]
    assert renditions, master.text
    segments = 0
    for rendition_url in renditions:
        playlist = await http.get(rendition_url)  # no token: the signed link is the grant
        assert playlist.status_code == 200, playlist.text
        assert "#EXT-X-ENDLIST" in playlist.text
        for uri in (u for u in playlist.text.splitlines() if u and not u.startswith("#")):
            segment = await http.get(uri)
            assert segment.status_code == 200
            assert segment.content[:1] == b"\x47"  # an MPEG-TS sync byte
            segments += 1
    assert segments >= 1

    # Same access rules as /url: a stranger gets 404, and a tampered link is refused.
    assert (await http.get(master_path, headers=fleet.auth(carol))).status_code == 404
    assert (await http.get(master_url.replace("signature=", "signature=0"))).status_code == 404
    tampered = renditions[0].replace("signature=", "signature=0")
    assert (await http.get(tampered)).status_code == 404


async def test_an_hevc_mov_is_transcoded(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str], tmp_path: Path
) -> None:
    clip = av_media.hevc_mov(tmp_path / "clip.mov").read_bytes()
    _, document = await process(fleet, http, user("alice"), clip, "video/quicktime")
    assert document["state"] == "ready", document
    assert document["meta"]["video_codec"] == "hevc"
    assert "hls" in variant_names(document)


async def test_broken_media_fails_with_a_clear_code_and_the_worker_keeps_going(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str], tmp_path: Path
) -> None:
    alice = user("alice")
    _, truncated = await process(fleet, http, alice, images.truncated_jpeg(), "image/jpeg")
    assert truncated["state"] == "failed"
    assert truncated["error"]["code"] == "corrupt_media"

    _, bomb = await process(fleet, http, alice, images.png_bomb(), "image/png")
    assert bomb["state"] == "failed"
    assert bomb["error"]["code"] == "too_many_pixels"

    # Random bytes behind a real MP4 signature pass the type check, not the decoder.
    fake = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + images.random_bytes(60_000)
    _, video = await process(fleet, http, alice, fake, "video/mp4")
    assert video["state"] == "failed"
    assert video["error"]["code"] in {"corrupt_media", "unsupported_format"}

    # And the next upload is processed as usual.
    _, fine = await process(fleet, http, alice, images.jpeg(64, 48, seed=9), "image/jpeg")
    assert fine["state"] == "ready"


async def test_a_blocklisted_image_is_blocked_and_its_url_answers_451(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    alice = user("alice")
    media_id, document = await process(fleet, http, alice, banned_photo(), "image/jpeg")
    assert document["state"] == "blocked", document
    assert document["variants"] == []
    for variant in ("original", "thumb_320"):
        response = await http.get(
            f"{fleet.media_url}/v1/media/{media_id}/url",
            params={"variant": variant},
            headers=fleet.auth(alice),
        )
        assert response.status_code == 451
        assert response.json()["error"]["code"] == "blocked"
    assert document["error"]["code"] == "hash_match"


async def test_a_long_video_shows_its_progress_while_processing(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str], tmp_path: Path
) -> None:
    alice = user("alice")
    headers = fleet.auth(alice)
    clip = av_media.h264_mp4(tmp_path / "long.mp4", width=1280, height=720, seconds=8.0)
    media_id = await upload_single(http, fleet.media_url, headers, clip.read_bytes(), "video/mp4")

    seen: list[int] = []
    # A photo sent while the video transcodes: it has its own lane, so it does not wait.
    photo: dict[str, Any] = {}

    async def done() -> bool:
        document = (
            await http.get(f"{fleet.media_url}/v1/media/{media_id}", headers=headers)
        ).json()
        if document["progress"] is not None:
            assert document["state"] == "processing"
            seen.append(document["progress"])
            if not photo:
                photo["id"] = await upload_single(
                    http, fleet.media_url, headers, images.jpeg(640, 480, seed=8080)
                )
            elif "ready_while" not in photo:
                shown = await http.get(f"{fleet.media_url}/v1/media/{photo['id']}", headers=headers)
                if shown.json()["state"] == "ready":
                    photo["ready_while"] = document["state"]
        return bool(document["state"] == "ready")

    await eventually(done, timeout=PROCESSING_WITHIN, interval=0.1)
    assert seen, "no progress was shown while the video was transcoded"
    assert photo.get("ready_while") == "processing", photo
    assert all(0 <= percent <= 99 for percent in seen)
    assert seen == sorted(seen)
    final = (await http.get(f"{fleet.media_url}/v1/media/{media_id}", headers=headers)).json()
    assert final["progress"] is None


def _descendants(pid: int) -> list[int]:
    found, pending = [], [pid]
    while pending:
        for task in Path(f"/proc/{pending.pop()}/task").glob("*"):
            try:
                children = [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                continue
            found += children
            pending += children
    return found


def _niceness(pid: int) -> int | None:
    try:
        return os.getpriority(os.PRIO_PROCESS, pid)
    except OSError:
        return None  # gone meanwhile


async def test_derivation_runs_below_verification_and_videos_below_photos(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str], tmp_path: Path
) -> None:
    """The worker's event loop (verification, which senders wait for) keeps its priority; the
    image pool runs 10 nice levels below it and the video pool 19 (capped at nice 19), so a
    transcode takes only what photos leave idle. And a photo's derivation starts from the
    original its verification kept on disk, not from a second download."""
    alice = user("alice")
    headers = fleet.auth(alice)
    before = await scrape(http, fleet.worker_url)
    clip = av_media.h264_mp4(tmp_path / "short.mp4", width=320, height=240, seconds=1.0)
    video_id = await upload_single(http, fleet.media_url, headers, clip.read_bytes(), "video/mp4")
    _, photo = await process(fleet, http, alice, images.jpeg(640, 480, seed=4242), "image/jpeg")
    assert photo["state"] == "ready", photo
    video = await wait_for_state(http, fleet.media_url, headers, video_id, within=PROCESSING_WITHIN)
    assert video["state"] == "ready", video

    worker = fleet.processes["transcode_worker"].pid
    assert worker is not None
    own = os.getpriority(os.PRIO_PROCESS, worker)
    # Pool processes stay alive between jobs; the rest (the resource tracker) run at `own`.
    below = {nice - own for pid in _descendants(worker) if (nice := _niceness(pid)) is not None}
    assert min(19, own + 10) - own in below, below
    assert min(19, own + 19) - own in below, below

    after = await scrape(http, fleet.worker_url)
    spooled = after.value("ferry_derive_originals_total", source="spool")
    assert spooled > before.value("ferry_derive_originals_total", source="spool")
