"""Opening audio and video originals safely: allow-lists, caps and orientation (PyAV).

Every check here happens before a single frame is decoded for real: the magic bytes must be
those of an allowed container, FFmpeg may only pick an allow-listed demuxer (`format_whitelist`)
and probe with allow-listed decoders (`codec_whitelist`), reading a bounded amount
(`probesize`, `analyzeduration`); then streams, codecs, durations, dimensions and frame counts
are checked against `AvLimits`. Decoding itself goes through `decode()`, which caps packets and
turns FFmpeg's errors into `DeriveError("corrupt_media")`.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
from av.audio.stream import AudioStream
from av.container import InputContainer
from av.sidedata.sidedata import SideData
from av.stream import Disposition
from av.video.stream import VideoStream

from shared.content_types import SNIFF_BYTES, looks_like
from transcode_worker.derivatives.types import DeriveError

# FFmpeg demuxer names (a demuxer's name may list several, e.g. "mov,mp4,m4a,3gp,3g2,mj2").
# "aac" is the raw ADTS demuxer: the Media Service accepts `audio/aac` voice notes; "amr" reads
# `.amr` files (AMR-NB and AMR-WB storage format, `audio/amr`).
DEFAULT_FORMATS = frozenset(
    {"mov", "mp4", "m4a", "3gp", "matroska", "webm", "ogg", "mp3", "aac", "amr"}
)
# The decoder allow-list, as codec names (FFmpeg's codec descriptors; every decoder FFmpeg has
# for one of them may run). Each one is attack surface: add a codec only when phones or
# cameras send it. PCM variants are the ones cameras and recorders write (integer and float,
# both byte orders, G.711 A-law and mu-law).
PCM_CODECS = frozenset(
    {
        "pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_s24be", "pcm_s32le", "pcm_s32be",
        "pcm_f32le", "pcm_f32be", "pcm_u8", "pcm_s8", "pcm_alaw", "pcm_mulaw",
    }
)  # fmt: skip
DEFAULT_AUDIO_CODECS = frozenset(
    {"opus", "vorbis", "aac", "mp3", "alac", "flac", "amr_nb", "amr_wb"} | PCM_CODECS
)
# H.264, HEVC, VP8/9, AV1; MPEG-4 Part 2 and H.263 (older phones, 3GP, MMS), MJPEG (cameras,
# dashcams), ProRes (pro cameras, iPhone ProRes).
DEFAULT_VIDEO_CODECS = frozenset(
    {"h264", "hevc", "vp8", "vp9", "av1", "mpeg4", "h263", "h263p", "mjpeg", "prores"}
)
# Demuxers and their magic bytes (shared.content_types): nothing else reaches FFmpeg's probe.
_CONTAINER_SIGNATURES = (
    "video/mp4", "video/webm", "audio/ogg", "audio/mpeg", "audio/aac", "audio/amr",
)  # fmt: skip

MINUTE = 60.0


@dataclass(frozen=True, kw_only=True)
class AvLimits:
    """What an audio or video original may be, and what its derivatives are. Picklable."""

    max_voice_duration_seconds: float = 30 * MINUTE
    max_video_duration_seconds: float = 30 * MINUTE
    max_width: int = 8192
    max_height: int = 8192
    max_frames: int = 30 * 60 * 60  # decoded video frames: 30 minutes at 60 fps
    max_packets: int = 1_000_000  # demuxed packets, every stream together
    probe_bytes: int = 5_000_000  # FFmpeg's probesize
    probe_seconds: float = 5.0  # FFmpeg's analyzeduration
    # HLS ladder: (short side in pixels, video bit rate). A rung is "720p" for 1280x720 and
    # for a portrait 720x1280 alike; no rung is ever larger than the source.
    ladder: tuple[tuple[int, int], ...] = ((360, 800_000), (720, 2_500_000))
    audio_bitrate: int = 96_000  # AAC in every HLS rung
    voice_bitrate: int = 24_000  # Opus voice_low
    segment_seconds: int = 4
    poster_seconds: float = 1.0  # the poster is the frame at min(this, duration / 2)
    allowed_formats: frozenset[str] = DEFAULT_FORMATS
    allowed_audio_codecs: frozenset[str] = DEFAULT_AUDIO_CODECS
    allowed_video_codecs: frozenset[str] = DEFAULT_VIDEO_CODECS


@functools.cache
def _decoders_for(codecs: frozenset[str]) -> str:
    """Every decoder FFmpeg has for the allowed codecs (e.g. mp3 -> mp3float,mp3)."""
    names = []
    for name in sorted(av.codecs_available):
        try:
            codec = av.codec.Codec(name, "r")
        except (av.error.FFmpegError, ValueError):
            continue  # an encoder only
        if codec.canonical_name in codecs:
            names.append(name)
    return ",".join(names)


def open_options(limits: AvLimits) -> dict[str, str]:
    return {
        "format_whitelist": ",".join(sorted(limits.allowed_formats)),
        "codec_whitelist": _decoders_for(limits.allowed_audio_codecs | limits.allowed_video_codecs),
        "protocol_whitelist": "file",
        "probesize": str(limits.probe_bytes),
        "analyzeduration": str(int(limits.probe_seconds * 1_000_000)),
    }


def open_input(source: Path, limits: AvLimits) -> InputContainer:
    """Open an original for reading, or fail with the contract's error code."""
    with source.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
    if not any(looks_like(kind, head) for kind in _CONTAINER_SIGNATURES):
        raise DeriveError("unsupported_format", "not an audio or video container we accept")
    try:
        container = av.open(str(source), mode="r", options=open_options(limits))
    except av.error.ArgumentError as error:
        # EINVAL: FFmpeg recognised the bytes as a demuxer outside `format_whitelist`.
        raise DeriveError("unsupported_format", "container format not accepted") from error
    except (av.error.FFmpegError, ValueError) as error:
        raise DeriveError("corrupt_media", "the container cannot be read") from error
    if not set(container.format.name.split(",")) & limits.allowed_formats:
        container.close()
        raise DeriveError("unsupported_format", f"container {container.format.name} not accepted")
    return container


