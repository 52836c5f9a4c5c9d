"""`scripts/upload_demo.py`, run as a new user runs it, against the test fleet."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from devstack.processes import REPO_ROOT
from tests.integration.conftest import Fleet
from tests.integration.media_client import make_jpeg
from tests.media_factory import documents
from tests.waiting import scaled

DEMO = REPO_ROOT / "scripts" / "upload_demo.py"
MIB = 1024 * 1024


async def _run_demo(fleet: Fleet, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(DEMO), "--token", token, "--media-url", fleet.media_url, *args]
    # Nothing of the fleet's wiring: the script knows only the Media Service's URL and a token.
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.pop("FERRY_TOKEN", None)
    return await asyncio.to_thread(
        subprocess.run,
        argv,
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=scaled(120),
        check=False,
    )


async def test_the_demo_uploads_a_photo_and_gets_it_back_identical(
    fleet: Fleet, tmp_path: Path, user: Callable[..., str]
) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(make_jpeg(seed=101))

    result = await _run_demo(fleet, fleet.token(user("alice")), str(photo))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "identical" in result.stdout
    assert "single signed PUT" in result.stdout
    assert "ready" in result.stdout


async def test_the_demo_uploads_a_large_file_in_parts_and_proves_a_second_copy(
    fleet: Fleet, tmp_path: Path, user: Callable[..., str]
) -> None:
    # A real PDF (the worker opens PDFs) padded with random bytes to a multipart size.
    video = tmp_path / "report.pdf"
    video.write_bytes(documents.sized_pdf(17 * MIB))

    first = await _run_demo(fleet, fleet.token(user("alice")), str(video))
    assert first.returncode == 0, first.stdout + first.stderr
    assert "multipart, 3 parts" in first.stdout
    assert "identical" in first.stdout

    # The same bytes again, by someone else: a challenge instead of an upload.
    second = await _run_demo(fleet, fleet.token(user("bob")), str(video))
    assert second.returncode == 0, second.stdout + second.stderr
    assert "possession proven" in second.stdout
    assert "identical" in second.stdout


async def test_the_demo_reports_a_refusal_and_exits_1(
    fleet: Fleet, tmp_path: Path, user: Callable[..., str]
) -> None:
    program = tmp_path / "setup.exe"
    program.write_bytes(b"MZ" + os.urandom(100))

    result = await _run_demo(
        fleet,
        fleet.token(user("alice")),
        "--content-type",
        "application/x-msdownload",
        str(program),
    )

    assert result.returncode == 1, result.stdout + result.stderr
    assert "415 unsupported_media_type" in result.stdout
