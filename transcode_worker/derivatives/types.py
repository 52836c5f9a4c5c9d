"""What a derivation returns, and how it fails (shared by every media type)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROGRESS_FILE = "progress"


@dataclass(frozen=True, kw_only=True)
class DerivedFile:
    """One object to store under `d/{sha256}/{key}`."""

    key: str  # relative to d/{sha256}/, e.g. "thumb_320.webp" or "hls/360p/seg_00001.ts"
    path: Path
    content_type: str


@dataclass(frozen=True, kw_only=True)
class DerivedVariant:
    """One entry of the media document's `variants` (points at one of the files)."""

    name: str  # contract name: thumb_320, thumb_640, thumb_1280, voice_low, poster, hls
    key: str  # the DerivedFile.key it is served from (for `hls`: the master playlist)
    content_type: str
    size: int
    width: int | None = None
    height: int | None = None
    # The SHA-256 of the file, when the media document shows it (`original_clean`).
    sha256: str | None = None


@dataclass(frozen=True, kw_only=True)
class Derived:
    meta: dict[str, Any] = field(default_factory=dict)
    files: list[DerivedFile] = field(default_factory=list)
    variants: list[DerivedVariant] = field(default_factory=list)
    # Set by moderation: the media must end `blocked` (no variants are published then). The
    # reason is the media's `error.code`: hash_match, nsfw, malware.
    blocked_reason: str | None = None
    # Whether a moderation scanner judged it (blocked or not): counted as a scan.
    scanned: bool = False
    # The NSFW classifier's highest score over the pictures it saw (admins only), if it ran.
    nsfw_score: float | None = None


@dataclass(frozen=True, kw_only=True)
class FileChecked:
    """What a check of the downloaded original on the worker's event loop concluded (the
    documents' malware scan), before any derivation runs."""

    meta: dict[str, Any] = field(default_factory=dict)
    blocked_reason: str | None = None  # "malware": the media ends blocked, nothing derived


# Every code a `DeriveError` carries: the media's `error.code`, and a bounded metric label.
DERIVE_ERROR_CODES = (
    "corrupt_media",
    "unsupported_format",
    "too_many_pixels",
    "too_many_frames",
    "too_long",
    "too_large_dimensions",
    "unsupported_codec",
    "no_streams",
)


class DeriveError(Exception):
    """The original cannot be processed: the media ends `failed` with this code.

    Codes: corrupt_media (truncated or undecodable), unsupported_format (a decoder outside
    the allow-list), too_many_pixels, too_many_frames, too_long, too_large_dimensions,
    unsupported_codec, no_streams.
    """

    def __init__(self, code: str, message: str) -> None:
        # Both in args: the error crosses from a pool process by pickling, which rebuilds it
        # from args.
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class StripError(Exception):
    """A file is not the well-formed container it claims to be, so no metadata-free copy of it
    can be made (`strip_images`, `strip_mp4`): the media fails rather than hand out its
    metadata."""


class ScanFailed(Exception):
    """The moderation scanner raised instead of giving a verdict.

    Not a verdict: nothing is published, and the worker retries the job (an image nobody
    scanned must never become ready). Its own class so the worker can count scan failures.
    """


class ProgressFile:
    """A long derivation reports how far it got (0-100) in a file of its output folder; the
    worker's event loop reads it and shows it on the media document. At most once a second,
    written whole (rename), so a reader never sees half a number."""

    def __init__(self, out_dir: Path, *, every_seconds: float = 1.0) -> None:
        self._path = out_dir / PROGRESS_FILE
        self._every = every_seconds
        self._last_time = float("-inf")
        self._last_percent = -1

    def report(self, fraction: float) -> None:
        percent = max(0, min(99, int(fraction * 100)))  # 100 is "done", said by the state
        now = time.monotonic()
        if percent == self._last_percent or now - self._last_time < self._every:
            return
        partial = self._path.with_suffix(".tmp")
        partial.write_text(str(percent))
        os.replace(partial, self._path)
        self._last_time, self._last_percent = now, percent


def read_progress(out_dir: Path) -> int | None:
    try:
        return int((out_dir / PROGRESS_FILE).read_text())
    except (OSError, ValueError):
        return None
