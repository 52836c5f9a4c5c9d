"""A generic SQS consumer: what a message means is its handler's business.

It owns the queue mechanics every worker needs: long polling for as many messages as there are
free slots, a bounded set of tracked jobs, a heartbeat that keeps a message invisible while its
job runs, acknowledgement on success, exponential backoff on failure (through the message's
visibility, so a retry survives a crash of this process), poison messages left for the
dead-letter queue, a last-chance hook before a message goes there, and a graceful stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

from shared.resources import MAX_RECEIVE_COUNT

if TYPE_CHECKING:
    from types_aiobotocore_sqs.client import SQSClient
    from types_aiobotocore_sqs.type_defs import MessageTypeDef

log = logging.getLogger("ferry.sqs.consumer")

MAX_BACKOFF_SECONDS = 300
# SQS hands out at most this many messages per receive.
MAX_BATCH = 10
# Pauses after failed receives (AWS away): 1, 2, 4 ... seconds, at most this.
MAX_RECEIVE_PAUSE_SECONDS = 30.0
# How long a stopping consumer spends handing back the messages of cancelled jobs.
RELEASE_TIMEOUT_SECONDS = 5.0


def backoff_seconds(
    receive_count: int, base_seconds: float, cap_seconds: int = MAX_BACKOFF_SECONDS
) -> int:
    """How long a failed message stays invisible: base * 2**(receives - 1), capped.

    Whole seconds, as SQS wants; rounded up so a small base still waits.
    """
    exponent = min(max(receive_count, 1) - 1, 30)  # 2**30 * anything positive is past any cap
    return min(cap_seconds, math.ceil(base_seconds * (1 << exponent)))


@dataclass(frozen=True, kw_only=True)
class QueueMessage:
    message_id: str
    receipt_handle: str
    body: str
    # How many times SQS has handed this message out, this time included.
    receive_count: int
    # String-valued message attributes (e.g. `request_id`).
    attributes: Mapping[str, str] = field(default_factory=dict)

    @property
    def redelivered(self) -> bool:
        return self.receive_count > 1

    @classmethod
    def from_sqs(cls, raw: Mapping[str, Any]) -> QueueMessage:
        system = raw.get("Attributes") or {}
        try:
            receive_count = int(system.get("ApproximateReceiveCount", "1"))
        except ValueError:
            receive_count = 1
        attributes = {
            name: value["StringValue"]
            for name, value in (raw.get("MessageAttributes") or {}).items()
            if isinstance(value, Mapping) and "StringValue" in value
        }
        return cls(
            message_id=str(raw.get("MessageId", "")),
            receipt_handle=str(raw["ReceiptHandle"]),
            body=str(raw.get("Body", "")),
            receive_count=receive_count,
            attributes=attributes,
        )


class PoisonMessage(Exception):
    """Raised by a handler for a message no retry can fix: it is left for the dead-letter queue."""


class Handler(Protocol):
    async def handle(self, message: QueueMessage) -> str:
        """Do the message's work; return an outcome label (for `ferry_queue_messages_total`).

        Raise `PoisonMessage` for a malformed message; any other exception means "retry later".
        """
        ...

    async def give_up(self, message: QueueMessage) -> None:
        """The message failed on its last receive: leave nothing stuck before it goes to the
        dead-letter queue."""
        ...


# ferry_queue_messages_total{queue, outcome}: what became of each message. Handlers add their
# own outcomes (e.g. "duplicate", "orphan"); these are the consumer's.
CONSUMER_OUTCOMES = (
    "ok",  # handled
    "ignored",  # nothing to act on
    "retried",  # failed; the message comes back after a backoff
    "gave_up",  # failed on its last receive: work settled, message left for the DLQ
    "last_receive",  # arrived on its last allowed receive: work settled, left for the DLQ
    "poison",  # malformed; left for the DLQ
)


class QueueMetrics:
    """A consumer's series, labelled by queue role (bounded: "uploads", "media_events").

    One service with several consumers makes the first with the registry and the others with
    `sibling(...)`: they share the metric families, each with its own `queue` label.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None,
        queue: str,
        *,
        handler_outcomes: Sequence[str] = (),
        _families: tuple[Gauge, Counter] | None = None,
    ) -> None:
        self.queue = queue
        if _families is None:
            _families = (
                Gauge(
                    "ferry_queue_jobs_in_flight",
                    "Queue messages being handled right now, by queue",
                    ["queue"],
                    registry=registry,
                ),
                Counter(
                    "ferry_queue_messages_total",
                    "Queue messages handled, by queue and outcome",
                    ["queue", "outcome"],
                    registry=registry,
                ),
            )
        self._families = _families
        in_flight, self.messages = _families
        self.jobs_in_flight = in_flight.labels(queue)
        # Every label value exists from the start, so rates work before the first message.
        for outcome in (*CONSUMER_OUTCOMES, *handler_outcomes):
            self.messages.labels(queue, outcome)

    def sibling(self, queue: str, *, handler_outcomes: Sequence[str] = ()) -> QueueMetrics:
        """Another queue's series, in the same families."""
        return QueueMetrics(
            None, queue, handler_outcomes=handler_outcomes, _families=self._families
        )

    def count(self, outcome: str) -> None:
        self.messages.labels(self.queue, outcome).inc()


