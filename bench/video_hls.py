"""`python -m bench.video_hls`: wall time and peak memory of one video derivation (poster + HLS).

Generates 720p30 H.264 + AAC clips (10 s and 30 s by default, `tests.media_factory.av`), then
runs `derive_video` on each in a fresh Python process and reports the child's wall time and
peak resident memory: `ru_maxrss` from `wait4` (that child only), cross-checked by the child's
own `VmHWM`, next to the peak of a child that only imports the same modules. Clips are made in
children as well, so this process stays small (a child's `ru_maxrss` includes whatever its
parent had resident between fork and exec). Equal peaks for the short and the long clip are the
point: frames are never accumulated, so memory does not grow with the length of a video.
Numbers, never assertions. `--seconds 10 30 90` picks the clip lengths.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

KIB = 1024
CHILD_FLAG = "--child"
MAKE_FLAG = "--make"


@dataclass(frozen=True)
class Run:
    label: str
    wall_seconds: float
    peak_rss_kib: int
    report: dict[str, object]


def make_clip(path: str, seconds: str) -> int:
    """In a child process too: encoding the clip here would grow this process, and a child's
    ru_maxrss counts its parent's resident pages from the fork until its exec."""
    from tests.media_factory.av import clip_720p

    clip_720p(Path(path), seconds=float(seconds))
    return 0


def peak_rss_kib_of_this_process() -> int:
    """VmHWM: the peak of this process image only (exec resets it), a cross-check."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def child(source: str, out_dir: str) -> int:
    """In the fresh process: derive (or, with source "-", only import) and report as JSON."""
    from transcode_worker.derivatives.av_probe import AvLimits
    from transcode_worker.derivatives.video import derive_video

    if source == "-":
        print(json.dumps({"vm_hwm_kib": peak_rss_kib_of_this_process()}))
        return 0
    started = time.perf_counter()
    derived = derive_video(Path(source), Path(out_dir), limits=AvLimits())
    elapsed = time.perf_counter() - started
    report = {
        "derive_seconds": round(elapsed, 2),
        "files": len(derived.files),
        "output_bytes": sum(file.path.stat().st_size for file in derived.files),
        "rungs": [f"{v.width}x{v.height}" for v in derived.variants if v.name == "hls"],
        "duration_ms": derived.meta["duration_ms"],
        "vm_hwm_kib": peak_rss_kib_of_this_process(),
    }
    print(json.dumps(report))
    return 0


def measure(label: str, source: str, out_dir: Path) -> Run:
    """Run one child and read its own peak RSS from wait4 (Linux: KiB)."""
    command = [sys.executable, "-m", "bench.video_hls", CHILD_FLAG, source, str(out_dir)]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"{label}: child exited with {process.returncode}")
    return Run(label, wall, usage.ru_maxrss, json.loads(output or "{}"))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == [CHILD_FLAG]:
        return child(args[1], args[2])
    if args[:1] == [MAKE_FLAG]:
        return make_clip(args[1], args[2])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[10.0, 30.0])
    options = parser.parse_args(args)

    with tempfile.TemporaryDirectory(prefix="ferry-bench-video-") as scratch:
        root = Path(scratch)
        runs = [measure("imports only", "-", root / "none")]
        for seconds in options.seconds:
            source = root / f"clip_{seconds:g}s.mp4"
            made = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "bench.video_hls", MAKE_FLAG, str(source), str(seconds)],
                check=True,
            )
            print(
                f"generated {source.name}: {source.stat().st_size / KIB / KIB:.1f} MiB "
                f"in {time.perf_counter() - made:.1f} s",
                file=sys.stderr,
            )
            runs.append(measure(f"{seconds:g} s 720p30", str(source), root / f"out_{seconds:g}"))

    print(
        f"{'clip':<14} {'wall s':>7} {'derive s':>9} {'ru_maxrss MiB':>14} {'VmHWM MiB':>10} "
        f"{'output MiB':>11}"
    )
    for run in runs:
        derive = run.report.get("derive_seconds", "")
        output = run.report.get("output_bytes")
        output_mib = f"{int(str(output)) / KIB / KIB:.1f}" if output is not None else ""
        hwm = int(str(run.report.get("vm_hwm_kib", 0)))
        print(
            f"{run.label:<14} {run.wall_seconds:>7.1f} {derive!s:>9} "
            f"{run.peak_rss_kib / KIB:>14.1f} {hwm / KIB:>10.1f} {output_mib:>11}"
        )
    print(f"cores: {os.cpu_count()}, python {sys.version.split()[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