def container_family(container: InputContainer) -> str:
    """The first allowed name of the demuxer: mov, matroska, ogg, mp3 or aac."""
    return container.format.name.split(",")[0]


def best_audio(container: InputContainer) -> AudioStream | None:
    streams = list(container.streams.audio)
    return max(streams, key=_stream_rank) if streams else None


def best_video(container: InputContainer) -> VideoStream | None:
    """The main video stream; cover art (an attached picture) is not a video."""
    streams = [
        stream
        for stream in container.streams.video
        if not stream.disposition & Disposition.attached_pic
    ]
    return max(streams, key=_stream_rank) if streams else None


def _stream_rank(stream: AudioStream | VideoStream) -> tuple[bool, int]:
    return (bool(stream.disposition & Disposition.default), -stream.index)


def codec_name(stream: AudioStream | VideoStream) -> str:
    """The codec's descriptor name (`mp3`, `av1`), whichever decoder FFmpeg would use."""
    return stream.codec_context.codec.canonical_name


def check_codec(stream: AudioStream | VideoStream, allowed: frozenset[str]) -> str:
    name = codec_name(stream)
    if name not in allowed:
        raise DeriveError("unsupported_codec", f"{stream.type} codec {name} not accepted")
    return name


def declared_seconds(container: InputContainer, stream: AudioStream | VideoStream) -> float | None:
    """The duration the container declares (a claim: decoding re-checks it)."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def check_declared_duration(
    container: InputContainer, stream: AudioStream | VideoStream, cap: float
) -> float | None:
    seconds = declared_seconds(container, stream)
    if seconds is not None and seconds > cap:
        raise DeriveError("too_long", f"{seconds:.0f} s is longer than {cap:.0f} s")
    return seconds


def check_dimensions(width: int, height: int, limits: AvLimits) -> None:
    if width <= 0 or height <= 0:
        raise DeriveError("corrupt_media", "the video has no dimensions")
    if width > limits.max_width or height > limits.max_height:
        raise DeriveError(
            "too_large_dimensions",
            f"{width}x{height} exceeds {limits.max_width}x{limits.max_height}",
        )


def check_stored_dimensions(width: int, height: int, limits: AvLimits) -> None:
    """Before the first frame the orientation is unknown: the stored size must fit the caps
    either way up (`check_dimensions` applies them exactly once the display size is known)."""
    if width <= 0 or height <= 0:
        raise DeriveError("corrupt_media", "the video has no dimensions")
    fits = (width <= limits.max_width and height <= limits.max_height) or (
        height <= limits.max_width and width <= limits.max_height
    )
    if not fits:
        raise DeriveError(
            "too_large_dimensions",
            f"{width}x{height} exceeds {limits.max_width}x{limits.max_height}",
        )


def check_frame_count(stream: VideoStream, declared: float | None, limits: AvLimits) -> None:
    """The frame count the container states, or duration x frame rate: a claim, re-checked
    while decoding."""
    frames = stream.frames
    if not frames and declared is not None and stream.average_rate:
        frames = math.ceil(declared * stream.average_rate)
    if frames > limits.max_frames:
        raise DeriveError("too_many_frames", f"{frames} frames, more than {limits.max_frames}")


def decode(
    container: InputContainer, *streams: AudioStream | VideoStream, max_packets: int
) -> Iterator[av.AudioFrame | av.VideoFrame]:
    """Demux and decode `streams` in file order; FFmpeg errors become `corrupt_media`.

    Only the demuxing and decoding sit inside the `try`: what the caller does with a frame
    (encoding, writing) raises its own errors.
    """
    packets = 0
    try:
        for packet in container.demux(*streams):
            packets += 1
            if packets > max_packets:
                raise DeriveError("too_many_frames", f"more than {max_packets} packets")
            for frame in packet.decode():
                if isinstance(frame, av.AudioFrame | av.VideoFrame):
                    yield frame
    except (av.error.FFmpegError, ValueError) as error:
        raise DeriveError("corrupt_media", "the media cannot be decoded") from error


# Orientation: FFmpeg's own autorotation (fftools), as filter steps applied after scaling.
Transform = tuple[str, ...]
_FIXED_ONE = 65536.0


def display_transform(frame: av.VideoFrame) -> Transform:
    """Filters that turn a stored frame upright, from its display matrix (empty: none).

    Mirrors `ffmpeg`'s autorotate: quarter turns become a `transpose`, half turns and mirror
    images `hflip`/`vflip`; an angle that is not a multiple of 90 degrees is ignored.
    """
    side_data = frame.side_data.get("DISPLAYMATRIX")
    if not isinstance(side_data, SideData) or len(bytes(side_data)) < 36:
        return ()
    matrix = struct.unpack("=9i", bytes(side_data)[:36])
    scale_x = math.hypot(matrix[0] / _FIXED_ONE, matrix[3] / _FIXED_ONE)
    scale_y = math.hypot(matrix[1] / _FIXED_ONE, matrix[4] / _FIXED_ONE)
    if scale_x == 0 or scale_y == 0:
        return ()
    counter_clockwise = math.degrees(
        math.atan2(matrix[1] / _FIXED_ONE / scale_y, matrix[0] / _FIXED_ONE / scale_x)
    )
    clockwise = float(round(counter_clockwise)) % 360  # ffmpeg's get_rotation()
    if abs(clockwise - 90) < 1:
        return ("transpose=cclock_flip",) if matrix[3] > 0 else ("transpose=clock",)
    if abs(clockwise - 270) < 1:
        return ("transpose=clock_flip",) if matrix[3] < 0 else ("transpose=cclock",)
    if abs(clockwise - 180) < 1:
        steps = (("hflip",) if matrix[0] < 0 else ()) + (("vflip",) if matrix[4] < 0 else ())
        return steps
    if clockwise < 1 or clockwise > 359:
        return ("vflip",) if matrix[4] < 0 else ()
    return ()


def swaps_axes(transform: Transform) -> bool:
    return any(step.startswith("transpose") for step in transform)


def display_size(
    width: int, height: int, pixel_aspect: Fraction | None, transform: Transform
) -> tuple[int, int]:
    """Width and height as shown: square pixels, turned upright."""
    if pixel_aspect is not None and pixel_aspect > 0 and pixel_aspect != 1:
        width = max(1, round(width * pixel_aspect))
    return (height, width) if swaps_axes(transform) else (width, height)


MediaKind = Literal["voice", "video"]

_MIME = {
    ("voice", "mov"): "audio/mp4",
    ("voice", "matroska"): "audio/webm",
    ("voice", "ogg"): "audio/ogg",
    ("voice", "mp3"): "audio/mpeg",
    ("voice", "aac"): "audio/aac",
    ("voice", "amr"): "audio/amr",
    ("video", "mov"): "video/mp4",
    ("video", "matroska"): "video/webm",
    ("video", "ogg"): "video/ogg",
}


def original_mime(container: InputContainer, kind: MediaKind) -> str:
    """The original's real content type, from the demuxer that read it."""
    family = container_family(container)
    brand = str(container.metadata.get("major_brand", ""))
    if kind == "video" and family == "mov" and brand == "qt  ":
        return "video/quicktime"
    if family == "mov" and brand.startswith("3gp"):
        return "audio/3gpp" if kind == "voice" else "video/3gpp"
    return _MIME.get((kind, family), "application/octet-stream")


