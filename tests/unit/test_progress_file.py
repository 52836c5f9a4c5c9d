from pathlib import Path

from transcode_worker.derivatives.types import ProgressFile, read_progress


def test_progress_is_read_back_whole(tmp_path: Path) -> None:
    assert read_progress(tmp_path) is None
    progress = ProgressFile(tmp_path, every_seconds=0)
    progress.report(0.42)
    assert read_progress(tmp_path) == 42


def test_progress_never_says_done_before_the_state_does(tmp_path: Path) -> None:
    progress = ProgressFile(tmp_path, every_seconds=0)
    progress.report(1.7)
    assert read_progress(tmp_path) == 99
    progress.report(-1)
    assert read_progress(tmp_path) == 0


def test_reports_are_throttled(tmp_path: Path) -> None:
    progress = ProgressFile(tmp_path, every_seconds=3600)
    progress.report(0.1)
    progress.report(0.5)
    assert read_progress(tmp_path) == 10
