"""Fault injection on the Transcode Worker: kill -9 of its whole process tree mid-job, jobs
that crash their pool process, messages lost for good. A small fleet of its own (short
visibility timeout, short polls, quick retries), so the session's fleet is left alone.

What must hold after every fault, once the worker is restarted: every media ends in a terminal
state (`ready`, or `failed` with `processing_failed` when the job itself is the poison), none
stays stuck, variants are not duplicated, and the jobs beside a poison job are not harmed.
Recovery times (restart → settled) are written to the test's report section and appended to
`FAULT_REPORT` (default `/tmp/ferry-fault-report.txt`); they are printed, never asserted.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.fleet import LocalFleet, aws_environment, start_fleet
from devstack.processes import available_services
from shared.aws import AwsClients, open_aws_clients
from tests.integration.media_client import make_jpeg, sha256_hex, upload_single, wait_for_state
from tests.integration.prometheus import scrape
from tests.media_factory import av as av_media
from tests.waiting import eventually

WORKER = "transcode_worker"
SERVICES = [name for name in ("media_service", WORKER) if name in available_services()]
REPORT = Path(os.environ.get("FAULT_REPORT", "/tmp/ferry-fault-report.txt"))
# How long a media may take to settle after a restart (a loaded 2-core machine included).
SETTLE_WITHIN = 150.0


@dataclass
class CrashFleet:
    fleet: LocalFleet
    aws: AwsClients
    culprit: bytes  # a video whose derivation kills its pool process every time
    lines: list[str] = field(default_factory=list)

    @property
    def worker_url(self) -> str:
        return self.fleet.url(WORKER)

    async def report(self, line: str) -> None:
        self.lines.append(line)
        stamped = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {line}\n"
        await asyncio.to_thread(_append, REPORT, stamped)


def _append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as out:
        out.write(text)


def _clip(tmp: Path, name: str, **shape: Any) -> bytes:
    return av_media.h264_mp4(tmp / name, **shape).read_bytes()


@pytest.fixture(scope="module")
async def crashes(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[CrashFleet]:
    media = tmp_path_factory.mktemp("crash-media")
    culprit = _clip(media, "culprit.mp4", width=320, height=180, seconds=1.0)
    settings = {
        "QUEUE_WAIT_SECONDS": "1",
        "VISIBILITY_TIMEOUT_SECONDS": "4",
        "RETRY_BASE_SECONDS": "0",
        "QUEUE_SAMPLE_SECONDS": "1",
        "PROGRESS_POLL_SECONDS": "0.2",
        "SHUTDOWN_GRACE_SECONDS": "2",
        "MAX_JOB_CRASHES": "3",
        "VIDEO_CONCURRENCY": "2",
        "VIDEO_PROCESS_POOL_SIZE": "2",
        "RECONCILE_INTERVAL_SECONDS": "1",
        "STUCK_AFTER_SECONDS": "20",
        "FAULT_CRASH_SHA256": json.dumps([sha256_hex(culprit)]),
        "LOG_JSON": "true",
    }
    async with (
        start_fleet(
            log_dir=tmp_path_factory.mktemp("crash-fleet-logs"),
            prefix=f"cr{secrets.token_hex(4)}",
            extra_env=settings,
            services=SERVICES,
        ) as fleet,
        AsyncExitStack() as stack,
    ):
        # Clients bound to this fleet's emulator (endpoints are read when a client is made).
        with aws_environment(fleet.emulator_url):
            aws = await open_aws_clients(stack, fleet.settings, "sqs", "s3", "dynamodb")
        yield CrashFleet(fleet=fleet, aws=aws, culprit=culprit)
    # Killed on purpose, restarted; the last worker and the rest must have stopped cleanly.
    assert not fleet.unclean_exits, fleet.describe_unclean_exits()


pytestmark = pytest.mark.skipif(
    SERVICES != ["media_service", WORKER], reason="needs the media service and the worker"
)


async def _in_flight(http: httpx.AsyncClient, crashes: CrashFleet, queue: str) -> float:
    try:
        samples = await scrape(http, crashes.worker_url)
    except httpx.TransportError:
        return 0.0
    return samples.value("ferry_queue_jobs_in_flight", queue=queue)


async def _state(
    http: httpx.AsyncClient, crashes: CrashFleet, who: dict[str, str], media_id: str
) -> str:
    response = await http.get(f"{crashes.fleet.media_url}/v1/media/{media_id}", headers=who)
    assert response.status_code == 200, response.text
    return str(response.json()["state"])


async def _runs(crashes: CrashFleet, media_id: str) -> int:
    """The media's derivation runs counted and not ended (a run in flight, or crashed)."""
    item = await crashes.aws.dynamodb.get_item(
        TableName=crashes.fleet.settings.resources.media_table,
        Key={"media_id": {"S": media_id}},
        ConsistentRead=True,
    )
    return int(item.get("Item", {}).get("derive_runs", {"N": "0"})["N"])


