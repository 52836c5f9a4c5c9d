"""Image derivatives: thumb_320/640/1280, `meta` (size, mime, blurhash, animated) and moderation.

`derive_image` runs in a worker process (plain, picklable arguments). The path through it:

1. **Allow-list.** Only the JPEG, PNG, WEBP, GIF and HEIF decoders may open the file: every
   decoder we allow is part of our trusted computing base. Anything else: `unsupported_format`.
2. **Caps from the header, before any pixel is decoded.** Pixels (`too_many_pixels`), the
   longest side (`too_large_dimensions`) and the frame count (`too_many_frames`). Pillow's own
   bomb check runs with the same pixel cap, and its warning is an error here.
3. **Decode once, at the size the largest thumbnail needs.** A JPEG asks libjpeg for a DCT-scaled
   decode (`draft`): a 12 MP photo decodes at 2000x1500, never at full size.
4. **Orientation, colour, alpha.** EXIF orientation is applied (after the first resize: fewer
   pixels to turn); an embedded RGB ICC profile is converted to sRGB and dropped; transparency is
   kept (resampled premultiplied, so edges do not darken). Animated GIF/WebP/APNG: the first frame.
5. **Moderation** judges the largest thumbnail (hash scanners, NSFW classifier) while a helper
   thread encodes it: blocked means no file at all; the classifier's score sets `meta.sensitive`.
6. **Cascade down**: thumb_1280 from the decoded image, 640 from 1280, 320 from 640; never
   upscaled. Lanczos, with Pillow's `reducing_gap` of 2.0 (libvips' `thumbnail` has the same
   gap); the first step after a DCT-scaled JPEG decode is bicubic, which lands as close to a
   Lanczos resize of the full-size image as Lanczos does (docs/processing.md has the
   comparison). Resizes run in two bands on two threads (`resample.py`), the same pixels.
   No metadata in any derivative: no EXIF, GPS, XMP, comment or ICC profile.
7. **Animations** (GIF, animated WebP, APNG) also get `animation`, a short muted MP4 loop
   (`animation.py`), whose sampled frames moderation sees too.

Truncated or undecodable data is `corrupt_media`; `ImageFile.LOAD_TRUNCATED_IMAGES` is forced
off while we decode, whatever the rest of the process set.
"""

from __future__ import annotations

import functools
import io
import math
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

from PIL import ExifTags, Image, ImageCms, ImageFile, UnidentifiedImageError

from transcode_worker.derivatives.animation import AnimationLimits, write_animation
from transcode_worker.derivatives.blurhash_meta import blurhash_of
from transcode_worker.derivatives.moderation import (
    FrameSampler,
    Moderation,
    ModerationBlocked,
    Scanner,
)
from transcode_worker.derivatives.resample import Pending, Work, resize, work
from transcode_worker.derivatives.types import (
    Derived,
    DerivedFile,
    DerivedVariant,
    DeriveError,
)

__all__ = [
    "ALLOWED_FORMATS",
    "THUMB_FORMATS",
    "ImageLimits",
    "derive_image",
    "draft_for",
    "fit_within",
]

# Pillow format ids. `Image.open(..., formats=ALLOWED_FORMATS)` tries these decoders and no other.
ALLOWED_FORMATS: Final = ("JPEG", "PNG", "WEBP", "GIF", "HEIF")
# Output format → (Pillow format, file extension, content type).
THUMB_FORMATS: Final = {
    "webp": ("WEBP", "webp", "image/webp"),
    "jpeg": ("JPEG", "jpg", "image/jpeg"),
}

_MIME: Final = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",  # a JPEG with extra pictures (camera depth maps...): still a JPEG
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
}
_HEVC_BRANDS: Final = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis"})
_ANIMATABLE: Final = frozenset({"GIF", "WEBP", "PNG"})  # GIF, animated WebP, APNG
_TRANSPOSE: Final = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_SIDES: Final = frozenset({5, 6, 7, 8})
# What decoders raise on bad data (UnidentifiedImageError, an OSError, is handled before).
_DECODE_ERRORS: Final = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)


