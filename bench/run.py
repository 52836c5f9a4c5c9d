"""`python -m bench` (`make bench`, `make bench QUICK=1`): every figure of issue 14 as a ratio
against an anchor measured in the same run, on this machine as it is.

1. Inputs, made at run time (`bench.media`): textured 12 MP JPEGs, a detailed 720p30 clip at
   6 Mbit/s, a 60 s speech-like voice note.
2. Thumbnails (`bench.image_thumbs`): Ferry vs pyvips (time, CPU) and vs a plain Pillow draft
   cascade (peak memory of a fresh process), WebP and JPEG.
3. Video and voice (`bench.video_hls`): Ferry vs the ffmpeg CLI on the same ladder and preset.
4. A fleet (`bench.fleet_figures`): service CPU per upload slot vs a bare FastAPI endpoint;
   idle WebSocket memory and connect time vs a bare `websockets` server; a photo burst with
   videos transcoding, timed from the worker's log, against the CPU floor.

Numbers are printed and written to `bench/results/latest.json`; nothing is asserted. A tool
that is missing (ffmpeg CLI, libvips) skips its anchor with a line saying so; `make bench`
installs both first where it can. Full: about 6-8 minutes on 2 cores; `--quick`: about 3.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import fleet_figures, image_thumbs, safety, video_hls
from bench.media import detailed_clip, ffmpeg, unique_jpeg, unique_mp4, voice_note
from bench.procs import run_module
from devstack.fleet import start_fleet
from devstack.processes import ProcessFailed

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# Per-user limits out of the way: the bench measures the services, not their limiters.
FLEET_SETTINGS = {
    "MAX_PENDING_UPLOADS": "1000000",
    "SLOT_RATE_PER_MINUTE": "1000000",
    "LOG_JSON": "true",
}


@dataclass(frozen=True, kw_only=True)
class Plan:
    thumb_runs: int = 6
    av_repeats: int = 2  # video and voice: each tool this many times, alternating, best kept
    clip_seconds: float = 30.0
    voice_seconds: float = 60.0
    slot_requests: int = 300
    connections: int = 2000
    burst_photos: int = 100
    burst_videos: int = 4
    burst_video_seconds: float = 30.0
    photos_only_burst: bool = True  # the same burst without videos, for the p99 comparison


QUICK = Plan(
    thumb_runs=3,
    av_repeats=1,
    clip_seconds=10.0,
    slot_requests=100,
    connections=500,
    burst_photos=30,
    burst_videos=2,
    burst_video_seconds=10.0,
)


def say(text: str) -> None:
    print(text, flush=True)


def timed(label: str, work: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    say(f"- {label}...")
    result = work()
    say(f"  ({time.perf_counter() - started:.0f} s)")
    return result


async def _section(work: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any] | None:
    """One fleet figure; a failure is printed and the others still run."""
    try:
        return await work
    except fleet_figures.BenchFailed as failure:
        say(f"  failed: {failure}")
        return None


async def fleet_part(plan: Plan, bases: list[bytes], video: bytes | None) -> dict[str, Any]:
    """The fleet's figures; `bases` are JPEGs, `video` an MP4 (both made unique per upload)."""
    results: dict[str, Any] = {}
    async with start_fleet(
        log_dir=RESULTS_DIR / "logs",
        prefix=f"b{secrets.token_hex(4)}",
        extra_env=FLEET_SETTINGS,
    ) as fleet:
        say("- upload slots: service CPU per request, Ferry and bare FastAPI...")
        results["slots"] = await _section(fleet_figures.slot_costs(fleet, plan.slot_requests))
        say(f"- {plan.connections} idle WebSockets, the gateway and bare websockets...")
        results["websockets"] = await _section(
            fleet_figures.websocket_costs(fleet, plan.connections)
        )
        burst_photos = [unique_jpeg(bases[n % len(bases)]) for n in range(plan.burst_photos)]
        if plan.photos_only_burst:
            say(f"- burst: {plan.burst_photos} photos, no video...")
            results["burst_photos_only"] = await _section(
                fleet_figures.burst(fleet, burst_photos, [])
            )
        videos = []
        if video is not None:
            videos = [unique_mp4(video) for _ in range(plan.burst_videos)]
        else:
            say("  (no ffmpeg CLI to make the clip: the burst runs without videos)")
        burst_photos = [unique_jpeg(bases[n % len(bases)]) for n in range(plan.burst_photos)]
        say(f"- burst: {plan.burst_photos} photos while {len(videos)} videos transcode...")
        results["burst"] = await _section(fleet_figures.burst(fleet, burst_photos, videos))
    for name, code in fleet.unclean_exits.items():
        say(f"warning: {name} did not stop cleanly (exit {code})")
    return results


