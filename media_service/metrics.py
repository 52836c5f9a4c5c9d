"""The Media Service's operating signals (bounded labels only: never ids)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client import CollectorRegistry, Counter, Histogram

from shared.errors import DependencyUnavailable, FerryError
from shared.metrics import SIZE_BUCKETS
from shared.models import MediaType

# Label values known in advance: every series exists (at zero) from the start, so rates and
# ratios work before the first event.
SLOT_KINDS = ("single", "multipart", "dedup")
SLOT_REFUSALS = ("unsupported_media_type", "too_large", "rate_limited", "too_many_pending_uploads")
COMPLETION_OUTCOMES = ("ok", "invalid_parts", "invalid_state")
PROOF_OUTCOMES = ("ok", "bad_proof", "expired")
DOWNLOAD_OUTCOMES = (
    "ok",
    "not_found",
    "no_such_variant",
    "media_expired",
    "media_unusable",
    "blocked",
    "dependency_unavailable",
)


@contextmanager
def counting_refusals(counter: Counter, *, dependency_errors: bool = False) -> Iterator[None]:
    """Count a refusal leaving the block under its error code, then let it go on; with
    `dependency_errors`, an AWS failure too, as the `dependency_unavailable` the edge answers."""
    try:
        yield
    except FerryError as refusal:
        counter.labels(refusal.error_code).inc()
        raise
    except (BotoCoreError, ClientError):
        if dependency_errors:
            counter.labels(DependencyUnavailable.code).inc()
        raise


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
        self._create_series()

    def _create_series(self) -> None:
        for media_type in MediaType:
            self.declared_size.labels(media_type.value)
            for kind in SLOT_KINDS:
                self.slots.labels(media_type.value, kind)
        for code in SLOT_REFUSALS:
            self.refusals.labels(code)
        for outcome in COMPLETION_OUTCOMES:
            self.completions.labels(outcome)
        for outcome in PROOF_OUTCOMES:
            self.proofs.labels(outcome)
        for outcome in DOWNLOAD_OUTCOMES:
            self.download_urls.labels(outcome)
