"""12 MP photo → thumb_1280/640/320: Ferry against pyvips and a plain Pillow draft cascade.

Every measurement runs in a fresh interpreter (`python -m bench.image_thumbs --child MODE`), so
its peak memory (VmHWM) is one job's and nothing else's. Modes:

- `ferry`: the worker's `derive_image` (allow-list, caps, draft decode, orientation, sRGB,
  the moderation scan, the cascade, blurhash), as a pool process runs it;
- `ferry-imports`: the same imports and nothing decoded (the floor inside `ferry`'s peak);
- `pillow`: the least a Pillow program does for the same outputs: draft decode, EXIF
  orientation, Lanczos with `reducing_gap`, 1280 → 640 → 320, the same quality and effort;
- `pyvips`: libvips' shrink-on-load `thumbnail` to 1280, then 640 and 320 from it.

Each child thumbnails `runs` photos (textured, made by `bench.media`), cycling over the ones
given; it reports per-photo wall and CPU (process-wide, every thread) medians. Numbers only.
Ferry and pyvips may use two threads each (libvips' pool, Ferry's `ImageLimits.threads`); the
Pillow cascade uses one. The worker's job also hashes thumb_1280 for moderation (pHash: a 32x32
gray Lanczos sample and its DCT), computes the blurhash of thumb_320 and writes three files:
both anchors do the same, each with its own library's resize (`_worker_extras`), so every mode
measures the same work.

`--quality`: what each engine's thumbnails look like next to an exact reference (Lanczos from
the full-size decode, no DCT scaling): PSNR and SSIM of the decoded WebP/JPEG files, per size.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MODES = ("ferry-imports", "ferry", "pillow", "pyvips")
FORMATS = ("webp", "jpeg")


def pyvips_available() -> str | None:
    """libvips' version, or None where pyvips cannot load it."""
    try:
        import pyvips
    except (ImportError, OSError):
        return None
    return f"{pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}"


# pHash's DCT-II basis: the 8 lowest frequencies over 32 samples.
_DCT = [[math.cos(math.pi * (2 * n + 1) * k / 64) for n in range(32)] for k in range(8)]


def _worker_extras(gray32: bytes, rgb: bytes, size: tuple[int, int], files: list[bytes],
                   out: Path | None) -> None:  # fmt: skip
    """What the worker does besides thumbnailing, given a 32x32 gray sample of thumb_1280 and
    a small RGB sample of thumb_320: the pHash (the same arithmetic as the worker's), the
    blurhash (the same C encoder), and the files written to `out`."""
    from blurhash import _functions as blurhash_c

    rows = [gray32[n * 32 : (n + 1) * 32] for n in range(32)]
    across = [[math.fsum(map(float.__mul__, b, map(float, row))) for b in _DCT] for row in rows]
    terms = [
        round(math.fsum(b[n] * across[n][v] for n in range(32)), 6) for b in _DCT for v in range(8)
    ]
    threshold = sorted(terms[1:])[31]
    sum(int(term > threshold) << n for n, term in enumerate(terms))
    ffi, lib = blurhash_c.ffi, blurhash_c.lib
    lib.create_hash_from_pixels(
        4, 3, size[0], size[1], ffi.from_buffer("uint8_t[]", rgb), size[0] * 3,
        ffi.new("char[]", 200),
    )  # fmt: skip
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for n, data in enumerate(files):
            (out / f"thumb_{n}").write_bytes(data)


def _pillow(
    source: Path, fmt: str, settings: dict[str, Any], *, keep: bool = False, out: Path | None = None
) -> Any:
    """The bytes written (or, with `keep`, the files themselves, largest first)."""
    from PIL import Image, ImageOps

    written = 0
    kept: list[bytes] = []
    gray32 = b""
    with Image.open(source) as im:
        edge = settings["sizes"][0]
        im.draft("RGB", (edge, edge))
        current = ImageOps.exif_transpose(im)
        for edge in settings["sizes"]:
            scale = edge / max(current.size)
            if scale < 1:
                size = (max(1, round(current.width * scale)), max(1, round(current.height * scale)))
                current = current.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)
            buffer = io.BytesIO()
            if fmt == "webp":
                current.save(
                    buffer, "WEBP", quality=settings["quality"], method=settings["webp_method"]
                )
            else:
                current.save(
                    buffer, "JPEG", quality=settings["quality"], optimize=settings["jpeg_optimize"]
                )
            written += buffer.tell()
            kept.append(buffer.getvalue())
            if not gray32:
                gray32 = current.convert("L").resize((32, 32), Image.Resampling.LANCZOS).tobytes()
        sample = current.copy()
        sample.thumbnail((32, 32), Image.Resampling.BOX)
        _worker_extras(gray32, sample.tobytes(), sample.size, kept, out)
    return kept if keep else written


