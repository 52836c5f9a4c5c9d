"""Figures measured against a running fleet, each next to its bare anchor in the same run.

- service CPU per upload slot (`POST /v1/media/uploads`) against a bare FastAPI endpoint with
  the same JWT check: CPU seconds of the server process from /proc/<pid>/stat, not wall time;
- idle WebSocket memory per connection and the time to open N connections, against a bare
  `websockets` server;
- a photo burst with videos transcoding: PUT → `uploaded` and `uploaded` → `ready` from the
  worker's own log timestamps (read every 250 ms, never a tight poll on the same cores), the
  drain against the CPU floor.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import os
import resource
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from bench.adapter import SETTLED_MESSAGES, VERIFIED_MESSAGES, issue_token
from bench.procs import children, cpu_seconds, status_kib, tree_cpu_seconds
from devstack.fleet import LocalFleet
from devstack.ports import free_port

LOG_READ_SECONDS = 0.25  # how often the worker's log is read while waiting (cheap, not tight)
OPEN_CONCURRENCY = 50  # WebSocket handshakes in flight at once
WARMUP = 20  # connections or requests before measuring: first-use costs are not per-unit


class BenchFailed(Exception):
    """The fleet did not do what a scenario needs (the message says what)."""


def percentile(values: list[float], percent: float) -> float:
    """Nearest rank (p50 of [1, 2, 3, 4] is 2)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(1, math.ceil(percent / 100 * len(ordered))) - 1]


def _check(response: httpx.Response, *statuses: int) -> Any:
    if response.status_code not in statuses:
        raise BenchFailed(
            f"{response.request.method} {response.request.url.path}: "
            f"{response.status_code} {response.text[:300]}"
        )
    return response.json() if response.content else None


# --- bare anchors as processes ---------------------------------------------------------------


@contextlib.contextmanager
def bare_server(kind: str, secret: str) -> Iterator[tuple[int, int]]:
    """`python -m bench.bare kind` on a free port: (pid, port) once it accepts connections."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "bench.bare", kind, str(port), secret])
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise BenchFailed(f"the bare {kind} server did not start")
            time.sleep(0.1)
        yield process.pid, port
    finally:
        process.terminate()
        process.wait(10)


# --- CPU per request -------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestCost:
    requests: int
    cpu_seconds: float
    wall_seconds: float
    latencies: list[float] = field(repr=False)

    @property
    def cpu_per_request(self) -> float:
        return self.cpu_seconds / self.requests


# CPU comes from /proc in clock ticks (10 ms): a measurement runs until it has used at least
# this much, so the tick is at most 1% of it (a bare endpoint's 300 requests are ~12 ticks).
MIN_MEASURED_CPU_SECONDS = 1.0
MAX_BATCHES = 40


async def request_cost(
    pid: int,
    send: Callable[[int], Awaitable[httpx.Response]],
    requests: int,
    concurrency: int,
    expect: int,
) -> RequestCost:
    """CPU the server `pid` spends per call of `send`, after a warm-up: batches of `requests`
    calls, `concurrency` at a time, until the server used `MIN_MEASURED_CPU_SECONDS`."""
    for n in range(WARMUP):
        _check(await send(n), expect)
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(n: int) -> None:
        async with gate:
            started = time.perf_counter()
            _check(await send(n), expect)
            latencies.append(time.perf_counter() - started)

    cpu, wall = cpu_seconds(pid), time.perf_counter()
    sent = 0
    for _ in range(MAX_BATCHES):
        async with asyncio.TaskGroup() as group:
            for n in range(sent, sent + requests):
                group.create_task(one(n))
        sent += requests
        if cpu_seconds(pid) - cpu >= MIN_MEASURED_CPU_SECONDS:
            break
    return RequestCost(sent, cpu_seconds(pid) - cpu, time.perf_counter() - wall, latencies)


async def slot_costs(fleet: LocalFleet, requests: int) -> dict[str, Any]:
    """Ferry's upload slot against the bare hello, the same count and concurrency each."""
    media_pid = fleet.pid("media_service")
    if media_pid is None:
        raise BenchFailed("no media_service process")
    secret = secrets.token_urlsafe(32)
    concurrency = 10
    users = [fleet.auth(f"slots-{secrets.token_hex(3)}-{n}") for n in range(20)]
    async with httpx.AsyncClient(timeout=60) as http:

        def slot(n: int) -> Awaitable[httpx.Response]:
            # A fresh hash every time: never a deduplication hit.
            body = {"content_type": "image/jpeg", "size": 4096, "sha256": os.urandom(32).hex()}
            return http.post(
                f"{fleet.media_url}/v1/media/uploads", json=body, headers=users[n % len(users)]
            )

        ferry = await request_cost(media_pid, slot, requests, concurrency, 201)
        with bare_server("http", secret) as (pid, port):
            tokens = [
                {"Authorization": f"Bearer {issue_token(f'u{n}', secret)}"} for n in range(20)
            ]

            def hello(n: int) -> Awaitable[httpx.Response]:
                return http.post(f"http://127.0.0.1:{port}/hello", headers=tokens[n % 20])

            bare = await request_cost(pid, hello, requests, concurrency, 200)
    return {"ferry": _cost(ferry), "bare": _cost(bare), "concurrency": concurrency}


