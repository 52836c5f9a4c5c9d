"""Browser tests: the web client in Debian's headless Chromium, driven by Playwright for Python.

Chromium comes from `apt-get install chromium` (/usr/bin/chromium); Playwright's own browser
downloads (`playwright install`) are never used. Without Chromium the whole directory is skipped
with one line in the summary. A failing test leaves a screenshot of each of its pages in
`tmp/artifacts/browser/` (or `$FERRY_ARTIFACTS_DIR`).
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("FERRY_CHROMIUM", "/usr/bin/chromium"))
SKIP_LINE = "browser tests skipped: apt-get install chromium to enable"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # Media plays without a user gesture (tests cannot click "play" like a person).
    "--autoplay-policy=no-user-gesture-required",
]
ARTIFACTS = (
    Path(os.environ.get("FERRY_ARTIFACTS_DIR", Path(__file__).parents[2] / "tmp" / "artifacts"))
    / "browser"
)
REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()

if not CHROMIUM.exists():
    collect_ignore_glob = ["test_*.py"]

    def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
        terminalreporter.write_line(SKIP_LINE, yellow=True)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    item.stash.setdefault(REPORTS, {})[report.when] = report
    return report


@pytest.fixture(scope="session")
async def chromium() -> AsyncIterator[object]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


PageFactory = Callable[..., Awaitable[object]]


@pytest.fixture
async def new_page(chromium: object, request: pytest.FixtureRequest) -> AsyncIterator[PageFactory]:
    """`await new_page(name)` opens a page in a fresh browser context (its own storage, as a
    separate person would have); console errors are kept for the failure report."""
    from playwright.async_api import Browser, Page

    assert isinstance(chromium, Browser)
    pages: list[tuple[str, Page]] = []
    console: list[str] = []

    async def make(name: str = "page") -> Page:
        context = await chromium.new_context(viewport={"width": 1100, "height": 800})
        page = await context.new_page()
        page.on("console", lambda m: console.append(f"[{name}] {m.type}: {m.text}"))
        page.on("pageerror", lambda e: console.append(f"[{name}] pageerror: {e}"))
        pages.append((name, page))
        return page

    yield make
    reports = request.node.stash.get(REPORTS, {})
    failed = any(report.failed for report in reports.values())
    for name, page in pages:
        if failed:
            try:
                state = await page.evaluate(
                    "JSON.stringify({uploads: document.getElementById('uploads')?.innerText,"
                    " lastUpload: window.ferry?.lastUpload, current: window.ferry?.current})"
                )
                print(f"page state of {name}: {state}")
            except Exception as error:
                print(f"no page state of {name}: {error}")
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)[-120:]
            target = ARTIFACTS / f"{stem}-{name}.png"
            try:
                await page.screenshot(path=str(target), full_page=True)
                print(f"screenshot of {name}: {target}")
            except Exception as error:  # the page may be gone with the failure
                print(f"no screenshot of {name}: {error}")
        await page.context.close()
    if failed and console:
        print("browser console:\n" + "\n".join(console[-50:]))


def fresh_user(base: str) -> str:
    return f"{base}-{secrets.token_hex(3)}"


# Multipart from 5 MiB (S3's smallest part), so a resumable upload stays small in tests.
BROWSER_FLEET_SETTINGS = {
    "MULTIPART_THRESHOLD_BYTES": str(5 * 1024 * 1024),
    "MULTIPART_PART_SIZE_BYTES": str(5 * 1024 * 1024),
}


@pytest.fixture(scope="session")
async def web_fleet(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[object]:
    """Every service, two gateways (Alice on one, Bob on the other, as in production)."""
    from devstack.fleet import start_fleet
    from tests.integration.conftest import TEST_SETTINGS

    async with start_fleet(
        log_dir=tmp_path_factory.mktemp("web-fleet-logs"),
        prefix=f"w{secrets.token_hex(4)}",
        extra_env={**TEST_SETTINGS, **BROWSER_FLEET_SETTINGS},
        gateways=2,
    ) as fleet:
        yield fleet
    if fleet.unclean_exits:
        raise AssertionError(fleet.describe_unclean_exits())
