"""Voice notes: voice_low (Ogg/Opus, mono, 48 kHz, ~24 kbit/s), duration, waveform, failures.

The inputs are encoded at run time by `tests.media_factory.av` (a 3 s tone, loud only in
`LOUD_SPAN`), so every expectation below follows from how they were made.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest

from tests.media_factory import av as media
from transcode_worker.derivatives.audio import VOICE_KEY, WAVEFORM_BUCKETS, Waveform, derive_voice
from transcode_worker.derivatives.av_probe import AvLimits
from transcode_worker.derivatives.types import DeriveError

LIMITS = AvLimits()
SECONDS = 3.0

Maker = Callable[[Path], Path]
VOICE_NOTES: dict[str, tuple[Maker, str]] = {
    "ogg_opus": (media.voice_ogg_opus, "audio/ogg"),
    "webm_opus": (media.voice_webm_opus, "audio/webm"),
    "m4a_aac": (media.voice_m4a_aac, "audio/mp4"),
    "adts_aac": (media.voice_adts_aac, "audio/aac"),
    "mp3": (media.voice_mp3, "audio/mpeg"),
}


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("voice_media")


@pytest.fixture(params=sorted(VOICE_NOTES))
def voice_note(request: pytest.FixtureRequest, media_dir: Path) -> tuple[Path, str]:
    name: str = request.param
    maker, mime = VOICE_NOTES[name]
    if name == "mp3" and not media.has_encoder("libmp3lame"):
        pytest.skip("this FFmpeg build has no MP3 encoder")
    path = media_dir / f"note_{name}"
    if not path.exists():
        maker(path)
    return path, mime


def loud_and_quiet_buckets(seconds: float) -> tuple[list[int], list[int]]:
    """Bucket indexes wholly inside the loud span, and wholly outside it (with a margin)."""
    width = seconds / WAVEFORM_BUCKETS
    start, end = media.LOUD_SPAN
    loud, quiet = [], []
    for index in range(WAVEFORM_BUCKETS):
        low, high = index * width, (index + 1) * width
        if low >= start and high <= end:
            loud.append(index)
        elif high <= start - width or low >= end + width:
            quiet.append(index)
    return loud, quiet


def test_voice_low_is_mono_ogg_opus_at_about_24_kbits(
    voice_note: tuple[Path, str], tmp_path: Path
) -> None:
    source, mime = voice_note
    derived = derive_voice(source, tmp_path, limits=LIMITS)

    assert [f.key for f in derived.files] == [VOICE_KEY]
    [variant] = derived.variants
    assert (variant.name, variant.key) == ("voice_low", VOICE_KEY)
    assert variant.content_type == "audio/ogg"
    output = derived.files[0].path
    assert variant.size == output.stat().st_size
    with av.open(str(output)) as container:
        assert container.format.name == "ogg"
        [stream] = container.streams.audio
        assert stream.codec_context.codec.canonical_name == "opus"
        assert stream.codec_context.channels == 1
        assert stream.codec_context.sample_rate == 48_000
    seconds = derived.meta["duration_ms"] / 1000
    kbits = variant.size * 8 / seconds / 1000
    assert 16 <= kbits <= 34, f"{kbits:.1f} kbit/s"  # 24 kbit/s of Opus plus Ogg pages
    assert derived.meta["mime"] == mime


def test_duration_and_waveform_follow_the_recording(
    voice_note: tuple[Path, str], tmp_path: Path
) -> None:
    source, _ = voice_note
    meta = derive_voice(source, tmp_path, limits=LIMITS).meta

    assert abs(meta["duration_ms"] - SECONDS * 1000) <= 50
    waveform = meta["waveform"]
    assert len(waveform) == WAVEFORM_BUCKETS
    assert all(isinstance(value, int) and 0 <= value <= 255 for value in waveform)
    assert max(waveform) == 255
    loud, quiet = loud_and_quiet_buckets(SECONDS)
    assert min(waveform[i] for i in loud) > 2 * max(waveform[i] for i in quiet)


def test_voice_from_a_video_file_uses_its_audio(media_dir: Path, tmp_path: Path) -> None:
    source = media.h264_mp4(media_dir / "clip.mp4", width=64, height=36, seconds=1.0)
    meta = derive_voice(source, tmp_path, limits=LIMITS).meta
    assert abs(meta["duration_ms"] - 1000) <= 50
    assert meta["mime"] == "audio/mp4"


def test_waveform_of_silence_is_flat_zero() -> None:
    waveform = Waveform()
    waveform.add(np.zeros(48_000, dtype=np.float32))
    assert waveform.buckets() == [0] * WAVEFORM_BUCKETS


def test_waveform_of_a_very_short_note_still_has_64_buckets() -> None:
    waveform = Waveform()
    waveform.add(np.linspace(0.0, 1.0, 2000, dtype=np.float32))  # 40 ms: 4 blocks
    buckets = waveform.buckets()
    assert len(buckets) == WAVEFORM_BUCKETS
    assert buckets[-1] == 255
    assert buckets == sorted(buckets)


def test_waveform_memory_is_bounded_and_shape_kept_for_long_recordings() -> None:
    waveform = Waveform(max_blocks=256)
    rate, chunk = 48_000, 4_800
    seconds = 600  # ten minutes, streamed in 100 ms chunks
    for index in range(seconds * rate // chunk):
        level = index / (seconds * rate // chunk)  # a slow crescendo
        waveform.add(np.full(chunk, level, dtype=np.float32))
        assert len(waveform._energy) <= 256
    buckets = waveform.buckets()
    assert waveform.samples == seconds * rate
    assert buckets == sorted(buckets)
    assert buckets[0] < 10
    assert buckets[-1] == 255


def test_too_long_fails_before_decoding(voice_note: tuple[Path, str], tmp_path: Path) -> None:
    source, _ = voice_note
    out_dir = tmp_path / "out"
    with pytest.raises(DeriveError) as raised:
        derive_voice(source, out_dir, limits=AvLimits(max_voice_duration_seconds=1))
    assert raised.value.code == "too_long"
    assert not out_dir.exists()


def test_codec_outside_the_allow_list(media_dir: Path, tmp_path: Path) -> None:
    source = media_dir / "note_ogg_opus_for_codec"
    media.voice_ogg_opus(source, seconds=0.5)
    with pytest.raises(DeriveError) as raised:
        derive_voice(source, tmp_path, limits=AvLimits(allowed_audio_codecs=frozenset({"aac"})))
    assert raised.value.code == "unsupported_codec"


def test_a_file_without_audio(media_dir: Path, tmp_path: Path) -> None:
    source = media.h264_mp4(media_dir / "silent.mp4", width=64, height=36, audio=False)
    with pytest.raises(DeriveError) as raised:
        derive_voice(source, tmp_path, limits=LIMITS)
    assert raised.value.code == "no_streams"


@pytest.mark.parametrize(
    ("maker", "codes"),
    [
        (media.wav, {"unsupported_format"}),  # magic bytes of no allowed container
        (media.id3_flac, {"unsupported_format"}),  # FFmpeg's format_whitelist refuses flac
        (media.random_bytes, {"unsupported_format", "corrupt_media"}),
    ],
)
def test_unsupported_or_corrupt_input(
    maker: Maker, codes: set[str], media_dir: Path, tmp_path: Path
) -> None:
    source = maker(media_dir / f"bad_{maker.__name__}")
    with pytest.raises(DeriveError) as raised:
        derive_voice(source, tmp_path, limits=LIMITS)
    assert raised.value.code in codes


def test_truncated_m4a_is_corrupt(media_dir: Path, tmp_path: Path) -> None:
    whole = media.voice_m4a_aac(media_dir / "whole.m4a")
    source = media.truncated(whole, media_dir / "cut.m4a")  # the moov box was at the end
    with pytest.raises(DeriveError) as raised:
        derive_voice(source, tmp_path, limits=LIMITS)
    assert raised.value.code == "corrupt_media"
