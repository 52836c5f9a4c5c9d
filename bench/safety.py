"""`python -m bench.safety`: the cost per image of the trust-and-safety steps (issue 13).

- PDQ hash of a 640x480 and a 12 MP photo (reduced to 512 before hashing);
- the open_nsfw score of one image, and the memory the model takes (VmRSS before and after
  the import and first use: onnxruntime and the 23 MB model);
- a PDF preview (3 A4 pages, first page rendered at <= 1280);
- clamd: start-up with a one-signature database and one 20 MiB INSTREAM scan (when clamd is
  installed).

Numbers, never assertions; medians of a few runs. Takes a few seconds. `make bench` (bench.run)
includes `per_image()`: the PDQ and NSFW cost per image.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

MIB = 1024 * 1024


def _median_ms(work: Callable[[], object], runs: int = 7) -> float:
    work()  # warm-up: lazy loads and caches out of the numbers
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds) * 1000


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _zeros(size: int) -> AsyncIterator[bytes]:
    block = bytes(MIB)
    for _ in range(size // MIB):
        yield block


def _clamd() -> None:
    from tests.clamd_server import clamd_binary, running_clamd
    from transcode_worker.safety.clamd import ClamdAddress, ClamdClient

    binary = clamd_binary()
    if binary is None:
        print("  clamd: not installed (apt-get install clamav-daemon)")
        return
    with (
        tempfile.TemporaryDirectory() as scratch,
        running_clamd(binary, Path(scratch), stream_max="100M") as clamd,
    ):
        client = ClamdClient(ClamdAddress.parse(clamd.unix_address))
        started = time.perf_counter()
        result = asyncio.run(client.scan(_zeros(20 * MIB)))
        scanned = time.perf_counter() - started
    print(f"  clamd start-up (tiny database): {clamd.started_in * 1000:.0f} ms")
    print(f"  clamd INSTREAM 20 MiB: {scanned * 1000:.0f} ms ({result.outcome})")


def per_image() -> dict[str, float]:
    """PDQ and NSFW milliseconds per image (medians), as `make bench` reports them."""
    from tests.media_factory.safety import figure, textured_photo
    from transcode_worker.safety.nsfw import NsfwClassifier
    from transcode_worker.safety.pdq import pdq_hash

    photo, picture = textured_photo(1280, 960), figure(512)
    classifier = NsfwClassifier()
    started = time.perf_counter()
    classifier.load()
    return {
        "pdq_ms_1280x960": _median_ms(lambda: pdq_hash(photo)),
        "nsfw_ms_512": _median_ms(lambda: classifier.score(picture)),
        "nsfw_ms_1280x960": _median_ms(lambda: classifier.score(photo)),
        "nsfw_load_ms": (time.perf_counter() - started) * 1000,
    }


def main() -> int:
    from tests.media_factory.documents import pdf
    from tests.media_factory.safety import figure, textured_photo
    from transcode_worker.safety.pdf import render_preview
    from transcode_worker.safety.pdq import pdq_hash

    print("trust and safety, per image:")
    small, large = textured_photo(640, 480), textured_photo(4000, 3000)
    print(f"  PDQ 640x480: {_median_ms(lambda: pdq_hash(small)):.1f} ms")
    print(f"  PDQ 4000x3000: {_median_ms(lambda: pdq_hash(large)):.1f} ms")

    before = _rss_mib()
    started = time.perf_counter()
    from transcode_worker.safety.nsfw import NsfwClassifier  # onnxruntime's import is a cost too

    classifier = NsfwClassifier()
    classifier.load()
    loaded = time.perf_counter() - started
    picture = figure(512)
    print(f"  NSFW model load: {loaded * 1000:.0f} ms, +{_rss_mib() - before:.0f} MiB RSS")
    print(f"  NSFW score 512x512: {_median_ms(lambda: classifier.score(picture)):.1f} ms")
    print(f"  NSFW score 4000x3000: {_median_ms(lambda: classifier.score(large), 3):.1f} ms")

    document = pdf()
    print(f"  PDF preview (3 A4 pages): {_median_ms(lambda: render_preview(document)):.1f} ms")
    _clamd()
    return 0


if __name__ == "__main__":
    sys.exit(main())
