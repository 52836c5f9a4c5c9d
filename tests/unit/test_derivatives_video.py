"""Videos: poster and HLS ladder (upright, never upscaled, valid playlists), and failures.

Clips are encoded at run time by `tests.media_factory.av`; each shows a white marker in the
top-left corner of the picture *as displayed*, so a wrong turn or mirror moves it elsewhere.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from tests.media_factory import av as media
from transcode_worker.derivatives.av_probe import AvLimits
from transcode_worker.derivatives.types import Derived, DeriveError
from transcode_worker.derivatives.video import (
    MASTER_KEY,
    POSTER_KEY,
    Rung,
    derive_video,
    plan_ladder,
    read_media_playlist,
)

LIMITS = AvLimits()
LADDER = LIMITS.ladder


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("video_media")


@pytest.fixture(scope="module")
def phone_video(media_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Derived:
    """A phone held upright: stored 1280x720, tagged rotate 90, displayed 720x1280."""
    source = media.h264_mp4(media_dir / "phone.mp4", width=1280, height=720, rotate=90)
    return derive_video(source, tmp_path_factory.mktemp("phone_out"), limits=LIMITS)


def grey(picture: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    return np.asarray(picture, dtype=np.float64)


def assert_upright(picture: npt.NDArray[np.float64]) -> None:
    """The marker is in the top-left corner, and only there (sampled inside each corner)."""
    height, width = picture.shape[:2]
    rows = {"top": slice(height // 32, height * 7 // 32), "bottom": slice(-height * 7 // 32, None)}
    columns = {"left": slice(width // 32, width * 7 // 32), "right": slice(-width * 7 // 32, None)}
    means = {f"{r}-{c}": float(picture[rows[r], columns[c]].mean()) for r in rows for c in columns}
    assert means["top-left"] > 200, means
    assert all(value < 100 for key, value in means.items() if key != "top-left"), means


def first_frame(segment: Path) -> av.VideoFrame:
    with av.open(str(segment)) as container:
        for frame in container.decode(video=0):
            return frame
    raise AssertionError(f"{segment}: no frame")


def master_entries(derived: Derived) -> list[tuple[dict[str, str], str]]:
    master = next(f.path for f in derived.files if f.key == MASTER_KEY)
    lines = master.read_text().splitlines()
    assert lines[0] == "#EXTM3U"
    entries = []
    for index, line in enumerate(lines):
        if line.startswith("#EXT-X-STREAM-INF:"):
            attributes = dict(
                re.findall(r'([A-Z-]+)=("[^"]*"|[^,]*)', line.removeprefix("#EXT-X-STREAM-INF:"))
            )
            entries.append((attributes, lines[index + 1]))
    return entries


def rung_heights(derived: Derived) -> list[str]:
    return [uri.split("/")[0] for _, uri in master_entries(derived)]


# The ladder plan (pure).


@pytest.mark.parametrize(
    ("width", "height", "expected"),
    [
        (1920, 1080, [Rung("360p", 640, 360, 800_000), Rung("720p", 1280, 720, 2_500_000)]),
        (1080, 1920, [Rung("360p", 360, 640, 800_000), Rung("720p", 720, 1280, 2_500_000)]),
        (1280, 720, [Rung("360p", 640, 360, 800_000), Rung("720p", 1280, 720, 2_500_000)]),
        (854, 480, [Rung("360p", 640, 360, 800_000)]),
        (640, 480, [Rung("360p", 480, 360, 800_000)]),
        (640, 360, [Rung("360p", 640, 360, 800_000)]),
    ],
)
def test_ladder_never_goes_above_the_source(width: int, height: int, expected: list[Rung]) -> None:
    assert plan_ladder(width, height, LADDER) == expected


@pytest.mark.parametrize(
    ("width", "height", "size"),
    [(426, 240, (426, 240)), (175, 99, (174, 98)), (99, 175, (98, 174))],
)
def test_a_source_below_the_ladder_gets_one_rung_at_its_own_even_size(
    width: int, height: int, size: tuple[int, int]
) -> None:
    [rung] = plan_ladder(width, height, LADDER)
    assert (rung.width, rung.height) == size
    assert rung.name == f"{min(size)}p"
    assert 100_000 <= rung.bitrate < 800_000


# A rotated phone video.


def test_rotated_phone_video_is_shown_upright(phone_video: Derived) -> None:
    assert (phone_video.meta["width"], phone_video.meta["height"]) == (720, 1280)
    assert phone_video.meta["video_codec"] == "h264"
    assert phone_video.meta["has_audio"] is True
    assert phone_video.meta["mime"] == "video/mp4"
    assert abs(phone_video.meta["duration_ms"] - 1000) <= 50

    poster = next(f.path for f in phone_video.files if f.key == POSTER_KEY)
    with Image.open(poster) as image:
        assert image.format == "JPEG"
        assert image.size == (720, 1280)
        assert_upright(grey(np.asarray(image.convert("L"))))


def test_every_rung_is_upright_and_carries_no_rotation(phone_video: Derived) -> None:
    assert rung_heights(phone_video) == ["360p", "720p"]
    for attributes, uri in master_entries(phone_video):
        segment = next(
            f.path for f in phone_video.files if f.key == f"hls/{uri.split('/')[0]}/seg_00000.ts"
        )
        frame = first_frame(segment)
        assert f"{frame.width}x{frame.height}" == attributes["RESOLUTION"]
        assert frame.width < frame.height
        assert frame.rotation == 0
        assert_upright(grey(frame.to_ndarray(format="gray")))


def test_variants_and_files_follow_the_contract(phone_video: Derived) -> None:
    poster, hls = phone_video.variants
    assert (poster.name, poster.key, poster.content_type) == ("poster", POSTER_KEY, "image/jpeg")
    assert (hls.name, hls.key) == ("hls", "hls/master.m3u8")
    assert hls.content_type == "application/vnd.apple.mpegurl"
    assert (hls.width, hls.height) == (720, 1280)
    by_key = {f.key: f for f in phone_video.files}
    assert poster.size == by_key[POSTER_KEY].path.stat().st_size
    assert hls.size == by_key[MASTER_KEY].path.stat().st_size
    for key, file in by_key.items():
        assert file.path.is_file()
        if key.endswith(".m3u8"):
            assert file.content_type == "application/vnd.apple.mpegurl"
        elif key.endswith(".ts"):
            assert re.fullmatch(r"hls/\d+p/seg_\d{5}\.ts", key)
            assert file.content_type == "video/mp2t"
        else:
            assert key == POSTER_KEY


def test_master_playlist_lists_every_rung_and_every_uri_exists(phone_video: Derived) -> None:
    by_key = {f.key: f for f in phone_video.files}
    entries = master_entries(phone_video)
    assert len(entries) == 2
    for attributes, uri in entries:
        assert int(attributes["BANDWIDTH"]) >= int(attributes["AVERAGE-BANDWIDTH"]) > 0
        assert re.fullmatch(r"\d+x\d+", attributes["RESOLUTION"])
        assert re.fullmatch(r'"avc1\.[0-9a-f]{6},mp4a\.40\.2"', attributes["CODECS"])
        assert re.fullmatch(r"\d+p/index\.m3u8", uri)  # relative
        playlist_key = f"hls/{uri}"
        assert playlist_key in by_key
        text = by_key[playlist_key].path.read_text()
        assert "#EXT-X-ENDLIST" in text
        assert "#EXT-X-PLAYLIST-TYPE:VOD" in text
        segments = read_media_playlist(by_key[playlist_key].path)
        for segment in segments:
            assert f"hls/{uri.split('/')[0]}/{segment.uri}" in by_key
        assert abs(sum(s.seconds for s in segments) - 1.0) < 0.1


@pytest.mark.parametrize("rotate", [0, 90, 180, 270])
def test_every_orientation_is_turned_upright(rotate: int, media_dir: Path, tmp_path: Path) -> None:
    source = media.h264_mp4(
        media_dir / f"turn_{rotate}.mp4", width=192, height=108, rotate=rotate, audio=False
    )
    derived = derive_video(source, tmp_path, limits=LIMITS)
    shown = (108, 192) if rotate in (90, 270) else (192, 108)
    assert (derived.meta["width"], derived.meta["height"]) == shown
    assert derived.meta["has_audio"] is False
    with Image.open(tmp_path / POSTER_KEY) as image:
        assert image.size == (shown[0] // 2 * 2, shown[1] // 2 * 2)
        assert_upright(grey(np.asarray(image.convert("L"))))


# Ladders and segments.


def test_a_480p_source_gets_only_the_360p_rung(media_dir: Path, tmp_path: Path) -> None:
    source = media.h264_mp4(media_dir / "480p.mp4", width=854, height=480, audio=False)
    derived = derive_video(source, tmp_path, limits=LIMITS)
    assert rung_heights(derived) == ["360p"]
    [(attributes, _)] = master_entries(derived)
    assert attributes["RESOLUTION"] == "640x360"
    assert re.fullmatch(r'"avc1\.[0-9a-f]{6}"', attributes["CODECS"])  # no audio, no mp4a


def test_a_240p_source_gets_one_rung_at_its_own_size(media_dir: Path, tmp_path: Path) -> None:
    source = media.h264_mp4(media_dir / "240p.mp4", width=426, height=240)
    derived = derive_video(source, tmp_path, limits=LIMITS)
    [(attributes, uri)] = master_entries(derived)
    assert (uri, attributes["RESOLUTION"]) == ("240p/index.m3u8", "426x240")
    assert (derived.variants[1].width, derived.variants[1].height) == (426, 240)


def test_segments_are_aligned_across_rungs_and_each_starts_with_a_keyframe(
    media_dir: Path, tmp_path: Path
) -> None:
    source = media.h264_mp4(media_dir / "aligned.mp4", width=320, height=180, seconds=3.4)
    limits = AvLimits(ladder=((90, 150_000), (180, 300_000)), segment_seconds=1)
    derived = derive_video(source, tmp_path, limits=limits)
    durations = []
    for rung in ("90p", "180p"):
        segments = read_media_playlist(tmp_path / "hls" / rung / "index.m3u8")
        durations.append([round(s.seconds, 2) for s in segments])
        for segment in segments:  # every segment decodes on its own
            frame = first_frame(tmp_path / "hls" / rung / segment.uri)
            assert frame.key_frame
    assert durations[0] == durations[1] == [1.0, 1.0, 1.0, 0.4]
    assert derived.meta["duration_ms"] == 3400


def _audio_of(playlist: Path) -> tuple[list[bytes], float]:
    """Every AAC packet of a rung, in order, and the audio's length in seconds."""
    packets: list[bytes] = []
    samples = 0
    with av.open(str(playlist)) as container:
        stream = container.streams.audio[0]
        for packet in container.demux(stream):
            if packet.size:
                packets.append(bytes(packet))
                samples += sum(frame.samples for frame in packet.decode())
    return packets, samples / 48_000