@dataclass(frozen=True, kw_only=True)
class ImageLimits:
    """What an image may be, and what we make of it. Checked before any pixel is decoded."""

    max_pixels: int = 50_000_000  # width x height of the stored image
    max_dimension: int = 20_000  # either side, in pixels
    max_frames: int = 1000  # frames of an animation (or images in a HEIF file)
    thumb_sizes: tuple[int, ...] = (320, 640, 1280)  # longest edge of each thumb_<n>
    quality: int = 80  # WebP / JPEG quality of the thumbnails (1-100)
    # libwebp's effort, 0 (fast) .. 6 (small). libwebp's default is 4; on the bench's textured
    # 12 MP photos 2 encodes thumb_1280 in 37 ms instead of 82 ms for 5% more bytes, and the
    # encode is most of a photo's CPU (issue 14, item 4; `make bench`).
    webp_method: int = 2
    # Huffman-table optimisation of JPEG thumbnails: 4% fewer bytes for ~2x the encode time.
    # Off: the thumbnail CPU is what a photo burst waits for (issue 14, item 4).
    jpeg_optimize: bool = False
    # Threads one derivation uses: 2 resizes in bands and encodes the largest thumbnail while
    # moderation looks at it (same output as 1; about 0.6x the wall time of a 12 MP photo, the
    # same CPU). libvips' thumbnail, the bench's anchor, uses a thread pool too.
    threads: int = 2

    def __post_init__(self) -> None:
        if min(self.max_pixels, self.max_dimension, self.max_frames) < 1:
            raise ValueError("image limits must be positive")
        if not self.thumb_sizes or min(self.thumb_sizes) < 1:
            raise ValueError("thumb_sizes must be positive edge lengths")
        if len(set(self.thumb_sizes)) != len(self.thumb_sizes):
            raise ValueError("thumb_sizes must not repeat")
        if not 1 <= self.quality <= 100:
            raise ValueError("quality must be within 1..100")
        if not 0 <= self.webp_method <= 6:
            raise ValueError("webp_method must be within 0..6")
        if self.threads < 1:
            raise ValueError("threads must be at least 1")


@dataclass(frozen=True, kw_only=True)
class _Probe:
    """What the header says, before decoding."""

    mime: str
    size: tuple[int, int]  # as stored (before orientation)
    animated: bool  # an animation (GIF, WebP, APNG) of more than one frame


