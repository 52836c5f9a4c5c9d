"""Image test media, generated at run time with Pillow and numpy (no binary fixtures).

Most functions return the encoded bytes (`write` puts them in a file). Pictures are
photo-like (gradients, soft blobs, texture, sensor noise) so encoders and perceptual hashes
see realistic content; a pure red `MARKER` square sits in the top-left corner of the *stored*
pixels wherever a test must tell rotated from upright.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pillow_heif
from PIL import Image, ImageCms, PngImagePlugin

MARKER = (255, 0, 0)
MARKER_FRACTION = 5  # the marker square's side is 1/5 of the shorter side
GPS_IFD = 0x8825
ORIENTATION = 0x0112
XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
    b'xmlns:dc="http://purl.org/dc/elements/1.1/" dc:creator="Ferry test"/></rdf:RDF>'
    b"</x:xmpmeta>"
)
# Somewhere near the Zuiderzee: degrees, minutes, seconds as EXIF rationals.
GPS_TAGS: dict[int, object] = {
    1: "N",
    2: (52.0, 22.0, 12.5),
    3: "E",
    4: (4.0, 53.0, 24.0),
    29: "2024:05:01",
}

Pixels = npt.NDArray[np.uint8]


def photo(width: int, height: int, *, seed: int = 0, noise: int = 6) -> Image.Image:
    """An RGB picture with the statistics of a photo; `seed` changes its composition."""
    rng = np.random.default_rng(seed)
    # Composition at a quarter of the size (cheap), upscaled; then full-size sensor noise.
    w, h = max(2, width // 4), max(2, height // 4)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    x /= w
    y /= h
    layers = []
    for _ in range(3):
        a, b, c = rng.uniform(-1, 1, 3)
        layers.append(128 + 60 * (a * x + b * y) + 25 * np.sin(2 * np.pi * (c * 3 * x + y)))
    picture = np.stack(layers, axis=-1)
    for _ in range(6):  # soft blobs of colour
        cx, cy = rng.uniform(0, 1, 2)
        radius = rng.uniform(0.08, 0.3)
        colour = rng.uniform(-90, 90, 3)
        weight = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * radius**2))
        picture += weight[..., None] * colour
    small = Image.fromarray(np.clip(picture, 0, 255).astype(np.uint8))
    full = np.asarray(small.resize((width, height), Image.Resampling.BICUBIC)).astype(np.int16)
    if noise:
        full += rng.integers(-noise, noise + 1, size=full.shape, dtype=np.int16)
    return Image.fromarray(np.clip(full, 0, 255).astype(np.uint8))


def with_marker(image: Image.Image) -> Image.Image:
    """`image` with a `MARKER` square in its top-left corner (as stored)."""
    side = max(1, min(image.size) // MARKER_FRACTION)
    marked = image.copy()
    marked.paste(MARKER if marked.mode == "RGB" else (*MARKER, 255), (0, 0, side, side))
    return marked


def _save(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def srgb_icc() -> bytes:
    profile: bytes = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return profile


def jpeg(
    width: int = 400,
    height: int = 200,
    *,
    seed: int = 0,
    quality: int = 90,
    noise: int = 6,
    orientation: int | None = None,
    gps: bool = False,
    xmp: bool = False,
    icc: bool = False,
    comment: bytes | None = None,
    marker: bool = False,
) -> bytes:
    """A JPEG of `width`x`height` stored pixels, with the metadata asked for."""
    image = photo(width, height, seed=seed, noise=noise)
    if marker:
        image = with_marker(image)
    exif = Image.Exif()
    exif[0x010F] = "FerryCam"  # Make
    if orientation is not None:
        exif[ORIENTATION] = orientation
    if gps:
        exif[GPS_IFD] = dict(GPS_TAGS)
    params: dict[str, object] = {"quality": quality, "exif": exif}
    if xmp:
        params["xmp"] = XMP
    if icc:
        params["icc_profile"] = srgb_icc()
    if comment is not None:
        params["comment"] = comment
    return _save(image, "JPEG", **params)


def oriented_jpeg_with_gps(width: int = 400, height: int = 200) -> bytes:
    """EXIF orientation 6 (rotate 90° clockwise to display), GPS, XMP, an ICC profile, a JPEG
    comment and a red marker in the stored top-left corner: everything a thumbnail must drop
    or apply."""
    return jpeg(
        width,
        height,
        orientation=6,
        gps=True,
        xmp=True,
        icc=True,
        comment=b"shot at home",
        marker=True,
    )


def twelve_megapixel_jpeg(*, seed: int = 0, quality: int = 90) -> bytes:
    """4000x3000 with a phone photo's amount of fine detail: about 3.5 MB at quality 90."""
    return jpeg(4000, 3000, seed=seed, quality=quality, noise=16)


def cmyk_jpeg(width: int = 300, height: int = 200) -> bytes:
    return _save(photo(width, height, seed=3).convert("CMYK"), "JPEG", quality=90)


def png_with_alpha(width: int = 300, height: int = 200) -> bytes:
    """RGBA: the left half fully transparent, the right half opaque, a soft band between."""
    rgba = photo(width, height, seed=1).convert("RGBA")
    ramp = np.clip((np.arange(width) - width * 0.4) / (width * 0.2), 0, 1) * 255
    alpha = np.broadcast_to(ramp.astype(np.uint8), (height, width))
    rgba.putalpha(Image.fromarray(np.ascontiguousarray(alpha)))
    return _save(rgba, "PNG")


