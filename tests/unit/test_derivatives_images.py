"""Image derivatives: thumbnails, meta, refusals and moderation, on media made at run time."""

from __future__ import annotations

import io
import multiprocessing
import pickle
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import blurhash
import pytest
from PIL import Image, ImageFile, _imaging

from tests.media_factory import images as media
from transcode_worker.derivatives.images import (
    ALLOWED_FORMATS,
    ImageLimits,
    derive_image,
    draft_for,
    fit_within,
)
from transcode_worker.derivatives.moderation import (
    PerceptualHashScanner,
    Scanner,
    ScanVerdict,
    phash_hex,
)
from transcode_worker.derivatives.types import Derived, DeriveError, ScanFailed

LIMITS = ImageLimits()
SIZES = ("thumb_320", "thumb_640", "thumb_1280")


def derive(
    tmp_path: Path,
    data: bytes,
    *,
    limits: ImageLimits = LIMITS,
    thumb_format: str = "webp",
    scanner: Scanner | None = None,
) -> Derived:
    source = media.write(tmp_path / "original", data)
    return derive_image(
        source, tmp_path / "out", limits=limits, thumb_format=thumb_format, scanner=scanner
    )


def refusal(tmp_path: Path, data: bytes, *, limits: ImageLimits = LIMITS) -> str:
    with pytest.raises(DeriveError) as caught:
        derive(tmp_path, data, limits=limits)
    assert caught.value.message
    assert not (tmp_path / "out").exists()  # nothing written for a refused image
    return caught.value.code


def by_name(derived: Derived) -> dict[str, tuple[int | None, int | None]]:
    return {variant.name: (variant.width, variant.height) for variant in derived.variants}


METADATA_KEYS = ("exif", "xmp", "XML:com.adobe.xmp", "icc_profile", "comment")


def opened(derived: Derived, name: str) -> Image.Image:
    """The decoded thumbnail `name`, after checking it is what its variant says and that it
    carries no metadata at all (every thumbnail of every test goes through here)."""
    variant = next(v for v in derived.variants if v.name == name)
    file = next(f for f in derived.files if f.key == variant.key)
    with Image.open(file.path) as image:
        image.load()
        assert file.path.stat().st_size == variant.size
        assert (image.width, image.height) == (variant.width, variant.height)
        assert Image.MIME[image.format or ""] == variant.content_type == file.content_type
        assert not image.getexif(), name  # no EXIF: no GPS, no orientation, no camera
        assert not [key for key in METADATA_KEYS if key in image.info], name
        return image.copy()


# Where the stored top-left marker must appear once each EXIF orientation is applied.
MARKER_CORNER = {
    1: "top_left",
    2: "top_right",  # mirrored
    3: "bottom_right",  # rotated 180°
    4: "bottom_left",  # flipped
    5: "top_left",  # transposed
    6: "top_right",  # rotated 90° clockwise
    7: "bottom_right",  # transversed
    8: "bottom_left",  # rotated 90° counter-clockwise
}


def corner_colours(image: Image.Image) -> dict[str, tuple[int, ...]]:
    rgb = image.convert("RGB")
    inset = 4
    points = {
        "top_left": (inset, inset),
        "top_right": (rgb.width - 1 - inset, inset),
        "bottom_left": (inset, rgb.height - 1 - inset),
        "bottom_right": (rgb.width - 1 - inset, rgb.height - 1 - inset),
    }
    colours = {}
    for corner, point in points.items():
        pixel = rgb.getpixel(point)
        assert isinstance(pixel, tuple)
        colours[corner] = pixel
    return colours


def is_marker(colour: tuple[int, ...]) -> bool:
    red, green, blue = colour
    return red > 200 and max(green, blue) < 70


# -- orientation and metadata ---------------------------------------------------------------------


def test_exif_orientation_is_applied_and_every_piece_of_metadata_dropped(tmp_path: Path) -> None:
    derived = derive(tmp_path, media.oriented_jpeg_with_gps(400, 200))  # stored 400x200, rot 6

    assert derived.meta["width"] == 200
    assert derived.meta["height"] == 400
    assert derived.meta["mime"] == "image/jpeg"
    assert derived.meta["animated"] is False
    # Never upscaled: 640 and 1280 are the image's own (displayed) size.
    assert by_name(derived) == {
        "thumb_320": (160, 320),
        "thumb_640": (200, 400),
        "thumb_1280": (200, 400),
    }
    for name in SIZES:
        thumb = opened(derived, name)  # checks: no EXIF, GPS, XMP, ICC or comment
        # The stored top-left marker is at the top-right once rotated 90° clockwise.
        colours = corner_colours(thumb)
        assert [c for c, colour in colours.items() if is_marker(colour)] == ["top_right"], name
    # Belt and braces: none of the original's metadata survives anywhere in the bytes.
    for file in derived.files:
        data = file.path.read_bytes()
        for trace in (b"Exif", b"FerryCam", b"xmpmeta", b"shot at home", b"ICC_PROFILE", b"ICCP"):
            assert trace not in data, (file.key, trace)


