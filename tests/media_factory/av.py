"""Audio and video test media, encoded at run time with PyAV (no binary fixtures).

Every function writes one file and returns its path. Voice notes are a harmonic tone whose
loudness steps up in `LOUD_SPAN` (so a waveform has a known shape); videos show a white marker
in the top-left corner of the *displayed* picture (so a test can tell upright from rotated or
mirrored) over a moving gradient (so encoders have work to do).
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
from av.audio.stream import AudioStream
from av.video.stream import VideoStream

VOICE_RATE = 48_000
LOUD_SPAN = (1.0, 2.0)  # seconds of a voice note at LOUD_LEVEL; the rest is at QUIET_LEVEL
LOUD_LEVEL = 0.8
QUIET_LEVEL = 0.08
MARKER_FRACTION = 4  # the marker covers the top-left 1/4 x 1/4 of the displayed picture

Samples = npt.NDArray[np.float32]
Picture = npt.NDArray[np.uint8]


def has_encoder(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
    except (av.error.FFmpegError, ValueError):
        return False
    return True


def voice_samples(seconds: float, rate: int = VOICE_RATE) -> Samples:
    """A mono voice-like signal: three harmonics, quiet except in LOUD_SPAN."""
    t = np.arange(round(seconds * rate), dtype=np.float64) / rate
    tone = (
        0.6 * np.sin(2 * np.pi * 220 * t)
        + 0.3 * np.sin(2 * np.pi * 440 * t)
        + 0.1 * np.sin(2 * np.pi * 880 * t)
    )
    # A little noise, as a microphone has: a pure tone is unrealistically cheap to encode.
    noise = np.random.default_rng(7).normal(0.0, 0.05, t.shape)
    level = np.where((t >= LOUD_SPAN[0]) & (t < LOUD_SPAN[1]), LOUD_LEVEL, QUIET_LEVEL)
    return np.asarray(np.clip(level * (tone + noise), -1.0, 1.0), dtype=np.float32)


def _audio_frames(
    samples: Samples, rate: int, channels: int, chunk: int = 1024
) -> Iterator[av.AudioFrame]:
    layout = "mono" if channels == 1 else "stereo"
    for start in range(0, len(samples), chunk):
        block = samples[start : start + chunk]
        planar = np.ascontiguousarray(np.repeat(block[np.newaxis, :], channels, axis=0))
        frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout=layout)
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        yield frame


def _write_audio(
    target: Path | io.BytesIO,
    *,
    container_format: str,
    codec: str,
    samples: Samples,
    rate: int,
    bit_rate: int | None = None,
) -> None:
    with av.open(
        str(target) if isinstance(target, Path) else target, mode="w", format=container_format
    ) as output:
        stream = output.add_stream(codec, rate=rate, layout="mono")
        assert isinstance(stream, AudioStream)
        if bit_rate is not None:
            stream.bit_rate = bit_rate
        for frame in _audio_frames(samples, rate, channels=1):
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))


def voice_ogg_opus(path: Path, *, seconds: float = 3.0) -> Path:
    """An Ogg/Opus voice note, mono 48 kHz (what a phone's recorder makes)."""
    _write_audio(
        path,
        container_format="ogg",
        codec="libopus",
        samples=voice_samples(seconds),
        rate=VOICE_RATE,
        bit_rate=32_000,
    )
    return path


def voice_webm_opus(path: Path, *, seconds: float = 3.0) -> Path:
    """A WebM/Opus voice note, mono 48 kHz (what a browser's MediaRecorder makes)."""
    _write_audio(
        path,
        container_format="webm",
        codec="libopus",
        samples=voice_samples(seconds),
        rate=VOICE_RATE,
        bit_rate=32_000,
    )
    return path


def voice_m4a_aac(path: Path, *, seconds: float = 3.0) -> Path:
    """An M4A (AAC-LC) voice note at 44.1 kHz, so the derivation has to resample."""
    _write_audio(
        path,
        container_format="ipod",
        codec="aac",
        samples=voice_samples(seconds, rate=44_100),
        rate=44_100,
        bit_rate=64_000,
    )
    return path


def voice_adts_aac(path: Path, *, seconds: float = 3.0) -> Path:
    """Raw AAC in ADTS frames (`audio/aac`), mono 48 kHz."""
    _write_audio(
        path,
        container_format="adts",
        codec="aac",
        samples=voice_samples(seconds),
        rate=VOICE_RATE,
        bit_rate=64_000,
    )
    return path


def voice_mp3(path: Path, *, seconds: float = 3.0) -> Path:
    """An MP3 voice note (call `has_encoder("libmp3lame")` first)."""
    _write_audio(
        path,
        container_format="mp3",
        codec="libmp3lame",
        samples=voice_samples(seconds, rate=44_100),
        rate=44_100,
        bit_rate=64_000,
    )
    return path


def display_scene(width: int, height: int, index: int) -> Picture:
    """Frame `index` as it must be displayed: marker top-left, a band moving to the right."""
    picture = np.full((height, width, 3), 40, dtype=np.uint8)
    columns = (np.arange(width, dtype=np.int64) * 3 + index * 8) % 256
    band = slice(height // 2, height // 2 + max(2, height // 4))
    picture[band, :, 1] = columns.astype(np.uint8)[np.newaxis, :]
    picture[band, :, 2] = 255 - columns.astype(np.uint8)[np.newaxis, :]
    picture[: height // MARKER_FRACTION, : width // MARKER_FRACTION] = 255
    return picture


def video(
    path: Path,
    *,
    width: int,
    height: int,
    seconds: float,
    fps: int = 25,
    codec: str = "libx264",
    container_format: str = "mp4",
    rotate: int = 0,
    audio: bool = True,
    faststart: bool = False,
    codec_options: dict[str, str] | None = None,
    pix_fmt: str = "yuv420p",
) -> Path:
    """A clip stored as `width`x`height`, tagged to be shown rotated `rotate` degrees clockwise.

    `rotate` is what phones write (the old `rotate` tag, 0/90/180/270): a phone held upright
    stores a landscape picture tagged 90, displayed `height`x`width`. PyAV 18 writes it as the
    stream's display matrix (`set_display_rotation` takes counter-clockwise degrees), which the
    mp4/mov muxers store in the track header; a `rotate` metadata entry is not honoured any more.
    """
    if rotate % 90:
        raise ValueError("rotate must be a multiple of 90")
    quarter_turns = (rotate // 90) % 4
    shown_w, shown_h = (height, width) if quarter_turns % 2 else (width, height)
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), mode="w", format=container_format, options=options) as output:
        stream = output.add_stream(codec, rate=fps, options=codec_options or {})
        assert isinstance(stream, VideoStream)
        stream.width = width
        stream.height = height
        stream.pix_fmt = pix_fmt
        if quarter_turns:
            stream.set_display_rotation(-90 * quarter_turns)
        sound = output.add_stream("aac", rate=48_000, layout="stereo") if audio else None
        samples = voice_samples(seconds) if audio else None
        sound_frames = (
            _audio_frames(samples, 48_000, channels=2) if samples is not None else iter(())
        )
        sound_pts = 0
        for index in range(round(seconds * fps)):
            # Stored = displayed turned back counter-clockwise, so the player's turn undoes it.
            picture = np.ascontiguousarray(
                np.rot90(display_scene(shown_w, shown_h, index), k=quarter_turns)
            )
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = index
            frame.time_base = Fraction(1, fps)
            output.mux(stream.encode(frame))
            while sound is not None and sound_pts * fps <= (index + 1) * 48_000:
                chunk = next(sound_frames, None)
                if chunk is None:
                    break
                sound_pts += chunk.samples
                output.mux(sound.encode(chunk))
        output.mux(stream.encode(None))
        if sound is not None:
            for chunk in sound_frames:
                output.mux(sound.encode(chunk))
            output.mux(sound.encode(None))
    return path


def h264_mp4(
    path: Path,
    *,
    width: int = 320,
    height: int = 180,
    seconds: float = 1.0,
    rotate: int = 0,
    audio: bool = True,
    faststart: bool = False,
) -> Path:
    return video(
        path,
        width=width,
        height=height,
        seconds=seconds,
        rotate=rotate,
        audio=audio,
        faststart=faststart,
    )


def vp9_webm(path: Path, *, width: int = 320, height: int = 180, seconds: float = 1.0) -> Path:
    """A WebM clip: VP9 video, Opus audio (what browsers record)."""
    return video(
        path,
        width=width,
        height=height,
        seconds=seconds,
        codec="libvpx-vp9",
        container_format="webm",
        audio=False,
        codec_options={"deadline": "realtime", "cpu-used": "8"},
    )


def hevc_mov(path: Path, *, width: int = 320, height: int = 180, seconds: float = 1.0) -> Path:
    return video(
        path,
        width=width,
        height=height,
        seconds=seconds,
        codec="libx265",
        container_format="mov",
        codec_options={"x265-params": "log-level=error"},
    )


def mjpeg_mov(path: Path, *, width: int = 160, height: int = 90, seconds: float = 0.4) -> Path:
    """A codec outside the video allow-list in an allowed container."""
    return video(
        path,
        width=width,
        height=height,
        seconds=seconds,
        codec="mjpeg",
        container_format="mov",
        audio=False,
        pix_fmt="yuvj420p",
    )


def clip_720p(path: Path, *, seconds: float = 30.0) -> Path:
    """A 720p30 H.264 + AAC clip (the benchmark's input; too slow for unit tests)."""
    return video(path, width=1280, height=720, seconds=seconds, fps=30)


def wav(path: Path, *, seconds: float = 0.5) -> Path:
    """PCM in WAV: a container outside the allow-list."""
    _write_audio(
        path,
        container_format="wav",
        codec="pcm_s16le",
        samples=voice_samples(seconds),
        rate=VOICE_RATE,
    )
    return path


def id3_flac(path: Path, *, seconds: float = 0.5) -> Path:
    """FLAC behind an ID3 tag: passes an MP3 magic-byte check, but FFmpeg picks the flac
    demuxer, which is outside the allow-list."""
    with io.BytesIO() as buffer:
        _write_audio(
            buffer,
            container_format="flac",
            codec="flac",
            samples=voice_samples(seconds),
            rate=VOICE_RATE,
        )
        flac = buffer.getvalue()
    path.write_bytes(b"ID3\x04\x00\x00\x00\x00\x00\x00" + flac)
    return path


def truncated(source: Path, path: Path, *, keep: float = 0.5) -> Path:
    """The first `keep` fraction of `source`'s bytes (an upload cut short)."""
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def random_bytes(path: Path, *, size: int = 64 * 1024, seed: int = 1) -> Path:
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


LOCATION = "+52.3700+004.8900/"


def _box(kind: bytes, body: bytes) -> bytes:
    return (len(body) + 8).to_bytes(4, "big") + kind + body


def location_udta(location: str = LOCATION) -> bytes:
    """A `udta` box as phones write it: the QuickTime `©xyz` location and `©mak` maker atoms."""

    def text_atom(kind: bytes, text: str) -> bytes:
        value = text.encode()
        return _box(kind, len(value).to_bytes(2, "big") + b"\x15\xc7" + value)

    return _box(b"udta", text_atom(b"\xa9xyz", location) + text_atom(b"\xa9mak", "FerryPhone"))


def mp4_with_location(
    path: Path, *, seconds: float = 1.0, faststart: bool = False, location: str = LOCATION
) -> Path:
    """An H.264 MP4 whose `moov` carries a `udta` with a `©xyz` location atom.

    Without `faststart` the `moov` is the last box, so appending to it moves no chunk; with it
    the `moov` comes first and every chunk offset (`stco`) is raised by the bytes added."""
    h264_mp4(path, seconds=seconds, width=320, height=180, audio=True, faststart=faststart)
    data = bytearray(path.read_bytes())
    position = 0
    while position < len(data):
        size = int.from_bytes(data[position : position + 4], "big")
        if data[position + 4 : position + 8] == b"moov":
            break
        position += size
    else:
        raise AssertionError("no moov box")
    extra = location_udta(location)
    end = position + size
    if faststart:
        _raise_chunk_offsets(data, position, end, len(extra))
    data[position : position + 4] = (size + len(extra)).to_bytes(4, "big")
    data[end:end] = extra
    path.write_bytes(bytes(data))
    return path


def _raise_chunk_offsets(data: bytearray, start: int, end: int, by: int) -> None:
    """Add `by` to every `stco` entry inside [start, end) (the test clips never need `co64`)."""
    position = start + 8
    while position + 8 <= end:
        size = int.from_bytes(data[position : position + 4], "big")
        kind = bytes(data[position + 4 : position + 8])
        if kind in (b"trak", b"mdia", b"minf", b"stbl"):
            _raise_chunk_offsets(data, position, position + size, by)
        elif kind == b"stco":
            count = int.from_bytes(data[position + 12 : position + 16], "big")
            for index in range(count):
                at = position + 16 + 4 * index
                value = int.from_bytes(data[at : at + 4], "big") + by
                data[at : at + 4] = value.to_bytes(4, "big")
        position += size
