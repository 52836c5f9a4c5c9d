"""`python -m bench.image_thumbs`: how fast, and in how much memory, a 12 MP JPEG is thumbnailed.

Each measurement runs in a fresh interpreter (`--child`), so its peak resident memory is that
of one job and nothing else. The parent stays small (the test photo is made in a child too):
Linux carries `ru_maxrss` across `exec`, so a fat parent would inflate every child's number.
We print `ru_maxrss` and `VmHWM` (the high-water mark of the child's own address space):

- `ferry`: `derive_image` (draft decode, orientation, thumb_1280 → 640 → 320 as WebP,
  blurhash, the perceptual-hash scan);
- `plain`: the same outputs from a full-size decode with no draft (what draft saves);
- `imports`: the interpreter with the same modules imported and nothing decoded (the floor
  both numbers include).

Numbers, never assertions. Takes a few seconds.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MODES = ("imports", "ferry", "plain")


def _child(
    mode: str, source: Path, runs: int, thumb_format: str, webp_method: int
) -> dict[str, Any]:
    from PIL import Image

    from transcode_worker.derivatives.images import ImageLimits, derive_image, fit_within
    from transcode_worker.derivatives.moderation import PerceptualHashScanner

    limits = ImageLimits(webp_method=webp_method)
    scanner = PerceptualHashScanner(blocklist=frozenset({"0123456789abcdef"}))
    timings: list[float] = []
    if mode != "imports":
        with tempfile.TemporaryDirectory() as scratch:
            for run in range(runs):
                started = time.perf_counter()
                if mode == "ferry":
                    derive_image(
                        source,
                        Path(scratch) / str(run),
                        limits=limits,
                        thumb_format=thumb_format,
                        scanner=scanner,
                    )
                else:
                    with Image.open(source) as im:
                        im.load()  # full size: 4000x3000
                        current: Image.Image = im
                        for edge in sorted(limits.thumb_sizes, reverse=True):
                            size = fit_within(im.width, im.height, edge)
                            current = current.resize(size, Image.Resampling.LANCZOS)
                            current.save(
                                io.BytesIO(),
                                format="WEBP",
                                quality=limits.quality,
                                method=limits.webp_method,
                            )
                timings.append(time.perf_counter() - started)
    return {"mode": mode, "timings": timings, **_peaks()}


def _peaks() -> dict[str, int | None]:
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    hwm = None
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return {"maxrss_kib": maxrss, "hwm_kib": hwm}


def _make_source(path: Path) -> dict[str, Any]:
    import PIL
    from PIL import features

    from tests.media_factory.images import twelve_megapixel_jpeg

    path.write_bytes(twelve_megapixel_jpeg())
    return {
        "python": platform.python_version(),
        "pillow": PIL.__version__,
        "libjpeg_turbo": features.version("libjpeg_turbo"),
        "libwebp": features.version("webp"),
        "machine": platform.machine(),
    }


def _run_child(*args: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.image_thumbs", *args]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.image_thumbs", description=__doc__)
    parser.add_argument("--runs", type=int, default=10, help="timed runs per process")
    parser.add_argument("--format", default="webp", choices=("webp", "jpeg"))
    parser.add_argument(
        "--webp-method", type=int, default=4, help="libwebp effort 0-6 (ImageLimits.webp_method)"
    )
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--make-source", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--source", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.make_source:
        print(json.dumps(_make_source(args.source)))
        return 0
    if args.child:
        result = _child(args.child, args.source, args.runs, args.format, args.webp_method)
        print(json.dumps(result))
        return 0

    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "photo.jpg"
        versions = _run_child("--make-source", "--source", str(source))
        results = {
            mode: _run_child(
                "--child",
                mode,
                "--source",
                str(source),
                "--runs",
                str(args.runs),
                "--format",
                args.format,
                "--webp-method",
                str(args.webp_method),
            )
            for mode in MODES
        }
        size = source.stat().st_size

    print(
        f"12 MP JPEG (4000x3000, {size / 1e6:.1f} MB) → thumb_320/640/1280 ({args.format}"
        f"{f', method {args.webp_method}' if args.format == 'webp' else ''}); "
        f"{args.runs} runs in each fresh process"
    )
    print(
        f"Python {versions['python']}, Pillow {versions['pillow']}, "
        f"libjpeg-turbo {versions['libjpeg_turbo']}, libwebp {versions['libwebp']}, "
        f"{versions['machine']}"
    )
    floor = results["imports"]
    print(
        f"{'':8}{'first':>11}{'median':>11}{'best':>11}"
        f"{'ru_maxrss':>12}{'VmHWM':>12}{'VmHWM above imports':>22}"
    )
    for mode in MODES:
        result = results[mode]
        timings: list[float] = result["timings"]
        cells = (
            [_ms(timings[0]), _ms(statistics.median(timings)), _ms(min(timings))]
            if timings
            else ["-".rjust(10)] * 3
        )
        print(
            f"{mode:8}{cells[0]:>11}{cells[1]:>11}{cells[2]:>11}"
            f"{_mib(result['maxrss_kib']):>12}{_mib(result['hwm_kib']):>12}"
            f"{_mib(_minus(result['hwm_kib'], floor['hwm_kib'])):>22}"
        )
    return 0


def _mib(kib: int | None) -> str:
    return "n/a" if kib is None else f"{kib / 1024:.1f} MiB"


def _minus(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else a - b


if __name__ == "__main__":
    sys.exit(main())
