"""`python -m bench` (`make bench`): start a fleet, measure, print a table, write JSON.

Measures, on this machine as it is:
- upload-slot issuance: throughput and p50/p99 latency of `POST /v1/media/uploads`
  (200 slots, 10 in flight, spread over 20 users; per-user limits lifted for the bench);
- end to end, from "storage holds the bytes" to `ready`: a 1 MiB JPEG (verified and
  thumbnailed) and a 20 MiB multipart PDF (verified, first page previewed) (p50 over a few runs);
- the worker's peak resident memory (VmHWM of its process) after it verified a 64 MiB upload:
  the commit step streams, so it should not grow by anything like 64 MiB;
- moderation's cost per image: PDQ hash and NSFW score (`bench.safety.per_image`, in-process).

Never asserts; prints numbers and writes them to `bench/results/latest.json`. Takes about a
minute; service logs go to `bench/results/logs/`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench import safety
from bench.scenarios import (
    MIB,
    BenchFailed,
    SlotResult,
    memory_kib,
    noise_jpeg,
    pdf_like,
    percentile,
    slot_issuance,
    stored_to_ready,
)
from devstack.fleet import LocalFleet, start_fleet
from devstack.processes import ProcessFailed

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# Per-user limits out of the way: the bench measures the service, not its limiter.
BENCH_SETTINGS = {
    "MAX_PENDING_UPLOADS": "1000000",
    "SLOT_RATE_PER_MINUTE": "1000000",
    "LOG_JSON": "true",
}
WORKER = "transcode_worker"
# Two gateways, as the tests run them.
GATEWAYS = 2


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


async def _stored_to_ready_runs(
    http: httpx.AsyncClient,
    fleet: LocalFleet,
    make: Callable[[int], bytes],
    size: int,
    content_type: str,
    runs: int,
    how: str,
) -> dict[str, Any]:
    """`runs` uploads of `size` fresh bytes each (never deduplicated), each timed to `ready`."""
    seconds = [await stored_to_ready(http, fleet, make(size), content_type) for _ in range(runs)]
    print(f"  {size // MIB} MiB {how}: p50 {_ms(percentile(seconds, 50))}")
    return {"bytes": size, "runs_seconds": seconds, "p50_seconds": percentile(seconds, 50)}


async def _measure(fleet: LocalFleet, plan: Plan) -> dict[str, Any]:
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

        results["single_1mib_to_ready"] = await _stored_to_ready_runs(
            http, fleet, noise_jpeg, plan.small_bytes, "image/jpeg", plan.small_runs, "single"
        )
        results["multipart_20mib_to_ready"] = await _stored_to_ready_runs(
            http,
            fleet,
            pdf_like,
            plan.multipart_bytes,
            "application/pdf",
            plan.multipart_runs,
            "multipart",
        )

        before = memory_kib(worker_pid, "VmHWM") if worker_pid else None
        big = await stored_to_ready(http, fleet, pdf_like(plan.big_bytes), "application/pdf")
        after = memory_kib(worker_pid, "VmHWM") if worker_pid else None
        results["worker_memory"] = {
            "bytes_verified": plan.big_bytes,
            "stored_to_ready_seconds": big,
            "vmhwm_kib_at_start": at_start,
            "vmhwm_kib_before": before,
            "vmhwm_kib_after": after,
            "vmrss_kib_after": memory_kib(worker_pid, "VmRSS") if worker_pid else None,
        }
    results["moderation_per_image"] = await asyncio.to_thread(safety.per_image)
    return results


def _table(results: dict[str, Any], plan: Plan) -> str:
    slots = results["upload_slots"]
    small = results["single_1mib_to_ready"]
    multipart = results["multipart_20mib_to_ready"]
    memory = results["worker_memory"]
    moderation = results["moderation_per_image"]
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
            f"{plan.small_bytes // MIB} MiB JPEG, PUT done → thumbnails ready, p50",
            f"{_ms(small['p50_seconds'])} ({len(small['runs_seconds'])} runs, "
            f"max {_ms(max(small['runs_seconds']))})",
        ),
        (
            f"{plan.multipart_bytes // MIB} MiB multipart document, complete → ready, p50",
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
        (
            "moderation per image: PDQ (1280x960) / NSFW (512 px, 1280x960)",
            f"{moderation['pdq_ms_1280x960']:.1f} ms / {moderation['nsfw_ms_512']:.1f} ms, "
            f"{moderation['nsfw_ms_1280x960']:.1f} ms (model load "
            f"{moderation['nsfw_load_ms']:.0f} ms per pool process)",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"| {'measure':<{width}} | value |", f"| {'-' * width} | --- |"]
    lines += [f"| {name:<{width}} | {value} |" for name, value in rows]
    return "\n".join(lines)


async def _run(plan: Plan, log_dir: Path, started: float) -> dict[str, Any]:
    """Measure on a fleet of the bench's own: fresh prefix and secrets, per-user limits lifted."""
    async with start_fleet(
        log_dir=log_dir,
        prefix=f"b{secrets.token_hex(4)}",
        extra_env=BENCH_SETTINGS,
        gateways=GATEWAYS,
    ) as fleet:
        print(f"fleet up in {time.perf_counter() - started:.1f} s; measuring...", flush=True)
        results = await _measure(fleet, plan)
    for name, code in fleet.unclean_exits.items():
        log_path = fleet.processes[name].log_path
        print(f"warning: {name} did not stop cleanly (exit {code}); see {log_path}")
    return results


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
        results = asyncio.run(_run(plan, log_dir, started))
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
