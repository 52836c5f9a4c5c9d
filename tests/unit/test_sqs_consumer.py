"""The consumer's queue mechanics, against an in-memory stand-in for SQS."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from shared.sqs_consumer import (
    MAX_BACKOFF_SECONDS,
    Consumer,
    ConsumerConfig,
    PoisonMessage,
    QueueMessage,
    QueueMetrics,
    backoff_seconds,
)
from tests.fakes import FakeSqs
from tests.waiting import eventually, scaled

QUEUE_URL = "http://sqs.local/000000000000/uploads"
DEADLINE_SECONDS = scaled(5.0)


class ScriptedHandler:
    """Runs `behaviour` on each message; records give-ups."""

    def __init__(self, behaviour: Callable[[QueueMessage], Awaitable[str]]) -> None:
        self.behaviour = behaviour
        self.given_up: list[QueueMessage] = []

    async def handle(self, message: QueueMessage) -> str:
        return await self.behaviour(message)

    async def give_up(self, message: QueueMessage) -> None:
        self.given_up.append(message)


def build(handler: ScriptedHandler, **config: Any) -> tuple[Consumer, FakeSqs, CollectorRegistry]:
    sqs = FakeSqs()
    registry = CollectorRegistry()
    settings = {"wait_seconds": 20, "retry_base_seconds": 5.0, "shutdown_grace_seconds": 5.0}
    consumer = Consumer(
        sqs.client,
        QUEUE_URL,
        handler,
        config=ConsumerConfig(**{**settings, **config}),
        metrics=QueueMetrics(registry, "uploads"),
    )
    return consumer, sqs, registry


def messages_counted(registry: CollectorRegistry, outcome: str) -> float:
    value = registry.get_sample_value(
        "ferry_queue_messages_total", {"queue": "uploads", "outcome": outcome}
    )
    return value or 0.0


async def ok(_: QueueMessage) -> str:
    return "ok"


# --- backoff ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("receive_count", "base", "expected"),
    [(1, 5.0, 5), (2, 5.0, 10), (3, 5.0, 20), (5, 5.0, 80), (7, 5.0, 300), (100, 5.0, 300)],
)
def test_backoff_doubles_per_receive_up_to_the_cap(
    receive_count: int, base: float, expected: int
) -> None:
    assert backoff_seconds(receive_count, base) == expected


def test_backoff_edges() -> None:
    assert backoff_seconds(3, 0) == 0  # tests retry at once
    assert backoff_seconds(1, 0.3) == 1  # whole seconds, rounded up
    assert backoff_seconds(0, 5.0) == 5  # a missing count is a first receive
    assert backoff_seconds(10**6, 5.0) == MAX_BACKOFF_SECONDS


# --- the message itself -------------------------------------------------------------------


def test_message_from_sqs() -> None:
    message = QueueMessage.from_sqs(
        {
            "MessageId": "m",
            "ReceiptHandle": "r",
            "Body": "{}",
            "Attributes": {"ApproximateReceiveCount": "3"},
            "MessageAttributes": {
                "request_id": {"DataType": "String", "StringValue": "abc"},
                "blob": {"DataType": "Binary", "BinaryValue": b"x"},
            },
        }
    )
    assert message.receive_count == 3
    assert message.redelivered
    assert message.attributes == {"request_id": "abc"}
    assert QueueMessage.from_sqs({"ReceiptHandle": "r"}).receive_count == 1


# --- the loop -----------------------------------------------------------------------------


async def test_handled_message_is_deleted_and_counted() -> None:
    consumer, sqs, registry = build(ScriptedHandler(ok))
    handle = sqs.put("{}")
    run = asyncio.create_task(consumer.run())
    await eventually(lambda: sqs.deleted == [handle], "the delete")
    consumer.stop()
    await asyncio.wait_for(run, DEADLINE_SECONDS)
    assert messages_counted(registry, "ok") == 1
    request = sqs.receives[0]
    assert request["WaitTimeSeconds"] == 20
    assert request["AttributeNames"] == ["ApproximateReceiveCount"]
    assert request["MessageAttributeNames"] == ["All"]


async def test_poison_is_left_for_the_dead_letter_queue() -> None:
    async def poison(_: QueueMessage) -> str:
        raise PoisonMessage("not an S3 event")

    consumer, sqs, registry = build(ScriptedHandler(poison))
    handle = sqs.put("garbage")
    run = asyncio.create_task(consumer.run())
    await eventually(lambda: (handle, 0) in sqs.visibility, "the message handed back")
    consumer.stop()
    await asyncio.wait_for(run, DEADLINE_SECONDS)
    assert sqs.deleted == []
    assert messages_counted(registry, "poison") == 1


async def test_failure_backs_off_through_visibility() -> None:
    async def broken(_: QueueMessage) -> str:
        raise RuntimeError("storage hiccup")

    handler = ScriptedHandler(broken)
    consumer, sqs, registry = build(handler, retry_base_seconds=5.0)
    handle = sqs.put("{}", receive_count=3)
    run = asyncio.create_task(consumer.run())
    await eventually(lambda: bool(sqs.visibility), "the backoff")
    consumer.stop()
    await asyncio.wait_for(run, DEADLINE_SECONDS)
    assert sqs.visibility == [(handle, 20)]
    assert sqs.deleted == []
    assert handler.given_up == []
    assert messages_counted(registry, "retried") == 1


async def test_last_receive_gives_up_and_leaves_the_message() -> None:
    async def broken(_: QueueMessage) -> str:
        raise RuntimeError("still broken")

    handler = ScriptedHandler(broken)
    consumer, sqs, registry = build(handler, max_receive_count=5)
    handle = sqs.put("{}", receive_count=5)
    run = asyncio.create_task(consumer.run())
    await eventually(lambda: bool(handler.given_up), "the give-up")
    await eventually(lambda: (handle, 0) in sqs.visibility, "the message handed back")
    consumer.stop()
    await asyncio.wait_for(run, DEADLINE_SECONDS)
    assert sqs.deleted == []
    assert messages_counted(registry, "gave_up") == 1


async def test_a_message_on_its_last_receive_is_settled_without_another_try() -> None:
    tried: list[QueueMessage] = []

    async def crashing(message: QueueMessage) -> str:
        tried.append(message)  # stands for a job that would kill its process
        return "ok"

    handler = ScriptedHandler(crashing)
    consumer, sqs, registry = build(handler, max_receive_count=5, settle_on_last_receive=True)
    earlier = sqs.put("{}", receive_count=4)
    last = sqs.put("{}", receive_count=5)
    run = asyncio.create_task(consumer.run())
    await eventually(lambda: (last, 0) in sqs.visibility, "the last handed back for the DLQ")
    await eventually(lambda: sqs.deleted == [earlier], "the earlier one deleted")
    consumer.stop()
    await asyncio.wait_for(run, DEADLINE_SECONDS)
    assert [message.receipt_handle for message in tried] == [earlier]
    assert [message.receipt_handle for message in handler.given_up] == [last]
    assert messages_counted(registry, "last_receive") == 1


async def test_the_queues_own_redrive_policy_says_which_receive_is_the_last() -> None:
    handler = ScriptedHandler(ok)
    consumer, sqs, _ = build(handler, settle_on_last_receive=True)
    sqs.attributes["uploads"] = {"RedrivePolicy": '{"maxReceiveCount": "3"}'}
    sqs.put("{}", receive_count=3)
    run = asyncio.create_task(consumer.run())
    await eventually(lambda: bool(handler.given_up), "the give-up")
    consumer.stop()
    await asyncio.wait_for(run, DEADLINE_SECONDS)
    assert sqs.deleted == []
    assert consumer.max_receive_count == 3
    assert len(handler.given_up) == 1


async def test_heartbeat_extends_visibility_while_the_job_runs() -> None:
    release = asyncio.Event()

    async def slow(_: QueueMessage) -> str:
        await release.wait()
        return "ok"

    consumer, sqs, _ = build(ScriptedHandler(slow), visibility_timeout_seconds=2)
    handle = sqs.put("{}")
    run = asyncio.create_task(consumer.run())
    await eventually(lambda: (handle, 2) in sqs.visibility, "a heartbeat")
    release.set()
    await eventually(lambda: sqs.deleted == [handle], "the delete")
    consumer.stop()
    await asyncio.wait_for(run, DEADLINE_SECONDS)


async def test_concurrency_is_bounded_and_receives_ask_for_free_slots_only() -> None:
    release = asyncio.Event()
    running = 0
    most = 0

    async def slow(_: QueueMessage) -> str:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await release.wait()
        running -= 1
        return "ok"

    consumer, sqs, registry = build(ScriptedHandler(slow), concurrency=2)
    handles = [sqs.put(str(n)) for n in range(5)]
    run = asyncio.create_task(consumer.run())
    await eventually(lambda: running == 2, "two jobs running")
    assert registry.get_sample_value("ferry_queue_jobs_in_flight", {"queue": "uploads"}) == 2
    assert len(sqs.waiting) == 3  # the rest stays in the queue for other workers
    release.set()
    await eventually(lambda: sorted(sqs.deleted) == sorted(handles), "every delete")
    consumer.stop()
    await asyncio.wait_for(run, DEADLINE_SECONDS)
    assert most == 2
    assert all(request["MaxNumberOfMessages"] <= 2 for request in sqs.receives)
    assert registry.get_sample_value("ferry_queue_jobs_in_flight", {"queue": "uploads"}) == 0


async def test_stop_cancels_a_long_poll_at_once() -> None:
    consumer, sqs, _ = build(ScriptedHandler(ok))
    run = asyncio.create_task(consumer.run())
    await eventually(lambda: bool(sqs.receives), "a long poll")
    started = time.monotonic()
    consumer.stop()
    await asyncio.wait_for(run, DEADLINE_SECONDS)
    assert time.monotonic() - started < scaled(1)


async def test_stop_lets_jobs_in_flight_finish_within_the_grace() -> None:
    release = asyncio.Event()

    async def slow(_: QueueMessage) -> str:
        await release.wait()
        return "ok"

    consumer, sqs, _ = build(ScriptedHandler(slow), shutdown_grace_seconds=5.0)
    handle = sqs.put("{}")
    run = asyncio.create_task(consumer.run())
    await eventually(lambda: consumer.jobs_in_flight == 1, "the job")
    consumer.stop()
    await asyncio.sleep(0)
    assert not run.done()  # waiting for the job
    release.set()
    await asyncio.wait_for(run, DEADLINE_SECONDS)
    assert sqs.deleted == [handle]


async def test_jobs_past_the_grace_are_cancelled_and_handed_back() -> None:
    async def stuck(_: QueueMessage) -> str:
        await asyncio.Event().wait()
        return "ok"

    consumer, sqs, _ = build(ScriptedHandler(stuck), shutdown_grace_seconds=0)
    handle = sqs.put("{}")
    run = asyncio.create_task(consumer.run())
    await eventually(lambda: consumer.jobs_in_flight == 1, "the job")
    consumer.stop()
    await asyncio.wait_for(run, DEADLINE_SECONDS)
    assert sqs.deleted == []
    assert (handle, 0) in sqs.visibility
    assert consumer.jobs_in_flight == 0


async def test_receive_failures_pause_then_recover() -> None:
    consumer, sqs, _ = build(ScriptedHandler(ok))
    failures = 1
    real_receive = sqs.receive_message

    async def flaky(**request: Any) -> dict[str, Any]:
        nonlocal failures
        if failures:
            failures -= 1
            raise ConnectionError("emulator not up yet")
        return await real_receive(**request)

    sqs.receive_message = flaky  # type: ignore[method-assign]
    handle = sqs.put("{}")
    run = asyncio.create_task(consumer.run())
    await eventually(lambda: sqs.deleted == [handle], "the delete after a failed receive")
    consumer.stop()
    await asyncio.wait_for(run, DEADLINE_SECONDS)
