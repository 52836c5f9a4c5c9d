"""Verified originals kept on local disk for their derivation, so it need not read them again.

The commit step streams every original once to hash it; for a media that a derivation lane
will process, it writes those same chunks to a spool file on the way, and keeps the file once
the media is committed. The lane's job (on this host, usually moments later) takes the file
instead of downloading the object a second time: one GET and one transfer of the original
fewer per photo. It is only a cache: a job that finds no file (another replica verified it, the
worker restarted, the file was evicted) downloads the verified version as before.

A spool file holds exactly the bytes whose length and SHA-256 were just checked against the
slot, and it is taken only for the media, size and SHA-256 it was written for. The spool stays
bounded: files above `max_file_bytes` are not spooled (long videos download), and when a file
is kept, the oldest files go while the spool holds more than `max_bytes` or once they are
older than `max_age_seconds`. Every method blocks on the file system: call it in a thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

log = logging.getLogger("ferry.worker.spool")

PREFIX = "ferry-spool-"
# A spooled original not taken by then was derived elsewhere (or is waiting in a long backlog,
# whose job then downloads it).
MAX_AGE_SECONDS = 600.0


@dataclass
class SpoolFile:
    """A file being written (`partial`) for one media."""

    media_id: str
    partial: Path
    handle: IO[bytes]

    def write(self, chunk: bytes) -> None:
        self.handle.write(chunk)


class OriginalSpool:
    def __init__(
        self, directory: Path, *, max_bytes: int, max_file_bytes: int, max_age_seconds: float
    ) -> None:
        self.directory = directory
        self._max_bytes = max_bytes
        self._max_file_bytes = min(max_file_bytes, max_bytes)
        self._max_age_seconds = max_age_seconds

    @classmethod
    def create(
        cls,
        work_dir: str | None,
        *,
        max_bytes: int,
        max_file_bytes: int,
        max_age_seconds: float = MAX_AGE_SECONDS,
    ) -> OriginalSpool:
        """A fresh folder of this process's own (`ferry-spool-{pid}-...`), after removing those
        that processes no longer running left behind (a worker killed mid-burst)."""
        base = Path(work_dir or tempfile.gettempdir())
        for stale in base.glob(f"{PREFIX}*"):
            owner = stale.name[len(PREFIX) :].split("-", 1)[0]
            if owner.isdigit() and not _running(int(owner)):
                shutil.rmtree(stale, ignore_errors=True)
        directory = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=base))
        return cls(
            directory,
            max_bytes=max_bytes,
            max_file_bytes=max_file_bytes,
            max_age_seconds=max_age_seconds,
        )

    def wants(self, size: int) -> bool:
        return 0 < size <= self._max_file_bytes

    def open(self, media_id: str) -> SpoolFile:
        partial = self.directory / f"{media_id}.partial-{os.urandom(4).hex()}"
        return SpoolFile(media_id=media_id, partial=partial, handle=partial.open("wb"))

    def keep(self, spooled: SpoolFile, sha256: str) -> None:
        """The media is committed with these bytes: its file is ready to be taken."""
        spooled.handle.close()
        os.replace(spooled.partial, self._path(spooled.media_id, sha256))
        self._evict()

    def discard(self, spooled: SpoolFile) -> None:
        spooled.handle.close()
        spooled.partial.unlink(missing_ok=True)

    def take(self, media_id: str, sha256: str, size: int, target: Path) -> bool:
        """Move the media's spooled original to `target`; False when there is none (or it is
        not the size expected), and the caller downloads it."""
        path = self._path(media_id, sha256)
        try:
            if path.stat().st_size != size:
                path.unlink(missing_ok=True)
                return False
            os.replace(path, target)  # the same file system: a rename, no copy
        except OSError:
            return False  # not there (evicted, another host verified it) or another disk
        return True

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def _path(self, media_id: str, sha256: str) -> Path:
        return self.directory / f"{media_id}.{sha256}"

    def _evict(self) -> None:
        files = []
        for path in self.directory.iterdir():
            if ".partial-" in path.name:
                continue  # being written: counted once kept
            with contextlib.suppress(OSError):
                stat = path.stat()
                files.append((stat.st_mtime, stat.st_size, path))
        files.sort()
        total = sum(size for _, size, _ in files)
        too_old = time.time() - self._max_age_seconds
        for modified, size, path in files:
            if total <= self._max_bytes and modified >= too_old:
                break
            path.unlink(missing_ok=True)
            total -= size


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True