class QueueSettings(Protocol):
    """The settings a consuming service has (each declares them with its own bounds)."""

    @property
    def queue_wait_seconds(self) -> int: ...
    @property
    def visibility_timeout_seconds(self) -> int: ...
    @property
    def retry_base_seconds(self) -> float: ...
    @property
    def shutdown_grace_seconds(self) -> float: ...


@dataclass(frozen=True, kw_only=True)
class ConsumerConfig:
    concurrency: int = 4
    wait_seconds: int = 20
    visibility_timeout_seconds: int = 60
    retry_base_seconds: float = 5.0
    shutdown_grace_seconds: float = 30.0
    # The queue's redrive policy: the receive after this many goes to the dead-letter queue
    # (read from the queue itself when the consumer starts; this is the fallback).
    max_receive_count: int = MAX_RECEIVE_COUNT
    # A message arriving on its last allowed receive is not tried again: its work is settled
    # (`give_up`) and it is left for the dead-letter queue. For work that may kill its process
    # (a crash on the last try would skip `give_up`).
    settle_on_last_receive: bool = False

    @classmethod
    def from_settings(cls, settings: QueueSettings, *, concurrency: int) -> ConsumerConfig:
        return cls(
            concurrency=concurrency,
            wait_seconds=settings.queue_wait_seconds,
            visibility_timeout_seconds=settings.visibility_timeout_seconds,
            retry_base_seconds=settings.retry_base_seconds,
            shutdown_grace_seconds=settings.shutdown_grace_seconds,
        )