def derive_image(
    source: Path,
    out_dir: Path,
    *,
    limits: ImageLimits,
    thumb_format: str = "webp",
    scanner: Scanner | None = None,
    moderation: Moderation | None = None,
    animation: AnimationLimits | None = None,
) -> Derived:
    """Thumbnails and meta of the image at `source`, written to `out_dir` (created if needed).

    Returns the files (`thumb_<n>.webp` or `.jpg`) and variants `thumb_<n>`, and
    `meta = {width, height (as displayed), mime, blurhash, animated}`. A blocked image returns
    `Derived(blocked_reason=..., meta=...)` without blurhash, files or variants.
    Raises `DeriveError` for an image we refuse, `ScanFailed` when the scanner itself fails.
    `scanner` is shorthand for `Moderation(scanners=(scanner,))`. With `animation`, an animated
    image also gets the `animation` variant.
    """
    if thumb_format not in THUMB_FORMATS:
        raise ValueError(f"thumb_format must be one of {sorted(THUMB_FORMATS)}")
    sizes = sorted(limits.thumb_sizes, reverse=True)
    if moderation is None and scanner is not None:
        moderation = Moderation(scanners=(scanner,))
    review = moderation.start() if moderation is not None and moderation.active else None
    with work(limits.threads) as shared:
        with _pillow_guard(limits.max_pixels), source.open("rb") as fp:
            head = fp.read(32)
            fp.seek(0)
            with _open_allowed(fp, limits, _decoders_for(head)) as im:
                probe = _probe(im, head, limits)
                width, height, orientation = _decode(im, probe, sizes[0], limits)
                # The largest thumbnail, oriented, RGB(A), sRGB: everything else derives from
                # it. After a DCT-scaled decode, bicubic (see the module docstring).
                dct_scaled = im.size != probe.size
                first_filter = Image.Resampling.BICUBIC if dct_scaled else Image.Resampling.LANCZOS
                largest = _largest(im, (width, height), sizes[0], orientation, shared, first_filter)
        meta: dict[str, object] = {
            "width": width,
            "height": height,
            "mime": probe.mime,
            "animated": probe.animated,
        }
        pillow_format, extension, content_type = THUMB_FORMATS[thumb_format]
        # The helper encodes the largest thumbnail while this thread has it judged; nothing is
        # written before the verdict. Scanners only read the picture (the cascade starts from
        # it, so they never could change it), and only the helper saves it.
        largest_bytes = shared.later(functools.partial(_encode, largest, pillow_format, limits))
        if review is not None:
            try:
                review.look(largest)
            except ModerationBlocked as blocked:
                return Derived(
                    meta=meta,
                    blocked_reason=blocked.reason,
                    scanned=True,
                    nsfw_score=review.nsfw_score,
                )
        thumbs: list[tuple[int, Image.Image, Pending[bytes]]] = [(sizes[0], largest, largest_bytes)]
        current = largest
        for edge in sizes[1:]:
            smaller = resize(current, fit_within(width, height, edge), shared)
            if smaller is current:  # a size equal to the previous one reuses its bytes
                thumbs.append((edge, current, thumbs[-1][2]))
                continue
            current = smaller
            thumbs.append((edge, current, shared.later(functools.partial(
                _encode, current, pillow_format, limits))))  # fmt: skip
        meta["blurhash"] = blurhash_of(current)
        # Smallest first: what the helper has not started yet, this thread encodes itself.
        encoded = [(edge, image, pending.result()) for edge, image, pending in reversed(thumbs)]
        encoded.reverse()

    out_dir.mkdir(parents=True, exist_ok=True)
    files: list[DerivedFile] = []
    variants: list[DerivedVariant] = []
    for edge, image, data in encoded:
        key = f"thumb_{edge}.{extension}"
        path = out_dir / key
        path.write_bytes(data)
        files.append(DerivedFile(key=key, path=path, content_type=content_type))
        variants.append(
            DerivedVariant(
                name=f"thumb_{edge}",
                key=key,
                content_type=content_type,
                size=len(data),
                width=image.width,
                height=image.height,
            )
        )
    files.reverse()  # smallest first, as clients ask for them
    variants.reverse()
    if probe.animated and animation is not None:
        sampler = None
        if review is not None:
            sampler = FrameSampler(review)
            sampler.next_at = sampler.interval  # the first frame was judged above
        try:
            with (
                _pillow_guard(limits.max_pixels),
                source.open("rb") as fp,
                _open_allowed(fp, limits) as im,
            ):
                file, variant = write_animation(im, out_dir, limits=animation, sampler=sampler)
        except ModerationBlocked as blocked:
            for written in files:
                written.path.unlink(missing_ok=True)
            assert review is not None
            return Derived(
                meta={key: meta[key] for key in ("width", "height", "mime", "animated")},
                blocked_reason=blocked.reason,
                scanned=True,
                nsfw_score=review.nsfw_score,
            )
        files.append(file)
        variants.append(variant)
    if review is not None:
        meta.update(review.meta())
    return Derived(
        meta=meta,
        files=files,
        variants=variants,
        scanned=review is not None,
        nsfw_score=None if review is None else review.nsfw_score,
    )


# -- decoding ------------------------------------------------------------------------------------


def _decoders_for(head: bytes) -> tuple[str, ...]:
    """The allowed decoders worth trying on a file starting with `head`.

    Only what a job needs is loaded (issue 14, item 4: a pool process stays the size of a bare
    Pillow one): the four Pillow plugins we allow, never Pillow's full plugin scan, and
    pillow-heif (with libheif) only for an ISO-BMFF file, which every HEIF file is.
    """
    _register_pillow_plugins()
    if head[4:8] == b"ftyp":
        _register_heif()
        return ALLOWED_FORMATS
    return tuple(fmt for fmt in ALLOWED_FORMATS if fmt != "HEIF")


@functools.cache
def _register_pillow_plugins() -> None:
    """Register exactly the allowed Pillow decoders. `Image.open` runs Pillow's `init()`, which
    imports every plugin Pillow has, whenever a format it is asked for is not registered yet."""
    from PIL import GifImagePlugin, JpegImagePlugin, PngImagePlugin, WebPImagePlugin

    del GifImagePlugin, JpegImagePlugin, PngImagePlugin, WebPImagePlugin


@functools.cache
def _register_heif() -> None:
    """Teach Pillow the HEIF decoder, once per process (pool children included).

    Embedded thumbnails, depth and auxiliary images are ignored: a HEIF thumbnail may show
    something else than the image, and we must scan and publish what the image itself shows.
    """
    import pillow_heif

    pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)


