"""HLS that plays anywhere (API.md v1.1 "Browsers and players"): `url?variant=hls` gives a
master playlist URL a player opens with no headers, and everything behind it stays valid for the
video's duration plus `HLS_PLAYBACK_GRACE_SECONDS`.

The player is ffmpeg's own HLS demuxer (through PyAV), given the URL and nothing else: it reads
the master, every rendition playlist and every segment of the ladder over HTTP.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import av
import httpx

from tests.integration.conftest import Fleet
from tests.integration.media_client import upload_single, wait_for_state
from tests.media_factory import av as av_media

PROCESSING_WITHIN = 90.0
SECONDS = 4
DEFAULT_GRACE_SECONDS = 600


def play_everything(url: str) -> dict[int, float]:
    """Demux the whole ladder from `url` (blocking: runs in a thread): seconds of video read per
    stream (each rendition is a stream of its own program)."""
    seen: dict[int, float] = {}
    with av.open(url, timeout=30) as container:
        streams = container.streams.video
        assert streams, "the master playlist named no video rendition"
        # Demuxing every rendition's stream keeps all of them active: the demuxer fetches the
        # playlists and segments of the whole ladder (others would be discarded).
        for packet in container.demux(*streams):
            if packet.pts is None or packet.time_base is None:
                continue
            end = float((packet.pts + (packet.duration or 0)) * packet.time_base)
            first = float(stream_start(packet.stream))
            seen[packet.stream.index] = max(seen.get(packet.stream.index, 0.0), end - first)
    return seen


def stream_start(stream: av.stream.Stream) -> float:
    if stream.start_time is None or stream.time_base is None:
        return 0.0
    return float(stream.start_time * stream.time_base)


async def test_the_hls_link_plays_the_whole_ladder_in_ffmpeg_with_no_headers(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str], tmp_path: Path
) -> None:
    alice = user("alice")
    clip = av_media.h264_mp4(tmp_path / "clip.mp4", width=640, height=360, seconds=SECONDS)
    media_id = await upload_single(
        http, fleet.media_url, fleet.auth(alice), clip.read_bytes(), "video/mp4"
    )
    document = await wait_for_state(
        http, fleet.media_url, fleet.auth(alice), media_id, within=PROCESSING_WITHIN
    )
    assert document["state"] == "ready", document

    asked_at = time.time()
    answer = await http.get(
        f"{fleet.media_url}/v1/media/{media_id}/url",
        params={"variant": "hls"},
        headers=fleet.auth(alice),
    )
    assert answer.status_code == 200, answer.text
    link = answer.json()
    # Valid for the duration plus the grace period (default 600 s).
    lifetime = datetime.fromisoformat(link["expires_at"]).timestamp() - asked_at
    assert SECONDS + DEFAULT_GRACE_SECONDS - 5 <= lifetime <= SECONDS + DEFAULT_GRACE_SECONDS + 60

    seen = await asyncio.to_thread(play_everything, link["url"])
    assert len(seen) >= 1
    for seconds in seen.values():
        assert seconds >= SECONDS - 0.5, seen

    # Each segment URL a rendition playlist hands out lives as long as the link (not 5 minutes).
    master = await http.get(link["url"])
    renditions = [u for u in master.text.splitlines() if u and not u.startswith("#")]
    assert len(seen) == len(renditions), (seen, master.text)  # every rendition was read
    rendition = renditions[0]
    playlist = await http.get(rendition)
    segment = next(u for u in playlist.text.splitlines() if u and not u.startswith("#"))
    query = parse_qs(urlsplit(segment).query)
    assert int(query["X-Amz-Expires"][0]) >= DEFAULT_GRACE_SECONDS


async def test_a_tampered_or_foreign_hls_link_is_refused(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str], tmp_path: Path
) -> None:
    alice, mallory = user("alice"), user("mallory")
    clip = av_media.h264_mp4(tmp_path / "clip.mp4", seconds=1)
    media_id = await upload_single(
        http, fleet.media_url, fleet.auth(alice), clip.read_bytes(), "video/mp4"
    )
    await wait_for_state(
        http, fleet.media_url, fleet.auth(alice), media_id, within=PROCESSING_WITHIN
    )
    link = (
        await http.get(
            f"{fleet.media_url}/v1/media/{media_id}/url",
            params={"variant": "hls"},
            headers=fleet.auth(alice),
        )
    ).json()["url"]
    assert (await http.get(link)).status_code == 200
    for forged in (
        link.replace("signature=", "signature=0"),
        link.replace(f"reader={alice}", f"reader={mallory}"),
        link.replace("expires=", "expires=9"),
    ):
        assert (await http.get(forged)).status_code == 404, forged
    # A stranger cannot get a link at all.
    stranger = await http.get(
        f"{fleet.media_url}/v1/media/{media_id}/url",
        params={"variant": "hls"},
        headers=fleet.auth(mallory),
    )
    assert stranger.status_code == 404
