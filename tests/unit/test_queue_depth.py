"""The queue-depth sampler: SQS attributes to gauges, riding out errors, stopping promptly."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from shared.queue_depth import (
    QueueDepthMetrics,
    QueueDepthSampler,
    SampledQueue,
    dead_letters,
    depths,
)
from tests.fakes import FakeSqs
from tests.waiting import eventually, scaled

QUEUES = [
    SampledQueue(role="uploads", name="p-uploads", dlq_name="p-uploads-dlq"),
    SampledQueue(role="media_events", name="p-media-events", dlq_name="p-media-events-dlq"),
]


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_depths_read_each_state_and_default_to_zero() -> None:
    attributes = {
        "ApproximateNumberOfMessages": "7",
        "ApproximateNumberOfMessagesNotVisible": "2",
    }
    assert depths(attributes) == {"visible": 7, "in_flight": 2, "delayed": 0}
    assert depths({"ApproximateNumberOfMessages": "many"}) == {
        "visible": 0,
        "in_flight": 0,
        "delayed": 0,
    }
    assert dead_letters({**attributes, "ApproximateNumberOfMessagesDelayed": "1"}) == 10


def test_every_series_exists_before_the_first_sample() -> None:
    registry = CollectorRegistry()
    QueueDepthMetrics(registry, ["uploads", "media_events"])
    for role in ("uploads", "media_events"):
        for state in ("visible", "in_flight", "delayed"):
            assert _value(registry, "ferry_queue_depth", queue=role, state=state) == 0
        assert _value(registry, "ferry_dlq_depth", queue=role) == 0
    assert _value(registry, "ferry_queue_depth_sampled_timestamp_seconds") == 0


async def test_samples_set_the_gauges_and_survive_an_outage() -> None:
    sqs = FakeSqs()
    sqs.attributes = {
        "p-uploads": {
            "ApproximateNumberOfMessages": "12",
            "ApproximateNumberOfMessagesNotVisible": "3",
            "ApproximateNumberOfMessagesDelayed": "1",
        },
        "p-uploads-dlq": {"ApproximateNumberOfMessages": "2"},
        "p-media-events": {"ApproximateNumberOfMessages": "0"},
    }
    registry = CollectorRegistry()
    sampler = QueueDepthSampler(
        sqs.client, QUEUES, interval_seconds=0.01, metrics=QueueDepthMetrics(registry, ["uploads"])
    )
    task = asyncio.create_task(sampler.run())

    await eventually(
        lambda: bool(_value(registry, "ferry_queue_depth_sampled_timestamp_seconds")),
        "a first sample",
    )
    assert _value(registry, "ferry_queue_depth", queue="uploads", state="visible") == 12
    assert _value(registry, "ferry_queue_depth", queue="uploads", state="in_flight") == 3
    assert _value(registry, "ferry_queue_depth", queue="uploads", state="delayed") == 1
    assert _value(registry, "ferry_dlq_depth", queue="uploads") == 2
    assert _value(registry, "ferry_dlq_depth", queue="media_events") == 0

    # SQS goes away: errors are counted, the last values stay, the sampler keeps going.
    sqs.down = True
    before = sqs.calls

    await eventually(
        lambda: (
            (_value(registry, "ferry_queue_depth_sample_errors_total", queue="uploads") or 0) >= 2
        ),
        "failed samples",
    )
    assert sqs.calls > before
    assert not task.done()
    assert _value(registry, "ferry_queue_depth", queue="uploads", state="visible") == 12

    # And it comes back.
    sqs.down = False
    sqs.attributes["p-uploads"] = {"ApproximateNumberOfMessages": "0"}

    await eventually(
        lambda: _value(registry, "ferry_queue_depth", queue="uploads", state="visible") == 0,
        "a sample after the outage",
    )
    sampler.stop()
    await asyncio.wait_for(task, scaled(1))


async def test_queues_are_resolved_with_retries_while_sqs_is_away() -> None:
    sqs = FakeSqs()
    sqs.down = True
    registry = CollectorRegistry()
    sampler = QueueDepthSampler(
        sqs.client, QUEUES, interval_seconds=0.01, metrics=QueueDepthMetrics(registry, ["uploads"])
    )
    task = asyncio.create_task(sampler.run())
    await eventually(lambda: sqs.url_lookups >= 2, "a retried look-up")
    assert not task.done()
    sampler.stop()
    await asyncio.wait_for(task, scaled(1))  # a stop does not wait for the retry pause
    assert sqs.calls == 0


@pytest.mark.parametrize("hang", [True, False])
async def test_a_stop_does_not_wait_for_a_hanging_call_or_the_interval(hang: bool) -> None:
    sqs = FakeSqs()
    sqs.hang = hang
    registry = CollectorRegistry()
    sampler = QueueDepthSampler(
        sqs.client, QUEUES, interval_seconds=3600, metrics=QueueDepthMetrics(registry, ["uploads"])
    )
    task = asyncio.create_task(sampler.run())
    await eventually(lambda: sqs.calls > 0, "a first call")
    sampler.stop()
    await asyncio.wait_for(task, scaled(1))