def png(width: int = 500, height: int = 300, *, seed: int = 2) -> bytes:
    return _save(photo(width, height, seed=seed), "PNG")


def gray16_png(width: int = 64, height: int = 48) -> bytes:
    """16-bit grayscale, mid-gray (32768): an 8-bit view must be mid-gray, not white."""
    values = np.full((height, width), 32768, dtype=np.uint16)
    return _save(Image.fromarray(values), "PNG")


def _frames(count: int, size: tuple[int, int]) -> list[Image.Image]:
    return [photo(*size, seed=10 + index, noise=0) for index in range(count)]


def animated_gif(frames: int = 3, size: tuple[int, int] = (120, 80)) -> bytes:
    first, *rest = (
        frame.convert("P", palette=Image.Palette.ADAPTIVE) for frame in _frames(frames, size)
    )
    return _save(first, "GIF", save_all=True, append_images=rest, duration=100, loop=0)


def static_gif(size: tuple[int, int] = (120, 80)) -> bytes:
    return _save(photo(*size, seed=9, noise=0).convert("P"), "GIF")


def animated_webp(frames: int = 3, size: tuple[int, int] = (120, 80)) -> bytes:
    first, *rest = _frames(frames, size)
    return _save(first, "WEBP", save_all=True, append_images=rest, duration=100, loop=0)


def heic(width: int = 640, height: int = 480) -> bytes:
    """HEVC-coded HEIF, as phones write them."""
    pillow_heif.register_heif_opener()
    return _save(photo(width, height, seed=4), "HEIF", quality=60)


def bmp(width: int = 64, height: int = 48) -> bytes:
    """A real image in a format Ferry does not decode (outside the allow-list)."""
    return _save(photo(width, height, seed=5), "BMP")


def truncated_jpeg(width: int = 640, height: int = 480) -> bytes:
    """A valid JPEG cut in half: the header is fine, the pixels stop midway."""
    data = jpeg(width, height, seed=6)
    return data[: len(data) // 2]


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims `width`x`height` RGBA pixels (60000x60000 would be 14 GB
    decoded) with only a few rows of data: under 100 bytes on disk. Anything that decodes it
    before checking the header allocates the whole claim."""
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8-bit RGBA
    rows = zlib.compress(b"\0" * (1 + 4 * min(width, 16)) * 2)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", rows)
        + _png_chunk(b"IEND", b"")
    )


def png_bomb() -> bytes:
    return png_claiming(60_000, 60_000)


def webp_claiming(width: int = 16_383, height: int = 16_383) -> bytes:
    """A lossless WebP whose bitstream header claims `width`x`height` (at most 16383, WebP's
    limit) with no pixel data behind it: 42 bytes."""
    bits = (width - 1) | ((height - 1) << 14) | (1 << 28)  # 14-bit sizes, alpha hint
    body = b"\x2f" + struct.pack("<I", bits) + b"\0" * 16
    chunk = b"VP8L" + struct.pack("<I", len(body)) + body
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def gif_claiming(width: int = 65_535, height: int = 65_535) -> bytes:
    """A GIF whose logical screen is `width`x`height`, holding one 1x1 frame."""
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\0" * 6
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return screen + frame + b"\x3b"


def jpeg_claiming(width: int = 65_000, height: int = 65_000) -> bytes:
    """A baseline JPEG header (SOF0) claiming `width`x`height` gray pixels, and no scan data."""
    sof = struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00"
    sos = b"\x01\x01\x00\x00\x3f\x00"
    return (
        b"\xff\xd8"
        + b"\xff\xc0"
        + struct.pack(">H", len(sof) + 2)
        + sof
        + b"\xff\xda"
        + struct.pack(">H", len(sos) + 2)
        + sos
        + b"\xff\xd9"
    )


def random_bytes(size: int = 4096, *, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _gps_exif(orientation: int | None = 6) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "FerryCam"  # Make
    if orientation is not None:
        exif[ORIENTATION] = orientation
    exif[GPS_IFD] = dict(GPS_TAGS)
    return exif


def png_with_gps(width: int = 200, height: int = 120) -> bytes:
    """A PNG with an `eXIf` chunk (make, orientation 6, GPS) and a `tEXt` comment."""
    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", "shot at home")
    return _save(photo(width, height, seed=7), "PNG", exif=_gps_exif(), pnginfo=text)


def webp_with_gps(width: int = 200, height: int = 120) -> bytes:
    """A lossless WebP with EXIF (make, orientation 6, GPS), XMP and an ICC profile."""
    return _save(
        photo(width, height, seed=8),
        "WEBP",
        lossless=True,
        exif=_gps_exif(),
        xmp=XMP,
        icc_profile=srgb_icc(),
    )


def heic_with_gps(width: int = 128, height: int = 96) -> bytes:
    """HEIC as phones write it: EXIF with GPS and XMP as items of the file."""
    pillow_heif.register_heif_opener()
    return _save(
        photo(width, height, seed=4),
        "HEIF",
        quality=60,
        exif=_gps_exif(orientation=None).tobytes(),
        xmp=XMP,
    )