def _cost(cost: RequestCost) -> dict[str, Any]:
    return {
        "requests": cost.requests,
        "cpu_ms_per_request": cost.cpu_per_request * 1000,
        "per_second": cost.requests / cost.wall_seconds,
        "p50_ms": percentile(cost.latencies, 50) * 1000,
        "p99_ms": percentile(cost.latencies, 99) * 1000,
    }


# --- idle WebSocket connections --------------------------------------------------------------


def raise_open_file_limit(needed: int) -> None:
    """Both ends of every connection are on this host (the server inherits the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


async def settled_rss(pid: int, quiet_seconds: float = 1.5, within: float = 20) -> int:
    """VmRSS once it has not moved for `quiet_seconds`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    last, since = status_kib(pid, "VmRSS") or 0, loop.time()
    while loop.time() < deadline:
        await asyncio.sleep(0.25)
        now = status_kib(pid, "VmRSS") or 0
        if now != last:
            last, since = now, loop.time()
        elif loop.time() - since >= quiet_seconds:
            break
    return last


async def _open(
    stack: contextlib.AsyncExitStack, url: str, tokens: list[str]
) -> list[ClientConnection]:
    gate = asyncio.Semaphore(OPEN_CONCURRENCY)

    async def one(token: str) -> ClientConnection:
        async with gate:
            return await connect(
                url,
                additional_headers={"Authorization": f"Bearer {token}"},
                compression=None,
                ping_interval=None,  # idle means idle; the server's own keepalive still runs
                open_timeout=120,
                max_queue=None,
            )

    opened = await asyncio.gather(*(one(token) for token in tokens))
    for websocket in opened:
        stack.push_async_callback(websocket.close)
    return list(opened)


async def idle_connections(
    pid: int,
    url: str,
    tokens: list[str],
    registered: Callable[[int], Awaitable[bool]] | None = None,
) -> dict[str, Any]:
    """Open WARMUP then len(tokens) - WARMUP connections; time and RSS of the second batch.

    `registered(n)` (the gateway's own gauge, read every 250 ms) says when the server has
    taken all n on: a handshake alone is not the end of a gateway's connect work.
    """
    warm, measured = tokens[:WARMUP], tokens[WARMUP:]
    async with contextlib.AsyncExitStack() as stack:
        await _open(stack, url, warm)
        before = await settled_rss(pid)
        cpu, started = cpu_seconds(pid), time.perf_counter()
        await _open(stack, url, measured)
        handshakes = time.perf_counter() - started
        if registered is not None:
            deadline = time.perf_counter() + 300
            while not await registered(len(tokens)):
                if time.perf_counter() > deadline:
                    raise BenchFailed("the server never counted every connection")
                await asyncio.sleep(LOG_READ_SECONDS)
        connected = time.perf_counter() - started
        connect_cpu = cpu_seconds(pid) - cpu
        after = await settled_rss(pid)
    count = len(measured)
    return {
        "connections": count,
        "handshakes_seconds": handshakes,
        "connect_seconds": connected,
        "connect_cpu_ms_each": connect_cpu / count * 1000,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_connection": (after - before) / count,
    }


async def websocket_costs(fleet: LocalFleet, count: int) -> dict[str, Any]:
    raise_open_file_limit(4 * (count + WARMUP) + 512)
    gateway_pid = fleet.pid("gateway")
    if gateway_pid is None:
        raise BenchFailed("no gateway process")
    gateway_url = fleet.url("gateway")
    run = secrets.token_hex(3)
    tokens = [fleet.token(f"ws-{run}-{n}", "phone") for n in range(count + WARMUP)]
    async with httpx.AsyncClient(timeout=10) as http:

        async def registered(expected: int) -> bool:
            text = (await http.get(f"{gateway_url}/metrics")).text
            for line in text.splitlines():
                if line.startswith("ferry_ws_connections "):
                    return float(line.split()[1]) >= expected
            return False

        ws_url = gateway_url.replace("http://", "ws://") + "/v1/ws"
        before = fleet_cpu(fleet)
        ferry = await idle_connections(gateway_pid, ws_url, tokens, registered)
        after = fleet_cpu(fleet)
    # Where the connect time goes (whole run, warm-up included): the gateway's own CPU is a
    # small part; the Message Service and the emulator behind both do most of the work.
    ferry["cpu_ms_each_by_process"] = {
        name: round((after[name] - before.get(name, 0.0)) / len(tokens) * 1000, 2) for name in after
    }
    secret = secrets.token_urlsafe(32)
    with bare_server("ws", secret) as (pid, port):
        bare_tokens = [issue_token(f"u{n}", secret) for n in range(count + WARMUP)]
        bare = await idle_connections(pid, f"ws://127.0.0.1:{port}/", bare_tokens)
    return {"ferry": ferry, "bare": bare}


