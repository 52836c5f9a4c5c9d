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

# Pool processes run at a lower CPU priority than the worker's event loop (verification, the
# fast lane the sender waits for) and whatever shares its cores: derivation takes what is left.
# Between the pools, the image pool (10 steps below the worker: weight 110 against the loop's
# 1024) beats the video pool (19 steps: weight 15), so a transcoding video runs on what photos
# leave idle. Steps below the worker's own priority, wherever it runs (at most nice 19).
DEFAULT_NICENESS = 10


def lower_priority(steps: int) -> None:
    """A pool process's initializer: run `steps` nice levels below the worker."""
    os.nice(steps)


class DerivePool:
    """Creating an executor, submitting to it and disposing of one spawn or signal processes
    (fork, exec, pipe writes): that runs in threads. The pool's state changes only on the event
    loop, so it needs no thread lock."""

    def __init__(self, size: int, *, niceness: int = DEFAULT_NICENESS) -> None:
        # How many nice levels below the worker its processes run.
        self._size = size
        self._niceness = niceness
        self._executor: ProcessPoolExecutor | None = None  # created on first use
        self._creating = asyncio.Lock()  # two first jobs at once make one pool
        self._generation = 0  # which executor a job ran in, without holding on to it
        self._broken: list[ProcessPoolExecutor] = []  # disposed of by the next run, or close
        # Jobs queue in the executor beyond its processes (a lane keeps its pool busy while
        # other jobs download and upload); when the pool breaks they all rerun alone, and this
        # keeps those reruns to as many processes as the pool has.
        self._isolated_slots = asyncio.Semaphore(size)
        self.replacements = 0

    def _new(self) -> ProcessPoolExecutor:
        return self._executor_of(self._size)

    def _executor_of(self, size: int) -> ProcessPoolExecutor:
        # Spawned, not forked: a fork of a process running an event loop and threads is unsafe.
        return ProcessPoolExecutor(
            max_workers=size,
            mp_context=get_context("spawn"),
            initializer=lower_priority,
            initargs=(self._niceness,),
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
        async with self._isolated_slots:
            # In threads, as `run`: creating an executor and submitting to it spawn processes.
            executor = await asyncio.to_thread(self._executor_of, 1)
            try:
                submitted = await asyncio.to_thread(_submit, executor, job, [])
                return await asyncio.wrap_future(submitted)
            finally:
                # Not waiting: its one process exits once its job is done (or is already gone).
                await asyncio.shield(
                    asyncio.to_thread(executor.shutdown, wait=False, cancel_futures=True)
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
