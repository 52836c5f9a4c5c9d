"""`python -m bench.photo_cpu PHOTO`: where a photo's worker CPU goes, step by step (issue 14).

Each step the worker runs for a photo, alone, in this fresh process, on the same textured
12 MP JPEG the burst uploads: median CPU seconds (user + system of this process) of a few runs
after a warm-up. The last stdout line is JSON (`bench.procs.run_module` reads it).

- `sha256`: the commit step's hash of the original (verification, on the event loop's threads);
- `thumbnails`: decode (DCT-scaled) + orientation + 3 WebP thumbnails + blurhash, no moderation;
- `blurhash`: of the largest thumbnail alone (it is part of `thumbnails`);
- `nsfw`: the open_nsfw score of the largest thumbnail (the worker's default moderation);
- `pdq`: a PDQ hash of it (only when a PDQ hash list is configured);
- `strip`: the metadata-free copy of the original (`original_clean`, lossless);
- `plan`: the worker's whole image derivation as a pool process runs it (thumbnails, NSFW,
  strip), to compare with the sum of the parts and with the burst's pool CPU per photo.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def _cpu(work: Callable[[], object], runs: int = 5) -> float:
    """Median CPU seconds of `work` (after one warm-up run: lazy imports, model loads)."""
    work()
    spent = []
    for _ in range(runs):
        started = time.process_time()
        work()
        spent.append(time.process_time() - started)
    return statistics.median(spent)


def measure(photo: Path) -> dict[str, float]:
    from PIL import Image

    from transcode_worker.derivatives.blurhash_meta import blurhash_of
    from transcode_worker.derivatives.clean_original import with_clean_original
    from transcode_worker.derivatives.images import ImageLimits, derive_image
    from transcode_worker.derivatives.moderation import Moderation
    from transcode_worker.derivatives.strip_images import strip_image
    from transcode_worker.derivatives.types import Derived
    from transcode_worker.safety.nsfw import NsfwClassifier
    from transcode_worker.safety.pdq import pdq_hash

    data = photo.read_bytes()
    limits = ImageLimits()
    nsfw = NsfwClassifier()
    moderation = Moderation(classifier=nsfw)
    with tempfile.TemporaryDirectory(prefix="ferry-photo-cpu-") as scratch:
        out = Path(scratch)
        thumbs = _cpu(lambda: derive_image(photo, out / "t", limits=limits))
        with Image.open(out / "t" / "thumb_1280.webp") as opened:
            largest = opened.convert("RGB")
        nsfw.load()

        def image(source: Path, target: Path) -> Derived:
            return derive_image(source, target, limits=limits, moderation=moderation)

        def plan() -> Derived:
            return with_clean_original(photo, out / "p", derive=image, strip=strip_image)

        return {
            "bytes": len(data),
            "sha256": _cpu(lambda: hashlib.sha256(data).hexdigest()),
            "thumbnails": thumbs,
            "blurhash": _cpu(lambda: blurhash_of(largest)),
            "nsfw": _cpu(lambda: nsfw.score(largest)),
            "pdq": _cpu(lambda: pdq_hash(largest)),
            "strip": _cpu(lambda: strip_image(photo, out / "clean.jpg")),
            "plan": _cpu(plan),
        }


def main(argv: list[str]) -> int:
    print(json.dumps(measure(Path(argv[0]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