@pytest.mark.parametrize("orientation", sorted(MARKER_CORNER))
def test_every_exif_orientation(tmp_path: Path, orientation: int) -> None:
    derived = derive(tmp_path, media.jpeg(400, 200, orientation=orientation, marker=True))
    swapped = orientation >= 5
    assert (derived.meta["width"], derived.meta["height"]) == (
        (200, 400) if swapped else (400, 200)
    )
    colours = corner_colours(opened(derived, "thumb_320"))
    marked = [corner for corner, colour in colours.items() if is_marker(colour)]
    assert marked == [MARKER_CORNER[orientation]], colours


@pytest.mark.parametrize("orientation", [0, 9, 65535])
def test_a_meaningless_orientation_is_ignored(tmp_path: Path, orientation: int) -> None:
    derived = derive(tmp_path, media.jpeg(400, 200, orientation=orientation, marker=True))
    assert (derived.meta["width"], derived.meta["height"]) == (400, 200)


def test_an_unusable_icc_profile_is_dropped(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    media.photo(300, 200).save(buffer, format="JPEG", icc_profile=b"not a profile" * 20)
    derived = derive(tmp_path, buffer.getvalue())
    assert opened(derived, "thumb_320").mode == "RGB"  # and no ICC: see `opened`


def test_no_metadata_in_jpeg_output_either(tmp_path: Path) -> None:
    derived = derive(tmp_path, media.oriented_jpeg_with_gps(), thumb_format="jpeg")
    assert [f.key for f in derived.files] == ["thumb_320.jpg", "thumb_640.jpg", "thumb_1280.jpg"]
    for name in SIZES:
        assert opened(derived, name).mode == "RGB"  # and no metadata: see `opened`


def test_the_source_exif_really_had_gps_and_orientation() -> None:
    """Guards the factory: the test above would pass vacuously on a bare JPEG."""
    with Image.open(io.BytesIO(media.oriented_jpeg_with_gps())) as original:
        exif = original.getexif()
        assert exif[media.ORIENTATION] == 6
        assert exif.get_ifd(media.GPS_IFD)[1] == "N"
        assert {"xmp", "icc_profile", "comment"} <= set(original.info)


# -- sizes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "edge", "expected"),
    [
        ((4000, 3000), 1280, (1280, 960)),
        ((3000, 4000), 320, (240, 320)),
        ((500, 300), 320, (320, 192)),
        ((500, 300), 640, (500, 300)),
        ((1280, 1280), 1280, (1280, 1280)),
        ((10000, 3), 320, (320, 1)),
    ],
)
def test_fit_within_never_upscales(
    size: tuple[int, int], edge: int, expected: tuple[int, int]
) -> None:
    assert fit_within(*size, edge) == expected


def test_small_images_get_every_variant_without_upscaling(tmp_path: Path) -> None:
    derived = derive(tmp_path, media.png(500, 300))
    assert by_name(derived) == {
        "thumb_320": (320, 192),
        "thumb_640": (500, 300),
        "thumb_1280": (500, 300),
    }
    assert [f.key for f in derived.files] == ["thumb_320.webp", "thumb_640.webp", "thumb_1280.webp"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        f.key for f in derived.files
    )
    assert all(v.content_type == "image/webp" for v in derived.variants)


def test_a_large_photo_gets_the_full_ladder(tmp_path: Path) -> None:
    derived = derive(tmp_path, media.jpeg(4000, 3000))
    assert (derived.meta["width"], derived.meta["height"]) == (4000, 3000)
    assert by_name(derived) == {
        "thumb_320": (320, 240),
        "thumb_640": (640, 480),
        "thumb_1280": (1280, 960),
    }
    sizes = [v.size for v in derived.variants]
    assert sizes == sorted(sizes)  # bigger thumbnails, more bytes


