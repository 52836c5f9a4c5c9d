"""Queue depths sampled from SQS: how much work waits, and whether anything reached a DLQ.

Consumers see only the messages they receive; the backlog and the dead letters are visible only
to whoever asks SQS. A `QueueDepthSampler` asks every `interval` seconds (`GetQueueAttributes`:
`ApproximateNumberOfMessages`, `...NotVisible`, `...Delayed`) for each queue and its dead-letter
queue and sets gauges labelled by the queue's role ("uploads", "media_events": bounded, never a
URL). Several replicas may sample the same queues: aggregate with `max`, not `sum`.

It never stops on an AWS error: a failed sample is logged and counted, the gauges keep their
last values, and `ferry_queue_depth_sampled_timestamp_seconds` stops moving, which is what an
alert on stale samples watches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge

from shared.sqs_consumer import wait_for_queue_urls

if TYPE_CHECKING:
    from types_aiobotocore_sqs.client import SQSClient
    from types_aiobotocore_sqs.literals import QueueAttributeNameType

log = logging.getLogger("ferry.sqs.depth")

T = TypeVar("T")

# The `state` label of ferry_queue_depth → the SQS attribute it reads.
DEPTH_ATTRIBUTES: Mapping[str, QueueAttributeNameType] = {
    "visible": "ApproximateNumberOfMessages",  # waiting to be received
    "in_flight": "ApproximateNumberOfMessagesNotVisible",  # received, not yet deleted
    "delayed": "ApproximateNumberOfMessagesDelayed",  # sent with a delay, not yet visible
}


@dataclass(frozen=True, kw_only=True)
class SampledQueue:
    """A queue to watch: its role (the label value), its name, its dead-letter queue's name."""

    role: str
    name: str
    dlq_name: str


def depths(attributes: Mapping[str, Any]) -> dict[str, int]:
    """Messages by state, from a `GetQueueAttributes` answer's `Attributes` (absent: 0)."""
    counts: dict[str, int] = {}
    for state, attribute in DEPTH_ATTRIBUTES.items():
        try:
            counts[state] = max(0, int(attributes.get(attribute, 0)))
        except (TypeError, ValueError):
            counts[state] = 0
    return counts


def dead_letters(attributes: Mapping[str, Any]) -> int:
    """Every message a dead-letter queue holds, received by someone or not."""
    return sum(depths(attributes).values())


class QueueDepthMetrics:
    def __init__(self, registry: CollectorRegistry, roles: Sequence[str]) -> None:
        self.depth = Gauge(
            "ferry_queue_depth",
            "Messages in a queue by state (visible: waiting; in_flight: being handled; "
            "delayed), sampled from SQS",
            ["queue", "state"],
            registry=registry,
        )
        self.dlq_depth = Gauge(
            "ferry_dlq_depth",
            "Messages in a queue's dead-letter queue, sampled from SQS",
            ["queue"],
            registry=registry,
        )
        self.sampled_at = Gauge(
            "ferry_queue_depth_sampled_timestamp_seconds",
            "Unix time of the last sample in which every queue answered (0: none yet)",
            registry=registry,
        )
        self.sample_errors = Counter(
            "ferry_queue_depth_sample_errors_total",
            "Queue attribute reads that failed, by queue",
            ["queue"],
            registry=registry,
        )
        # Present from the start, so dashboards and alerts see the series before any sample.
        for role in roles:
            for state in DEPTH_ATTRIBUTES:
                self.depth.labels(role, state)
            self.dlq_depth.labels(role)
            self.sample_errors.labels(role)


class QueueDepthSampler:
    """Samples the depths of `queues` (and their DLQs) until `stop()`; `run()` returns then."""

    def __init__(
        self,
        sqs: SQSClient,
        queues: Sequence[SampledQueue],
        *,
        interval_seconds: float,
        metrics: QueueDepthMetrics,
    ) -> None:
        self._sqs = sqs
        self._queues = tuple(queues)
        self._interval = interval_seconds
        self._metrics = metrics
        self._stopping = asyncio.Event()
        # role → (queue URL, DLQ URL), once resolved.
        self._urls: dict[str, tuple[str, str]] = {}

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        names = [name for queue in self._queues for name in (queue.name, queue.dlq_name)]
        urls = await wait_for_queue_urls(self._sqs, names, self._stopping)
        if urls is None:
            return  # stopped before SQS answered
        for index, queue in enumerate(self._queues):
            self._urls[queue.role] = (urls[2 * index], urls[2 * index + 1])
        while not self._stopping.is_set():
            await self._unless_stopped(self.sample_once())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)

    async def sample_once(self) -> bool:
        """Read every queue once and set the gauges; whether every read succeeded."""
        outcomes = await asyncio.gather(
            *(self._sample(role, *urls) for role, urls in self._urls.items())
        )
        if outcomes and all(outcomes):
            self._metrics.sampled_at.set(time.time())
            return True
        return False

    async def _sample(self, role: str, queue_url: str, dlq_url: str) -> bool:
        try:
            queue, dlq = await asyncio.gather(
                self._attributes(queue_url), self._attributes(dlq_url)
            )
        except Exception as error:
            # The gauges keep their last values; the stale timestamp tells.
            self._metrics.sample_errors.labels(role).inc()
            log.warning(
                "could not sample the depth of queue %s (%s: %s)",
                role,
                type(error).__name__,
                error,
            )
            return False
        for state, count in depths(queue).items():
            self._metrics.depth.labels(role, state).set(count)
        self._metrics.dlq_depth.labels(role).set(dead_letters(dlq))
        return True

    async def _attributes(self, url: str) -> Mapping[str, str]:
        response = await self._sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=list(DEPTH_ATTRIBUTES.values())
        )
        # Keyed by the stubs' attribute-name literals: re-keyed by plain str for `depths`.
        return {name: value for name, value in (response.get("Attributes") or {}).items()}

    async def _unless_stopped(self, work: Awaitable[T]) -> T | None:
        """`work`'s result; None (and `work` cancelled) if a stop comes first: a call to an
        unreachable endpoint may spend seconds in botocore's retries, a stop must not wait."""
        job = asyncio.ensure_future(work)
        stopped = asyncio.create_task(self._stopping.wait(), name="depth-stop")
        try:
            await asyncio.wait({job, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (job, stopped):
                task.cancel()
            await asyncio.wait({job, stopped})
        if job.cancelled():
            return None
        return job.result()
