"""The README's walkthrough: two users in two terminals, one photo, via `scripts/chat.py`."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

from devstack.processes import REPO_ROOT, ServiceProcess, free_port, stopped_cleanly
from tests.integration.conftest import Fleet
from tests.integration.media_client import make_jpeg
from tests.waiting import scaled


def chat_command(fleet: Fleet, user: str, *arguments: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "scripts.chat",
        "--user",
        user,
        "--gateway-url",
        fleet.gateway_urls[-1],
        "--media-url",
        fleet.media_url,
        "--message-url",
        str(fleet.message_url),
        *arguments,
    ]


async def run_chat(fleet: Fleet, user: str, *arguments: str) -> str:
    process = await asyncio.create_subprocess_exec(
        *chat_command(fleet, user, *arguments),
        cwd=REPO_ROOT,
        env=fleet.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), scaled(60))
    text = output.decode()
    assert process.returncode == 0, text
    return text


async def test_alice_sends_bob_a_photo_from_two_terminals(
    fleet: Fleet, user: Callable[..., str], tmp_path: Path
) -> None:
    alice, bob = user("alice"), user("bob")
    photo = tmp_path / "view.jpg"
    photo.write_bytes(make_jpeg(seed=41))

    listener = await asyncio.create_subprocess_exec(
        *chat_command(fleet, bob, "listen"),
        cwd=REPO_ROOT,
        env=fleet.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert listener.stdout is not None
        connected = await asyncio.wait_for(listener.stdout.readline(), scaled(30))
        assert b"connected" in connected

        sent = await run_chat(fleet, alice, "send", "--to", bob, "--text", "the view", str(photo))
        assert "sent" in sent

        # The message and the photo's media updates (processing, ready) travel separately:
        # any of them may come first. Bob fetches once the photo is ready for readers.
        line, ready = b"", False
        while not (f"from {alice}: the view".encode() in line and ready):
            got = await asyncio.wait_for(listener.stdout.readline(), scaled(60))
            assert got, "the listener stopped"
            if f"from {alice}: the view".encode() in got:
                line = got
            ready = ready or b"is now ready" in got or b"(ready)" in got
        media_id = line.decode().split("image ")[1].split(" ")[0]
    finally:
        # SIGTERM, not Ctrl-C's SIGINT: a shell running the suite in the background starts it
        # with SIGINT ignored, and children inherit that (the listener would never stop).
        listener.terminate()
        await asyncio.wait_for(listener.wait(), scaled(10))
    assert listener.returncode == 0, "the listener did not stop cleanly on SIGTERM"

    saved = tmp_path / "saved.jpg"
    await run_chat(fleet, bob, "fetch", media_id, "--out", str(saved))
    assert saved.read_bytes() == photo.read_bytes()


async def next_line_with(stream: asyncio.StreamReader, *needles: bytes) -> bytes:
    """The next output line containing every needle (lines before it are skipped)."""
    async with asyncio.timeout(scaled(60)):
        while True:
            line = await stream.readline()
            assert line, "the listener ended"
            if all(needle in line for needle in needles):
                return line


async def test_listen_reconnects_when_its_gateway_restarts(
    fleet: Fleet, user: Callable[..., str]
) -> None:
    alice, bob = user("alice"), user("bob")
    port = free_port()
    gateway = ServiceProcess(
        "gateway", name=f"gateway-chat-{port}", port=port, env=fleet.env, log_dir=fleet.log_dir
    )
    await asyncio.to_thread(gateway.start)
    command = chat_command(fleet, bob, "listen")
    command[command.index("--gateway-url") + 1] = gateway.url
    listener = await asyncio.create_subprocess_exec(
        *command,
        cwd=REPO_ROOT,
        env=fleet.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    replacement: ServiceProcess | None = None
    try:
        assert listener.stdout is not None
        await next_line_with(listener.stdout, b"connected to")
        # The gateway goes away (a deploy): 1001, then nobody answers on its port for a while.
        assert stopped_cleanly(await asyncio.to_thread(gateway.stop))
        await next_line_with(listener.stdout, b"disconnected")
        replacement = ServiceProcess(
            "gateway",
            name=f"gateway-chat-{port}-2",
            port=port,
            env=fleet.env,
            log_dir=fleet.log_dir,
        )
        await asyncio.to_thread(replacement.start)
        await next_line_with(listener.stdout, b"connected to")

        await run_chat(fleet, alice, "send", "--to", bob, "--text", "are you back?")
        await next_line_with(listener.stdout, f"from {alice}: are you back?".encode())
    finally:
        listener.terminate()
        await asyncio.wait_for(listener.wait(), scaled(10))
        if replacement is not None:
            await asyncio.to_thread(replacement.stop)
    assert listener.returncode == 0


async def test_send_to_the_same_person_reuses_their_direct_conversation(
    fleet: Fleet, user: Callable[..., str]
) -> None:
    alice, bob = user("alice"), user("bob")

    def conversation_of(output: str) -> str:
        line = next(line for line in output.splitlines() if "conversation c_" in line)
        return line.split("conversation ")[1].split(" ")[0]

    first = await run_chat(fleet, alice, "send", "--to", bob, "--text", "one")
    second = await run_chat(fleet, alice, "send", "--to", bob, "--text", "two")
    back = await run_chat(fleet, bob, "send", "--to", alice, "--text", "three")
    assert conversation_of(first) == conversation_of(second) == conversation_of(back)
