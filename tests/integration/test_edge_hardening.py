"""The HTTP edge refuses oversized requests before any work, cleans request ids and filenames,
and keeps internal routes out of public documents (issue 9, items 7, 8, 11, 12)."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx

from tests.integration.helpers import Fleet
from tests.integration.media_client import slot_request
from tests.waiting import eventually

MAX_REQUEST_BYTES = 65_536  # the contract's default


def _public_urls(fleet: Fleet) -> dict[str, str]:
    urls = {"media_service": fleet.media_url, "transcode_worker": fleet.worker_url}
    if fleet.message_url:
        urls["message_service"] = fleet.message_url
    if fleet.gateway_urls:
        urls["gateway"] = fleet.gateway_urls[0]
    return urls


async def _raw_exchange(url: str, head: bytes, body_start: bytes) -> bytes:
    """Send a request head and only the start of its body, then read what comes back: an answer
    that arrives shows the server refused without waiting for (or reading) the rest."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(head + body_start)
        await writer.drain()
        head_bytes = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        length = next(
            int(line.split(b":", 1)[1])
            for line in head_bytes.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        return head_bytes + await asyncio.wait_for(reader.readexactly(length), timeout=10)
    finally:
        writer.close()


async def test_a_declared_32_mib_body_gets_413_before_it_is_sent_or_authenticated(
    fleet: Fleet,
) -> None:
    declared = 32 * 1024 * 1024
    for name, url in _public_urls(fleet).items():
        head = (
            "POST /v1/media/uploads HTTP/1.1\r\n"
            f"Host: {urlsplit(url).netloc}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {declared}\r\n\r\n"
        ).encode()
        answer = await _raw_exchange(url, head, b'{"content_type": "')
        status_line, _, rest = answer.partition(b"\r\n")
        assert b" 413 " in status_line, (name, answer[:300])
        body = json.loads(rest.partition(b"\r\n\r\n")[2])
        assert body["error"]["code"] == "request_too_large", name


async def test_a_chunked_body_over_the_limit_gets_413_without_authentication(
    fleet: Fleet,
) -> None:
    chunk = b"a" * 8192
    framed = b"%x\r\n%s\r\n" % (len(chunk), chunk)
    head = (
        "POST /v1/media/uploads HTTP/1.1\r\n"
        f"Host: {urlsplit(fleet.media_url).netloc}\r\n"
        "Content-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    # Just over the limit, and never a final chunk: the answer cannot wait for the end.
    answer = await _raw_exchange(fleet.media_url, head, framed * (MAX_REQUEST_BYTES // 8192 + 1))
    status_line, _, rest = answer.partition(b"\r\n")
    assert b" 413 " in status_line, answer[:300]
    assert json.loads(rest.partition(b"\r\n\r\n")[2])["error"]["code"] == "request_too_large"


async def test_a_chunked_body_under_the_limit_still_works(
    fleet: Fleet, http: httpx.AsyncClient, user: Any
) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield json.dumps(slot_request(b"chunked photo bytes", filename="a.jpg")).encode()

    answer = await http.post(
        f"{fleet.media_url}/v1/media/uploads",
        content=body(),
        headers={"Content-Type": "application/json", **fleet.auth(user())},
    )
    assert answer.status_code == 201, answer.text


async def test_a_one_megabyte_authorization_header_gets_431(
    fleet: Fleet, http: httpx.AsyncClient
) -> None:
    huge = {"Authorization": "Bearer " + "a" * 1_000_000}
    for name, url in _public_urls(fleet).items():
        answer = await http.get(f"{url}/v1/media/m_x", headers=huge)
        assert answer.status_code == 431, (name, answer.status_code, answer.text[:200])
        assert answer.json()["error"]["code"] == "request_headers_too_large", name


async def test_filenames_with_control_characters_or_empty_get_422(
    fleet: Fleet, http: httpx.AsyncClient, user: Any
) -> None:
    alice = fleet.auth(user())
    for bad in ("evil\x00.jpg", "a\r\nSet-Cookie: x=y", "tab\there", "", "x" * 256, "del\x7f"):
        answer = await http.post(
            f"{fleet.media_url}/v1/media/uploads",
            json=slot_request(secrets.token_bytes(64), filename=bad),
            headers=alice,
        )
        assert answer.status_code == 422, (bad, answer.text)
        assert answer.json()["error"]["code"] == "validation_error"
    fine = await http.post(
        f"{fleet.media_url}/v1/media/uploads",
        json=slot_request(secrets.token_bytes(64), filename="Été 2026 ✓.jpg"),
        headers=alice,
    )
    assert fine.status_code == 201, fine.text


async def test_a_request_id_outside_the_strict_set_is_replaced_not_logged(
    fleet: Fleet, http: httpx.AsyncClient
) -> None:
    forged = "x] user_id=admin status=200 [y"
    answer = await http.get(f"{fleet.media_url}/v1/media/m_x", headers={"X-Request-ID": forged})
    replaced = answer.headers["X-Request-ID"]
    assert replaced != forged
    assert all(ch.isalnum() or ch in "._-" for ch in replaced)
    await eventually(lambda: _logged(fleet, replaced))
    assert forged not in fleet.log("media_service")

    kept = f"client.{secrets.token_hex(6)}_ok-1"
    answer = await http.get(f"{fleet.media_url}/v1/media/m_x", headers={"X-Request-ID": kept})
    assert answer.headers["X-Request-ID"] == kept


async def _logged(fleet: Fleet, text: str) -> bool:
    return text in fleet.log("media_service")


async def test_internal_routes_stay_out_of_every_public_openapi(
    fleet: Fleet, http: httpx.AsyncClient
) -> None:
    for name, url in _public_urls(fleet).items():
        answer = await http.get(f"{url}/openapi.json")
        if answer.status_code == 404:
            continue  # a service that publishes no document
        paths = answer.json()["paths"]
        assert not [path for path in paths if path.startswith("/internal")], name
