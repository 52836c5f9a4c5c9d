"""`transcode_worker.spool`: verified originals kept on disk for their derivation, bounded."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from transcode_worker.spool import PREFIX, OriginalSpool

SHA = "ab" * 32


def spooled(spool: OriginalSpool, media_id: str, data: bytes, sha256: str = SHA) -> None:
    file = spool.open(media_id)
    file.write(data)
    spool.keep(file, sha256)


def test_a_kept_original_is_taken_once_for_its_media_size_and_hash(tmp_path: Path) -> None:
    spool = OriginalSpool.create(str(tmp_path), max_bytes=1000, max_file_bytes=100)
    spooled(spool, "m1", b"x" * 10)
    assert not spool.take("m1", "cd" * 32, 10, tmp_path / "other-hash")
    assert not spool.take("m2", SHA, 10, tmp_path / "other-media")
    assert spool.take("m1", SHA, 10, tmp_path / "original")
    assert (tmp_path / "original").read_bytes() == b"x" * 10
    assert not spool.take("m1", SHA, 10, tmp_path / "again")  # moved, not copied
    spool.close()
    assert not spool.directory.exists()


def test_a_file_of_another_size_is_never_handed_out(tmp_path: Path) -> None:
    spool = OriginalSpool.create(str(tmp_path), max_bytes=1000, max_file_bytes=100)
    spooled(spool, "m1", b"x" * 10)
    assert not spool.take("m1", SHA, 11, tmp_path / "original")
    assert not (tmp_path / "original").exists()


def test_what_is_not_kept_leaves_nothing_behind(tmp_path: Path) -> None:
    spool = OriginalSpool.create(str(tmp_path), max_bytes=1000, max_file_bytes=100)
    file = spool.open("m1")
    file.write(b"bad bytes")
    spool.discard(file)
    assert list(spool.directory.iterdir()) == []
    assert not spool.take("m1", SHA, 9, tmp_path / "original")


def test_the_spool_keeps_to_its_budget_oldest_first(tmp_path: Path) -> None:
    spool = OriginalSpool.create(str(tmp_path), max_bytes=25, max_file_bytes=100)
    assert spool.wants(25)
    assert not spool.wants(26)
    assert not spool.wants(0)
    now = time.time()
    for n in range(3):
        spooled(spool, f"m{n}", b"x" * 10)
        os.utime(spool.directory / f"m{n}.{SHA}", (now - 30 + n, now - 30 + n))  # m0 oldest
    spooled(spool, "m3", b"x" * 10)
    assert not spool.take("m0", SHA, 10, tmp_path / "m0")
    assert not spool.take("m1", SHA, 10, tmp_path / "m1")
    assert spool.take("m2", SHA, 10, tmp_path / "m2")
    assert spool.take("m3", SHA, 10, tmp_path / "m3")


def test_old_files_go_whatever_the_budget(tmp_path: Path) -> None:
    spool = OriginalSpool.create(
        str(tmp_path), max_bytes=1000, max_file_bytes=100, max_age_seconds=60
    )
    spooled(spool, "old", b"x")
    os.utime(spool.directory / f"old.{SHA}", (0, 0))
    spooled(spool, "new", b"x")
    assert not spool.take("old", SHA, 1, tmp_path / "old")
    assert spool.take("new", SHA, 1, tmp_path / "new")


def test_a_dead_workers_spool_is_removed_a_live_ones_kept(tmp_path: Path) -> None:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)  # fmt: skip
    dead = tmp_path / f"{PREFIX}{finished.stdout.strip()}-abc"
    dead.mkdir()
    (dead / "m1.x").write_bytes(b"left over")
    alive = tmp_path / f"{PREFIX}{os.getpid()}-def"
    alive.mkdir()
    spool = OriginalSpool.create(str(tmp_path), max_bytes=1000, max_file_bytes=100)
    assert not dead.exists()
    assert alive.exists()
    assert spool.directory.parent == tmp_path
