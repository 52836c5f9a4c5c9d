"""What the bench measures, as a client does it: over HTTP to the Media Service, bytes to storage.

Each scenario returns plain numbers (seconds, counts); `bench.run` turns them into the table.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import math
import os
import secrets
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from devstack.fleet import LocalFleet
from tests.media_factory.documents import sized_pdf

MIB = 1024 * 1024
PDF_HEADER = b"%PDF-1.7\n"
POLL_SECONDS = 0.01


class BenchFailed(Exception):
    """The fleet did not do what a scenario needs (the message says what)."""


def percentile(values: list[float], percent: float) -> float:
    """Nearest-rank percentile (p50 of [1, 2, 3, 4] is 2)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1]


def noise_jpeg(size: int) -> bytes:
    """A real JPEG of random pixels, about `size` bytes: it is verified, decoded and
    thumbnailed like a photo, and never deduplicates (fresh noise every call)."""
    side = max(16, int(math.sqrt(size / 1.2)))  # noise at quality 90 costs ~1.2 bytes/pixel
    image = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


def pdf_like(size: int) -> bytes:
    """A one-page PDF padded with random bytes to `size`: the commit step's checks (length,
    SHA-256, magic bytes) read all of it, the preview only its one page."""
    return sized_pdf(size)


def _check(response: httpx.Response, *statuses: int) -> Any:
    if response.status_code not in statuses:
        raise BenchFailed(
            f"{response.request.method} {response.request.url.path}: "
            f"{response.status_code} {response.text[:300]}"
        )
    return response.json() if response.content else None


# --- upload slot issuance --------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SlotResult:
    requests: int
    concurrency: int
    users: int
    wall_seconds: float
    latencies: list[float]
    statuses: dict[int, int]

    @property
    def succeeded(self) -> int:
        return self.statuses.get(201, 0)

    @property
    def per_second(self) -> float:
        return self.succeeded / self.wall_seconds if self.wall_seconds else math.nan


async def slot_issuance(
    http: httpx.AsyncClient, fleet: LocalFleet, *, requests: int, concurrency: int, users: int
) -> SlotResult:
    """`requests` single-upload slots for `users` users, `concurrency` in flight at a time."""
    run = secrets.token_hex(3)
    headers = [{"Authorization": f"Bearer {fleet.token(f'slots-{run}-{n}')}"} for n in range(users)]
    url = f"{fleet.media_url}/v1/media/uploads"

    def body() -> dict[str, Any]:
        # A fresh hash every time: no slot is ever a deduplication hit.
        return {"content_type": "image/jpeg", "size": 4096, "sha256": os.urandom(32).hex()}

    for n in range(concurrency):  # warm the connections and the service's code paths
        _check(await http.post(url, json=body(), headers=headers[n % users]), 201)

    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    gate = asyncio.Semaphore(concurrency)

    async def one(n: int) -> None:
        async with gate:
            started = time.perf_counter()
            response = await http.post(url, json=body(), headers=headers[n % users])
            latencies.append(time.perf_counter() - started)
            statuses[response.status_code] += 1

    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for n in range(requests):
            group.create_task(one(n))
    wall = time.perf_counter() - started
    return SlotResult(
        requests=requests,
        concurrency=concurrency,
        users=users,
        wall_seconds=wall,
        latencies=latencies,
        statuses=dict(statuses),
    )


# --- end to end: bytes stored → ready --------------------------------------------------------


async def _upload(
    http: httpx.AsyncClient, media_url: str, auth: dict[str, str], data: bytes, content_type: str
) -> str:
    """Ask for a slot and store the bytes (single PUT or every part, then complete)."""
    request = {
        "content_type": content_type,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    slot = _check(await http.post(f"{media_url}/v1/media/uploads", json=request, headers=auth), 201)
    media_id = str(slot["media_id"])
    upload = slot["upload"]
    if upload["method"] == "PUT":
        _check(await http.put(upload["url"], content=data, headers=upload["headers"]), 200)
        return media_id
    base = f"{media_url}/v1/media/{media_id}"
    size, count = int(upload["part_size"]), int(upload["part_count"])
    signed = _check(
        await http.post(
            f"{base}/parts", json={"part_numbers": list(range(1, count + 1))}, headers=auth
        ),
        200,
    )
    parts = []
    for part in signed["parts"]:
        number = int(part["part_number"])
        stored = await http.put(
            part["url"], content=data[(number - 1) * size : number * size], headers=part["headers"]
        )
        _check(stored, 200)
        parts.append({"part_number": number, "etag": stored.headers["ETag"]})
    _check(await http.post(f"{base}/complete", json={"parts": parts}, headers=auth), 202)
    return media_id


async def _wait_ready(
    http: httpx.AsyncClient, media_url: str, auth: dict[str, str], media_id: str, within: float
) -> None:
    deadline = time.perf_counter() + within
    while True:
        document = _check(await http.get(f"{media_url}/v1/media/{media_id}", headers=auth), 200)
        if document["state"] == "ready":
            return
        if document["state"] in ("failed", "blocked", "expired"):
            raise BenchFailed(f"{media_id} ended {document['state']}: {document.get('error')}")
        if time.perf_counter() > deadline:
            raise BenchFailed(f"{media_id} still {document['state']} after {within:.0f} s")
        await asyncio.sleep(POLL_SECONDS)


async def stored_to_ready(
    http: httpx.AsyncClient,
    fleet: LocalFleet,
    data: bytes,
    content_type: str,
    *,
    within: float = 120.0,
) -> float:
    """Seconds from the moment storage holds the bytes (the PUT, or the multipart completion,
    returned) to the moment the media reads `ready`: the event, the commit step's read of every
    byte, its checks and writes, and one poll's granularity."""
    auth = {"Authorization": f"Bearer {fleet.token(f'e2e-{secrets.token_hex(4)}')}"}
    media_id = await _upload(http, fleet.media_url, auth, data, content_type)
    stored = time.perf_counter()
    await _wait_ready(http, fleet.media_url, auth, media_id, within)
    return time.perf_counter() - stored


# --- the worker's memory ---------------------------------------------------------------------


def memory_kib(pid: int, field_name: str) -> int | None:
    """A `Vm*` field of /proc/<pid>/status in KiB (None where /proc has no such process)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name == field_name:
            return int(value.split()[0])
    return None
