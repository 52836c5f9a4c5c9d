"""The recipients' original: made next to the other derivatives, shown per reader."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.media_records import CLEAN_ORIGINAL_VARIANT, MediaRecord, StoredVariant
from shared.models import MediaState, MediaType
from tests.media_factory import images
from transcode_worker.derivatives.clean_original import with_clean_original
from transcode_worker.derivatives.strip_images import strip_image
from transcode_worker.derivatives.types import Derived, DeriveError, StripError


def _thumbs(source: Path, out_dir: Path) -> Derived:
    return Derived(meta={"mime": "image/jpeg"})


def test_a_gps_photo_gets_a_clean_copy_with_its_hash(tmp_path: Path) -> None:
    source = tmp_path / "original"
    source.write_bytes(images.oriented_jpeg_with_gps())
    derived = with_clean_original(source, tmp_path, derive=_thumbs, strip=strip_image)
    (variant,) = derived.variants
    (stored,) = derived.files
    assert variant.name == CLEAN_ORIGINAL_VARIANT
    assert variant.key == stored.key == "original_clean.jpg"
    assert variant.content_type == "image/jpeg"
    data = stored.path.read_bytes()
    assert variant.sha256 == hashlib.sha256(data).hexdigest()
    assert variant.size == len(data)
    assert not (tmp_path / "original_clean.partial").exists()


def test_blocked_media_and_clean_photos_get_no_copy(tmp_path: Path) -> None:
    source = tmp_path / "original"
    source.write_bytes(images.oriented_jpeg_with_gps())

    def blocked(source: Path, out_dir: Path) -> Derived:
        return Derived(blocked_reason="hash match")

    assert with_clean_original(source, tmp_path, derive=blocked, strip=strip_image).files == []
    nothing = with_clean_original(source, tmp_path, derive=_thumbs, strip=lambda s, t: None)
    assert nothing.variants == []


def test_an_unparsable_container_fails_the_media(tmp_path: Path) -> None:
    def broken(source: Path, target: Path) -> str | None:
        raise StripError("no moov")

    with pytest.raises(DeriveError) as raised:
        with_clean_original(tmp_path / "x", tmp_path, derive=_thumbs, strip=broken)
    assert raised.value.code == "corrupt_media"


def _record(variants: list[StoredVariant]) -> MediaRecord:
    now = datetime.now(UTC)
    return MediaRecord(
        media_id="m_" + "a" * 22,
        owner="alice",
        state=MediaState.READY,
        media_type=MediaType.IMAGE,
        content_type="image/jpeg",
        size=1000,
        sha256="1" * 64,
        created_at=now,
        updated_at=now,
        upload_kind="single",
        object_key="o/m_" + "a" * 22,
        variants=variants,
    )


def test_each_reader_sees_the_hash_and_size_of_what_they_download() -> None:
    clean = StoredVariant(
        name=CLEAN_ORIGINAL_VARIANT,
        content_type="image/jpeg",
        size=900,
        sha256="2" * 64,
        key="d/image/" + "1" * 64 + "/original_clean.jpg",
    )
    thumb = StoredVariant(name="thumb_320", content_type="image/webp", size=10, key="d/x")
    record = _record([thumb, clean])
    owner, other = record.document(reader="alice"), record.document(reader="bob")
    assert (owner.sha256, owner.size) == ("1" * 64, 1000)
    assert (other.sha256, other.size) == ("2" * 64, 900)
    assert [variant.name for variant in other.variants] == ["thumb_320"]
    assert [variant.name for variant in record.info().variants] == ["thumb_320"]
    # Without a clean copy (nothing to remove), everyone downloads, and sees, the original.
    plain = _record([thumb]).document(reader="bob")
    assert (plain.sha256, plain.size) == ("1" * 64, 1000)