class Consumer:
    """Runs `handler` on the messages of one queue until `stop()`; `run()` returns when done."""

    def __init__(
        self,
        sqs: SQSClient,
        queue_url: str,
        handler: Handler,
        *,
        config: ConsumerConfig,
        metrics: QueueMetrics,
    ) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._handler = handler
        self._config = config
        self._metrics = metrics
        self._stopping = asyncio.Event()
        self._jobs: dict[asyncio.Task[None], QueueMessage] = {}
        self._receive_failures = 0
        self._max_receive_count = config.max_receive_count

    @property
    def max_receive_count(self) -> int:
        return self._max_receive_count

    @property
    def jobs_in_flight(self) -> int:
        return len(self._jobs)

    def stop(self) -> None:
        """Ask `run()` to stop: no new receives; jobs in flight get the grace period."""
        self._stopping.set()

    async def run(self) -> None:
        stop_requested = asyncio.create_task(self._stopping.wait(), name="consumer-stop")
        await self._read_redrive_policy()
        try:
            while not self._stopping.is_set():
                free = self._config.concurrency - len(self._jobs)
                if free <= 0:
                    # Full: wait for a slot (or a stop) before asking SQS for more.
                    await asyncio.wait(
                        {stop_requested, *self._jobs}, return_when=asyncio.FIRST_COMPLETED
                    )
                    continue
                for raw in await self._receive(min(free, MAX_BATCH), stop_requested):
                    self._start(QueueMessage.from_sqs(raw))
        finally:
            stop_requested.cancel()
            await self._drain()

    async def _read_redrive_policy(self) -> None:
        """The queue's own maxReceiveCount, so "last receive" means what SQS means by it."""
        try:
            response = await self._sqs.get_queue_attributes(
                QueueUrl=self._queue_url, AttributeNames=["RedrivePolicy"]
            )
            policy = json.loads(response.get("Attributes", {}).get("RedrivePolicy", "{}"))
            self._max_receive_count = int(policy["maxReceiveCount"])
        except Exception:
            # No policy (a dead-letter queue itself) or AWS away: the configured value stands.
            return

    # --- receiving --------------------------------------------------------------------------

    async def _receive(self, count: int, stop_requested: asyncio.Task[Any]) -> list[MessageTypeDef]:
        receive = asyncio.create_task(
            self._sqs.receive_message(
                QueueUrl=self._queue_url,
                MaxNumberOfMessages=count,
                WaitTimeSeconds=self._config.wait_seconds,
                VisibilityTimeout=self._config.visibility_timeout_seconds,
                AttributeNames=["ApproximateReceiveCount"],
                MessageAttributeNames=["All"],
            ),
            name="consumer-receive",
        )
        try:
            await asyncio.wait({receive, stop_requested}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not receive.done():
                # Stopping (or being cancelled) mid-poll: cancelling is safe, as any message
                # SQS handed out meanwhile simply becomes visible again after its timeout.
                receive.cancel()
                await asyncio.wait({receive})
        if receive.cancelled():
            return []
        error = receive.exception()
        if error is not None:
            await self._pause_after_receive_failure(error, stop_requested)
            return []
        self._receive_failures = 0
        return receive.result().get("Messages", [])

    async def _pause_after_receive_failure(
        self, error: BaseException, stop_requested: asyncio.Task[Any]
    ) -> None:
        delay = min(MAX_RECEIVE_PAUSE_SECONDS, float(2**self._receive_failures))
        self._receive_failures += 1
        log.warning(
            "receive failed (%s: %s); retrying in %.0f s",
            type(error).__name__,
            error,
            delay,
            extra={"queue_url": self._queue_url},
        )
        # Sleeps, but wakes at once on stop.
        await asyncio.wait({stop_requested}, timeout=delay)

    # --- jobs -------------------------------------------------------------------------------

    def _start(self, message: QueueMessage) -> None:
        task = asyncio.create_task(self._job(message), name=f"message-{message.message_id}")
        self._jobs[task] = message
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._jobs.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            # `_job` handles its own failures; this would be a bug in the consumer itself.
            log.error("job crashed", exc_info=task.exception())

    async def _job(self, message: QueueMessage) -> None:
        self._metrics.jobs_in_flight.inc()
        heartbeat = asyncio.create_task(self._heartbeat(message), name="heartbeat")
        try:
            await self._handle(message)
        finally:
            heartbeat.cancel()
            await asyncio.wait({heartbeat})
            self._metrics.jobs_in_flight.dec()

    async def _handle(self, message: QueueMessage) -> None:
        context = {"message_id": message.message_id, "receive_count": message.receive_count}
        if self._config.settle_on_last_receive and message.receive_count >= self._max_receive_count:
            await self._settle_last_receive(message, context)
            return
        try:
            outcome = await self._handler.handle(message)
        except PoisonMessage as poison:
            log.error("poison message left for the dead-letter queue: %s", poison, extra=context)
            self._metrics.count("poison")
            # Back at once: it reaches the dead-letter queue after its last receive sooner.
            await self._set_visibility(message, 0)
            return
        except Exception:
            if message.receive_count >= self._max_receive_count:
                log.exception("message failed on its last receive", extra=context)
                await self._give_up(message)
                self._metrics.count("gave_up")
                # Its next receive moves it to the dead-letter queue; no point waiting.
                await self._set_visibility(message, 0)
            else:
                delay = backoff_seconds(message.receive_count, self._config.retry_base_seconds)
                log.exception("message failed; retrying in %d s", delay, extra=context)
                self._metrics.count("retried")
                await self._set_visibility(message, delay)
            return
        await self._delete(message, context)
        self._metrics.count(outcome)

    async def _settle_last_receive(self, message: QueueMessage, context: dict[str, Any]) -> None:
        log.error("message arrived on its last allowed receive: settling its work", extra=context)
        try:
            await self._handler.give_up(message)
        except Exception:
            # Its dead-letter queue's consumer (if any) settles it.
            log.exception("could not settle a message on its last receive", extra=context)
            await self._set_visibility(message, 0)
            return
        self._metrics.count("last_receive")
        # Settled; its next receive moves it to the dead-letter queue, which keeps the record.
        await self._set_visibility(message, 0)

    async def _delete(self, message: QueueMessage, context: dict[str, Any]) -> None:
        try:
            await self._sqs.delete_message(
                QueueUrl=self._queue_url, ReceiptHandle=message.receipt_handle
            )
        except Exception:
            # Handlers are idempotent: a redelivery finds nothing left to do.
            log.warning("could not delete a handled message", exc_info=True, extra=context)

    async def _give_up(self, message: QueueMessage) -> None:
        try:
            await self._handler.give_up(message)
        except Exception:
            log.exception("could not settle a message's work before the dead-letter queue")

    async def _heartbeat(self, message: QueueMessage) -> None:
        """Keep the message invisible while its job runs, so nobody else starts it meanwhile."""
        timeout = self._config.visibility_timeout_seconds
        while True:
            await asyncio.sleep(timeout / 2)
            # A failure is logged and retried next beat: the job may still finish in time.
            await self._set_visibility(message, timeout, failure="heartbeat failed")

    async def _set_visibility(
        self, message: QueueMessage, seconds: int, *, failure: str = "could not change visibility"
    ) -> None:
        try:
            await self._sqs.change_message_visibility(
                QueueUrl=self._queue_url,
                ReceiptHandle=message.receipt_handle,
                VisibilityTimeout=seconds,
            )
        except Exception:
            # Otherwise the message still comes back, only after the full visibility timeout.
            log.warning(failure, exc_info=True, extra={"message_id": message.message_id})

    # --- stopping ---------------------------------------------------------------------------

    async def _drain(self) -> None:
        if not self._jobs:
            return
        log.info("waiting for %d jobs in flight", len(self._jobs))
        _, pending = await asyncio.wait(
            set(self._jobs), timeout=self._config.shutdown_grace_seconds
        )
        if not pending:
            return
        log.warning("cancelling %d jobs still running after the grace period", len(pending))
        unfinished = [self._jobs[task] for task in pending if task in self._jobs]
        for task in pending:
            task.cancel()
        await asyncio.wait(pending)
        # Hand their messages back now rather than after a full visibility timeout.
        releases = [self._set_visibility(message, 0) for message in unfinished]
        try:
            await asyncio.wait_for(asyncio.gather(*releases), RELEASE_TIMEOUT_SECONDS)
        except TimeoutError:
            log.warning("could not hand back every unfinished message before stopping")


MAX_RESOLVE_PAUSE_SECONDS = 30.0


async def wait_for_queue_urls(
    sqs: SQSClient, names: Sequence[str], stopping: asyncio.Event
) -> list[str] | None:
    """The URLs of these queues, retried with backoff while AWS is away; None once stopping.

    Resolved in the background rather than at startup, so a service started before its
    dependencies stays up (and says so on `/readyz`) instead of crashing.
    """
    pause = 1.0
    while not stopping.is_set():
        attempt = asyncio.create_task(_queue_urls(sqs, names), name="resolve-queues")
        stopped = asyncio.create_task(stopping.wait(), name="resolve-stop")
        # A call to an unreachable endpoint spends seconds in botocore's own retries: a stop
        # must not wait for them.
        await asyncio.wait({attempt, stopped}, return_when=asyncio.FIRST_COMPLETED)
        for task in (attempt, stopped):
            task.cancel()
        await asyncio.wait({attempt, stopped})
        if attempt.cancelled():
            return None
        error = attempt.exception()
        if error is None:
            return attempt.result()
        log.warning(
            "queues not reachable yet (%s: %s); retrying in %.0f s",
            type(error).__name__,
            error,
            pause,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), pause)
        pause = min(MAX_RESOLVE_PAUSE_SECONDS, pause * 2)
    return None


async def _queue_urls(sqs: SQSClient, names: Sequence[str]) -> list[str]:
    return [str((await sqs.get_queue_url(QueueName=name))["QueueUrl"]) for name in names]
