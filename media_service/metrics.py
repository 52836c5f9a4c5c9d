"""The Media Service's operating signals (bounded labels only: never ids)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from shared.metrics import SIZE_BUCKETS


class MediaMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.slots = Counter(
            "ferry_upload_slots_total",
            "Upload slots granted, by media type and kind (single, multipart, dedup)",
            ["media_type", "kind"],
            registry=registry,
        )
        self.refusals = Counter(
            "ferry_upload_slot_refusals_total",
            "Upload slots refused, by error code",
            ["code"],
            registry=registry,
        )
        self.declared_size = Histogram(
            "ferry_upload_declared_bytes",
            "Declared size of granted upload slots, by media type",
            ["media_type"],
            buckets=SIZE_BUCKETS,
            registry=registry,
        )
        self.resumes = Counter(
            "ferry_upload_resumes_total",
            "Multipart uploads resumed (received parts listed with parts already stored)",
            registry=registry,
        )
        self.completions = Counter(
            "ferry_multipart_completions_total",
            "Multipart completions, by outcome",
            ["outcome"],
            registry=registry,
        )
        self.proofs = Counter(
            "ferry_dedup_proofs_total",
            "Deduplication proofs checked, by outcome (ok, bad_proof, expired)",
            ["outcome"],
            registry=registry,
        )
        self.download_urls = Counter(
            "ferry_download_urls_total",
            "Download URL requests, by outcome (ok or the error code)",
            ["outcome"],
            registry=registry,
        )
