"""Two users and a photo: a terminal chat client for the local fleet (`make run`).

    # terminal 1: Bob listens (prints every frame, acknowledges messages)
    python -m scripts.chat --user bob listen

    # terminal 2: Alice sends Bob a photo with a caption
    python -m scripts.chat --user alice send --to bob --text "the view" photo.jpg

    # terminal 1 (or 3): Bob downloads what he was sent
    python -m scripts.chat --user bob fetch MEDIA_ID --out view.jpg

`send --to bob` reuses Alice and Bob's direct conversation (created the first time; several
`--to` users make a new group each time), or uses `--conversation`; it uploads the file straight
to storage exactly as `scripts/upload_demo.py` does, then sends the message over the WebSocket
and waits for `sent`. `listen` connects to the gateway and reconnects whenever the connection
ends (backoff 0.5 s doubling to 10 s; it stops only when replaced by the same device elsewhere,
4000, or when the token is refused), gets pending messages first on each connection, then live
frames, and acknowledges each message with `received`. Tokens are made with the local secret
(as `make token` does), or passed with `--token`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from scripts.upload_demo import (
    DemoFailed,
    describe_file,
    expect,
    step,
    upload,
)
from shared.auth import issue_token
from shared.settings import CommonSettings

EXIT_OK, EXIT_FAILED = 0, 1
# `listen` reconnects after these waits, doubling up to the last.
RECONNECT_FIRST_SECONDS, RECONNECT_MAX_SECONDS = 0.5, 10.0
REPLACED = 4000  # the gateway's close code for a connection of the same device (docs/websocket.md)
# States in which `send` stops waiting: the bytes are verified (or never will be).
SENDABLE = frozenset({"uploaded", "processing", "ready", "failed", "blocked", "expired"})


def _token(args: argparse.Namespace, user: str | None = None) -> str:
    if args.token and user is None:
        return str(args.token)
    secret = CommonSettings().auth_jwt_secret
    return issue_token(user or args.user, secret, device_id=args.device)


def _ws_url(gateway: str) -> str:
    return gateway.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/v1/ws"


# --- send ---------------------------------------------------------------------------------


def _upload(args: argparse.Namespace, headers: dict[str, str]) -> str:
    local = describe_file(Path(args.file), None)
    with (
        httpx.Client(base_url=args.media_url, headers=headers, timeout=60) as api,
        httpx.Client(timeout=60) as storage,
    ):
        # Sent as soon as storage holds verified bytes, as a chat app does: recipients see a
        # placeholder at once and get a `media_update` when processing is done.
        document = upload(api, storage, local, 120, SENDABLE)
        if document["state"] not in SENDABLE - {"failed", "blocked", "expired"}:
            raise DemoFailed(f"the media ended {document['state']}")
        return str(document["media_id"])


def _conversation(args: argparse.Namespace, headers: dict[str, str]) -> str:
    if args.conversation:
        return str(args.conversation)
    # One other person: their direct conversation, found again (200) or created (201).
    direct = len(set(args.to)) == 1
    with httpx.Client(base_url=args.message_url, headers=headers, timeout=30) as api:
        created = expect(
            api.post("/v1/conversations", json={"members": args.to, "direct": direct}),
            200,
            201,
            what="opening the conversation",
        )
    step("chat", f"conversation {created['conversation_id']} with {', '.join(created['members'])}")
    return str(created["conversation_id"])


async def _send(
    args: argparse.Namespace, token: str, conversation_id: str, media: list[str]
) -> None:
    frame: dict[str, Any] = {
        "type": "send",
        "client_msg_id": uuid.uuid4().hex,
        "conversation_id": conversation_id,
        "text": args.text,
        "media": [{"media_id": media_id} for media_id in media],
    }
    headers = {"Authorization": f"Bearer {token}"}
    async with connect(_ws_url(args.gateway_url), additional_headers=headers) as ws:
        await ws.send(json.dumps(frame))
        while True:
            answer = json.loads(await ws.recv())
            if answer.get("client_msg_id") != frame["client_msg_id"]:
                continue  # other frames (messages of other conversations) are not ours
            if answer["type"] == "sent":
                step("sent", f"message {answer['message_id']} (seq {answer['seq']})")
                return
            raise DemoFailed(f"send refused: {answer.get('code')}: {answer.get('message')}")


def send(args: argparse.Namespace) -> None:
    token = _token(args)
    headers = {"Authorization": f"Bearer {token}"}
    conversation_id = _conversation(args, headers)
    media = [_upload(args, headers)] if args.file else []
    asyncio.run(_send(args, token, conversation_id, media))


# --- listen -------------------------------------------------------------------------------


def _describe(frame: dict[str, Any]) -> str:
    if frame["type"] == "message":
        message = frame["message"]
        media = ", ".join(
            f"{m['media_type']} {m['media_id']} ({m['state']})" for m in message["media"]
        )
        text = message.get("text") or ""
        return f"#{message['seq']} from {message['sender']}: {text} {f'[{media}]' if media else ''}"
    if frame["type"] == "media_update":
        names = ", ".join(v["name"] for v in frame.get("variants", [])) or "no variants"
        return f"media {frame['media_id']} is now {frame['state']} ({names})"
    return json.dumps(frame)


async def _listen_once(args: argparse.Namespace) -> None:
    """One connection, until it ends (returns) or cannot be made (raises)."""
    # A fresh token per connection: a listener outlives any one token (4001 at expiry).
    headers = {"Authorization": f"Bearer {_token(args)}"}
    async with connect(_ws_url(args.gateway_url), additional_headers=headers) as ws:
        step("listen", f"connected to {args.gateway_url} as {args.user}/{args.device}")
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                frame = json.loads(raw)
                step(frame["type"], _describe(frame))
                if frame["type"] == "message":
                    ids = [frame["message"]["message_id"]]
                    await ws.send(json.dumps({"type": "received", "message_ids": ids}))
        code = ws.close_code
    if code == REPLACED:
        # Another listener of the same device took over: reconnecting would take it back,
        # and the two would replace each other forever.
        raise DemoFailed("replaced by a newer connection of the same device (close code 4000)")
    step("listen", f"disconnected (close code {code})")


async def _listen(args: argparse.Namespace) -> None:
    """Listen forever: reconnect after every disconnect (a gateway restart, a deploy, a lost
    network), waiting longer after each failed attempt; pending messages come on reconnect."""
    delay = RECONNECT_FIRST_SECONDS
    while True:
        try:
            await _listen_once(args)
            delay = RECONNECT_FIRST_SECONDS  # it was connected: start the backoff over
        except InvalidStatus as error:
            if error.response.status_code in (401, 403):
                status = error.response.status_code
                raise DemoFailed(f"the gateway refused the token ({status})") from error
            step("listen", f"the gateway answered {error.response.status_code}")
        except (OSError, TimeoutError, InvalidHandshake) as error:
            step("listen", f"cannot connect ({error or type(error).__name__})")
        step("listen", f"reconnecting in {delay:.1f} s")
        await asyncio.sleep(delay)
        delay = min(delay * 2, RECONNECT_MAX_SECONDS)


async def _listen_until_terminated(args: argparse.Namespace) -> None:
    # SIGTERM ends the listener like Ctrl-C: a listener started in the background (whose
    # shell ignores SIGINT for it) can still be stopped cleanly.
    listening = asyncio.current_task()
    assert listening is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, listening.cancel)
    await _listen(args)


def listen(args: argparse.Namespace) -> None:
    # Ctrl-C (or SIGTERM) is how a listener ends.
    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        asyncio.run(_listen_until_terminated(args))


# --- fetch --------------------------------------------------------------------------------


def fetch(args: argparse.Namespace) -> None:
    headers = {"Authorization": f"Bearer {_token(args)}"}
    with httpx.Client(base_url=args.media_url, headers=headers, timeout=60) as api:
        signed = expect(
            api.get(f"/v1/media/{args.media_id}/url", params={"variant": args.variant}),
            200,
            what="the download URL",
        )
    with httpx.Client(timeout=60) as storage, storage.stream("GET", signed["url"]) as response:
        if response.status_code != 200:
            raise DemoFailed(f"storage answered {response.status_code}")
        with Path(args.out).open("wb") as out:
            for chunk in response.iter_bytes():
                out.write(chunk)
    step("fetch", f"{args.media_id} ({args.variant}) saved to {args.out}")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m scripts.chat", description=__doc__)
    parser.add_argument("--user", required=True, help="who you are (a token is made locally)")
    parser.add_argument("--device", default="default")
    parser.add_argument("--token", help="use this token instead of making one")
    parser.add_argument("--gateway-url", default="http://127.0.0.1:8080")
    parser.add_argument("--media-url", default="http://127.0.0.1:8081")
    parser.add_argument("--message-url", default="http://127.0.0.1:8082")
    commands = parser.add_subparsers(dest="command", required=True)
    sending = commands.add_parser("send", help="send a message (with a file) to other users")
    sending.add_argument("--to", nargs="+", default=[], help="who the conversation is with")
    sending.add_argument("--conversation", help="an existing conversation instead of --to")
    sending.add_argument("--text", default=None)
    sending.add_argument("file", nargs="?", help="a photo, voice note, video or document")
    sending.set_defaults(run=send)
    listening = commands.add_parser("listen", help="print every frame; acknowledge messages")
    listening.set_defaults(run=listen)
    fetching = commands.add_parser("fetch", help="download a media you may read")
    fetching.add_argument("media_id")
    fetching.add_argument("--variant", default="original")
    fetching.add_argument("--out", required=True)
    fetching.set_defaults(run=fetch)
    args = parser.parse_args(argv)
    if args.command == "send" and not (args.to or args.conversation):
        parser.error("send needs --to USER... or --conversation ID")
    if args.command == "send" and not (args.text or args.file):
        parser.error("send needs --text or a file")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        args.run(args)
    except (DemoFailed, httpx.HTTPError, OSError) as error:
        print(f"chat: {error}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
