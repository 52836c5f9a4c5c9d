"""The Message Service's operating signals (bounded labels only: never ids)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from shared.metrics import LATENCY_BUCKETS
from shared.sqs_consumer import QueueMetrics

SEND_OUTCOMES = ("ok", "replay")


class MessageMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.sends = Counter(
            "ferry_message_sends_total",
            "Message sends, by outcome (ok: stored and fanned out; replay: a repeated send)",
            ["outcome"],
            registry=registry,
        )
        self.send_latency = Histogram(
            "ferry_message_send_seconds",
            "Time to store and fan out one new message (before pushes)",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.deletions = Counter(
            "ferry_message_deletions_total",
            "Messages deleted for everyone (tombstones written)",
            registry=registry,
        )
        self.media_updates = Counter(
            "ferry_media_updates_pushed_total",
            "media_update frames delivered to devices",
            registry=registry,
        )
        self.media_events_queue = QueueMetrics(registry, "media_events")
        # Present from the start, so rates work before the first send.
        for outcome in SEND_OUTCOMES:
            self.sends.labels(outcome)
