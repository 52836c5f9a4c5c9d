"""PDQ hashing, the hash-list file (format, reload on change) and the PDQ scanner."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
from PIL import Image

from tests.media_factory.safety import recompressed, textured_photo
from transcode_worker.derivatives.moderation import Scanner, ScanVerdict
from transcode_worker.safety.pdq import (
    DEFAULT_DISTANCE,
    HashList,
    HashListError,
    PdqScanner,
    parse_hash_list,
    pdq_distance,
    pdq_hash,
)


@pytest.fixture(scope="module")
def listed() -> Image.Image:
    return textured_photo(640, 480, seed=1)


def write_list(path: Path, *lines: str) -> Path:
    # Write then rename, as operators are told to: a reader never sees half a file.
    partial = path.with_suffix(".partial")
    partial.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    partial.replace(path)
    return path


def test_hash_is_64_hex_digits_with_quality(listed: Image.Image) -> None:
    digest = pdq_hash(listed)
    assert len(digest.hex) == 64
    assert int(digest.hex, 16) >= 0
    assert digest.quality == 100


def test_a_mirror_image_is_a_different_hash() -> None:
    """PDQ is not flip-invariant (ThreatExchange hashes the 8 dihedral variants when it wants
    that): a left-right mirror of a split image lands far beyond the match distance."""
    image = Image.new("RGB", (128, 128), (0, 0, 0))
    image.paste((255, 255, 255), (64, 0, 128, 128))
    digest = pdq_hash(image)
    mirrored = pdq_hash(image.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    assert pdq_distance(digest.hex, digest.hex) == 0
    # A mirror flips the sign of the odd horizontal frequencies: about half the bits move.
    assert pdq_distance(digest.hex, mirrored.hex) > DEFAULT_DISTANCE


def test_a_flat_image_has_quality_zero() -> None:
    assert pdq_hash(Image.new("RGB", (200, 200), (128, 128, 128))).quality == 0


def test_transparency_is_flattened_on_white() -> None:
    clear = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    assert pdq_hash(clear).hex == pdq_hash(Image.new("RGB", (64, 64), (255, 255, 255))).hex


def test_hash_list_format(tmp_path: Path) -> None:
    text = "\n".join(
        [
            "# ThreatExchange export",
            "",
            "  " + "A" * 64 + "  # upper case is fine",
            "0" * 64,
            "0" * 64,
        ]
    )
    assert parse_hash_list(text) == frozenset({int("a" * 64, 16), 0})
    with pytest.raises(HashListError, match="line 2"):
        parse_hash_list("0" * 64 + "\n" + "f" * 63)
    with pytest.raises(HashListError, match="line 1"):
        parse_hash_list("z" * 64)


def test_a_recompressed_copy_matches_and_an_unrelated_photo_does_not(
    listed: Image.Image, tmp_path: Path
) -> None:
    path = write_list(tmp_path / "pdq.txt", "# blocked", pdq_hash(listed).hex)
    scanner = PdqScanner.from_file(path)
    copy = recompressed(listed, scale=0.9, quality=70)
    assert pdq_distance(pdq_hash(copy).hex, pdq_hash(listed).hex) <= DEFAULT_DISTANCE

    verdict = scanner.scan(copy)
    assert verdict == ScanVerdict(blocked=True, reason="hash_match", hash_hex=pdq_hash(copy).hex)
    assert scanner.scan(listed).blocked
    for seed in (2, 3, 4):
        assert not scanner.scan(textured_photo(640, 480, seed=seed)).blocked


def test_the_list_reloads_when_the_file_changes(listed: Image.Image, tmp_path: Path) -> None:
    path = write_list(tmp_path / "pdq.txt", "# nothing yet")
    scanner = PdqScanner.from_file(path)
    assert not scanner.scan(listed).blocked

    write_list(path, pdq_hash(listed).hex)
    # The rename gives a new size; pin the mtime forward too, in case a coarse clock repeats it.
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert scanner.scan(listed).blocked

    write_list(path, "# cleared")
    assert not scanner.scan(listed).blocked


def test_low_quality_images_never_block(tmp_path: Path) -> None:
    """A flat image's hash is noise: listed or not, PDQ does not act on it (quality < 50)."""
    flat = Image.new("RGB", (300, 300), (90, 90, 90))
    path = write_list(tmp_path / "pdq.txt", pdq_hash(flat).hex)
    verdict = PdqScanner.from_file(path).scan(flat)
    assert not verdict.blocked
    assert verdict.hash_hex == pdq_hash(flat).hex
    assert PdqScanner.from_file(path, min_quality=0).scan(flat).blocked


def test_a_bad_list_fails_at_start_and_a_missing_one_is_a_scanner_error(tmp_path: Path) -> None:
    with pytest.raises(HashListError):
        PdqScanner.from_file(write_list(tmp_path / "bad.txt", "not a hash"))
    path = write_list(tmp_path / "pdq.txt", "0" * 64)
    scanner = PdqScanner.from_file(path)
    path.unlink()
    with pytest.raises(FileNotFoundError):
        scanner.scan(textured_photo(64, 64))


def test_scanner_keeps_the_plug_in_shape_and_pickles(listed: Image.Image, tmp_path: Path) -> None:
    path = write_list(tmp_path / "pdq.txt", pdq_hash(listed).hex)
    scanner: Scanner = PdqScanner.from_file(path)
    clone = pickle.loads(pickle.dumps(scanner))
    assert clone == scanner
    assert clone.scan(listed).blocked
    assert "_loaded" not in repr(HashList(path))


@pytest.mark.parametrize(("distance", "quality"), [(-1, 50), (257, 50), (31, 101)])
def test_settings_are_validated(tmp_path: Path, distance: int, quality: int) -> None:
    with pytest.raises(ValueError, match="must be within"):
        PdqScanner(hash_list=HashList(tmp_path / "x"), max_distance=distance, min_quality=quality)


def test_large_images_are_reduced_before_hashing_and_still_match() -> None:
    large = textured_photo(1600, 1200, seed=5)
    reduced, full = pdq_hash(large), pdq_hash(large, max_side=0)
    assert pdq_distance(reduced.hex, full.hex) <= DEFAULT_DISTANCE // 2
