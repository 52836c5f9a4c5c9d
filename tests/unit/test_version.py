"""One version, everywhere: the distribution, every `/healthz`, every `--version`."""

from __future__ import annotations

import importlib
import importlib.metadata
import subprocess
import sys

import httpx
import pytest
from fastapi import FastAPI

from shared.version import __version__
from tests.metric_catalogue import SERVICES
from tests.waiting import scaled


def test_the_distribution_reads_its_version_from_shared() -> None:
    assert importlib.metadata.version("ferry") == __version__


@pytest.fixture(params=SERVICES)
def app(request: pytest.FixtureRequest) -> FastAPI:
    service = request.param
    settings = importlib.import_module(f"{service}.settings").Settings()
    built: FastAPI = importlib.import_module(f"{service}.app").create_app(settings)
    return built


async def test_every_health_answer_names_the_version(app: FastAPI) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        answer = await client.get("/healthz")
    assert answer.json() == {"status": "ok", "version": __version__}
    assert app.openapi()["info"]["version"] == __version__


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_prints_its_version(service: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", service, "--version"],
        capture_output=True,
        text=True,
        timeout=scaled(60),
        check=False,
    )
    assert (done.returncode, done.stdout.strip()) == (0, f"{service} {__version__}"), done.stderr
