"""`python -m bench.ws_memory`: one gateway's resident memory per idle WebSocket connection.

Starts its own emulator, bootstrap and one gateway process (as the integration tests do, through
`devstack.processes`), opens N idle connections (default 1,000) and reads the gateway's VmRSS
from /proc before and after: per connection = delta / N. It runs the gateway twice, with
permessage-deflate off (the default) and on, since compression state is the largest part of a
WebSocket connection's baseline. Numbers, never assertions.

Memory freed by closed connections stays with the process (CPython keeps its arenas), so
RSS after closing barely falls; a second round of N connections that lands near the first
round's RSS shows that the memory is reused, not leaked.

`--connections N` changes N; `--deflate off|on|both` picks the runs. Nothing answers on the
Message Service URL, so each connection's backlog fetch fails at once (one attempt) and the
connection then sits idle, as a connected phone does.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource
import secrets
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
from websockets.asyncio.client import ClientConnection, connect

from devstack.bootstrap import bootstrap
from devstack.fleet import aws_environment
from devstack.processes import Emulator, ServiceProcess, free_port, service_env
from shared.auth import issue_token
from shared.settings import CommonSettings

DEFAULT_CONNECTIONS = 1000
OPEN_CONCURRENCY = 50  # handshakes in flight at once
WARMUP_CONNECTIONS = 20  # first-use allocations (imports, caches) are not per-connection cost
SETTLE_SECONDS = 2.0  # RSS is sampled until it stops moving for this long
KIB = 1024


@dataclass(frozen=True)
class Sample:
    label: str
    connections: int
    rss_before_kib: int
    rss_after_kib: int
    rss_after_close_kib: int
    rss_second_round_kib: int  # N connections again: close to rss_after means nothing leaked

    @property
    def per_connection_kib(self) -> float:
        return (self.rss_after_kib - self.rss_before_kib) / self.connections


def rss_kib(pid: int) -> int:
    """VmRSS of a process, in KiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def raise_open_file_limit(needed: int) -> None:
    """Both ends of every connection live on this host: this process and the gateway (which
    inherits the limit) each need a descriptor per connection."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < needed:
        raise SystemExit(f"open-file limit {soft} is below the {needed} this bench needs")


async def settled_rss(pid: int) -> int:
    """RSS once it has not changed for SETTLE_SECONDS (at most 30 s of waiting)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    last, stable_since = rss_kib(pid), loop.time()
    while loop.time() < deadline:
        await asyncio.sleep(0.25)
        current = rss_kib(pid)
        if current != last:
            last, stable_since = current, loop.time()
        elif loop.time() - stable_since >= SETTLE_SECONDS:
            break
    return last


async def gauge(http: httpx.AsyncClient, url: str, name: str) -> float:
    for line in (await http.get(f"{url}/metrics")).text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def wait_for(check: Callable[[], Awaitable[bool]], what: str, within: float = 120) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        if loop.time() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def open_connections(
    stack: AsyncExitStack, ws_url: str, secret: str, count: int, *, deflate: bool
) -> list[ClientConnection]:
    limit = asyncio.Semaphore(OPEN_CONCURRENCY)
    run = secrets.token_hex(3)

    async def one(n: int) -> ClientConnection:
        token = issue_token(f"bench-{run}-{n}", secret, device_id="phone")
        async with limit:
            return await connect(
                ws_url,
                additional_headers={"Authorization": f"Bearer {token}"},
                compression="deflate" if deflate else None,
                ping_interval=None,  # idle means idle: the server's own keepalive still runs
                open_timeout=60,
            )

    opened = await asyncio.gather(*(one(n) for n in range(count)))
    for websocket in opened:
        stack.push_async_callback(websocket.close)
    return list(opened)