class AudioConverter:
    """`av.AudioResampler` that follows the input when its format, layout or rate changes
    mid-stream (a plain resampler refuses such frames)."""

    def __init__(self, *, sample_format: str, layout: str, rate: int) -> None:
        self._target = (sample_format, layout, rate)
        self._input: tuple[str, str, int] | None = None
        self._resampler: av.AudioResampler | None = None

    def convert(self, frame: av.AudioFrame) -> list[av.AudioFrame]:
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        converted: list[av.AudioFrame] = []
        try:
            resampler = self._resampler
            if resampler is None or key != self._input:
                converted.extend(self.flush())
                sample_format, layout, rate = self._target
                resampler = av.AudioResampler(format=sample_format, layout=layout, rate=rate)
                self._resampler, self._input = resampler, key
            converted.extend(resampler.resample(frame))
        except (av.error.FFmpegError, ValueError) as error:
            raise DeriveError("corrupt_media", "the audio cannot be converted") from error
        return converted

    def flush(self) -> list[av.AudioFrame]:
        """What the resampler still holds (call at the end of the stream)."""
        resampler, self._resampler, self._input = self._resampler, None, None
        if resampler is None:
            return []
        try:
            return resampler.resample(None)
        except (av.error.FFmpegError, ValueError) as error:
            raise DeriveError("corrupt_media", "the audio cannot be converted") from error