@contextmanager
def _pillow_guard(max_pixels: int) -> Iterator[None]:
    """Pillow's process-wide knobs, set for one derivation and put back afterwards."""
    previous_pixels = Image.MAX_IMAGE_PIXELS
    previous_truncated = ImageFile.LOAD_TRUNCATED_IMAGES
    Image.MAX_IMAGE_PIXELS = max_pixels
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            # Pillow's complaints about odd metadata (corrupt EXIF, malformed MPO...) are noise
            # for us; a decompression bomb warning is a refusal.
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous_pixels
        ImageFile.LOAD_TRUNCATED_IMAGES = previous_truncated


@contextmanager
def _open_allowed(
    fp: IO[bytes], limits: ImageLimits, decoders: tuple[str, ...] = ALLOWED_FORMATS
) -> Iterator[ImageFile.ImageFile]:
    """`Image.open` with the allow-list, its refusals mapped to our error codes."""
    try:
        im = Image.open(fp, formats=decoders)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_many_pixels(limits) from None
    except UnidentifiedImageError:
        raise DeriveError(
            "unsupported_format", f"not an image in {', '.join(ALLOWED_FORMATS)}"
        ) from None
    except _DECODE_ERRORS as error:
        raise DeriveError("corrupt_media", f"unreadable image header: {_says(error)}") from None
    with im:
        yield im


def _too_many_pixels(limits: ImageLimits, size: tuple[int, int] | None = None) -> DeriveError:
    what = f"{size[0]}x{size[1]}" if size else "the image"
    return DeriveError("too_many_pixels", f"{what} is over {limits.max_pixels} pixels")


def _says(error: BaseException) -> str:
    return str(error).strip() or type(error).__name__


def _probe(im: ImageFile.ImageFile, head: bytes, limits: ImageLimits) -> _Probe:
    """Check the caps from what the header says; nothing is decoded yet."""
    fmt = im.format or ""
    width, height = im.size
    if width * height > limits.max_pixels:
        raise _too_many_pixels(limits, (width, height))
    if max(width, height) > limits.max_dimension:
        raise DeriveError(
            "too_large_dimensions",
            f"{width}x{height}: a side is over {limits.max_dimension} pixels",
        )
    try:
        # GIF counts its frames by walking the block structure (no pixel decoding).
        frames = int(getattr(im, "n_frames", 1))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_many_pixels(limits) from None
    except _DECODE_ERRORS as error:
        raise DeriveError("corrupt_media", f"unreadable frames: {_says(error)}") from None
    if frames > limits.max_frames:
        raise DeriveError("too_many_frames", f"{frames} frames (at most {limits.max_frames})")
    animated = fmt in _ANIMATABLE and frames > 1
    return _Probe(mime=_mime(fmt, head), size=(width, height), animated=animated)


def _mime(fmt: str, head: bytes) -> str:
    if fmt == "HEIF":
        # HEVC-coded HEIF is image/heic; other codecs in the same container are image/heif.
        # ftyp box: size, "ftyp", major brand, minor version, compatible brands.
        end = min(len(head), int.from_bytes(head[:4], "big"))
        brands = {head[8:12]} | {head[i : i + 4] for i in range(16, end - 3, 4)}
        return "image/heic" if brands & _HEVC_BRANDS else "image/heif"
    return _MIME[fmt]


def draft_for(im: Image.Image, edge: int) -> tuple[int, int] | None:
    """For a JPEG, ask libjpeg for a DCT-scaled decode (1/2, 1/4 or 1/8) that still covers a
    thumbnail of longest edge `edge`; returns the size asked for, or None (no draft possible).

    Must be called before the pixels are loaded. Other formats decode at full size.
    """
    if im.format not in ("JPEG", "MPO"):
        return None
    width, height = im.size
    longest = max(width, height)
    if longest <= edge:
        return None
    # The decoded size must cover the thumbnail on both sides (draft rounds the scale down).
    request = (
        max(1, math.ceil(width * edge / longest)),
        max(1, math.ceil(height * edge / longest)),
    )
    im.draft("RGB", request)
    return request


def _decode(
    im: ImageFile.ImageFile, probe: _Probe, edge: int, limits: ImageLimits
) -> tuple[int, int, int]:
    """Decode the (first frame's) pixels once; returns (width, height) as displayed and the
    EXIF orientation to apply."""
    draft_for(im, edge)
    try:
        im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_many_pixels(limits) from None
    except _DECODE_ERRORS as error:
        raise DeriveError("corrupt_media", f"cannot decode the image: {_says(error)}") from None
    orientation = _orientation(im)
    width, height = probe.size
    if orientation in _SWAPS_SIDES:
        width, height = height, width
    return width, height, orientation