# --- the burst -------------------------------------------------------------------------------


def worker_cpu_by_part(pid: int) -> dict[str, float]:
    """CPU seconds so far of the worker's event loop (its own process: verification, storage,
    queue and table calls) and of its pools, told apart by their niceness (the image pool runs
    10 levels below the worker, the video pool 19, capped at nice 19; see transcode_worker.pool).
    """
    own = os.getpriority(os.PRIO_PROCESS, pid)
    parts = {"loop": cpu_seconds(pid), "image pool": 0.0, "video pool": 0.0, "other": 0.0}
    for child in _descendants(pid):
        try:
            nice, spent = os.getpriority(os.PRIO_PROCESS, child), cpu_seconds(child)
        except (OSError, ValueError):
            continue  # gone meanwhile
        if nice == min(19, own + 10) and nice != min(19, own + 19):
            parts["image pool"] += spent
        elif nice == min(19, own + 19):
            parts["video pool"] += spent
        else:
            parts["other"] += spent  # the resource tracker, a job isolated after a crash...
    return parts


def _descendants(pid: int) -> list[int]:
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        try:
            below = children(current)
        except OSError:
            continue
        found += below
        pending += below
    return found


def fleet_cpu(fleet: LocalFleet) -> dict[str, float]:
    """CPU seconds so far of each service (with its pool processes) and of the emulator (every
    other descendant of this process: the fleet's processes are this process's children)."""
    by_name = {
        name: tree_cpu_seconds(process.pid)
        for name, process in fleet.processes.items()
        if process.pid is not None
    }
    everything = tree_cpu_seconds(os.getpid()) - cpu_seconds(os.getpid())
    return {**by_name, "emulator and the rest": everything - sum(by_name.values())}