async def _kill_when(crashes: CrashFleet, what: str, ready: Any) -> None:
    """Poll `ready()` closely; kill -9 the worker's process tree as soon as it is true."""
    await eventually(ready, timeout=60, interval=0.02)
    killed = await asyncio.to_thread(crashes.fleet.crash, WORKER)
    await crashes.report(f"killed the worker ({len(killed)} processes) {what}")


async def _restart(crashes: CrashFleet) -> float:
    started = time.monotonic()
    await crashes.fleet.restart(WORKER)
    return started


def _assert_no_duplicate_variants(document: dict[str, Any]) -> None:
    names = [variant["name"] for variant in document["variants"]]
    assert len(names) == len(set(names)), names


async def test_killed_mid_commit_and_mid_derive_the_media_still_ends_ready(
    crashes: CrashFleet, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    alice = crashes.fleet.auth(f"alice-{secrets.token_hex(4)}")
    clip = _clip(tmp_path, "clip.mp4", width=1280, height=720, seconds=8.0)
    media_id = await upload_single(http, crashes.fleet.media_url, alice, clip, "video/mp4")

    async def verifying_or_later() -> bool:
        if await _in_flight(http, crashes, "uploads") >= 1:
            return True
        return await _state(http, crashes, alice, media_id) != "awaiting_upload"

    await _kill_when(
        crashes, "while the original was being verified (or just after)", verifying_or_later
    )
    first = await _restart(crashes)

    async def deriving() -> bool:
        return (
            await _in_flight(http, crashes, "derive_video") >= 1
            and await _runs(crashes, media_id) >= 1
            and await _state(http, crashes, alice, media_id) == "processing"
        )

    await _kill_when(crashes, "mid-derive (derive_video job in flight)", deriving)
    second = await _restart(crashes)
    document = await wait_for_state(
        http, crashes.fleet.media_url, alice, media_id, within=SETTLE_WITHIN
    )
    settled = time.monotonic()
    assert document["state"] == "ready", document
    _assert_no_duplicate_variants(document)
    assert {variant["name"] for variant in document["variants"]} >= {"poster", "hls"}
    await crashes.report(
        f"kill mid-commit + kill mid-derive: ready {settled - second:.1f} s after the second "
        f"restart ({settled - first:.1f} s after the first)"
    )


async def test_a_job_killed_every_time_ends_failed_not_stuck(
    crashes: CrashFleet, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    alice = crashes.fleet.auth(f"alice-{secrets.token_hex(4)}")
    clip = _clip(tmp_path, "doomed.mp4", width=1280, height=720, seconds=7.0)
    media_id = await upload_single(http, crashes.fleet.media_url, alice, clip, "video/mp4")
    restarted = 0.0
    for attempt in range(1, 4):

        async def deriving(run: int = attempt) -> bool:
            # This run counted on the media (it started after the last kill).
            return (
                await _in_flight(http, crashes, "derive_video") >= 1
                and await _runs(crashes, media_id) >= run
                and await _state(http, crashes, alice, media_id) == "processing"
            )

        await _kill_when(crashes, f"mid-derive, kill {attempt} of 3 of the same job", deriving)
        restarted = await _restart(crashes)
    document = await wait_for_state(
        http, crashes.fleet.media_url, alice, media_id, within=SETTLE_WITHIN
    )
    settled = time.monotonic()
    assert document["state"] == "failed", document
    assert document["error"]["code"] == "processing_failed", document
    # Counted (the worker's counters start again at each restart: this is the last one's).
    after = await scrape(http, crashes.worker_url)
    assert after.value("ferry_stuck_media_failed_total") >= 1, after.labels_of(
        "ferry_stuck_media_failed_total"
    )
    await crashes.report(
        f"job killed 3 times (MAX_JOB_CRASHES=3): failed/processing_failed "
        f"{settled - restarted:.1f} s after the last restart"
    )


async def test_a_job_that_crashes_its_pool_process_fails_alone(
    crashes: CrashFleet, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    alice = crashes.fleet.auth(f"alice-{secrets.token_hex(4)}")
    worker_pid = crashes.fleet.pid(WORKER)
    bystander = _clip(tmp_path, "bystander.mp4", width=1280, height=720, seconds=4.0)
    started = time.monotonic()
    culprit_id = await upload_single(
        http, crashes.fleet.media_url, alice, crashes.culprit, "video/mp4"
    )
    bystander_id = await upload_single(http, crashes.fleet.media_url, alice, bystander, "video/mp4")
    photo_id = await upload_single(
        http, crashes.fleet.media_url, alice, make_jpeg(seed=secrets.randbelow(10**9))
    )
    documents = {
        media_id: await wait_for_state(
            http, crashes.fleet.media_url, alice, media_id, within=SETTLE_WITHIN
        )
        for media_id in (culprit_id, bystander_id, photo_id)
    }
    settled = time.monotonic()
    culprit = documents[culprit_id]
    assert culprit["state"] == "failed", culprit
    assert culprit["error"]["code"] == "processing_failed", culprit
    for media_id in (bystander_id, photo_id):
        assert documents[media_id]["state"] == "ready", documents[media_id]
        _assert_no_duplicate_variants(documents[media_id])
    # The worker itself never went down: its pool did, and was replaced.
    assert crashes.fleet.pid(WORKER) == worker_pid
    assert crashes.fleet.processes[WORKER].returncode is None
    samples = await scrape(http, crashes.worker_url)
    assert samples.value("ferry_stuck_media_failed_total", reason="crash_limit") >= 1
    assert (
        samples.value("ferry_derive_isolated_runs_total", media_type="video", outcome="crashed")
        >= 3
    )
    log_path = crashes.fleet.log_dir / f"{crashes.fleet.processes[WORKER].name}.log"
    log = await asyncio.to_thread(log_path.read_text)
    bystanders_rerun = log.count("the pool broke under this job")
    await crashes.report(
        f"poison job (pool process killed on every run) beside a 4 s 720p video and a photo: "
        f"poison failed/processing_failed, others ready, all settled in {settled - started:.1f} s; "
        f"{bystanders_rerun} jobs saw the pool break and reran alone"
    )


async def test_a_lost_s3_event_is_found_by_the_reconciler(
    crashes: CrashFleet, http: httpx.AsyncClient
) -> None:
    alice = crashes.fleet.auth(f"alice-{secrets.token_hex(4)}")
    await asyncio.to_thread(crashes.fleet.crash, WORKER)
    photo = make_jpeg(seed=secrets.randbelow(10**9))
    media_id = await upload_single(http, crashes.fleet.media_url, alice, photo)
    # The event never reaches a worker: the queue loses it (purged while the worker is down).
    sqs = crashes.aws.sqs
    queue = crashes.fleet.settings.resources.uploads_queue
    url = (await sqs.get_queue_url(QueueName=queue))["QueueUrl"]

    async def event_arrived() -> bool:
        attributes = await sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
        )
        return int(attributes["Attributes"]["ApproximateNumberOfMessages"]) >= 1

    await eventually(event_arrived, timeout=30)
    await sqs.purge_queue(QueueUrl=url)
    restarted = await _restart(crashes)
    document = await wait_for_state(
        http, crashes.fleet.media_url, alice, media_id, within=SETTLE_WITHIN
    )
    settled = time.monotonic()
    assert document["state"] == "ready", document
    samples = await scrape(http, crashes.worker_url)
    assert (
        samples.value("ferry_reconciler_actions_total", state="awaiting_upload", action="requeued")
        >= 1
    )
    await crashes.report(
        f"lost S3 event (STUCK_AFTER_SECONDS=20): ready {settled - restarted:.1f} s after the "
        "restart, found by the reconciler"
    )
