"""The worker's Prometheus series, on the app's own registry (labels are bounded: never ids)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from shared.metrics import LATENCY_BUCKETS, SIZE_BUCKETS
from shared.sqs_consumer import QueueMetrics


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
        self.orphaned_objects = Counter(
            "ferry_orphaned_objects_total",
            "Originals that arrived with no media record (e.g. uploaded after an abandon)",
            registry=registry,
        )
        self.derivations = Counter(
            "ferry_derivations_total",
            "Derivations by media type and outcome (ok, blocked, or the failure code)",
            ["media_type", "outcome"],
            registry=registry,
        )
        self.derive_seconds = Histogram(
            "ferry_derive_seconds",
            "Time to derive and store a media's variants, by media type",
            ["media_type"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.uploads_queue = QueueMetrics(registry, "uploads")