def test_every_rung_carries_the_same_complete_audio(media_dir: Path, tmp_path: Path) -> None:
    source = media.h264_mp4(media_dir / "two_rungs.mp4", width=320, height=180, seconds=2.5)
    limits = AvLimits(ladder=((90, 150_000), (180, 300_000)), segment_seconds=1)
    derive_video(source, tmp_path, limits=limits)
    low, low_seconds = _audio_of(tmp_path / "hls" / "90p" / "index.m3u8")
    high, high_seconds = _audio_of(tmp_path / "hls" / "180p" / "index.m3u8")
    assert low == high  # the same AAC packets in both rungs (encoded once, muxed twice)
    assert len(low) > 100
    assert low_seconds == high_seconds == pytest.approx(2.5, abs=0.1)


def test_hevc_mov_decodes_into_hls(media_dir: Path, tmp_path: Path) -> None:
    source = media.hevc_mov(media_dir / "clip.mov")
    derived = derive_video(source, tmp_path, limits=LIMITS)
    assert derived.meta["video_codec"] == "hevc"
    assert derived.meta["mime"] == "video/quicktime"
    assert rung_heights(derived) == ["180p"]
    assert_upright(grey(first_frame(tmp_path / "hls/180p/seg_00000.ts").to_ndarray(format="gray")))


