"""An Uppy Dashboard with `@uppy/aws-s3` uploads to Ferry (gateway/web/uppy.html, docs/uppy.md):
a multipart upload resumes after a reload; a small file goes up in one request; the same bytes
again are deduplicated (a proof, no upload)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import httpx

from devstack.fleet import LocalFleet
from tests.browser.conftest import PageFactory, fresh_user
from tests.media_factory import av, images

PROCESSING_MS = int(os.environ.get("FERRY_BROWSER_WAIT_MS", "180000"))
SENDABLE = {"uploaded", "processing", "ready"}


async def open_uppy(page: Any, gateway: str, user: str) -> None:
    await page.goto(gateway + "/uppy.html")
    # Either signed in already (this tab's session) or the sign-in form is up.
    await page.wait_for_function(
        "document.body.dataset.ready === 'true' || document.body.dataset.login === 'shown'"
    )
    if await page.evaluate("document.body.dataset.ready !== 'true'"):
        await page.fill("#uppy-user", user)
        await page.click("#uppy-login-button")
    await page.wait_for_function("document.body.dataset.ready === 'true'")


async def add_and_upload(page: Any, path: Path) -> None:
    # A finished batch stays on the Dashboard (without its "add files" input) until cleared.
    await page.evaluate("window.ferryUppy.uppy.cancelAll()")
    await page.set_input_files("input.uppy-Dashboard-input >> nth=0", str(path))
    await page.click("button.uppy-StatusBar-actionBtn--upload")


async def result_for(page: Any, name: str) -> dict[str, Any]:
    handle = await page.wait_for_function(
        f"window.ferryUppy.results.find(r => r.name === {name!r})", timeout=PROCESSING_MS
    )
    value: dict[str, Any] = await handle.json_value()
    return value


async def until_sendable(
    fleet: LocalFleet, user: str, media_id: str, wanted: frozenset[str] = frozenset(SENDABLE)
) -> str:
    async with httpx.AsyncClient(timeout=30) as http:
        async with asyncio.timeout(PROCESSING_MS / 1000):
            while True:
                document = await http.get(
                    f"{fleet.media_url}/v1/media/{media_id}", headers=fleet.auth(user, "uppy")
                )
                state = str(document.json()["state"])
                if state in wanted or state == "failed":
                    return state
                await asyncio.sleep(0.2)


async def test_uppy_multipart_upload_resumes_after_a_reload(
    web_fleet: LocalFleet, new_page: PageFactory, tmp_path: Path
) -> None:
    gateway = web_fleet.url("gateway")
    user = fresh_user("alice")
    page: Any = await new_page("uppy")
    await open_uppy(page, gateway, user)

    # 12 MiB with 5 MiB parts: three parts, sent one after the other. A reload after the first.
    big = av.random_bytes(tmp_path / "archive.pdf", size=12 * 1024 * 1024, seed=9)
    big.write_bytes(b"%PDF-1.4\n" + big.read_bytes()[9:])
    sent_parts: list[str] = []
    first_part_stored = asyncio.Event()

    def on_finished(request: Any) -> None:
        if request.method == "PUT" and "partNumber=" in request.url:
            sent_parts.append(request.url)
            first_part_stored.set()

    page.on("requestfinished", on_finished)
    await add_and_upload(page, big)
    await asyncio.wait_for(first_part_stored.wait(), PROCESSING_MS / 1000)
    await page.reload()  # the page dies mid-upload
    await open_uppy(page, gateway, user)
    stored_before = len(sent_parts)

    await add_and_upload(page, big)
    result = await result_for(page, "archive.pdf")
    assert result["how"] == "resumed"
    assert stored_before >= 1
    # Only the parts storage did not have were sent again (three in all, none twice).
    assert len(sent_parts) - stored_before <= 3 - stored_before
    assert await until_sendable(web_fleet, user, result["media_id"]) in SENDABLE

    # A small file: one form POST to storage. The same bytes again: deduplicated, no upload.
    photo = images.write(tmp_path / "small.jpg", images.jpeg(320, 240, seed=5))
    await add_and_upload(page, photo)
    single = await result_for(page, "small.jpg")
    assert single["how"] == "uploaded"
    # Bytes are deduplicated once processed (the blob has an outcome).
    assert (
        await until_sendable(web_fleet, user, single["media_id"], frozenset({"ready"})) == "ready"
    )
    again = tmp_path / "again.jpg"
    again.write_bytes(photo.read_bytes())
    await add_and_upload(page, again)
    deduplicated = await result_for(page, "again.jpg")
    assert deduplicated["how"] == "deduplicated"
