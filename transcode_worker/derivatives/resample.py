"""Shrinking pictures for thumbnails, on up to two threads.

Pillow's resampler releases the GIL, so a resize splits into bands of rows that two threads
compute at once: each band is `Image.resize` with a `box` (the band's rows of the source, in
fractional source coordinates), which places every kernel where the whole-image resize puts it.
`Work` shares a derivation's tasks between the calling thread and one helper thread; a task the
helper has not started yet, the caller runs itself, so a helper busy with a long encode never
makes the caller wait for work it could do. Same CPU as one thread; what it buys is latency
(libvips, the bench's anchor, runs its own thread pool too).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Final, Generic, TypeVar, cast

from PIL import Image

__all__ = ["REDUCING_GAP", "Pending", "Work", "resize", "work"]

T = TypeVar("T")

# Box-reduce first by the integer part of (scale / REDUCING_GAP), then resample the rest: what
# libvips' `thumbnail` does with its own gap of 2.0 (Pillow's `reducing_gap`).
REDUCING_GAP: Final = 2.0
# Rows of a picture split in this many bands (computed at once when there are two threads)...
_BANDS: Final = 2
# ...when each band has at least this many rows: below that a thread costs more than it saves.
_MIN_BAND_ROWS: Final = 128
# Pillow resamples these premultiplied (RGBa, La), so colour never bleeds from transparent pixels.
_PREMULTIPLIED: Final = {"RGBA": "RGBa", "LA": "La"}


class Pending(Generic[T]):
    """A task handed to the helper thread. `result()` runs it in the calling thread instead
    when the helper has not started it yet (busy with something longer)."""

    def __init__(self, task: Callable[[], T], future: Future[T] | None) -> None:
        self._task = task
        self._future = future
        self._value: T | None = None
        if future is None:
            self._value = task()

    def result(self) -> T:
        if self._future is None:
            return cast(T, self._value)
        if self._future.cancel():
            self._future = None
            self._value = self._task()
            return self._value
        return self._future.result()


class Work:
    """A derivation's helper thread (or none): runs tasks beside the calling thread."""

    def __init__(self, helper: ThreadPoolExecutor | None) -> None:
        self._helper = helper

    @property
    def threads(self) -> int:
        return 1 if self._helper is None else 2

    def later(self, task: Callable[[], T]) -> Pending[T]:
        """Queue `task` for the helper (or run it now when there is none)."""
        return Pending(task, None if self._helper is None else self._helper.submit(task))

    def share(self, tasks: list[Callable[[], T]]) -> list[T]:
        """Run `tasks`, the helper taking what it can; returns their results in order.

        The caller takes tasks from the front and the helper from the back; whatever the helper
        has not started when the caller runs out, the caller runs too. Exceptions propagate.
        """
        if self._helper is None or len(tasks) < 2:
            return [task() for task in tasks]
        lock = threading.Lock()
        pending = list(range(len(tasks)))
        results: list[Future[T]] = [Future() for _ in tasks]

        def run(index: int) -> None:
            try:
                results[index].set_result(tasks[index]())
            except BaseException as error:
                results[index].set_exception(error)

        def helper() -> None:
            while True:
                with lock:
                    if not pending:
                        return
                    index = pending.pop()
                run(index)

        self._helper.submit(helper)
        while True:
            with lock:
                if not pending:
                    break
                index = pending.pop(0)
            run(index)
        return [result.result() for result in results]


@contextmanager
def work(threads: int) -> Iterator[Work]:
    """`Work` for one derivation: a helper thread when `threads` is 2 or more, else none."""
    if threads < 2:
        yield Work(None)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="derive") as helper:
        yield Work(helper)


def resize(
    im: Image.Image,
    size: tuple[int, int],
    work: Work,
    resample: Image.Resampling = Image.Resampling.LANCZOS,
) -> Image.Image:
    """`im` resampled to `size` with `resample`, after Pillow's `reducing_gap` box-reduce.

    Returns `im` itself when it already has `size`; the result carries no `info`. A picture of
    256 rows or more is computed as two bands of rows (on `work`'s two threads when it has
    them: the pixels do not depend on the thread count). Each band is a vertical pass then a
    horizontal one, each a plain `Image.resize` with a `box` in source coordinates; Pillow's
    own whole-image resize may take the passes in the other order, so its result can differ
    by the rounding of the intermediate rows (a unit here and there; tests bound it).
    """
    if im.size == size:
        return im
    mode = im.mode
    if mode in _PREMULTIPLIED:
        im = im.convert(_PREMULTIPLIED[mode])
    # The box-reduce step, once for the whole picture (cheap: a mean of each block of pixels).
    factor_x = int(im.width / size[0] / REDUCING_GAP) or 1
    factor_y = int(im.height / size[1] / REDUCING_GAP) or 1
    left, top, right, bottom = 0.0, 0.0, float(im.width), float(im.height)
    if factor_x > 1 or factor_y > 1:
        right, bottom = im.width / factor_x, im.height / factor_y
        im = im.reduce((factor_x, factor_y))
    source = im
    width, height = size
    rows_per_row = (bottom - top) / height

    def band(first: int, last: int) -> Callable[[], Image.Image]:
        def run() -> Image.Image:
            rows = last - first
            box = (0.0, top + first * rows_per_row, float(source.width), top + last * rows_per_row)
            tall = source.resize((source.width, rows), resample, box=box)  # vertical only
            if width == source.width and (left, right) == (0.0, float(source.width)):
                return tall
            return tall.resize((width, rows), resample, box=(left, 0.0, right, float(rows)))

        return run

    bands = _BANDS if height >= _BANDS * _MIN_BAND_ROWS else 1
    cuts = [height * n // bands for n in range(bands + 1)]
    parts = work.share([band(cuts[n], cuts[n + 1]) for n in range(bands)])
    if bands == 1:
        result = parts[0]
    else:
        result = Image.new(source.mode, size, None)  # not filled: the bands cover it all
        for first, part in zip(cuts, parts, strict=False):
            result.paste(part, (0, first))
    if result.mode != mode:
        result = result.convert(mode)
    result.info = {}
    return result
