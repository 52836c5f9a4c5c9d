"""The perceptual-hash scanner: the hash itself, its robustness, and blocklist matching."""

from __future__ import annotations

import io
import itertools
import math
import pickle

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from tests.media_factory.images import photo
from transcode_worker.derivatives.moderation import (
    PHASH_BITS,
    PerceptualHashScanner,
    Scanner,
    ScanVerdict,
    hamming_distance,
    phash,
    phash_hex,
)


@pytest.fixture(scope="module")
def pictures() -> list[Image.Image]:
    return [photo(640, 480, seed=seed) for seed in range(6)]


def reference_phash(image: Image.Image) -> int:
    """The textbook definition, one coefficient at a time: DCT-II of the 32x32 gray, the 8x8
    lowest frequencies, thresholded at the median of the 63 AC terms."""
    gray = image.convert("L").resize((32, 32), Image.Resampling.LANCZOS)
    x = np.asarray(gray, dtype=np.float64)
    n = 32
    low = []
    for u in range(8):
        for v in range(8):
            total = 0.0
            for i in range(n):
                for j in range(n):
                    total += (
                        x[i, j]
                        * math.cos(math.pi * (2 * i + 1) * u / (2 * n))
                        * math.cos(math.pi * (2 * j + 1) * v / (2 * n))
                    )
            low.append(round(total, 6))
    threshold = float(np.median(low[1:]))
    return int("".join("1" if c > threshold else "0" for c in low), 2)


def test_phash_is_the_textbook_dct_hash() -> None:
    image = photo(96, 64, seed=3)
    assert phash(image) == reference_phash(image)


def test_phash_hex_is_sixteen_lowercase_hex_digits(pictures: list[Image.Image]) -> None:
    for picture in pictures:
        value = phash_hex(picture)
        assert len(value) == PHASH_BITS // 4
        assert value == value.lower()
        assert int(value, 16) == phash(picture)
        assert phash_hex(picture.copy()) == value  # deterministic


def test_plain_colours_hash_deterministically() -> None:
    # The DC bit alone: no float noise from the DCT leaks into the AC bits.
    assert phash_hex(Image.new("RGB", (50, 50), (128, 128, 128))) == "8000000000000000"
    assert phash_hex(Image.new("L", (7, 3), 0)) == "0000000000000000"


def test_different_pictures_are_far_apart(pictures: list[Image.Image]) -> None:
    hashes = [phash_hex(picture) for picture in pictures]
    closest = min(hamming_distance(a, b) for a, b in itertools.combinations(hashes, 2))
    assert closest > 12  # well beyond the default max_distance of 6


def _reencoded(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    with Image.open(buffer) as decoded:
        decoded.load()
        return decoded.copy()


def test_copies_of_a_picture_stay_close(pictures: list[Image.Image]) -> None:
    for picture in pictures:
        original = phash_hex(picture)
        copies = [
            _reencoded(picture, 40),
            picture.resize((320, 240), Image.Resampling.BILINEAR),
            ImageEnhance.Brightness(picture).enhance(1.1),
            picture.crop((8, 6, 632, 474)),
        ]
        for copy in copies:
            assert hamming_distance(original, phash_hex(copy)) <= 6


def test_transparency_is_seen_on_white() -> None:
    picture = photo(64, 64, seed=4).convert("RGBA")
    picture.putalpha(128)
    page = Image.new("RGBA", picture.size, (255, 255, 255, 255))
    assert phash(picture) == phash(Image.alpha_composite(page, picture))


def test_hamming_distance() -> None:
    assert hamming_distance("0" * 16, "0" * 16) == 0
    assert hamming_distance("0" * 16, "f" * 16) == 64
    assert hamming_distance("8000000000000001", "0000000000000000") == 2
    with pytest.raises(ValueError, match="hex digits"):
        hamming_distance("xyz", "0" * 16)


def test_scanner_blocks_within_the_distance(pictures: list[Image.Image]) -> None:
    target = pictures[0]
    scanner: Scanner = PerceptualHashScanner(blocklist=frozenset({phash_hex(target)}))

    exact = scanner.scan(target)
    assert exact == ScanVerdict(blocked=True, reason="hash_match", hash_hex=phash_hex(target))
    assert scanner.scan(_reencoded(target, 50)).blocked
    for other in pictures[1:]:
        verdict = scanner.scan(other)
        assert not verdict.blocked
        assert verdict.reason is None
        assert verdict.hash_hex == phash_hex(other)


def test_max_distance_is_inclusive(pictures: list[Image.Image]) -> None:
    picture = pictures[2]
    three_bits_off = f"{phash(picture) ^ 0b10101:016x}"
    near = frozenset({three_bits_off})
    assert PerceptualHashScanner(blocklist=near, max_distance=3).scan(picture).blocked
    assert not PerceptualHashScanner(blocklist=near, max_distance=2).scan(picture).blocked


def test_blocklist_entries_are_validated_when_loaded() -> None:
    with pytest.raises(ValueError, match="hex digits"):
        PerceptualHashScanner(blocklist=frozenset({"abc"}))
    with pytest.raises(ValueError, match="hex digits"):
        PerceptualHashScanner(blocklist=frozenset({"g" * 16}))
    with pytest.raises(ValueError, match="max_distance"):
        PerceptualHashScanner(blocklist=frozenset(), max_distance=65)
    # Upper case is the same hash.
    picture = photo(64, 48, seed=5)
    upper = PerceptualHashScanner(blocklist=frozenset({phash_hex(picture).upper()}))
    assert upper.scan(picture).blocked


def test_an_empty_blocklist_blocks_nothing(pictures: list[Image.Image]) -> None:
    scanner = PerceptualHashScanner(blocklist=frozenset())
    assert not any(scanner.scan(picture).blocked for picture in pictures)


def test_the_scanner_pickles_for_worker_processes(pictures: list[Image.Image]) -> None:
    scanner = PerceptualHashScanner(blocklist=frozenset({phash_hex(pictures[1])}), max_distance=4)
    copy = pickle.loads(pickle.dumps(scanner))
    assert copy == scanner
    assert copy.scan(pictures[1]) == scanner.scan(pictures[1])
    assert copy.scan(pictures[1]).blocked
