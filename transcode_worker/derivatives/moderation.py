"""Moderation: pluggable scanners and an NSFW classifier that see every image, video poster and
sampled video frame before any derivative is published.

`Moderation` is the configuration (picklable: it travels to pool processes with each job);
`ModerationPass` is one media's run through it: every picture the media shows goes through
`look`, which raises `ModerationBlocked` as soon as a scanner blocks (the derivation then stops
and the media ends `blocked` with no variants) and keeps the highest NSFW score for the meta
(`sensitive`) and for admins (`nsfw_score`).

Scanners follow the `Scanner` protocol: `safety.pdq.PdqScanner` (PDQ hash lists, the standard)
is the deployment's main one; a PhotoDNA or vendor API client plugs in the same way. The legacy
scanner here matches a 64-bit perceptual hash (pHash) against `MODERATION_BLOCKLIST`.

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
from typing import Any, Protocol

from PIL import Image

from transcode_worker.derivatives.flatten import on_white
from transcode_worker.derivatives.types import ScanFailed

__all__ = [
    "BLOCK_MESSAGES",
    "PHASH_BITS",
    "Classifier",
    "FrameSampler",
    "Moderation",
    "ModerationBlocked",
    "ModerationPass",
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
    reason: str = "hash_match"
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


# -- one media's moderation ----------------------------------------------------------------------

# The media's `error.message` for each blocking reason (its `error.code`).
BLOCK_MESSAGES = {
    "hash_match": "the content matches a known prohibited item",
    "nsfw": "the content was classified as sexual content",
    "malware": "the document contains malware",
}


class Classifier(Protocol):
    """Scores an image 0..1 (how likely it is sexual content). Implementations must pickle."""

    def score(self, image: Image.Image) -> float: ...


class ModerationBlocked(Exception):
    """A scanner blocked a picture: the derivation stops, nothing is published."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, kw_only=True)
class Moderation:
    """What judges a media's pictures: hash scanners, then the NSFW classifier."""

    scanners: tuple[Scanner, ...] = ()
    classifier: Classifier | None = None
    # `meta.sensitive` at or above this score (NSFW_THRESHOLD).
    threshold: float = 0.8
    # NSFW_POLICY=block: a score at or above the threshold blocks (`nsfw`) instead of flagging.
    block_nsfw: bool = False
    # Video: one frame every `frame_interval` seconds is judged, at most `max_frames` of them
    # (the interval widens for long videos so the samples cover the whole of it).
    frame_interval: float = 2.0
    max_frames: int = 30

    def __post_init__(self) -> None:
        if not 0 <= self.threshold <= 1:
            raise ValueError("threshold must be within 0..1")
        if self.frame_interval <= 0 or self.max_frames < 1:
            raise ValueError("frame_interval and max_frames must be positive")

    @property
    def active(self) -> bool:
        return bool(self.scanners) or self.classifier is not None

    def start(self) -> ModerationPass:
        return ModerationPass(self)


class ModerationPass:
    """One media's pictures through `Moderation` (in its pool process)."""

    def __init__(self, moderation: Moderation) -> None:
        self.moderation = moderation
        self.looked = 0
        self.nsfw_score: float | None = None

    def look(self, image: Image.Image) -> None:
        """Judge one picture; raises `ModerationBlocked` (a verdict) or `ScanFailed` (none)."""
        moderation = self.moderation
        try:
            for scanner in moderation.scanners:
                verdict = scanner.scan(image)
                if verdict.blocked:
                    self.looked += 1
                    raise ModerationBlocked(verdict.reason or "hash_match")
            if moderation.classifier is not None:
                score = min(1.0, max(0.0, float(moderation.classifier.score(image))))
                self.nsfw_score = max(score, self.nsfw_score or 0.0)
        except ModerationBlocked:
            raise
        except Exception as error:
            raise ScanFailed(
                f"the moderation scanner failed ({type(error).__name__}: {error})"
            ) from error
        self.looked += 1
        if moderation.block_nsfw and self.sensitive:
            raise ModerationBlocked("nsfw")

    @property
    def sensitive(self) -> bool:
        return self.nsfw_score is not None and self.nsfw_score >= self.moderation.threshold

    def meta(self) -> dict[str, Any]:
        """`sensitive` for clients (only when a classifier judged the media)."""
        return {} if self.nsfw_score is None else {"sensitive": self.sensitive}


@dataclass
class FrameSampler:
    """Which decoded video frames moderation sees: one every `interval` seconds from the start,
    at most `max_frames`; for a video longer than interval x max_frames the interval widens to
    spread the samples over the declared duration."""

    moderation_pass: ModerationPass
    declared_seconds: float | None = None
    taken: int = 0
    next_at: float = 0.0
    interval: float = field(init=False)

    def __post_init__(self) -> None:
        moderation = self.moderation_pass.moderation
        self.interval = moderation.frame_interval
        if self.declared_seconds:
            self.interval = max(self.interval, self.declared_seconds / moderation.max_frames)

    def wants(self, elapsed: float) -> bool:
        return self.taken < self.moderation_pass.moderation.max_frames and elapsed >= self.next_at

    def take(self, elapsed: float, image: Image.Image) -> None:
        self.taken += 1
        while self.next_at <= elapsed:
            self.next_at += self.interval
        self.moderation_pass.look(image)
