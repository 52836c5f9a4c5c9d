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
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import TypeVar

log = logging.getLogger("ferry.worker.pool")

T = TypeVar("T")


class DerivePool:
    def __init__(self, size: int) -> None:
        self._size = size
        self._executor = self._new()
        self.replacements = 0

    def _new(self) -> ProcessPoolExecutor:
        # Spawned, not forked: a fork of a process running an event loop and threads is unsafe.
        return ProcessPoolExecutor(max_workers=self._size, mp_context=get_context("spawn"))

    async def run(self, job: Callable[[], T]) -> asyncio.Future[T]:
        """Start `job` in a pool process; the future raises BrokenProcessPool if it died."""
        executor = self._executor
        future = asyncio.get_running_loop().run_in_executor(executor, job)
        future.add_done_callback(lambda done: self._heal(done, executor))
        return future

    def _heal(self, done: asyncio.Future[T], executor: ProcessPoolExecutor) -> None:
        if done.cancelled() or not isinstance(done.exception(), BrokenProcessPool):
            return
        if executor is self._executor:
            log.error("a pool process died; replacing the pool")
            self._executor = self._new()
            self.replacements += 1
            executor.shutdown(wait=False, cancel_futures=True)

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
        return ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"))

    async def close(self) -> None:
        """Off the event loop: waiting for running jobs to finish blocks."""
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
