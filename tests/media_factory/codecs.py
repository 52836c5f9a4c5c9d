"""Clips in the codecs phones and cameras send, encoded at run time with PyAV's bundled FFmpeg.

Video: MPEG-4 Part 2 (`mpeg4`), H.263 in 3GP (`h263`, with AMR-NB audio, as old phones and MMS
send), MJPEG in MP4 and MOV (cameras), ProRes in MOV (`prores_ks`); camera MOVs with PCM audio.
Audio: PCM (WAV), ALAC (M4A), FLAC, AMR-NB (`.amr`, `libopencore_amrnb`). FFmpeg here has no
AMR-WB *encoder* (no `libvo_amrwbenc`), only the decoder, so `amr_wb` writes the AMR-WB storage
format by hand: the `#!AMR-WB` header and speech frames of mode 8 (23.85 kbit/s) whose payload
is random bits. Any bits are a valid frame, and the decoder turns them into noise-like speech:
enough to test that such a file decodes and converts, not to listen to.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.audio.stream import AudioStream
from av.video.stream import VideoStream

from tests.media_factory.av import display_scene, voice_samples

AMR_WB_MAGIC = b"#!AMR-WB\n"
_AMR_WB_MODE = 8  # 23.85 kbit/s
_AMR_WB_PAYLOAD = 60  # bytes of speech bits in a mode-8 frame (20 ms)


def _sound(stream: AudioStream, seconds: float) -> Iterator[av.AudioFrame]:
    """The voice test signal, converted to what `stream`'s encoder takes, frame by frame."""
    rate = stream.rate
    samples = voice_samples(seconds, rate=rate)
    resampler = av.AudioResampler(format=stream.format.name, layout=stream.layout.name, rate=rate)
    size = stream.codec_context.frame_size or 1024
    for start in range(0, len(samples), size):
        block = samples[start : start + size]
        if len(block) < size and stream.codec_context.frame_size:
            block = np.pad(block, (0, size - len(block)))  # fixed-size codecs (AMR): pad the end
        frame = av.AudioFrame.from_ndarray(block[np.newaxis, :], format="fltp", layout="mono")
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        yield from resampler.resample(frame)


def clip(
    path: Path,
    *,
    video_codec: str | None,
    audio_codec: str | None,
    container_format: str,
    width: int = 176,
    height: int = 144,
    seconds: float = 1.0,
    fps: int = 15,
    pix_fmt: str = "yuv420p",
    audio_rate: int = 48_000,
    audio_layout: str = "mono",
    video_options: dict[str, str] | None = None,
) -> Path:
    """A clip with the given codecs (either may be None for audio-only or video-only)."""
    with av.open(str(path), mode="w", format=container_format) as output:
        video: VideoStream | None = None
        sound: AudioStream | None = None
        if video_codec is not None:
            stream = output.add_stream(video_codec, rate=fps, options=video_options or {})
            assert isinstance(stream, VideoStream)
            stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
            video = stream
        if audio_codec is not None:
            audio = output.add_stream(audio_codec, rate=audio_rate, layout=audio_layout)
            assert isinstance(audio, AudioStream)
            sound = audio
        if video is not None:
            for index in range(round(seconds * fps)):
                frame = av.VideoFrame.from_ndarray(
                    display_scene(width, height, index), format="rgb24"
                )
                frame.pts = index
                frame.time_base = Fraction(1, fps)
                output.mux(video.encode(frame))
            output.mux(video.encode(None))
        if sound is not None:
            for chunk in _sound(sound, seconds):
                output.mux(sound.encode(chunk))
            output.mux(sound.encode(None))
    return path


def mpeg4_mp4(path: Path) -> Path:
    """MPEG-4 Part 2 video, AAC audio."""
    return clip(path, video_codec="mpeg4", audio_codec="aac", container_format="mp4")


def h263_3gp(path: Path) -> Path:
    """H.263 (QCIF, one of its fixed sizes) with AMR-NB audio at 8 kHz, in 3GP."""
    return clip(
        path,
        video_codec="h263",
        audio_codec="libopencore_amrnb",
        container_format="3gp",
        audio_rate=8_000,
    )


def mjpeg_mp4(path: Path) -> Path:
    """MJPEG in MP4, as many cameras record, with AAC audio."""
    return clip(
        path, video_codec="mjpeg", audio_codec="aac", container_format="mp4", pix_fmt="yuvj420p"
    )


def prores_mov(path: Path) -> Path:
    """ProRes 422 (10-bit) with 16-bit PCM audio in MOV, as pro cameras and iPhones record."""
    return clip(
        path,
        video_codec="prores_ks",
        audio_codec="pcm_s16le",
        container_format="mov",
        pix_fmt="yuv422p10le",
        audio_layout="stereo",
    )


def pcm_mov(path: Path) -> Path:
    """A camera MOV: H.264 video with 16-bit PCM audio (the audio fails today's allow-list)."""
    return clip(
        path,
        video_codec="libx264",
        audio_codec="pcm_s16le",
        container_format="mov",
        audio_layout="stereo",
        width=320,
        height=180,
    )


def pcm_wav(path: Path) -> Path:
    return clip(path, video_codec=None, audio_codec="pcm_s16le", container_format="wav")


def alac_m4a(path: Path) -> Path:
    return clip(path, video_codec=None, audio_codec="alac", container_format="ipod")


def flac(path: Path) -> Path:
    return clip(path, video_codec=None, audio_codec="flac", container_format="flac")


def amr_nb(path: Path, *, seconds: float = 2.0) -> Path:
    """An AMR-NB voice note (`.amr`, `audio/amr`): 8 kHz mono."""
    return clip(
        path,
        video_codec=None,
        audio_codec="libopencore_amrnb",
        container_format="amr",
        audio_rate=8_000,
        seconds=seconds,
    )


def amr_wb(path: Path, *, seconds: float = 2.0, seed: int = 0) -> Path:
    """An AMR-WB voice note (`.amr`, 16 kHz), written frame by frame (see the module doc)."""
    rng = np.random.default_rng(seed)
    header = bytes([(_AMR_WB_MODE << 3) | 0x04])  # frame type 8, quality bit set
    frames = [
        header + rng.integers(0, 256, _AMR_WB_PAYLOAD, dtype=np.uint8).tobytes()
        for _ in range(round(seconds * 50))
    ]
    path.write_bytes(AMR_WB_MAGIC + b"".join(frames))
    return path