def test_jpeg_is_decoded_with_draft_at_the_largest_needed_size() -> None:
    with Image.open(io.BytesIO(media.jpeg(4000, 3000)), formats=["JPEG"]) as im:
        assert draft_for(im, 1280) == (1280, 960)
        assert im.size == (2000, 1500)  # libjpeg decodes at 1/2: still covers 1280x960
        im.load()
        assert im.size == (2000, 1500)


def test_draft_never_goes_below_the_thumbnail_for_panoramas() -> None:
    with Image.open(io.BytesIO(media.jpeg(4000, 1000)), formats=["JPEG"]) as im:
        draft_for(im, 1280)
        assert im.size == (2000, 500)
        assert im.width >= 1280


def test_no_draft_when_the_image_is_already_small() -> None:
    with Image.open(io.BytesIO(media.jpeg(800, 600)), formats=["JPEG"]) as im:
        assert draft_for(im, 1280) is None
        assert im.size == (800, 600)
    with Image.open(io.BytesIO(media.png(800, 600))) as im:
        assert draft_for(im, 320) is None  # not a JPEG: no DCT scaling
        assert im.size == (800, 600)


# -- pixels ---------------------------------------------------------------------------------------


def test_png_alpha_is_kept_in_webp(tmp_path: Path) -> None:
    derived = derive(tmp_path, media.png_with_alpha(300, 200))
    for name in SIZES:
        thumb = opened(derived, name)
        assert thumb.mode == "RGBA"
        alpha = thumb.getchannel("A")
        assert alpha.getpixel((2, thumb.height // 2)) == 0  # left: transparent
        assert alpha.getpixel((thumb.width - 3, thumb.height // 2)) == 255  # right: opaque


def test_transparent_pixels_do_not_darken_edges(tmp_path: Path) -> None:
    # Opaque white beside fully transparent *black*: resampled without premultiplying, the
    # edge pixels would turn gray.
    rgba = Image.new("RGBA", (1000, 400), (0, 0, 0, 0))
    rgba.paste((255, 255, 255, 255), (500, 0, 1000, 400))
    buffer = io.BytesIO()
    rgba.save(buffer, format="PNG")
    derived = derive(tmp_path, buffer.getvalue(), limits=ImageLimits(quality=100))
    thumb = opened(derived, "thumb_320")
    for x in range(thumb.width):
        pixel = thumb.getpixel((x, thumb.height // 2))
        assert isinstance(pixel, tuple)
        red, green, blue, alpha = pixel
        if alpha > 32:  # visible: must still be white
            assert min(red, green, blue) > 225, (x, pixel)


def test_jpeg_output_flattens_alpha_on_white(tmp_path: Path) -> None:
    derived = derive(tmp_path, media.png_with_alpha(300, 200), thumb_format="jpeg")
    thumb = opened(derived, "thumb_320")
    assert thumb.mode == "RGB"
    left = thumb.getpixel((2, thumb.height // 2))
    assert isinstance(left, tuple)
    assert min(left) > 240  # the transparent half is white


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    derived = derive(tmp_path, media.cmyk_jpeg(300, 200))
    assert opened(derived, "thumb_320").mode == "RGB"
    assert (derived.meta["width"], derived.meta["height"]) == (300, 200)


def test_sixteen_bit_gray_is_scaled_not_clipped(tmp_path: Path) -> None:
    derived = derive(tmp_path, media.gray16_png())
    pixel = opened(derived, "thumb_320").convert("L").getpixel((10, 10))
    assert isinstance(pixel, int)
    assert 120 <= pixel <= 136  # 32768 of 65535 is mid-gray, not white


def test_blurhash_is_a_valid_hash_of_4x3_components(tmp_path: Path) -> None:
    derived = derive(tmp_path, media.jpeg(640, 480))
    value = derived.meta["blurhash"]
    assert isinstance(value, str)
    assert value
    assert blurhash.is_valid_blurhash(value)
    assert value[0] == "L"  # size flag: (4 - 1) + (3 - 1) * 9 = 21, base 83 "L"


# -- formats --------------------------------------------------------------------------------------


def test_animated_gif_is_flagged_and_thumbnailed_from_its_first_frame(tmp_path: Path) -> None:
    derived = derive(tmp_path, media.animated_gif(frames=3, size=(120, 80)))
    assert derived.meta["animated"] is True
    assert derived.meta["mime"] == "image/gif"
    assert (derived.meta["width"], derived.meta["height"]) == (120, 80)
    thumb = opened(derived, "thumb_320")
    assert getattr(thumb, "n_frames", 1) == 1


def test_animated_webp_is_flagged(tmp_path: Path) -> None:
    derived = derive(tmp_path, media.animated_webp(frames=3))
    assert derived.meta["animated"] is True
    assert derived.meta["mime"] == "image/webp"


def test_a_still_gif_is_not_animated(tmp_path: Path) -> None:
    assert derive(tmp_path, media.static_gif()).meta["animated"] is False


def test_heic_decodes_at_its_size(tmp_path: Path) -> None:
    derived = derive(tmp_path, media.heic(640, 480))
    assert (derived.meta["width"], derived.meta["height"]) == (640, 480)
    assert derived.meta["mime"] == "image/heic"
    assert by_name(derived)["thumb_320"] == (320, 240)
    assert opened(derived, "thumb_640").mode == "RGB"


# -- refusals -------------------------------------------------------------------------------------


def test_truncated_jpeg_is_corrupt(tmp_path: Path) -> None:
    assert refusal(tmp_path, media.truncated_jpeg()) == "corrupt_media"


def test_truncated_stays_corrupt_even_if_someone_allowed_truncated_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    assert refusal(tmp_path, media.truncated_jpeg()) == "corrupt_media"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the process's setting is put back


@pytest.mark.parametrize(
    "bomb",
    [
        media.png_bomb,  # 60000x60000 RGBA: 14 GB decoded
        media.webp_claiming,  # 16383x16383: libwebp would allocate its canvas on open
        media.gif_claiming,  # 65535x65535 logical screen
        media.jpeg_claiming,  # 65000x65000
    ],
)
def test_decompression_bombs_are_refused_from_their_header(
    tmp_path: Path, bomb: Callable[[], bytes]
) -> None:
    data = bomb()
    assert len(data) < 200
    allocations_before = _imaging.get_stats()["new_count"]
    started = time.perf_counter()
    assert refusal(tmp_path, data) == "too_many_pixels"
    assert time.perf_counter() - started < 1.0
    # Pillow counts every image buffer it allocates: not one was.
    assert _imaging.get_stats()["new_count"] == allocations_before


def test_pixel_cap_follows_the_limits_and_pillow_is_put_back(tmp_path: Path) -> None:
    before = Image.MAX_IMAGE_PIXELS
    data = media.png(500, 300)  # 150 000 pixels
    # Pillow's bomb check: an error over twice the cap, only a warning between the cap and
    # twice the cap; our own check from the header. All three end in the same refusal.
    for cap in (149_999, 100_000, 50_000):
        assert refusal(tmp_path, data, limits=ImageLimits(max_pixels=cap)) == "too_many_pixels"
    restored = Image.MAX_IMAGE_PIXELS
    assert restored == before
    assert derive(tmp_path, data, limits=ImageLimits(max_pixels=150_000)).variants


def test_a_side_over_the_dimension_cap_is_refused(tmp_path: Path) -> None:
    narrow = media.png_claiming(25_000, 10)  # only 250 000 pixels, but 25 000 wide
    assert refusal(tmp_path, narrow) == "too_large_dimensions"


def test_too_many_frames_is_refused(tmp_path: Path) -> None:
    gif = media.animated_gif(frames=3)
    assert refusal(tmp_path, gif, limits=ImageLimits(max_frames=2)) == "too_many_frames"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_bytes_are_refused(tmp_path: Path, seed: int) -> None:
    code = refusal(tmp_path, media.random_bytes(4096, seed=seed))
    assert code in {"unsupported_format", "corrupt_media"}


def test_a_format_outside_the_allow_list_is_unsupported(tmp_path: Path) -> None:
    assert "BMP" not in ALLOWED_FORMATS
    assert refusal(tmp_path, media.bmp()) == "unsupported_format"


def test_an_unknown_output_format_is_a_programming_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="thumb_format"):
        derive(tmp_path, media.png(), thumb_format="avif")


@pytest.mark.parametrize(
    "options",
    [
        {"max_pixels": 0},
        {"thumb_sizes": ()},
        {"thumb_sizes": (320, 320)},
        {"quality": 0},
        {"quality": 101},
    ],
)
def test_limits_are_validated(options: dict[str, int]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies by field
        ImageLimits(**options)  # type: ignore[arg-type]


# -- moderation -----------------------------------------------------------------------------------


def test_a_blocklisted_image_is_blocked_with_no_files(tmp_path: Path) -> None:
    data = media.jpeg(800, 600, seed=7)
    with Image.open(io.BytesIO(data)) as original:
        entry = phash_hex(original)
    scanner = PerceptualHashScanner(blocklist=frozenset({entry}))

    derived = derive(tmp_path, data, scanner=scanner)

    assert derived.blocked_reason == "hash_match"
    assert derived.files == []
    assert derived.variants == []
    assert "blurhash" not in derived.meta  # not even a blurred preview of it
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_blocklisted_photo_still_matches_after_draft_and_resize(tmp_path: Path) -> None:
    # The scanner sees a drafted, resized 1280 px copy; the entry came from the full 12 MP.
    data = media.jpeg(4000, 3000, seed=8)
    with Image.open(io.BytesIO(data)) as original:
        entry = phash_hex(original)
    scanner = PerceptualHashScanner(blocklist=frozenset({entry}), max_distance=6)
    assert derive(tmp_path, data, scanner=scanner).blocked_reason is not None


def test_other_images_pass_the_scanner(tmp_path: Path) -> None:
    with Image.open(io.BytesIO(media.jpeg(800, 600, seed=7))) as blocked:
        scanner = PerceptualHashScanner(blocklist=frozenset({phash_hex(blocked)}))
    derived = derive(tmp_path, media.jpeg(800, 600, seed=30), scanner=scanner)
    assert derived.blocked_reason is None
    assert len(derived.variants) == 3


class _Recorder:
    """A custom scanner: records what it was shown, blocks everything."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, tuple[int, int]]] = []

    def scan(self, image: Image.Image) -> ScanVerdict:
        self.seen.append((image.mode, image.size))
        return ScanVerdict(blocked=True, reason="custom_rule", hash_hex="")


def test_scanners_are_pluggable_and_see_the_oriented_image(tmp_path: Path) -> None:
    recorder = _Recorder()
    derived = derive(tmp_path, media.oriented_jpeg_with_gps(400, 200), scanner=recorder)
    assert derived.blocked_reason == "custom_rule"
    assert recorder.seen == [("RGB", (200, 400))]


class _Broken:
    def scan(self, image: Image.Image) -> ScanVerdict:
        raise ConnectionError("scanner unavailable")


def test_a_failing_scanner_publishes_nothing(tmp_path: Path) -> None:
    with pytest.raises(ScanFailed, match="ConnectionError") as caught:
        derive(tmp_path, media.jpeg(), scanner=_Broken())
    assert isinstance(caught.value.__cause__, ConnectionError)
    assert not (tmp_path / "out").exists()
    # It crosses from a pool process by pickling, as it is.
    copy = pickle.loads(pickle.dumps(caught.value))
    assert isinstance(copy, ScanFailed)
    assert str(copy) == str(caught.value)


def test_scans_are_reported_whatever_the_verdict(tmp_path: Path) -> None:
    assert derive(tmp_path / "a", media.jpeg(), scanner=_Recorder()).scanned
    passed = derive(
        tmp_path / "b", media.jpeg(), scanner=PerceptualHashScanner(blocklist=frozenset())
    )
    assert passed.scanned
    assert passed.blocked_reason is None
    assert not derive(tmp_path / "c", media.jpeg(), scanner=None).scanned


# -- worker processes -----------------------------------------------------------------------------


def _spawn_pool() -> ProcessPoolExecutor:
    # spawn: a fresh interpreter, so the HEIF opener must register itself in the child.
    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))


def test_runs_in_a_fresh_worker_process(tmp_path: Path) -> None:
    source = media.write(tmp_path / "photo.heic", media.heic(320, 240))
    scanner = PerceptualHashScanner(blocklist=frozenset({"0" * 16}), max_distance=0)
    limits = ImageLimits(quality=70)
    assert pickle.loads(pickle.dumps(limits)) == limits
    with _spawn_pool() as pool:
        future = pool.submit(derive_image, source, tmp_path / "out", limits=limits, scanner=scanner)
        derived = future.result(timeout=60)
    assert derived.meta["mime"] == "image/heic"
    assert by_name(derived)["thumb_320"] == (320, 240)
    assert all(file.path.is_file() for file in derived.files)


def test_a_refusal_crosses_the_process_boundary(tmp_path: Path) -> None:
    source = media.write(tmp_path / "bad.jpg", media.truncated_jpeg())
    with _spawn_pool() as pool:
        future = pool.submit(derive_image, source, tmp_path / "out", limits=LIMITS)
        with pytest.raises(DeriveError) as caught:
            future.result(timeout=60)
    assert caught.value.code == "corrupt_media"
