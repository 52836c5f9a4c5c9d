"""Test media for the trust-and-safety components, generated at run time (no binary fixtures).

`textured_photo` has the edges real photos have (PDQ's quality needs mid-frequency gradients;
`images.photo` is too smooth and scores quality ~10). `figure` is an abstract skin-toned
cartoon that the open_nsfw model scores high (about 0.9); it was found by a random search over
its parameters, which are fixed here. `landscape` scores near 0.
"""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.stream import VideoStream
from PIL import Image, ImageDraw, ImageFilter

from tests.media_factory.images import photo

MALWARE_MARKER = b"FERRY-TEST-MALWARE-7f3c9a"  # what the test ClamAV signature matches


def textured_photo(width: int = 640, height: int = 480, *, seed: int = 0) -> Image.Image:
    """A photo-like picture with sharp-edged shapes on it (PDQ quality 100)."""
    rng = np.random.default_rng(seed)
    image = photo(width, height, seed=seed)
    draw = ImageDraw.Draw(image)
    for _ in range(40):
        x0, y0 = rng.uniform(0, 1, 2) * (width, height)
        side = rng.uniform(0.03, 0.25) * width
        box = (x0, y0, x0 + side * rng.uniform(0.3, 1.5), y0 + side * rng.uniform(0.3, 1.5))
        colour = (int(rng.integers(256)), int(rng.integers(256)), int(rng.integers(256)))
        if rng.random() < 0.5:
            draw.ellipse(box, fill=colour)
        else:
            draw.rectangle(box, fill=colour)
    return image


def recompressed(image: Image.Image, *, scale: float = 0.9, quality: int = 70) -> Image.Image:
    """`image` scaled and saved as JPEG: what a re-share through another app does to it."""
    size = (round(image.width * scale), round(image.height * scale))
    buffer = io.BytesIO()
    image.convert("RGB").resize(size, Image.Resampling.LANCZOS).save(
        buffer, format="JPEG", quality=quality
    )
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        decoded.load()
        return decoded.copy()


def figure(size: int = 256) -> Image.Image:
    """A blurred skin-toned torso-like cartoon that open_nsfw scores about 0.9."""
    background, skin, nipple = (67, 94, 69), (201, 142, 129), (174, 82, 56)
    radius, separation, height, blur = 0.016, 0.19, 0.47, 2.1
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    canvas = np.zeros((size, size, 3), np.float32) + np.array(background, np.float32)

    def paint(
        canvas: np.ndarray,
        centre: tuple[float, float],
        radii: tuple[float, float],
        colour: tuple[float, ...],
        shaded: bool = True,
    ) -> np.ndarray:
        distance = ((x - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2
        alpha = np.clip((1 - distance) * 4, 0, 1)[..., None]
        shade = (1 - 0.25 * np.clip(distance, 0, 1))[..., None] if shaded else 1.0
        painted: np.ndarray = canvas * (1 - alpha) + np.array(colour, np.float32) * shade * alpha
        return painted

    canvas = paint(canvas, (0.5, 0.6), (0.45, height), skin)
    for side in (-1, 1):
        cx = 0.5 + side * separation
        canvas = paint(canvas, (cx, 0.5), (0.16, 0.16), tuple(c * 1.02 for c in skin))
        canvas = paint(canvas, (cx, 0.53), (radius, radius), nipple, shaded=False)
    picture = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    return picture.filter(ImageFilter.GaussianBlur(blur))


def landscape(width: int = 512, height: int = 384, *, seed: int = 1) -> Image.Image:
    """Sky over grass: open_nsfw scores it near 0."""
    rows = np.linspace(0, 1, height)[:, None, None]
    sky = np.array([110, 160, 230]) * (1 - rows) + np.array([60, 140, 60]) * rows
    pixels = np.broadcast_to(sky, (height, width, 3)).copy()
    grass = np.random.default_rng(seed).normal(0, 10, (height - height // 2, width, 3))
    pixels[height // 2 :] = np.array([50, 120, 40]) + grass
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def video_showing(
    path: Path,
    picture: Image.Image,
    *,
    seconds: float = 7.0,
    shown_from: float = 4.0,
    shown_until: float = 6.0,
    fps: int = 10,
) -> Path:
    """An H.264 MP4 (no audio) of textured scenes that shows `picture` from `shown_from` to
    `shown_until` seconds: the banned frame at about 5 s, between an innocent poster and end."""
    width, height = picture.size
    scene = textured_photo(width, height, seed=4242)
    with av.open(str(path), mode="w", format="mp4") as output:
        stream = output.add_stream("libx264", rate=fps, options={"crf": "18"})
        assert isinstance(stream, VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(round(seconds * fps)):
            at = index / fps
            shown = picture if shown_from <= at < shown_until else scene
            frame = av.VideoFrame.from_ndarray(np.asarray(shown.convert("RGB")), format="rgb24")
            frame.pts = index
            frame.time_base = Fraction(1, fps)
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))
    return path
