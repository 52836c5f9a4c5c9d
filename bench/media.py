"""Realistic inputs, made at run time: textured phone photos, a detailed 720p clip, voice notes.

No service code here. The photo has detail at every scale (fractal value noise, hard-edged
shapes, fine grain), so its thumbnails cost what a real photo's do (a 1280 px WebP of 100+ KB,
not the ~14 KB of a smooth gradient); the clip has motion and texture in every frame at a phone
camera's bit rate; the voice note is syllable-shaped, pitch-varying speech-like sound.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw

PHOTO_SIZE = (4000, 3000)


def textured_photo(seed: int, size: tuple[int, int] = PHOTO_SIZE) -> Image.Image:
    """An RGB picture with detail at every scale: what a phone sees outdoors."""
    width, height = size
    rng = np.random.default_rng(seed)
    # Built at half size (4x cheaper), upscaled once; the grain below is full size.
    half = (width // 2, height // 2)
    picture = np.zeros((half[1], half[0], 3), dtype=np.float32)
    # Fractal value noise: octaves from 1/512 of the frame down to 4 px, each upscaled smoothly.
    amplitude = 90.0
    cell = 256
    while cell >= 2:
        grid = rng.uniform(-1, 1, (max(2, half[1] // cell), max(2, half[0] // cell), 3))
        small = Image.fromarray(((grid + 1) * 127.5).astype(np.uint8))
        layer = np.asarray(small.resize(half, Image.Resampling.BICUBIC), dtype=np.float32)
        picture += (layer - 127.5) / 127.5 * amplitude
        amplitude *= 0.62
        cell //= 2
    picture += 128
    canvas = Image.fromarray(np.clip(picture, 0, 255).astype(np.uint8)).resize(
        size, Image.Resampling.BICUBIC
    )
    draw = ImageDraw.Draw(canvas)
    for _ in range(60):  # hard edges: buildings, leaves, text-like strokes
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = int(rng.integers(20, 600)), int(rng.integers(20, 600))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.uniform() < 0.5:
            draw.rectangle((x, y, x + w, y + h), outline=colour, width=int(rng.integers(2, 12)))
        else:
            draw.line((x, y, x + w, y + h), fill=colour, width=int(rng.integers(1, 8)))
    grain = rng.integers(-6, 7, size=(height, width, 1), dtype=np.int16)
    return Image.fromarray(
        np.clip(np.asarray(canvas, dtype=np.int16) + grain, 0, 255).astype(np.uint8)
    )


def photo_jpeg(seed: int, quality: int = 90) -> bytes:
    """A 12 MP JPEG as a phone writes it (quality 90, a few MB)."""
    buffer = io.BytesIO()
    textured_photo(seed).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def unique_jpeg(base: bytes) -> bytes:
    """The same picture with a random JPEG comment after SOI: new bytes, new SHA-256 (so it
    never deduplicates), still a valid JPEG that decodes to the same pixels."""
    comment = os.urandom(16).hex().encode()
    return base[:2] + b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment + base[2:]


def unique_mp4(base: bytes) -> bytes:
    """The same video with a `free` box appended (ISO BMFF's padding): new SHA-256, same media."""
    payload = os.urandom(16)
    return base + struct.pack(">I", 8 + len(payload)) + b"free" + payload


def ffmpeg() -> str | None:
    return shutil.which("ffmpeg")


def detailed_clip(path: Path, seconds: float) -> Path:
    """720p30 H.264 (6 Mbit/s, as phones record) + AAC: testsrc2's moving, sharp-edged
    pattern with temporal grain (sensor noise), so every frame has new detail to encode."""
    tool = ffmpeg()
    if tool is None:
        raise RuntimeError("the ffmpeg CLI is needed to make the clip")
    scene = (
        f"testsrc2=size=1280x720:rate=30:duration={seconds},noise=alls=14:allf=t,format=yuv420p[v]"
    )
    subprocess.run(
        [tool, "-hide_banner", "-loglevel", "error", "-y",
         "-filter_complex", scene,
         "-f", "lavfi", "-i", f"sine=frequency=330:duration={seconds}:sample_rate=48000",
         "-map", "[v]", "-map", "0:a",
         "-c:v", "libx264", "-preset", "superfast", "-b:v", "6M", "-maxrate", "8M",
         "-bufsize", "12M", "-g", "60",
         "-c:a", "aac", "-b:a", "128k", "-ac", "2", "-t", str(seconds),
         "-movflags", "+faststart", str(path)],
        check=True,
    )  # fmt: skip
    return path


def speech_like(seconds: float, rate: int = 48_000, seed: int = 3) -> npt.NDArray[np.float32]:
    """Mono float32: voiced syllables (a wandering pitch with harmonics, ~4 per second),
    breathy noise, pauses between phrases and room noise; not a steady tone."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    pitch = 140 + 40 * np.sin(2 * np.pi * 0.3 * t) + 15 * np.sin(2 * np.pi * 2.1 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 9))
    syllables = np.clip(np.sin(2 * np.pi * 4.2 * t + rng.uniform(0, 6)), 0, 1) ** 2
    phrases = (np.sin(2 * np.pi * t / 6.0) > -0.6).astype(np.float64)  # a pause every 6 s
    breath = rng.normal(0, 0.15, t.shape) * syllables
    room = rng.normal(0, 0.01, t.shape)
    signal = 0.3 * (voiced * syllables + breath) * phrases + room
    clipped: npt.NDArray[np.float32] = np.clip(signal, -1, 1).astype(np.float32)
    return clipped


def voice_note(path: Path, seconds: float) -> Path:
    """An AAC voice note in MP4 (.m4a, 48 kHz mono, 64 kbit/s), as an iPhone records one."""
    import av

    samples = speech_like(seconds)
    with av.open(str(path), mode="w", format="mp4") as output:
        stream = output.add_stream("aac", rate=48_000, layout="mono")
        stream.bit_rate = 64_000
        for start in range(0, len(samples), 1024):
            block = np.ascontiguousarray(samples[start : start + 1024][np.newaxis, :])
            frame = av.AudioFrame.from_ndarray(block, format="fltp", layout="mono")
            frame.sample_rate = 48_000
            frame.pts = start
            frame.time_base = Fraction(1, 48_000)
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))
    return path