def _pyvips(
    source: Path, fmt: str, settings: dict[str, Any], *, keep: bool = False, out: Path | None = None
) -> Any:
    """The bytes written (or, with `keep`, the files themselves, largest first)."""
    import pyvips

    written = 0
    kept: list[bytes] = []
    gray32 = b""
    current = pyvips.Image.thumbnail(str(source), settings["sizes"][0])
    for index, edge in enumerate(settings["sizes"]):
        if index:
            current = current.thumbnail_image(edge)
        current = current.copy_memory()  # the next size starts from this one, not the file
        if fmt == "webp":
            data = current.webpsave_buffer(
                Q=settings["quality"], effort=settings["webp_method"], keep="none"
            )
        else:
            data = current.jpegsave_buffer(
                Q=settings["quality"], optimize_coding=settings["jpeg_optimize"], keep="none"
            )
        written += len(data)
        kept.append(data)
        if not gray32:
            gray = current.colourspace("b-w")[0]
            gray32 = gray.resize(32 / gray.width, vscale=32 / gray.height).write_to_memory()
    sample = current.thumbnail_image(32)
    _worker_extras(gray32, sample.write_to_memory(), (sample.width, sample.height), kept, out)
    return kept if keep else written


def _ferry(source: Path, fmt: str, out: Path) -> int:
    from bench.adapter import ferry_thumbnails

    ferry_thumbnails(source, out, fmt)
    return sum(path.stat().st_size for path in out.iterdir())


def child(mode: str, fmt: str, sources: list[Path], runs: int) -> dict[str, Any]:
    from bench.procs import own_peak_kib

    if mode.startswith("ferry"):
        from bench.adapter import import_ferry_thumbnails

        import_ferry_thumbnails()
    settings = json.loads(sys.stdin.readline()) if mode in ("pillow", "pyvips") else {}
    walls: list[float] = []
    cpus: list[float] = []
    output_bytes = 0
    if mode != "ferry-imports":
        with tempfile.TemporaryDirectory() as scratch:
            for run in range(runs):
                source = sources[run % len(sources)]
                wall, cpu = time.perf_counter(), time.process_time()
                if mode == "ferry":
                    output_bytes = _ferry(source, fmt, Path(scratch) / str(run))
                elif mode == "pillow":
                    output_bytes = _pillow(source, fmt, settings, out=Path(scratch) / str(run))
                else:
                    output_bytes = _pyvips(source, fmt, settings, out=Path(scratch) / str(run))
                walls.append(time.perf_counter() - wall)
                cpus.append(time.process_time() - cpu)
    return {
        "mode": mode,
        "format": fmt,
        "runs": len(walls),
        "wall_median": statistics.median(walls) if walls else None,
        "wall_best": min(walls) if walls else None,
        "cpu_median": statistics.median(cpus) if cpus else None,
        "output_bytes": output_bytes,
        "peak_kib": own_peak_kib(),
    }


def make_photos(directory: Path, count: int) -> list[Path]:
    """`count` different textured 12 MP JPEGs (made in a child: this process stays small)."""
    from bench.media import photo_jpeg

    paths = []
    for seed in range(count):
        path = directory / f"photo_{seed}.jpg"
        path.write_bytes(photo_jpeg(seed))
        paths.append(path)
    return paths


def measure(sources: list[Path], runs: int, formats: tuple[str, ...] = FORMATS) -> dict[str, Any]:
    """Every mode in every format, each in a fresh process; the anchors get Ferry's settings."""
    import subprocess

    from bench.adapter import thumb_settings

    settings = json.dumps(thumb_settings())
    vips = pyvips_available()
    results: dict[str, Any] = {"libvips": vips, "settings": json.loads(settings)}
    for fmt in formats:
        for mode in MODES:
            if mode == "pyvips" and vips is None:
                continue
            if mode == "ferry-imports" and fmt != formats[0]:
                continue
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "bench.image_thumbs", "--child", mode, "--format", fmt,
                 "--runs", str(runs), *map(str, sources)],
                input=settings + "\n", capture_output=True, text=True, check=True,
            )  # fmt: skip
            result = json.loads(done.stdout.strip().splitlines()[-1])
            result["process_wall"] = time.perf_counter() - started
            results[f"{mode}/{fmt}"] = result
    return results


