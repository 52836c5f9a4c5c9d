"""`python -m bench.sweeper_reclaim`: bytes in the bucket before and after a sweeper pass.

Starts a fleet of its own (media, message and worker services on the embedded emulator), uploads
`--photos` photos and `--videos` short videos nobody sends, plus one photo that a message
references, waits until all are ready, then runs `python -m media_service.sweeper` once with its
clock past the unsent TTL and reports the bucket's bytes (every object version) before and
after, the pass's own report and its wall time. Numbers, never assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import secrets
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from devstack.fleet import LocalFleet, aws_environment, start_fleet
from devstack.processes import REPO_ROOT
from shared.aws import open_aws_clients
from tests.media_factory import av, images

TTL = 600
SETTINGS = {"UNSENT_MEDIA_TTL_SECONDS": str(TTL), "LOG_JSON": "true", "QUEUE_WAIT_SECONDS": "1"}


async def bucket_bytes(s3: Any, bucket: str) -> tuple[int, int]:
    """(object versions, bytes) in the whole bucket."""
    count = total = 0
    request: dict[str, Any] = {"Bucket": bucket}
    while True:
        response = await s3.list_object_versions(**request)
        versions = response.get("Versions", [])
        count += len(versions)
        total += sum(int(v["Size"]) for v in versions)
        if not response.get("IsTruncated"):
            return count, total
        request.update(
            KeyMarker=response["NextKeyMarker"], VersionIdMarker=response["NextVersionIdMarker"]
        )


async def upload(
    http: httpx.AsyncClient, fleet: LocalFleet, headers: dict[str, str], data: bytes, kind: str
) -> str:
    """Slot, PUT, then poll until it settles (a bench: no assertions, a bounded wait)."""
    slot = (
        await http.post(
            f"{fleet.media_url}/v1/media/uploads",
            json={
                "content_type": kind,
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            },
            headers=headers,
        )
    ).json()
    await http.put(slot["upload"]["url"], content=data, headers=slot["upload"]["headers"])
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        document = (
            await http.get(f"{fleet.media_url}/v1/media/{slot['media_id']}", headers=headers)
        ).json()
        if document["state"] in ("ready", "failed", "blocked"):
            break
        await asyncio.sleep(0.2)
    return str(slot["media_id"])


async def upload_all(fleet: LocalFleet, photos: int, videos: int, work: Path) -> None:
    alice, bob = f"alice-{secrets.token_hex(3)}", f"bob-{secrets.token_hex(3)}"
    headers = fleet.auth(alice)
    async with httpx.AsyncClient(timeout=60) as http:
        items = [(images.jpeg(1600, 1200, seed=i), "image/jpeg") for i in range(photos + 1)]
        for i in range(videos):
            clip = av.h264_mp4(work / f"v{i}.mp4", width=320, height=180, seconds=2.0)
            items.append((clip.read_bytes(), "video/mp4"))
        ids = [await upload(http, fleet, headers, data, kind) for data, kind in items]
        base = fleet.url("message_service")
        conversation = await http.post(
            f"{base}/v1/conversations", json={"members": [bob]}, headers=headers
        )
        await http.post(
            f"{base}/v1/conversations/{conversation.json()['conversation_id']}/messages",
            json={"client_msg_id": "kept", "media": [{"media_id": ids[0]}]},
            headers=headers,
        )


async def main_async(photos: int, videos: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        async with start_fleet(
            log_dir=work / "logs",
            prefix=f"bsw{secrets.token_hex(3)}",
            extra_env=SETTINGS,
            services=["media_service", "message_service", "transcode_worker"],
        ) as fleet:
            await upload_all(fleet, photos, videos, work)
            with aws_environment(fleet.emulator_url):
                async with AsyncExitStack() as stack:
                    aws = await open_aws_clients(stack, fleet.settings, "s3")
                    bucket = fleet.settings.resources.bucket
                    before = await bucket_bytes(aws.s3, bucket)
                    now = datetime.now(UTC) + timedelta(seconds=TTL + 60)
                    started = time.perf_counter()
                    process = await asyncio.create_subprocess_exec(
                        sys.executable,
                        "-m",
                        "media_service.sweeper",
                        "--now",
                        now.isoformat(),
                        env=fleet.env,
                        cwd=REPO_ROOT,
                        stdout=asyncio.subprocess.PIPE,
                    )
                    out, _ = await process.communicate()
                    wall = time.perf_counter() - started
                    after = await bucket_bytes(aws.s3, bucket)
    report = json.loads(out.decode().strip().splitlines()[-1])["sweep"]
    return {
        "uploaded": {"photos_unsent": photos, "videos_unsent": videos, "photos_sent": 1},
        "before": {"object_versions": before[0], "bytes": before[1]},
        "after": {"object_versions": after[0], "bytes": after[1]},
        "reclaimed_bytes_measured": before[1] - after[1],
        "sweeper_report": report,
        "sweeper_wall_seconds": round(wall, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sweeper_reclaim", description=__doc__)
    parser.add_argument("--photos", type=int, default=10)
    parser.add_argument("--videos", type=int, default=2)
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(main_async(args.photos, args.videos)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
