"""Lossless metadata removal (privacy of originals): real photos with EXIF/GPS/XMP, and videos
with a `©xyz` location atom; the pixels and samples come out bit for bit the same."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import av
import pillow_heif
import pytest
from PIL import Image

from tests.media_factory import av as av_media
from tests.media_factory import images
from transcode_worker.derivatives.strip_images import StripError, strip_image, strip_image_bytes
from transcode_worker.derivatives.strip_mp4 import strip_mp4

pillow_heif.register_heif_opener()

GPS_IFD = 0x8825
MAKE = 0x010F


def _decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize(
    ("make", "content_type", "orientation"),
    [
        (images.oriented_jpeg_with_gps, "image/jpeg", 6),
        (images.png_with_gps, "image/png", 6),
        (images.webp_with_gps, "image/webp", 6),
        (images.heic_with_gps, "image/heic", None),
    ],
    ids=["jpeg", "png", "webp", "heic"],
)
def test_photos_lose_gps_camera_and_xmp_but_keep_pixels_and_orientation(
    make: Callable[[], bytes], content_type: str, orientation: int | None
) -> None:
    original = make()
    before = _decoded(original)
    assert before.getexif().get_ifd(GPS_IFD), "the test photo must carry GPS"

    stripped = strip_image_bytes(original)

    assert stripped is not None
    assert stripped.content_type == content_type
    after = _decoded(stripped.data)
    assert after.tobytes() == before.tobytes()  # lossless: not re-encoded
    assert after.size == before.size
    exif = after.getexif()
    assert not exif.get_ifd(GPS_IFD)
    assert MAKE not in exif
    assert b"FerryCam" not in stripped.data
    assert images.XMP not in stripped.data
    assert b"dc:creator" not in stripped.data
    # Only the orientation survives (the photo is still shown upright).
    assert dict(exif) == ({} if orientation is None else {images.ORIENTATION: orientation})
    assert len(stripped.data) <= len(original)


def test_jpeg_keeps_its_icc_profile_and_drops_comments_and_trailers() -> None:
    original = images.oriented_jpeg_with_gps() + b"trailing secondary image with Exif GPS"
    stripped = strip_image_bytes(original)
    assert stripped is not None
    assert _decoded(stripped.data).info.get("icc_profile") == images.srgb_icc()
    assert b"shot at home" not in stripped.data
    assert b"trailing" not in stripped.data
    assert stripped.data.endswith(b"\xff\xd9")
    assert "COM" in stripped.removed
    assert "data after EOI" in stripped.removed


def test_progressive_jpeg_segments_between_scans_are_kept() -> None:
    image = images.photo(160, 120, seed=3)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", progressive=True, exif=images._gps_exif(), quality=85)
    stripped = strip_image_bytes(buffer.getvalue())
    assert stripped is not None
    assert _decoded(stripped.data).tobytes() == _decoded(buffer.getvalue()).tobytes()
    assert not _decoded(stripped.data).getexif().get_ifd(GPS_IFD)


def test_a_clean_photo_or_a_gif_is_not_copied(tmp_path: Path) -> None:
    clean = tmp_path / "clean.jpg"
    plain = io.BytesIO()
    images.photo(64, 48).save(plain, "JPEG")
    clean.write_bytes(plain.getvalue())
    assert strip_image(clean, tmp_path / "out.jpg") is None
    gif = tmp_path / "a.gif"
    gif.write_bytes(images.static_gif())
    assert strip_image(gif, tmp_path / "out.gif") is None
    assert not (tmp_path / "out.jpg").exists()
    assert not (tmp_path / "out.gif").exists()


def test_a_truncated_jpeg_is_refused() -> None:
    data = images.oriented_jpeg_with_gps()
    with pytest.raises(StripError):
        strip_image_bytes(data[:300])


def _packets(path: Path) -> list[tuple[str, bytes]]:
    with av.open(str(path)) as container:
        return [(packet.stream.type, bytes(packet)) for packet in container.demux() if packet.size]


@pytest.mark.parametrize("faststart", [False, True], ids=["moov-last", "moov-first"])
def test_mp4_loses_its_location_atom_and_keeps_every_sample(
    tmp_path: Path, faststart: bool
) -> None:
    source = av_media.mp4_with_location(tmp_path / "in.mp4", faststart=faststart)
    assert b"\xa9xyz" in source.read_bytes()
    target = tmp_path / "out.mp4"

    stripped = strip_mp4(source, target)

    assert stripped is not None
    assert stripped.content_type == "video/mp4"
    assert "moov/udta" in stripped.removed
    data = target.read_bytes()
    assert b"\xa9xyz" not in data
    assert av_media.LOCATION.encode() not in data
    assert b"FerryPhone" not in data
    # Same samples at the right places: with moov first, every chunk offset moved down.
    assert _packets(target) == _packets(source)
    assert len(data) < source.stat().st_size


def test_quicktime_maker_and_location_metadata_are_removed(tmp_path: Path) -> None:
    source = tmp_path / "in.mov"
    av_media.video(source, width=96, height=64, seconds=0.4, container_format="mov", audio=False)
    # ffmpeg's mov muxer writes ©xyz itself; add it the way a phone would to be sure.
    with av.open(str(source)) as container:
        assert container.format.name.startswith("mov")
    relocated = tmp_path / "loc.mov"
    with av.open(str(source)) as inp, av.open(str(relocated), "w", format="mov") as out:
        out.metadata["location"] = av_media.LOCATION
        out.metadata["make"] = "FerryPhone"
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(video=0):
            if packet.dts is None:
                continue
            packet.stream = stream
            out.mux(packet)
    assert b"\xa9xyz" in relocated.read_bytes()
    target = tmp_path / "out.mov"
    stripped = strip_mp4(relocated, target)
    assert stripped is not None
    assert stripped.content_type == "video/quicktime"
    assert b"\xa9xyz" not in target.read_bytes()
    assert b"FerryPhone" not in target.read_bytes()
    assert _packets(target) == _packets(relocated)


def test_a_video_without_metadata_or_not_mp4_is_not_copied(tmp_path: Path) -> None:
    plain = av_media.h264_mp4(tmp_path / "plain.mp4", seconds=0.4, audio=False)
    # PyAV's mp4 muxer adds an encoder tag in udta: strip it once, then nothing is left.
    once = tmp_path / "once.mp4"
    strip_mp4(plain, once)
    assert strip_mp4(once, tmp_path / "twice.mp4") is None
    webm = av_media.vp9_webm(tmp_path / "v.webm", seconds=0.4)
    assert strip_mp4(webm, tmp_path / "out.webm") is None


def test_a_broken_mp4_is_refused(tmp_path: Path) -> None:
    source = av_media.mp4_with_location(tmp_path / "in.mp4")
    broken = tmp_path / "broken.mp4"
    data = source.read_bytes()
    broken.write_bytes(data[: len(data) - 40])  # the moov (last) is cut
    with pytest.raises(StripError):
        strip_mp4(broken, tmp_path / "out.mp4")
