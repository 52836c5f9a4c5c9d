"""PDQ perceptual hashing and hash-list matching (Meta's open standard, as ThreatExchange and
industry hash-sharing programmes exchange it).

`pdq_hash` hashes a Pillow image into the standard 64-hex-digit form (256 bits, most significant
first, as `pdq_hasher` and ThreatExchange print them) and PDQ's quality (0..100): how much
gradient the image has. A flat or nearly flat image has an unstable hash, whose bits flip
with noise, so PDQ's authors advise against trusting matches below quality 50. The scanner
follows that: below `min_quality` it computes the hash (for audit) but never blocks on it. A
blank image therefore cannot be blocked by PDQ; that is the trade PDQ's reference
implementation makes, and other scanners (the NSFW classifier) still see such an image.

`HashList` reads `MODERATION_PDQ_HASHLIST`: one 64-hex hash a line; `#` comments, blank lines
and surrounding spaces ignored; a malformed line fails the load with its line number. It is
re-read when the file's modification time or size changes (checked on every lookup: one
`stat`), so operators replace the list without a restart. Write the new list to a temporary
file and rename it over the old one, so a reader never sees half a file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pdqhash
from PIL import Image

from transcode_worker.derivatives.moderation import ScanVerdict

__all__ = [
    "DEFAULT_DISTANCE",
    "HASH_SIDE",
    "MIN_QUALITY",
    "PDQ_BITS",
    "HashList",
    "HashListError",
    "PdqHash",
    "PdqScanner",
    "pdq_distance",
    "pdq_hash",
]

PDQ_BITS = 256
_HEX_DIGITS = PDQ_BITS // 4
DEFAULT_DISTANCE = 31  # the distance ThreatExchange and PDQ's authors use for matching
MIN_QUALITY = 50  # PDQ's authors: hashes below this quality are too unstable to act on
HASH_SIDE = 512  # longest edge an image is reduced to before hashing (cost; see pdq_hash)


class HashListError(ValueError):
    """The hash-list file has a line that is not a PDQ hash."""


@dataclass(frozen=True, kw_only=True)
class PdqHash:
    hex: str  # 64 lowercase hex digits
    quality: int  # 0..100


def _flatten(image: Image.Image) -> Image.Image:
    """The image as RGB, transparency composited on white (as it is shown on a light page)."""
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or image.has_transparency_data:
        rgba = image.convert("RGBA")
        page = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(page, rgba).convert("RGB")
    return image.convert("RGB")


def pdq_hash(image: Image.Image, *, max_side: int = HASH_SIDE) -> PdqHash:
    """PDQ hash and quality of `image` (any mode; transparency flattened on white).

    PDQ reduces the luma to 64x64 with Jarosz box filters, whose cost grows with the pixel
    count, so an image larger than `max_side` on its longest edge is first reduced to it (box
    filter). Measured on generated photos: the reduced image's hash is within 6-8 bits of the
    full-size one (the match distance is 31), at a fraction of the cost. Pass `max_side=0` to
    hash the full size.
    """
    if max_side and max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side), Image.Resampling.BOX)
    pixels = np.ascontiguousarray(np.asarray(_flatten(image), dtype=np.uint8))
    bits, quality = pdqhash.compute(pixels)
    # `compute` returns the 256 bits most significant first, the order of the standard hex form.
    digest = np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes().hex()
    return PdqHash(hex=digest, quality=int(quality))


def _parse(text: str) -> int:
    if len(text) != _HEX_DIGITS:
        raise ValueError(f"a PDQ hash is {_HEX_DIGITS} hex digits, got {text!r}")
    try:
        return int(text, 16)
    except ValueError:
        raise ValueError(f"a PDQ hash is {_HEX_DIGITS} hex digits, got {text!r}") from None


def pdq_distance(a: str, b: str) -> int:
    """Hamming distance between two PDQ hashes in hex form (0..256)."""
    return (_parse(a) ^ _parse(b)).bit_count()


def parse_hash_list(text: str) -> frozenset[int]:
    """The hashes of a hash-list file's text. Raises `HashListError` naming the bad line."""
    hashes: set[int] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            hashes.add(_parse(line.lower()))
        except ValueError as error:
            raise HashListError(f"line {number}: {error}") from None
    return frozenset(hashes)


@dataclass(frozen=True, kw_only=True)
class _Loaded:
    signature: tuple[int, int]  # (st_mtime_ns, st_size) of the file this was read from
    hashes: tuple[int, ...]


# The last list read from each path, in this process. A pool job carries a pickled `HashList`
# without its cache, so without this every job would re-read and re-parse the file; with it a
# pool process reads it once and again only when the file changes. Process-local on purpose.
_READ: dict[Path, _Loaded] = {}


@dataclass
class HashList:
    """The hash-list file at `path`, re-read whenever its mtime or size changes.

    Pickles without its cache (each pool process reads the file itself on first use). A
    linear scan: microseconds for thousands of hashes; a multi-million list would want an index
    (multi-index hashing, as ThreatExchange's matcher does) behind the same `nearest` method.
    """

    path: Path
    _loaded: _Loaded | None = field(default=None, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict[str, object]:
        return {"path": self.path, "_loaded": None}

    def hashes(self) -> tuple[int, ...]:
        """The current hashes, re-read if the file changed. Raises `OSError` if it is missing
        and `HashListError` if a line is malformed (a scanner error: the job is retried rather
        than an image published unscanned)."""
        status = os.stat(self.path)
        signature = (status.st_mtime_ns, status.st_size)
        if self._loaded is None:
            self._loaded = _READ.get(self.path)
        if self._loaded is None or self._loaded.signature != signature:
            text = self.path.read_text(encoding="utf-8")
            self._loaded = _Loaded(signature=signature, hashes=tuple(sorted(parse_hash_list(text))))
            _READ[self.path] = self._loaded
        return self._loaded.hashes

    def nearest(self, hash_hex: str) -> int | None:
        """The smallest Hamming distance from `hash_hex` to a listed hash (None: empty list)."""
        value = _parse(hash_hex)
        return min(((value ^ entry).bit_count() for entry in self.hashes()), default=None)


@dataclass(frozen=True, kw_only=True)
class PdqScanner:
    """A `Scanner` (see `transcode_worker.derivatives.moderation`): blocks images whose PDQ hash is
    within `max_distance` bits of a listed hash, when the image's PDQ quality is at least
    `min_quality`."""

    hash_list: HashList
    max_distance: int = DEFAULT_DISTANCE
    min_quality: int = MIN_QUALITY
    reason: str = "hash_match"

    def __post_init__(self) -> None:
        if not 0 <= self.max_distance <= PDQ_BITS:
            raise ValueError(f"max_distance must be within 0..{PDQ_BITS}")
        if not 0 <= self.min_quality <= 100:
            raise ValueError("min_quality must be within 0..100")

    @classmethod
    def from_file(
        cls, path: Path, *, max_distance: int = DEFAULT_DISTANCE, min_quality: int = MIN_QUALITY
    ) -> PdqScanner:
        """A scanner over the list at `path`, read once now so a bad file fails at start."""
        hash_list = HashList(path)
        hash_list.hashes()
        return cls(hash_list=hash_list, max_distance=max_distance, min_quality=min_quality)

    def scan(self, image: Image.Image) -> ScanVerdict:
        digest = pdq_hash(image)
        blocked = False
        if digest.quality >= self.min_quality:
            distance = self.hash_list.nearest(digest.hex)
            blocked = distance is not None and distance <= self.max_distance
        return ScanVerdict(
            blocked=blocked, reason=self.reason if blocked else None, hash_hex=digest.hex
        )