def test_vp9_webm_decodes_into_hls(media_dir: Path, tmp_path: Path) -> None:
    source = media.vp9_webm(media_dir / "clip.webm")
    derived = derive_video(source, tmp_path, limits=LIMITS)
    assert derived.meta["video_codec"] == "vp9"
    assert derived.meta["mime"] == "video/webm"
    assert derived.meta["has_audio"] is False
    assert rung_heights(derived) == ["180p"]


# Failures.


def test_truncated_mp4_is_corrupt(media_dir: Path, tmp_path: Path) -> None:
    whole = media.h264_mp4(media_dir / "whole.mp4", width=160, height=90)
    source = media.truncated(whole, media_dir / "cut.mp4")  # the moov box was at the end
    with pytest.raises(DeriveError) as raised:
        derive_video(source, tmp_path, limits=LIMITS)
    assert raised.value.code == "corrupt_media"


def test_random_bytes_are_refused(media_dir: Path, tmp_path: Path) -> None:
    source = media.random_bytes(media_dir / "noise.mp4")
    with pytest.raises(DeriveError) as raised:
        derive_video(source, tmp_path, limits=LIMITS)
    assert raised.value.code in {"unsupported_format", "corrupt_media"}


def test_too_long_fails_before_decoding(media_dir: Path, tmp_path: Path) -> None:
    source = media.h264_mp4(media_dir / "long.mp4", width=160, height=90, seconds=2.0)
    out_dir = tmp_path / "out"
    with pytest.raises(DeriveError) as raised:
        derive_video(source, out_dir, limits=AvLimits(max_video_duration_seconds=1))
    assert raised.value.code == "too_long"
    assert not out_dir.exists()  # nothing was decoded, nothing written


