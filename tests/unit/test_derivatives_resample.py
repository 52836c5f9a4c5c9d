"""Thumbnail resampling in bands on two threads (transcode_worker/derivatives/resample.py)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.media_factory import images as media
from transcode_worker.derivatives.images import ImageLimits, derive_image
from transcode_worker.derivatives.moderation import PerceptualHashScanner
from transcode_worker.derivatives.resample import resize, work

LANCZOS = Image.Resampling.LANCZOS
BICUBIC = Image.Resampling.BICUBIC


def _difference(a: Image.Image, b: Image.Image) -> tuple[int, float]:
    diff = np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16))
    return int(diff.max()), float(diff.mean())


@pytest.mark.parametrize(
    ("source", "size"),
    [
        ((2000, 1500), (1280, 960)),  # the first step of a drafted 12 MP photo
        ((1280, 960), (640, 480)),  # a cascade step
        ((1500, 2000), (960, 1280)),  # portrait
        ((4000, 600), (1280, 192)),  # a panorama: one band (too few rows to split)
        ((2600, 1950), (320, 240)),  # box-reduce by 4 first (the reducing gap)
    ],
)
@pytest.mark.parametrize("resample", [LANCZOS, BICUBIC])
def test_bands_are_the_same_resize_whatever_the_thread_count(
    source: tuple[int, int], size: tuple[int, int], resample: Image.Resampling
) -> None:
    picture = media.photo(*source, seed=5)
    with work(1) as one_thread:
        alone = resize(picture, size, one_thread, resample)
    with work(2) as two_threads:
        shared = resize(picture, size, two_threads, resample)
    assert alone.size == shared.size == size
    assert alone.tobytes() == shared.tobytes()  # the thread count never changes a pixel
    # And it is Pillow's own resize, up to the rounding of the intermediate rows (the bands
    # take the vertical pass first, Pillow's whole-image resize the horizontal one).
    pillow = picture.resize(size, resample, reducing_gap=2.0)
    worst, mean = _difference(shared, pillow)
    assert worst <= 3, worst
    assert mean < 0.4, mean


def test_transparency_is_resampled_premultiplied(tmp_path: Path) -> None:
    picture = media.photo(800, 600, seed=2).convert("RGBA")
    alpha = np.zeros((600, 800), dtype=np.uint8)
    alpha[:, 400:] = 255  # the left half is transparent (its colour must not bleed)
    picture.putalpha(Image.fromarray(alpha))
    with work(2) as shared:
        small = resize(picture, (400, 300), shared)
    assert small.mode == "RGBA"
    pillow = picture.resize((400, 300), LANCZOS, reducing_gap=2.0)
    # Compared premultiplied: where alpha is 0 the colour means nothing.
    worst, _ = _difference(small.convert("RGBa"), pillow.convert("RGBa"))
    assert worst <= 3


def test_a_picture_of_the_size_asked_is_returned_as_it_is() -> None:
    picture = media.photo(320, 240)
    with work(2) as shared:
        assert resize(picture, (320, 240), shared) is picture


def test_the_result_carries_no_metadata() -> None:
    picture = media.photo(640, 480)
    picture.info["exif"] = b"Exif\x00\x00secret"
    with work(2) as shared:
        assert resize(picture, (320, 240), shared).info == {}


def test_shared_tasks_run_once_each_in_order_of_results() -> None:
    seen: list[int] = []
    lock = threading.Lock()

    def task(n: int) -> int:
        with lock:
            seen.append(n)
        return n * n

    with work(2) as shared:
        results = shared.share([lambda n=n: task(n) for n in range(7)])  # type: ignore[misc]
    assert results == [n * n for n in range(7)]
    assert sorted(seen) == list(range(7))


def test_a_failing_task_raises_in_the_caller() -> None:
    def boom() -> int:
        raise RuntimeError("decoder said no")

    with work(2) as shared, pytest.raises(RuntimeError, match="decoder said no"):
        shared.share([lambda: 1, boom])
    with work(2) as shared:
        pending = shared.later(boom)
        with pytest.raises(RuntimeError, match="decoder said no"):
            pending.result()


def test_a_task_the_busy_helper_has_not_started_runs_in_the_caller() -> None:
    release = threading.Event()
    ran_in: list[str] = []

    def record() -> int:
        ran_in.append(threading.current_thread().name)
        return 42

    with work(2) as shared:
        blocker = shared.later(release.wait)  # the helper is busy until released
        queued = shared.later(record)
        assert queued.result() == 42  # did not wait for the helper
        release.set()
        assert blocker.result() is True
    assert ran_in == [threading.current_thread().name]


def test_thumbnails_do_not_depend_on_the_thread_count(tmp_path: Path) -> None:
    source = media.write(tmp_path / "photo.jpg", media.jpeg(2600, 1950, seed=4, orientation=6))
    scanner = PerceptualHashScanner(blocklist=frozenset({"0" * 16}))
    outputs = []
    for threads in (1, 2):
        for fmt in ("webp", "jpeg"):
            derived = derive_image(
                source,
                tmp_path / f"out-{threads}-{fmt}",
                limits=ImageLimits(threads=threads),
                thumb_format=fmt,
                scanner=scanner,
            )
            outputs.append((derived.meta, [(f.key, f.path.read_bytes()) for f in derived.files]))
    assert outputs[:2] == outputs[2:]
    assert outputs[0][0]["width"] == 1950  # orientation 6: displayed on its side


def test_the_first_step_after_a_dct_scaled_decode_stays_close_to_a_full_decode(
    tmp_path: Path,
) -> None:
    # libjpeg decodes this at 1/2 (2000x1500); the 1280 px thumbnail is then made with bicubic.
    # It must stay as close to Lanczos from the full-size pixels as thumbnailing allows.
    data = media.jpeg(4000, 3000, seed=8, quality=95, noise=10)
    source = media.write(tmp_path / "photo.jpg", data)
    derived = derive_image(
        source, tmp_path / "out", limits=ImageLimits(thumb_sizes=(1280,), webp_method=6,
                                                   quality=100)
    )  # fmt: skip
    with Image.open(source) as full:
        reference = np.asarray(full.convert("RGB").resize((1280, 960), LANCZOS), dtype=np.float64)
    with Image.open(derived.files[0].path) as thumb:
        made = np.asarray(thumb.convert("RGB"), dtype=np.float64)
    psnr = 10 * np.log10(255**2 / np.mean((made - reference) ** 2))
    assert psnr > 38, psnr


def test_threads_must_be_positive() -> None:
    with pytest.raises(ValueError, match="threads"):
        ImageLimits(threads=0)