class WorkerLog:
    """The worker's JSON log, read incrementally: when each media was verified and settled."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._offset = 0
        self.verified: dict[str, float] = {}
        self.ready: dict[str, float] = {}
        self.failed: dict[str, str] = {}

    def read(self) -> None:
        with self._path.open("rb") as log:
            log.seek(self._offset)
            chunk = log.read()
        end = chunk.rfind(b"\n") + 1  # a half-written last line waits for the next read
        self._offset += end
        for raw in chunk[:end].splitlines():
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            media_id = entry.get("media_id") if isinstance(entry, dict) else None
            if not media_id or "ts" not in entry:
                continue
            at = datetime.fromisoformat(entry["ts"]).timestamp()
            state, message = entry.get("state"), entry.get("msg")
            if message in VERIFIED_MESSAGES or (
                message in SETTLED_MESSAGES and state == "uploaded"
            ):
                self.verified.setdefault(media_id, at)
            if message in SETTLED_MESSAGES and state == "ready":
                self.ready.setdefault(media_id, at)
            elif message in SETTLED_MESSAGES and state in ("failed", "blocked"):
                self.failed[media_id] = str(state)

    async def wait(self, media_ids: list[str], within: float) -> None:
        deadline = time.monotonic() + within
        while True:
            self.read()
            failed = [m for m in media_ids if m in self.failed]
            if failed:
                raise BenchFailed(f"{len(failed)} media failed, e.g. {failed[0]}")
            if all(m in self.ready for m in media_ids):
                return
            if time.monotonic() > deadline:
                missing = sum(m not in self.ready for m in media_ids)
                raise BenchFailed(f"{missing} media not ready after {within:.0f} s")
            await asyncio.sleep(LOG_READ_SECONDS)


@dataclass
class Refusals:
    """429s met on the way (the per-user limiter refuses a user's concurrent slot requests
    when its optimistic write keeps losing the race: a finding, not a bench failure)."""

    count: int = 0


async def upload(
    http: httpx.AsyncClient,
    fleet: LocalFleet,
    auth: dict[str, str],
    data: bytes,
    content_type: str,
    refusals: Refusals | None = None,
) -> tuple[str, float, float]:
    """Slot + single PUT: (media_id, wall clock when asked, wall clock when the PUT returned).
    A 429 is retried after 0.2 s (at most 50 times), and counted."""
    asked = time.time()
    request = {
        "content_type": content_type,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    url = f"{fleet.media_url}/v1/media/uploads"
    for _ in range(50):
        response = await http.post(url, json=request, headers=auth)
        if response.status_code != 429:
            break
        if refusals is not None:
            refusals.count += 1
        await asyncio.sleep(0.2)
    slot = _check(response, 201)
    media_id, target = str(slot["media_id"]), slot["upload"]
    if target["method"] == "PUT":
        _check(await http.put(target["url"], content=data, headers=target["headers"]), 200)
    else:
        await _multipart(http, f"{fleet.media_url}/v1/media/{media_id}", auth, data, target)
    return media_id, asked, time.time()


async def _multipart(
    http: httpx.AsyncClient, base: str, auth: dict[str, str], data: bytes, plan: dict[str, Any]
) -> None:
    """Every part, in order, then the completion (large videos get a multipart plan)."""
    size, count = int(plan["part_size"]), int(plan["part_count"])
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


async def burst(
    fleet: LocalFleet,
    photos: list[bytes],
    videos: list[bytes],
    *,
    upload_concurrency: int = 16,
    users: int = 10,
    within: float = 600,
) -> dict[str, Any]:
    """Start `videos` (and wait until the worker verified them, so they are transcoding), then
    upload every photo at once (`upload_concurrency` clients) and wait for all to be ready.

    Times come from the worker's log (verified, settled) against this process's clock at the
    moment each PUT returned: the same machine, the same clock.
    """
    worker = fleet.processes["transcode_worker"]
    log = WorkerLog(worker.log_path)
    run = secrets.token_hex(3)
    senders = [fleet.auth(f"burst-{run}-{n}") for n in range(users)]
    auth = senders[0]
    refusals = Refusals()
    async with httpx.AsyncClient(timeout=120) as http:
        video_ids = []
        for data in videos:
            media_id, _, _ = await upload(http, fleet, auth, data, "video/mp4")
            video_ids.append(media_id)
        deadline = time.monotonic() + 120
        while not all(m in log.verified for m in video_ids):
            if time.monotonic() > deadline:
                raise BenchFailed("the videos were never verified")
            await asyncio.sleep(LOG_READ_SECONDS)
            log.read()
        worker_cpu = tree_cpu_seconds(worker.pid) if worker.pid else math.nan
        parts_before = worker_cpu_by_part(worker.pid) if worker.pid else {}
        cpu_before = fleet_cpu(fleet)
        gate = asyncio.Semaphore(upload_concurrency)

        async def one(n: int, data: bytes) -> tuple[str, float, float]:
            async with gate:
                sender = senders[n % users]
                return await upload(http, fleet, sender, data, "image/jpeg", refusals)

        started = time.time()
        done = await asyncio.gather(*(one(n, data) for n, data in enumerate(photos)))
        await log.wait([media_id for media_id, _, _ in done], within)
        worker_cpu = (tree_cpu_seconds(worker.pid) if worker.pid else math.nan) - worker_cpu
        parts_after = worker_cpu_by_part(worker.pid) if worker.pid else {}
        cpu_after = fleet_cpu(fleet)
        drained = max(log.ready[media_id] for media_id, _, _ in done) - started
        # The videos finish before the next measurement starts (it should have the machine).
        await log.wait(video_ids, within)
        videos_done = max((log.ready[m] for m in video_ids), default=time.time()) - started
    to_uploaded = [log.verified[m] - put for m, _, put in done]
    to_ready = [log.ready[m] - log.verified[m] for m, _, _ in done]
    put_to_ready = [log.ready[m] - put for m, _, put in done]
    return {
        "photos": len(photos),
        "videos": len(videos),
        "upload_concurrency": upload_concurrency,
        "users": users,
        "slot_refusals_429": refusals.count,
        "put_to_uploaded_p50": percentile(to_uploaded, 50),
        "put_to_uploaded_p99": percentile(to_uploaded, 99),
        "uploaded_to_ready_p50": percentile(to_ready, 50),
        "uploaded_to_ready_p99": percentile(to_ready, 99),
        "put_to_ready_p50": percentile(put_to_ready, 50),
        "put_to_ready_p99": percentile(put_to_ready, 99),
        "uploads_seconds": max(put for _, _, put in done) - started,
        "drain_seconds": drained,
        "videos_done_seconds": videos_done,
        "worker_cpu_seconds": worker_cpu,
        # Where the machine's CPU went between the first slot and the last photo ready.
        "cpu_seconds_by_process": {
            name: round(cpu_after[name] - cpu_before.get(name, 0.0), 2) for name in cpu_after
        },
        # The worker's share of it: its event loop and each pool (pool processes started
        # during the burst count from zero).
        "worker_cpu_seconds_by_part": {
            name: round(parts_after[name] - parts_before.get(name, 0.0), 3) for name in parts_after
        },
    }
