"""Moderation: a pluggable scanner that sees every image before any derivative is published.

`derive_image` hands the scanner the image as it will be shown (orientation applied, sRGB,
at most the largest thumbnail size); a blocked verdict makes the media end `blocked` with no
variants. The built-in scanner matches a 64-bit perceptual hash against a blocklist of known
images, so re-encoded, resized or lightly edited copies still match.

Scanners run in worker *processes*: they must pickle (plain frozen dataclasses do). An exception
raised by a scanner is not a verdict: `derive_image` raises it on as `ScanFailed`, and the worker
counts it (`ferry_moderation_total{outcome="error"}`) and retries the job rather than publish an
image nobody scanned.

Blocklist entries are what `phash_hex` returns for the image as displayed (apply its EXIF
orientation first: `ImageOps.exif_transpose`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

from PIL import Image

from transcode_worker.derivatives.flatten import on_white

__all__ = [
    "PHASH_BITS",
    "PerceptualHashScanner",
    "ScanVerdict",
    "Scanner",
    "hamming_distance",
    "phash",
    "phash_hex",
]

PHASH_BITS = 64
_HEX_DIGITS = PHASH_BITS // 4
_SAMPLE = 32  # the hash looks at a 32x32 grayscale copy...
_LOW = 8  # ...and keeps the 8x8 lowest frequencies of its DCT

# DCT-II basis, unnormalised (scipy's default): _DCT[k][n] = cos(pi * (2n + 1) * k / 2N), only
# the _LOW rows the hash keeps. A uniform scale does not move a median threshold, so no
# normalisation is needed. Plain Python on purpose: 10 k multiply-adds cost ~2 ms, and a pool
# process that never needs numpy for an image saves its ~20 MiB (issue 14, item 4).
_DCT: tuple[tuple[float, ...], ...] = tuple(
    tuple(math.cos(math.pi * (2 * n + 1) * k / (2 * _SAMPLE)) for n in range(_SAMPLE))
    for k in range(_LOW)
)


@dataclass(frozen=True, kw_only=True)
class ScanVerdict:
    blocked: bool
    reason: str | None  # why it is blocked (None when it is not)
    hash_hex: str  # the scanner's fingerprint of the image, for audit logs


class Scanner(Protocol):
    """Anything that can judge an image. Implementations must be picklable."""

    def scan(self, image: Image.Image) -> ScanVerdict: ...


def phash(image: Image.Image) -> int:
    """64-bit perceptual hash (pHash) of `image` as an int.

    The image is flattened on white, reduced to 32x32 gray (Lanczos), transformed with a 2-D
    DCT-II; the 8x8 lowest-frequency coefficients are compared with the median of the 63 AC
    coefficients among them (the DC term, the mean brightness, would skew the median). Bit 63
    (the most significant) is coefficient (0, 0), bits follow row by row.
    """
    small = on_white(image, "L").resize((_SAMPLE, _SAMPLE), Image.Resampling.LANCZOS)
    data = small.tobytes()  # 8-bit gray, row by row
    rows = [data[n * _SAMPLE : (n + 1) * _SAMPLE] for n in range(_SAMPLE)]
    # Separable 2-D DCT, low frequencies only: across each row, then down each column.
    across = [
        [math.fsum(map(float.__mul__, basis, map(float, row))) for basis in _DCT] for row in rows
    ]
    # Rounded: flat regions give AC terms of float noise (1e-13), which must read as 0 on
    # every machine, or a plain colour would hash at random.
    coefficients = [
        round(math.fsum(basis[n] * across[n][v] for n in range(_SAMPLE)), 6)
        for basis in _DCT
        for v in range(_LOW)
    ]
    # The median of the 63 AC terms (an odd count: the middle one).
    threshold = sorted(coefficients[1:])[len(coefficients[1:]) // 2]
    value = 0
    for coefficient in coefficients:
        value = (value << 1) | int(coefficient > threshold)
    return value


def phash_hex(image: Image.Image) -> str:
    """`phash` as 16 lowercase hex digits: the form blocklists hold."""
    return f"{phash(image):0{_HEX_DIGITS}x}"


def _parse_hash(text: str) -> int:
    if len(text) != _HEX_DIGITS:
        raise ValueError(f"a perceptual hash is {_HEX_DIGITS} hex digits, got {text!r}")
    try:
        return int(text, 16)
    except ValueError:
        raise ValueError(f"a perceptual hash is {_HEX_DIGITS} hex digits, got {text!r}") from None


def hamming_distance(a: str, b: str) -> int:
    """How many of the 64 bits differ between two `phash_hex` values."""
    return (_parse_hash(a) ^ _parse_hash(b)).bit_count()


@dataclass(frozen=True)
class PerceptualHashScanner:
    """Blocks images whose pHash is within `max_distance` bits of a blocklisted hash.

    A linear scan: fine for thousands of entries; a multi-million entry list would want an
    index (a BK-tree or multi-index hashing) behind the same interface.
    """

    blocklist: frozenset[str]
    max_distance: int = 6
    reason: str = "perceptual_hash_match"
    _hashes: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0 <= self.max_distance <= PHASH_BITS:
            raise ValueError(f"max_distance must be within 0..{PHASH_BITS}")
        # Validated once, when the operator's configuration is loaded: a bad entry fails fast.
        hashes = tuple(sorted({_parse_hash(entry) for entry in self.blocklist}))
        object.__setattr__(self, "_hashes", hashes)

    def scan(self, image: Image.Image) -> ScanVerdict:
        value = phash(image)
        hash_hex = f"{value:0{_HEX_DIGITS}x}"
        blocked = any((value ^ entry).bit_count() <= self.max_distance for entry in self._hashes)
        return ScanVerdict(
            blocked=blocked, reason=self.reason if blocked else None, hash_hex=hash_hex
        )