def measure(plan: Plan, scratch: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    tools = {"ffmpeg": ffmpeg(), "libvips": image_thumbs.pyvips_available()}
    results["tools"] = tools
    if tools["ffmpeg"] is None:
        say("ffmpeg CLI: missing: no HLS or voice anchor, and no videos in the burst")
    if tools["libvips"] is None:
        say("pyvips/libvips: missing: no pyvips anchor for thumbnails")

    made = timed(
        "making 3 textured 12 MP photos",
        lambda: run_module("bench.image_thumbs", "--make", "3", str(scratch)).report["paths"],
    )
    photos = [Path(path) for path in made]
    clip = voice = None
    if tools["ffmpeg"] is not None:
        clip = timed(
            f"making a detailed {plan.clip_seconds:g} s 720p clip",
            lambda: detailed_clip(scratch / "clip.mp4", plan.clip_seconds),
        )
    voice = timed(
        f"making a {plan.voice_seconds:g} s voice note",
        lambda: voice_note(scratch / "voice.m4a", plan.voice_seconds),
    )
    results["inputs"] = {
        "photo_bytes": [path.stat().st_size for path in photos],
        "clip_seconds": plan.clip_seconds if clip else None,
        "clip_bytes": clip.stat().st_size if clip else None,
        "voice_seconds": plan.voice_seconds,
        "voice_bytes": voice.stat().st_size,
    }
    results["thumbnails"] = timed(
        "thumbnails: Ferry, Pillow, pyvips (WebP and JPEG), fresh processes",
        lambda: image_thumbs.measure(photos, plan.thumb_runs),
    )
    results["voice"] = timed(
        "voice note: Ferry and ffmpeg",
        lambda: video_hls.measure("voice", voice, scratch, plan.av_repeats),
    )
    if clip is not None:
        results["video"] = timed(
            "HLS ladder: Ferry and ffmpeg",
            lambda: video_hls.measure("video", clip, scratch, plan.av_repeats),
        )
        burst_clip = clip
        if plan.burst_video_seconds != plan.clip_seconds:
            burst_clip = detailed_clip(scratch / "burst.mp4", plan.burst_video_seconds)
    else:
        burst_clip = None
    results["moderation_per_image"] = timed(
        "moderation per image: PDQ and NSFW (bench.safety)", safety.per_image
    )
    results["photo_cpu"] = timed(
        "a photo's worker CPU, step by step (bench.photo_cpu)",
        lambda: run_module("bench.photo_cpu", str(photos[0])).report,
    )
    bases = [path.read_bytes() for path in photos]
    video = burst_clip.read_bytes() if burst_clip is not None else None
    results["fleet"] = asyncio.run(fleet_part(plan, bases, video))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller counts (about 3 minutes)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "latest.json")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick or os.environ.get("QUICK") not in (None, "", "0") else Plan()
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="ferry-bench-") as scratch:
            results = measure(plan, Path(scratch))
    except (fleet_figures.BenchFailed, ProcessFailed) as failure:
        print(f"bench failed: {failure}", file=sys.stderr)
        return 1
    total = time.perf_counter() - started
    from bench.report import table

    report = {
        "taken_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": plan == QUICK,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average": os.getloadavg(),
        },
        "total_seconds": total,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    say("")
    say(table(results, cores=os.cpu_count() or 1))
    say(f"\n{total:.0f} s in all ({'quick' if plan == QUICK else 'full'}); "
        f"load average at the end {os.getloadavg()[0]:.1f}; JSON in {args.out}")  # fmt: skip
    return 0
