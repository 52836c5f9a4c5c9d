"""`python -m bench.access_timing`: how long the Media Service takes to refuse a media that does
not exist and one that exists but is hidden from the caller (issue 9 item 6: no timing oracle).

Starts its own fleet (emulator, bootstrap, media and message services), makes one media owned
by someone else, then asks for it and for well-formed ids that do not exist, interleaved, N times
each (default 300), and prints the median and p90 of each. Numbers, never assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import secrets
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from devstack.fleet import start_fleet

SERVICES = ("media_service", "message_service")


async def _measure(requests: int) -> dict[str, list[float]]:
    log_dir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="ferry-bench-timing-"))
    async with start_fleet(
        log_dir=log_dir, prefix=f"b{secrets.token_hex(4)}", services=SERVICES
    ) as fleet:
        media_url = fleet.url("media_service")
        auth = fleet.auth

        async with httpx.AsyncClient(timeout=30) as http:
            body = {
                "content_type": "image/jpeg",
                "size": 1000,
                "sha256": hashlib.sha256(b"x").hexdigest(),
            }
            slot = await http.post(
                f"{media_url}/v1/media/uploads", json=body, headers=auth("alice")
            )
            hidden = slot.json()["media_id"]
            probe = auth("eve")
            timings: dict[str, list[float]] = {"missing": [], "hidden": []}
            for _ in range(20):  # warm-up: connections, caches
                await http.get(f"{media_url}/v1/media/{hidden}", headers=probe)
            for _ in range(requests):
                for label in ("missing", "hidden"):
                    media_id = hidden if label == "hidden" else "m_" + secrets.token_urlsafe(16)
                    started = time.perf_counter()
                    answer = await http.get(f"{media_url}/v1/media/{media_id}", headers=probe)
                    timings[label].append((time.perf_counter() - started) * 1000)
                    assert answer.status_code == 404
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    timings = asyncio.run(_measure(args.requests))
    for label, values in timings.items():
        ordered = sorted(values)
        p90 = ordered[int(len(ordered) * 0.9)]
        print(
            f"{label:8} n={len(values)} median={statistics.median(values):.1f} ms p90={p90:.1f} ms"
        )


if __name__ == "__main__":
    main()
