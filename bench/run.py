"""`python -m bench` (`make bench`): start a fleet, measure, print a table, write JSON.

Measures, on this machine as it is:
- upload-slot issuance: throughput and p50/p99 latency of `POST /v1/media/uploads`
  (200 slots, 10 in flight, spread over 20 users; per-user limits lifted for the bench);
- end to end, from "storage holds the bytes" to `ready`: a 1 MiB JPEG-like single PUT and a
  20 MiB multipart upload (p50 over a few runs each);
- the worker's peak resident memory (VmHWM of its process) after it verified a 64 MiB upload:
  the commit step streams, so it should not grow by anything like 64 MiB.

Never asserts; prints numbers and writes them to `bench/results/latest.json`. Takes about a
minute; service logs go to `bench/results/logs/`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.fleet import BenchFleet, running_fleet
from bench.scenarios import (
    MIB,
    BenchFailed,
    SlotResult,
    jpeg_like,
    memory_kib,
    mp4_like,
    percentile,
    slot_issuance,
    stored_to_ready,
)
from devstack.processes import ProcessFailed

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# Per-user limits out of the way: the bench measures the service, not its limiter.
BENCH_SETTINGS = {
    "MAX_PENDING_UPLOADS": "1000000",
    "SLOT_RATE_PER_MINUTE": "1000000",
    "LOG_JSON": "true",
}
WORKER = "transcode_worker"


@dataclass(frozen=True, kw_only=True)
class Plan:
    slots: int = 200
    slot_concurrency: int = 10
    slot_users: int = 20
    small_bytes: int = 1 * MIB
    small_runs: int = 7
    multipart_bytes: int = 20 * MIB
    multipart_runs: int = 5
    big_bytes: int = 64 * MIB


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _mib(kib: int | None) -> str:
    return "n/a" if kib is None else f"{kib / 1024:.1f} MiB"


async def _measure(fleet: BenchFleet, plan: Plan) -> dict[str, Any]:
    results: dict[str, Any] = {}
    worker_pid = fleet.pid(WORKER)
    at_start = memory_kib(worker_pid, "VmHWM") if worker_pid else None
    async with httpx.AsyncClient(timeout=120) as http:
        slots: SlotResult = await slot_issuance(
            http,
            fleet,
            requests=plan.slots,
            concurrency=plan.slot_concurrency,
            users=plan.slot_users,
        )
        results["upload_slots"] = {
            "requests": slots.requests,
            "concurrency": slots.concurrency,
            "users": slots.users,
            "statuses": {str(code): count for code, count in sorted(slots.statuses.items())},
            "wall_seconds": slots.wall_seconds,
            "per_second": slots.per_second,
            "p50_seconds": percentile(slots.latencies, 50),
            "p99_seconds": percentile(slots.latencies, 99),
        }
        print(f"  slots: {slots.per_second:.1f}/s", flush=True)

        small = [
            await stored_to_ready(http, fleet, jpeg_like(plan.small_bytes), "image/jpeg")
            for _ in range(plan.small_runs)
        ]
        results["single_1mib_to_ready"] = {
            "bytes": plan.small_bytes,
            "runs_seconds": small,
            "p50_seconds": percentile(small, 50),
        }
        print(f"  {plan.small_bytes // MIB} MiB single: p50 {_ms(percentile(small, 50))}")

        multipart = [
            await stored_to_ready(http, fleet, mp4_like(plan.multipart_bytes), "video/mp4")
            for _ in range(plan.multipart_runs)
        ]
        results["multipart_20mib_to_ready"] = {
            "bytes": plan.multipart_bytes,
            "runs_seconds": multipart,
            "p50_seconds": percentile(multipart, 50),
        }
        print(
            f"  {plan.multipart_bytes // MIB} MiB multipart: p50 {_ms(percentile(multipart, 50))}"
        )

        before = memory_kib(worker_pid, "VmHWM") if worker_pid else None
        big = await stored_to_ready(http, fleet, mp4_like(plan.big_bytes), "video/mp4")
        after = memory_kib(worker_pid, "VmHWM") if worker_pid else None
        results["worker_memory"] = {
            "bytes_verified": plan.big_bytes,
            "stored_to_ready_seconds": big,
            "vmhwm_kib_at_start": at_start,
            "vmhwm_kib_before": before,
            "vmhwm_kib_after": after,
            "vmrss_kib_after": memory_kib(worker_pid, "VmRSS") if worker_pid else None,
        }
    return results


def _table(results: dict[str, Any], plan: Plan) -> str:
    slots = results["upload_slots"]
    small = results["single_1mib_to_ready"]
    multipart = results["multipart_20mib_to_ready"]
    memory = results["worker_memory"]
    errors = slots["requests"] - slots["statuses"].get("201", 0)
    at_start = memory["vmhwm_kib_at_start"]
    before, after = memory["vmhwm_kib_before"], memory["vmhwm_kib_after"]
    growth = (
        f"{_mib(at_start)} at start, +{_mib(after - before)} during the {plan.big_bytes // MIB} "
        "MiB verify"
        if at_start and before and after
        else "n/a"
    )
    rows = [
        (
            "upload slots: throughput",
            f"{slots['per_second']:.1f} slots/s ({slots['requests']} slots, "
            f"{slots['concurrency']} in flight, {slots['users']} users, {errors} refused)",
        ),
        (
            "upload slots: latency p50 / p99",
            f"{_ms(slots['p50_seconds'])} / {_ms(slots['p99_seconds'])}",
        ),
        (
            f"{plan.small_bytes // MIB} MiB JPEG, PUT done → ready, p50",
            f"{_ms(small['p50_seconds'])} ({len(small['runs_seconds'])} runs, "
            f"max {_ms(max(small['runs_seconds']))})",
        ),
        (
            f"{plan.multipart_bytes // MIB} MiB multipart, complete → ready, p50",
            f"{_ms(multipart['p50_seconds'])} ({len(multipart['runs_seconds'])} runs, "
            f"max {_ms(max(multipart['runs_seconds']))})",
        ),
        (
            f"{plan.big_bytes // MIB} MiB multipart, complete → ready",
            _ms(memory["stored_to_ready_seconds"]),
        ),
        (
            f"worker peak RSS (VmHWM) after verifying {plan.big_bytes // MIB} MiB",
            f"{_mib(after)} ({growth})",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"| {'measure':<{width}} | value |", f"| {'-' * width} | --- |"]
    lines += [f"| {name:<{width}} | {value} |" for name, value in rows]
    return "\n".join(lines)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS_DIR / "latest.json", help="where the JSON goes"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    plan = Plan()
    log_dir = RESULTS_DIR / "logs"
    started = time.perf_counter()
    print(f"starting a fleet (logs in {log_dir})...", flush=True)
    try:
        with running_fleet(log_dir, BENCH_SETTINGS) as fleet:
            print(f"fleet up in {time.perf_counter() - started:.1f} s; measuring...", flush=True)
            results = asyncio.run(_measure(fleet, plan))
    except (BenchFailed, ProcessFailed) as failure:
        print(f"bench failed: {failure}", file=sys.stderr)
        return 1
    total = time.perf_counter() - started
    report = {
        "taken_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "fleet_settings": BENCH_SETTINGS,
        "total_seconds": total,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print()
    print(
        f"Ferry bench: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        "embedded emulator (moto), every process on this machine"
    )
    print(_table(results, plan))
    print(f"\n{total:.0f} s in all; written to {args.out}")
    return 0
