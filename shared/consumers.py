"""Running a long-lived loop inside a lifespan: started, watched, stopped the same way everywhere.

`background(...)` starts a task, logs it at CRITICAL if it ever stops on an error (its
`task_check` then turns `/readyz` 503 and the orchestrator replaces the process), and on exit
asks it to stop and waits for it. `QueueConsumerTask` is the loop every queue consumer runs:
find the queue URLs (waiting while AWS is away), build the `Consumer`, run it until stopped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from shared.sqs_consumer import Consumer, wait_for_queue_urls

if TYPE_CHECKING:
    from types_aiobotocore_sqs.client import SQSClient

log = logging.getLogger("ferry.consumers")


def report_crash(task: asyncio.Task[Any]) -> None:
    """Done callback: say loudly that a loop the service needs stopped on an error."""
    if not task.cancelled() and task.exception() is not None:
        log.critical("%s stopped on an error", task.get_name(), exc_info=task.exception())


@asynccontextmanager
async def background(
    run: Coroutine[Any, Any, None], *, name: str, stop: Callable[[], None] | None = None
) -> AsyncIterator[asyncio.Task[None]]:
    """Run `run` as a task for the block; on exit call `stop` (or cancel) and wait for it."""
    task = asyncio.create_task(run, name=name)
    task.add_done_callback(report_crash)
    try:
        yield task
    finally:
        if stop is None:
            task.cancel()
        else:
            stop()
        await asyncio.wait({task})


class QueueConsumerTask:
    """Resolves `queue_names`, builds a consumer from their URLs, runs it until `stop()`.

    Queue URLs are resolved in the task rather than at startup, so a service started before its
    AWS dependencies stays up (and says so on `/readyz`) instead of crashing.
    """

    def __init__(
        self,
        sqs: SQSClient,
        queue_names: Sequence[str],
        build: Callable[[Sequence[str]], Consumer],
        *,
        what: str,
    ) -> None:
        self._sqs = sqs
        self._queue_names = list(queue_names)
        self._build = build
        self._what = what
        self._stopping = asyncio.Event()
        self._consumer: Consumer | None = None
        # The resolved URLs, in the order of `queue_names`; None until AWS answers.
        self.queue_urls: list[str] | None = None

    def stop(self) -> None:
        self._stopping.set()
        if self._consumer is not None:
            self._consumer.stop()

    async def run(self) -> None:
        urls = await wait_for_queue_urls(self._sqs, self._queue_names, self._stopping)
        if urls is None:
            return  # stopped before AWS answered
        self._consumer = self._build(urls)
        self.queue_urls = urls
        if self._stopping.is_set():
            return
        log.info("consuming %s", self._what, extra={"queue_url": urls[0]})
        await self._consumer.run()
        log.info("stopped consuming %s", self._what)


@asynccontextmanager
async def running_consumer(
    sqs: SQSClient,
    queue_names: Sequence[str],
    build: Callable[[Sequence[str]], Consumer],
    *,
    what: str,
) -> AsyncIterator[tuple[QueueConsumerTask, asyncio.Task[None]]]:
    """A `QueueConsumerTask` running for the block, crash-reported, stopped gracefully on exit
    (jobs in flight get the consumer's grace period)."""
    consumer = QueueConsumerTask(sqs, queue_names, build, what=what)
    async with background(consumer.run(), name=f"{what} consumer", stop=consumer.stop) as task:
        yield consumer, task