async def measure(
    *, label: str, deflate: bool, count: int, env: dict[str, str], log_dir: Path, secret: str
) -> Sample:
    port = free_port()
    gateway = ServiceProcess(
        "gateway",
        name=f"gateway-{label}",
        port=port,
        env={**env, "PERMESSAGE_DEFLATE": str(deflate).lower()},
        log_dir=log_dir,
    )
    await asyncio.to_thread(gateway.start)
    try:
        assert gateway.pid is not None
        ws_url = f"ws://127.0.0.1:{port}/v1/ws"
        async with httpx.AsyncClient(timeout=10) as http:

            async def connected(expected: int) -> bool:
                return await gauge(http, gateway.url, "ferry_ws_connections") == expected

            async def backlog_done(expected: int) -> bool:
                failures = "ferry_ws_pending_fetch_failures_total"
                return await gauge(http, gateway.url, failures) >= expected

            async with AsyncExitStack() as warmup:
                await open_connections(warmup, ws_url, secret, WARMUP_CONNECTIONS, deflate=deflate)
                await wait_for(lambda: backlog_done(WARMUP_CONNECTIONS), "the warm-up backlogs")
            await wait_for(lambda: connected(0), "the warm-up connections to close")
            before = await settled_rss(gateway.pid)

            async with AsyncExitStack() as stack:
                await open_connections(stack, ws_url, secret, count, deflate=deflate)
                await wait_for(lambda: connected(count), f"{count} connections")
                await wait_for(
                    lambda: backlog_done(WARMUP_CONNECTIONS + count), "every backlog fetch"
                )
                gc.collect()  # this process's garbage is not the gateway's, but keep it quiet
                after = await settled_rss(gateway.pid)
            await wait_for(lambda: connected(0), "the connections to close")
            after_close = await settled_rss(gateway.pid)

            async with AsyncExitStack() as stack:
                await open_connections(stack, ws_url, secret, count, deflate=deflate)
                await wait_for(lambda: connected(count), f"{count} connections, again")
                await wait_for(
                    lambda: backlog_done(WARMUP_CONNECTIONS + 2 * count), "every backlog fetch"
                )
                second_round = await settled_rss(gateway.pid)
    finally:
        await asyncio.to_thread(gateway.stop)
    return Sample(label, count, before, after, after_close, second_round)


async def run(count: int, modes: list[bool]) -> list[Sample]:
    raise_open_file_limit(2 * (count + WARMUP_CONNECTIONS) + 256)
    log_dir = Path(tempfile.mkdtemp(prefix="ferry-ws-memory-"))
    emulator = Emulator(log_path=log_dir / "emulator.log")
    emulator_url = await asyncio.to_thread(emulator.start)
    try:
        with aws_environment(emulator_url):
            prefix, secret = f"b{secrets.token_hex(4)}", secrets.token_urlsafe(32)
            settings = CommonSettings(
                resource_prefix=prefix, s3_addressing_style="path", auth_jwt_secret=secret
            )
            await bootstrap(settings)
            env = service_env(
                emulator_url=emulator_url,
                prefix=prefix,
                ports={"media_service": free_port(), "message_service": free_port()},
                extra={
                    "AUTH_JWT_SECRET": secret,
                    # Nothing listens here: the backlog fetch fails at once and is not retried.
                    "MESSAGE_SERVICE_URL": f"http://127.0.0.1:{free_port()}",
                    "PENDING_FETCH_ATTEMPTS": "1",
                    "LOG_LEVEL": "WARNING",
                },
            )
            samples = []
            for deflate in modes:
                label = "deflate-on" if deflate else "deflate-off"
                samples.append(
                    await measure(
                        label=label,
                        deflate=deflate,
                        count=count,
                        env=env,
                        log_dir=log_dir,
                        secret=secret,
                    )
                )
            return samples
    finally:
        with suppress(Exception):
            await asyncio.to_thread(emulator.stop)


def report(samples: list[Sample]) -> str:
    lines = [
        f"{'run':<12} {'conns':>6} {'RSS before':>11} {'RSS after':>10} {'delta':>9} "
        f"{'per conn':>9} {'after close':>12} {'2nd round':>10}",
    ]
    for s in samples:
        delta = s.rss_after_kib - s.rss_before_kib
        lines.append(
            f"{s.label:<12} {s.connections:>6} {s.rss_before_kib / KIB:>8.1f} MiB "
            f"{s.rss_after_kib / KIB:>6.1f} MiB {delta / KIB:>5.1f} MiB "
            f"{s.per_connection_kib:>5.1f} KiB {s.rss_after_close_kib / KIB:>8.1f} MiB "
            f"{s.rss_second_round_kib / KIB:>6.1f} MiB"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ws_memory", description=__doc__)
    parser.add_argument("--connections", type=int, default=DEFAULT_CONNECTIONS)
    parser.add_argument("--deflate", choices=("off", "on", "both"), default="both")
    args = parser.parse_args(argv)
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.deflate]
    started = time.monotonic()
    samples = asyncio.run(run(args.connections, modes))
    print(report(samples))
    print(f"({time.monotonic() - started:.0f} s; RSS from /proc/<gateway pid>/status VmRSS)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