def _psnr_ssim(made: Any, reference: Any) -> tuple[float, float]:
    """PSNR (dB) and mean SSIM (7x7 box windows, per channel) of two HxWx3 float arrays."""
    import numpy as np

    mse = float(np.mean((made - reference) ** 2))
    psnr = 10 * math.log10(255**2 / mse) if mse else math.inf

    def mean7(x: Any) -> Any:
        total = np.pad(x.cumsum(0).cumsum(1), ((1, 0), (1, 0), (0, 0)))
        return (total[7:, 7:] - total[:-7, 7:] - total[7:, :-7] + total[:-7, :-7]) / 49

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    ma, mb = mean7(made), mean7(reference)
    va, vb = mean7(made * made) - ma * ma, mean7(reference * reference) - mb * mb
    cov = mean7(made * reference) - ma * mb
    ssim = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2))
    return psnr, float(ssim.mean())


def quality(sources: list[Path]) -> dict[str, Any]:
    """Per engine, format and size: mean PSNR/SSIM against Lanczos from the full-size decode,
    and the mean file size. Ferry's files come from `derive_image`; the anchors' from the same
    code as their timing modes (`_pillow`, `_pyvips`), kept here as files."""
    import numpy as np
    from PIL import Image

    from bench.adapter import thumb_settings

    settings = thumb_settings()
    scores: dict[str, list[tuple[float, float, int]]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for n, source in enumerate(sources):
            with Image.open(source) as full:
                pixels = full.convert("RGB")
                pixels.load()
            for fmt in FORMATS:
                made = _thumb_files(source, fmt, settings, Path(scratch) / f"{n}-{fmt}")
                for engine, by_edge in made.items():
                    for edge, data in by_edge.items():
                        with Image.open(io.BytesIO(data)) as thumb:
                            got = np.asarray(thumb.convert("RGB"), dtype=np.float64)
                        size = (got.shape[1], got.shape[0])
                        want = np.asarray(
                            pixels.resize(size, Image.Resampling.LANCZOS), dtype=np.float64
                        )
                        psnr, ssim = _psnr_ssim(got, want)
                        scores.setdefault(f"{engine}/{fmt}/{edge}", []).append(
                            (psnr, ssim, len(data))
                        )
    return {
        key: {
            "psnr": statistics.mean(v[0] for v in values),
            "ssim": statistics.mean(v[1] for v in values),
            "bytes": statistics.mean(v[2] for v in values),
        }
        for key, values in scores.items()
    }


def _thumb_files(
    source: Path, fmt: str, settings: dict[str, Any], out: Path
) -> dict[str, dict[int, bytes]]:
    """Each engine's thumbnails of `source` in `fmt`, by longest edge."""
    from bench.adapter import ferry_thumbnails

    made: dict[str, dict[int, bytes]] = {}
    ferry_thumbnails(source, out, fmt)
    made["ferry"] = {
        int(path.stem.removeprefix("thumb_")): path.read_bytes()
        for path in sorted(out.glob("thumb_*"))
    }
    made["pillow"] = dict(
        zip(settings["sizes"], _pillow(source, fmt, settings, keep=True), strict=True)
    )
    if pyvips_available() is not None:
        made["pyvips"] = dict(
            zip(settings["sizes"], _pyvips(source, fmt, settings, keep=True), strict=True)
        )
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.image_thumbs", description=__doc__)
    parser.add_argument("--child", choices=MODES)
    parser.add_argument("--format", choices=FORMATS, default="webp")
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--make", type=int, metavar="COUNT", help="write COUNT photos to DIR")
    parser.add_argument("--quality", action="store_true", help="PSNR/SSIM against a reference")
    parser.add_argument("paths", nargs="*", type=Path)
    args = parser.parse_args(argv)
    if args.make:
        made = make_photos(args.paths[0], args.make)
        print(json.dumps({"paths": [str(path) for path in made]}))
        return 0
    if args.child:
        print(json.dumps(child(args.child, args.format, args.paths, args.runs)))
        return 0
    with tempfile.TemporaryDirectory(prefix="ferry-bench-photos-") as scratch:
        from bench.procs import run_module

        paths: list[str] = run_module("bench.image_thumbs", "--make", "3", scratch).report["paths"]
        sources = [Path(p) for p in paths]
        print(
            json.dumps(quality(sources) if args.quality else measure(sources, args.runs), indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
