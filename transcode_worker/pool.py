"""The process pool derivations run in, replaced when a pool process dies.

A decoder that segfaults or is killed for memory (a hostile file is enough) breaks a
`ProcessPoolExecutor` for good: every later job would fail. The pool is rebuilt instead, and
every job in flight then sees `BrokenProcessPool`, the culprit and its bystanders alike.
`run_isolated` runs one job in a fresh process of its own: a bystander finishes there, and a job
that breaks its process there is the culprit (`transcode_worker.derive_lane` counts it).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import TypeVar

log = logging.getLogger("ferry.worker.pool")

T = TypeVar("T")

# Pool processes run at a lower CPU priority than the worker's event loop: on a busy machine the
# loop (verification, heartbeats, uploads of finished derivatives) and whatever else shares the
# cores come first, and derivation takes what is left.
POOL_NICENESS = 5


def _lower_priority() -> None:
    os.nice(POOL_NICENESS)


class DerivePool:
    """Creating an executor, submitting to it and disposing of one spawn or signal processes
    (fork, exec, pipe writes): that runs in threads. The pool's state changes only on the event
    loop, so it needs no thread lock."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._executor: ProcessPoolExecutor | None = None  # created on first use
        self._creating = asyncio.Lock()  # two first jobs at once make one pool
        self._generation = 0  # which executor a job ran in, without holding on to it
        self._broken: list[ProcessPoolExecutor] = []  # disposed of by the next run, or close
        self.replacements = 0

    def _new(self) -> ProcessPoolExecutor:
        # Spawned, not forked: a fork of a process running an event loop and threads is unsafe.
        return ProcessPoolExecutor(
            max_workers=self._size, mp_context=get_context("spawn"), initializer=_lower_priority
        )

    async def run(self, job: Callable[[], T]) -> asyncio.Future[T]:
        """Start `job` in a pool process; the future raises BrokenProcessPool if it died."""
        async with self._creating:
            if self._executor is None:
                self._executor = await asyncio.to_thread(self._new)
        executor, generation = self._executor, self._generation
        broken, self._broken = self._broken, []
        submitted = await asyncio.to_thread(_submit, executor, job, broken)
        future = asyncio.wrap_future(submitted)
        future.add_done_callback(lambda done: self._heal(done, generation))
        return future

    def _heal(self, done: asyncio.Future[T], generation: int) -> None:
        if done.cancelled() or not isinstance(done.exception(), BrokenProcessPool):
            return
        if generation != self._generation or self._executor is None:
            return  # another job of the same broken pool got here first
        log.error("a pool process died; replacing the pool")
        # The next `run` creates the new pool and disposes of this one, in its thread.
        self._broken.append(self._executor)
        self._executor = None
        self._generation += 1
        self.replacements += 1

    async def run_isolated(self, job: Callable[[], T]) -> T:
        """Run `job` in a process of its own; BrokenProcessPool means this job killed it."""
        executor = self._new_single()
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, job)
        finally:
            # Not waiting: its one process exits once its job is done (or is already gone).
            executor.shutdown(wait=False, cancel_futures=True)

    @staticmethod
    def _new_single() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=1, mp_context=get_context("spawn"), initializer=_lower_priority
        )

    async def close(self) -> None:
        """Off the event loop: waiting for running jobs to finish blocks."""
        executor, self._executor = self._executor, None
        broken, self._broken = self._broken, []
        await asyncio.to_thread(_shut_down, executor, broken)


def _submit(
    executor: ProcessPoolExecutor, job: Callable[[], T], broken: list[ProcessPoolExecutor]
) -> Future[T]:
    _shut_down(None, broken)
    return executor.submit(job)


def _shut_down(executor: ProcessPoolExecutor | None, broken: list[ProcessPoolExecutor]) -> None:
    for dead in broken:
        dead.shutdown(wait=False, cancel_futures=True)
    broken.clear()  # the last references go here, in this thread (their finalizers write pipes)
    if executor is not None:
        executor.shutdown(wait=True, cancel_futures=True)