def test_too_many_frames_fails_before_decoding(media_dir: Path, tmp_path: Path) -> None:
    source = media.h264_mp4(media_dir / "frames.mp4", width=160, height=90, seconds=1.0)
    with pytest.raises(DeriveError) as raised:
        derive_video(source, tmp_path / "out", limits=AvLimits(max_frames=10))
    assert raised.value.code == "too_many_frames"
    assert not (tmp_path / "out").exists()


def test_too_large_dimensions(media_dir: Path, tmp_path: Path) -> None:
    source = media.h264_mp4(media_dir / "wide.mp4", width=320, height=180, audio=False)
    with pytest.raises(DeriveError) as raised:
        derive_video(source, tmp_path, limits=AvLimits(max_width=256, max_height=256))
    assert raised.value.code == "too_large_dimensions"


def test_codec_outside_the_allow_list(media_dir: Path, tmp_path: Path) -> None:
    source = media.mjpeg_mov(media_dir / "mjpeg.mov")
    h264_only = dataclasses.replace(LIMITS, allowed_video_codecs=frozenset({"h264"}))
    with pytest.raises(DeriveError) as raised:
        derive_video(source, tmp_path, limits=h264_only)
    assert raised.value.code == "unsupported_codec"


def test_a_voice_note_is_not_a_video(media_dir: Path, tmp_path: Path) -> None:
    source = media.voice_ogg_opus(media_dir / "note.ogg", seconds=0.5)
    with pytest.raises(DeriveError) as raised:
        derive_video(source, tmp_path, limits=LIMITS)
    assert raised.value.code == "no_streams"
