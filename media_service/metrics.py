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


DELETE_REASONS = ("owner", "unsent", "held_owner_delete")
RECLAIM_REASONS = ("owner", "unsent", "retention", "orphan")
RETIRED_PARTS = ("original", "derivatives")


class LifecycleMetrics:
    """What deletion and the sweeper did: on the Media Service (owner deletes) and on every
    sweeper process (`--metrics-port`), the same names."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.deleted = Counter(
            "ferry_media_deleted_total",
            "Media deleted (record, and bytes nobody else holds), by reason",
            ["reason"],
            registry=registry,
        )
        self.expired = Counter(
            "ferry_media_expired_total",
            "Media parts retired by retention (original, derivatives)",
            ["part"],
            registry=registry,
        )
        self.reclaimed = Counter(
            "ferry_reclaimed_bytes_total",
            "Bytes of object versions deleted from the bucket, by reason",
            ["reason"],
            registry=registry,
        )
        self.orphans = Counter(
            "ferry_orphan_objects_deleted_total",
            "Object versions no record accounted for, deleted by the sweeper",
            registry=registry,
        )
        self.aborted = Counter(
            "ferry_multipart_uploads_aborted_total",
            "Incomplete multipart uploads aborted by the sweeper (no open slot)",
            registry=registry,
        )
        self.hold_refusals = Counter(
            "ferry_legal_hold_refusals_total",
            "Object deletions Object Lock refused (a legal hold on the version)",
            registry=registry,
        )
        self.passes = Counter(
            "ferry_sweeper_passes_total",
            "Sweeper passes finished",
            registry=registry,
        )
        for reason in DELETE_REASONS:
            self.deleted.labels(reason)
        for reason in RECLAIM_REASONS:
            self.reclaimed.labels(reason)
        for part in RETIRED_PARTS:
            self.expired.labels(part)


class MediaMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.lifecycle = LifecycleMetrics(registry)
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
