"""The worker's Prometheus series, on the app's own registry (labels are bounded: never ids)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.metrics import SIZE_BUCKETS

# ferry_worker_messages_total{outcome}: what became of each queue message.
MESSAGE_OUTCOMES = (
    "ok",  # handled: some media moved on
    "duplicate",  # nothing left to do (a repeated event, a redelivery, another worker won)
    "orphan",  # an object with no media record
    "ignored",  # nothing to act on (S3 test event, keys outside `o/`, another bucket)
    "retried",  # failed; the message comes back after a backoff
    "gave_up",  # failed on its last receive: media marked failed, message left for the DLQ
    "poison",  # malformed; left for the DLQ
)


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.uploads_verified = Counter(
            "ferry_uploads_verified_total",
            "Originals the commit step judged, by media type and outcome",
            ["media_type", "outcome"],
            registry=registry,
        )
        self.upload_bytes = Histogram(
            "ferry_upload_bytes",
            "Size of verified originals, by media type",
            ["media_type"],
            buckets=SIZE_BUCKETS,
            registry=registry,
        )
        self.jobs_in_flight = Gauge(
            "ferry_worker_jobs_in_flight",
            "Queue messages being handled right now",
            registry=registry,
        )
        self.messages = Counter(
            "ferry_worker_messages_total",
            "Queue messages handled, by outcome",
            ["outcome"],
            registry=registry,
        )
        self.orphaned_objects = Counter(
            "ferry_orphaned_objects_total",
            "Originals that arrived with no media record (e.g. uploaded after an abandon)",
            registry=registry,
        )
        # Every label value exists from the start, so rates work before the first event.
        for outcome in MESSAGE_OUTCOMES:
            self.messages.labels(outcome)