def _orientation(im: Image.Image) -> int:
    """The EXIF (or XMP) orientation, 1 when absent or unreadable: bad metadata never fails a
    good image. HEIF files come already oriented (pillow-heif resets the tag to 1)."""
    try:
        value = im.getexif().get(ExifTags.Base.Orientation, 1)
    except (*_DECODE_ERRORS, KeyError, TypeError):
        return 1
    return value if isinstance(value, int) and value in _TRANSPOSE else 1


# -- pixels --------------------------------------------------------------------------------------


def fit_within(width: int, height: int, edge: int) -> tuple[int, int]:
    """The size of a thumbnail of longest edge `edge` of a `width`x`height` image; never larger
    than the image itself."""
    longest = max(width, height)
    if longest <= edge:
        return width, height
    if width >= height:
        return edge, max(1, round(height * edge / width))
    return max(1, round(width * edge / height)), edge


def _largest(
    im: ImageFile.ImageFile,
    displayed: tuple[int, int],
    edge: int,
    orientation: int,
    shared: Work,
    resample: Image.Resampling,
) -> Image.Image:
    """The decoded image as the largest thumbnail: RGB(A), oriented, resized, sRGB, bare.

    Resized before it is turned (a quarter of the pixels to move for a 12 MP photo). A new
    image in every case: the decoded one is closed with its file right after.
    """
    icc = im.info.get("icc_profile")
    frame = _rgb_or_rgba(im)
    width, height = fit_within(*displayed, edge)
    stored = (height, width) if orientation in _SWAPS_SIDES else (width, height)
    frame = resize(frame, stored, shared, resample)
    if orientation in _TRANSPOSE:
        frame = frame.transpose(_TRANSPOSE[orientation])
    if isinstance(icc, bytes) and icc:
        frame = _to_srgb(frame, icc)
    if frame is im:
        frame = im.copy()
    frame.info = {}  # nothing of the original's metadata may reach an encoder
    return frame


def _rgb_or_rgba(im: Image.Image) -> Image.Image:
    """RGBA when the image has any transparency, RGB otherwise (16-bit gray scaled, not clipped)."""
    if im.mode in ("RGB", "RGBA"):
        return im
    if im.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        import numpy as np  # only for these rare modes: most jobs never load it

    if im.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
        wide = np.asarray(im).astype(np.int64)
        return Image.fromarray((np.clip(wide, 0, 65535) >> 8).astype(np.uint8)).convert("RGB")
    if im.mode == "F":
        return Image.fromarray(np.clip(np.asarray(im), 0, 255).astype(np.uint8)).convert("RGB")
    alpha = im.mode in ("LA", "PA", "La", "RGBa") or im.has_transparency_data
    return im.convert("RGBA" if alpha else "RGB")


@functools.cache
def _srgb() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _to_srgb(im: Image.Image, icc: bytes) -> Image.Image:
    """Convert from the embedded RGB profile (Display P3, Adobe RGB...) to sRGB, which is what
    an untagged image means to every viewer. A profile we cannot use (not RGB, malformed) is
    dropped and the pixels are kept as they are."""
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if source.profile.xcolor_space.strip() != "RGB":
            return im
        transform = ImageCms.buildTransform(
            source, _srgb(), im.mode, im.mode, ImageCms.Intent.RELATIVE_COLORIMETRIC
        )
        converted = ImageCms.applyTransform(im, transform)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return im
    return converted if converted is not None else im


def _encode(im: Image.Image, pillow_format: str, limits: ImageLimits) -> bytes:
    """Encode with no metadata: empty EXIF/XMP and no ICC profile, whatever the image carries."""
    buffer = io.BytesIO()
    bare: dict[str, object] = {"exif": b"", "xmp": b"", "icc_profile": None}
    if pillow_format == "JPEG":
        flat = _on_white(im) if im.mode == "RGBA" else im
        flat.save(
            buffer, format="JPEG", quality=limits.quality, optimize=limits.jpeg_optimize, **bare
        )
    else:
        im.save(buffer, format="WEBP", quality=limits.quality, method=limits.webp_method, **bare)
    return buffer.getvalue()


def _on_white(im: Image.Image) -> Image.Image:
    page = Image.new("RGBA", im.size, (255, 255, 255, 255))
    flat = Image.alpha_composite(page, im).convert("RGB")
    flat.info = {}
    return flat
