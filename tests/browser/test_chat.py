"""Alice and Bob chat in two browsers on two gateways: a photo, a voice note and a 30 s video.
Bob sees each placeholder at once, then the image, plays the voice note and plays the video to
its end through hls.js. And a big upload resumes after a page reload."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from devstack.fleet import LocalFleet
from tests.browser.conftest import PageFactory, fresh_user
from tests.media_factory import av, images

VIDEO_SECONDS = 30
# Long waits are for processing on a loaded machine, not for the browser.
PROCESSING_MS = int(os.environ.get("FERRY_BROWSER_WAIT_MS", "180000"))


async def sign_in(page: Any, gateway: str, user: str) -> None:
    await page.goto(gateway + "/")
    await page.fill("#login-user", user)
    await page.click("#login-button")
    await page.wait_for_function("document.getElementById('ws-state').textContent === 'online'")


async def send_file(page: Any, path: Path, text: str = "") -> None:
    await page.fill("#composer-text", text)
    await page.set_input_files("#composer-file", str(path))
    await page.click("#composer-send")


async def test_photo_voice_note_and_video_between_two_browsers(
    web_fleet: LocalFleet, new_page: PageFactory, tmp_path: Path
) -> None:
    alice_gateway, bob_gateway = web_fleet.url("gateway"), web_fleet.url("gateway-2")
    alice_name, bob_name = fresh_user("alice"), fresh_user("bob")
    alice: Any = await new_page("alice")
    bob: Any = await new_page("bob")
    await sign_in(alice, alice_gateway, alice_name)
    await sign_in(bob, bob_gateway, bob_name)

    await alice.fill("#new-chat-peer", bob_name)
    await alice.click("#new-chat button")
    await alice.wait_for_selector("#conversation-title[data-conversation-id]")
    conversation = await alice.get_attribute("#conversation-title", "data-conversation-id")

    photo = images.write(tmp_path / "view.jpg", images.jpeg(1600, 1200, seed=11))
    await send_file(alice, photo, "the view")
    # Bob learns of the conversation from the pushed message and opens it.
    entry = f"#conversations li[data-conversation-id='{conversation}']"
    await bob.wait_for_selector(entry, timeout=PROCESSING_MS)
    await bob.click(entry)
    image = ".media[data-media-type='image']"
    # At once: the sender's inline thumbnail (or the blurhash, or the image if already ready).
    await bob.wait_for_selector(f"{image} img, {image} canvas", timeout=PROCESSING_MS)
    await bob.wait_for_selector(f"{image}[data-state='ready'] img.image", timeout=PROCESSING_MS)
    assert await bob.eval_on_selector(f"{image} img.image", "img => img.naturalWidth") > 0

    voice = av.voice_ogg_opus(tmp_path / "note.ogg", seconds=3)
    await send_file(alice, voice)
    # Ready: the low-bitrate copy (the page would otherwise play the original meanwhile).
    audio = ".media[data-media-type='voice'][data-state='ready'] audio"
    await bob.wait_for_selector(f"{audio}[src]", timeout=PROCESSING_MS)
    await bob.eval_on_selector(audio, "a => a.play()")
    await bob.wait_for_function(f'document.querySelector("{audio}").ended', timeout=PROCESSING_MS)

    clip = av.video(tmp_path / "clip.mp4", width=320, height=180, seconds=VIDEO_SECONDS, fps=15)
    await send_file(alice, clip, "a walk")
    video = ".media[data-media-type='video'] video"
    await bob.wait_for_selector(
        ".media[data-media-type='video'][data-state='ready'] video", timeout=PROCESSING_MS
    )
    # hls.js plays through Media Source Extensions: the element's source is a blob: URL.
    await bob.wait_for_function(
        f"(document.querySelector(\"{video}\").src || '').startsWith('blob:')",
        timeout=PROCESSING_MS,
    )
    await bob.eval_on_selector(
        video, "v => { v.muted = true; v.playbackRate = 4; return v.play(); }"
    )
    await bob.wait_for_function(f'document.querySelector("{video}").ended', timeout=PROCESSING_MS)
    duration = await bob.eval_on_selector(video, "v => v.duration")
    assert abs(duration - VIDEO_SECONDS) < 1.5
    assert (
        await bob.eval_on_selector(
            ".media[data-media-type='video']", "b => b.dataset.hlsError || ''"
        )
        == ""
    )


async def test_a_multipart_upload_resumes_after_a_reload(
    web_fleet: LocalFleet, new_page: PageFactory, tmp_path: Path
) -> None:
    gateway = web_fleet.url("gateway")
    page: Any = await new_page("alice")
    await sign_in(page, gateway, fresh_user("alice"))
    await page.fill("#new-chat-peer", fresh_user("bob"))
    await page.click("#new-chat button")
    await page.wait_for_selector("#conversation-title[data-conversation-id]")

    # 12 MiB with 5 MiB parts: three parts. The page dies (reload) once the first has landed.
    big = av.random_bytes(tmp_path / "archive.pdf", size=12 * 1024 * 1024, seed=7)
    big.write_bytes(b"%PDF-1.4\n" + big.read_bytes()[9:])
    sent_parts: list[str] = []
    first_part_stored = asyncio.Event()

    def on_finished(request: Any) -> None:
        if request.method == "PUT" and "partNumber=" in request.url:
            sent_parts.append(request.url)
            first_part_stored.set()

    page.on("requestfinished", on_finished)
    await send_file(page, big)
    await asyncio.wait_for(first_part_stored.wait(), PROCESSING_MS / 1000)
    await page.reload()  # the page dies mid-upload
    await page.wait_for_function("document.getElementById('ws-state').textContent === 'online'")
    assert "archive.pdf" in await page.text_content("#resumable")
    stored_before = len(sent_parts)

    await page.click("#conversations li")
    await send_file(page, big)
    await page.wait_for_selector(".media[data-media-type='document']", timeout=PROCESSING_MS)
    resumed = await page.evaluate("window.ferry.lastUpload")
    assert resumed["resumed"] is True
    # Only the parts storage did not have were sent again (three parts in all, none twice).
    assert stored_before >= 1
    assert len(sent_parts) - stored_before <= 3 - stored_before
