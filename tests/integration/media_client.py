"""What a client of the upload path does, written once for every integration test."""

from __future__ import annotations

import hashlib
import io
import random
from typing import Any

import httpx
from PIL import Image

from tests.waiting import eventually

TERMINAL = {"ready", "failed", "blocked", "expired"}


def make_jpeg(width: int = 640, height: int = 480, seed: int = 0) -> bytes:
    """A real JPEG, different for every seed (so tests never dedup against each other)."""
    rng = random.Random(seed)
    image = Image.new("RGB", (width, height), (rng.randrange(256), 80, 160))
    for _ in range(40):
        x, y = rng.randrange(width), rng.randrange(height)
        image.paste(
            (rng.randrange(256), rng.randrange(256), rng.randrange(256)), (x, y, x + 40, y + 30)
        )
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def slot_request(data: bytes, content_type: str = "image/jpeg", **overrides: Any) -> dict[str, Any]:
    return {
        "content_type": content_type,
        "size": len(data),
        "sha256": sha256_hex(data),
        **overrides,
    }


async def put_to_slot(
    http: httpx.AsyncClient, upload: dict[str, Any], data: bytes
) -> httpx.Response:
    """PUT straight to storage with exactly the headers the slot lists."""
    return await http.put(upload["url"], content=data, headers=upload["headers"])


async def wait_for_state(
    http: httpx.AsyncClient,
    media_url: str,
    headers: dict[str, str],
    media_id: str,
    states: set[str] = TERMINAL,
    within: float = 20.0,
) -> dict[str, Any]:
    async def settled() -> dict[str, Any] | None:
        try:
            response = await http.get(f"{media_url}/v1/media/{media_id}", headers=headers)
        except httpx.RemoteProtocolError:
            # A pooled keep-alive connection the server closed just as it was reused (after a
            # long pause): the GET is idempotent, so it is simply polled again.
            return None
        assert response.status_code == 200, response.text
        document: dict[str, Any] = response.json()
        return document if document["state"] in states else None

    return await eventually(settled, timeout=within)


async def upload_single(
    http: httpx.AsyncClient,
    media_url: str,
    headers: dict[str, str],
    data: bytes,
    content_type: str = "image/jpeg",
) -> str:
    """Ask for a slot and PUT the bytes; returns the media id (not waiting for verification)."""
    response = await http.post(
        f"{media_url}/v1/media/uploads", json=slot_request(data, content_type), headers=headers
    )
    assert response.status_code == 201, response.text
    slot = response.json()
    stored = await put_to_slot(http, slot["upload"], data)
    assert stored.status_code == 200, stored.text
    return str(slot["media_id"])


async def download(
    http: httpx.AsyncClient,
    media_url: str,
    headers: dict[str, str],
    media_id: str,
    variant: str = "original",
) -> bytes:
    response = await http.get(
        f"{media_url}/v1/media/{media_id}/url", params={"variant": variant}, headers=headers
    )
    assert response.status_code == 200, response.text
    fetched = await http.get(response.json()["url"])
    assert fetched.status_code == 200, fetched.text
    return fetched.content
