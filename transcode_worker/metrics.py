"""The worker's Prometheus series, on the app's own registry (labels are bounded: never ids).

Every label value that can be known in advance is created here, so each series is on
`/metrics` (at zero) from the start and rates and ratios work before the first event.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from shared.metrics import LATENCY_BUCKETS, SIZE_BUCKETS
from shared.models import MediaType
from shared.queue_depth import QueueDepthMetrics
from shared.sqs_consumer import QueueMetrics
from transcode_worker.derivatives.types import DERIVE_ERROR_CODES
from transcode_worker.verify import CHECKSUM_MISMATCH, SIZE_MISMATCH, TYPE_MISMATCH

# Object created in storage → media ready: seconds for thumbnails, minutes for long videos.
PROCESSING_BUCKETS = (0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 120, 300, 600, 1800)

# ferry_uploads_verified_total{outcome}: "ok", or why the bytes were refused.
VERIFY_OUTCOMES = ("ok", SIZE_MISMATCH, CHECKSUM_MISMATCH, TYPE_MISMATCH)
# ferry_moderation_total{outcome}: scanned and fine, scanned and blocked, the scanner failed.
MODERATION_OUTCOMES = ("ok", "blocked", "error")
# ferry_stored_bytes_total{kind}
STORED_KINDS = ("original", "derivative")
# The media types the worker derives something for (documents are only verified).
DERIVED_TYPES = (MediaType.IMAGE, MediaType.VOICE, MediaType.VIDEO)
# ferry_discarded_objects_total{reason} (see transcode_worker.stray_versions).
DISCARD_REASONS = ("extra_version", "abandoned", "expired")
# The queues whose depth this worker samples: its own three and the media-events queue.
SAMPLED_QUEUES = ("uploads", "derive", "derive_video", "media_events")
# The queues whose dead letters the worker settles (ferry_dead_letters_total{queue}).
DEAD_LETTER_QUEUES = ("uploads", "derive", "derive_video")
# ferry_dead_letters_total{outcome}: a media failed, nothing left to settle, a body unreadable.
DEAD_LETTER_OUTCOMES = ("settled", "already_settled", "unreadable")
# ferry_stuck_media_failed_total{reason}: why the worker failed a media with processing_failed.
STUCK_REASONS = ("last_receive", "dead_letter", "crash_limit", "reconciler")
# ferry_reconciler_actions_total{state, action}
RECONCILED_STATES = ("awaiting_upload", "uploaded", "processing")
RECONCILER_ACTIONS = ("requeued", "failed")


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.uploads_verified = Counter(
            "ferry_uploads_verified_total",
            "Originals the commit step judged, by media type and outcome (ok or the mismatch)",
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
        self.discarded_objects = Counter(
            "ferry_discarded_objects_total",
            "Object versions deleted on arrival because no slot may yield them: extra versions "
            "of a committed slot, bytes for an abandoned slot, bytes after a slot expired",
            ["reason"],
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
        self.processing_latency = Histogram(
            "ferry_processing_latency_seconds",
            "Original created in storage (its S3 event time) until the media is ready, by type",
            ["media_type"],
            buckets=PROCESSING_BUCKETS,
            registry=registry,
        )
        self.moderation = Counter(
            "ferry_moderation_total",
            "Media judged by moderation (images, animations, video frames), by outcome (ok, "
            "blocked, error: the scanner failed)",
            ["outcome"],
            registry=registry,
        )
        self.stored_bytes = Counter(
            "ferry_stored_bytes_total",
            "Bytes added to storage, by kind (original: verified uploads; derivative: written)",
            ["kind"],
            registry=registry,
        )
        self.derive_originals = Counter(
            "ferry_derive_originals_total",
            "Originals a derivation started from, by source (spool: kept on disk by the commit "
            "step that verified it; storage: downloaded again)",
            ["source"],
            registry=registry,
        )
        self.uploads_queue = QueueMetrics(
            registry, "uploads", handler_outcomes=("duplicate", "orphan")
        )
        self.derive_queue = self.uploads_queue.sibling(
            "derive", handler_outcomes=("duplicate", "orphan")
        )
        self.derive_video_queue = self.uploads_queue.sibling(
            "derive_video", handler_outcomes=("duplicate", "orphan")
        )
        self.dead_letter_queues = {
            queue: self.uploads_queue.sibling(f"{queue}_dlq", handler_outcomes=DEAD_LETTER_OUTCOMES)
            for queue in DEAD_LETTER_QUEUES
        }
        self.dead_letters = Counter(
            "ferry_dead_letters_total",
            "Dead letters the worker took off its queues' DLQs, by source queue and outcome "
            "(settled: a media failed with processing_failed; already_settled; unreadable)",
            ["queue", "outcome"],
            registry=registry,
        )
        self.stuck_media_failed = Counter(
            "ferry_stuck_media_failed_total",
            "Media failed with processing_failed so that none stays stuck, by reason ("
            "last_receive, dead_letter, crash_limit, reconciler)",
            ["reason"],
            registry=registry,
        )
        self.isolated_runs = Counter(
            "ferry_derive_isolated_runs_total",
            "Derivations run alone in a fresh process (after a pool broke under them, or after "
            "earlier crashes), by media type and outcome (ok, crashed: the job is the culprit)",
            ["media_type", "outcome"],
            registry=registry,
        )
        self.reconciler_actions = Counter(
            "ferry_reconciler_actions_total",
            "Stuck media the reconciler acted on, by the state it found and the action "
            "(requeued, failed)",
            ["state", "action"],
            registry=registry,
        )
        self.reconciler_passes = Counter(
            "ferry_reconciler_passes_total",
            "Reconciler passes, by outcome (ok, error)",
            ["outcome"],
            registry=registry,
        )
        self.queue_depth = QueueDepthMetrics(registry, SAMPLED_QUEUES)
        self._create_series()

    def _create_series(self) -> None:
        for reason in DISCARD_REASONS:
            self.discarded_objects.labels(reason)
        for media_type in MediaType:
            for outcome in VERIFY_OUTCOMES:
                self.uploads_verified.labels(media_type.value, outcome)
            self.upload_bytes.labels(media_type.value)
            self.processing_latency.labels(media_type.value)
        for media_type in DERIVED_TYPES:
            self.derive_seconds.labels(media_type.value)
            for outcome in ("ok", *DERIVE_ERROR_CODES):
                self.derivations.labels(media_type.value, outcome)
        self.derivations.labels(MediaType.IMAGE.value, "blocked")
        for outcome in MODERATION_OUTCOMES:
            self.moderation.labels(outcome)
        for kind in STORED_KINDS:
            self.stored_bytes.labels(kind)
        for queue in DEAD_LETTER_QUEUES:
            for outcome in DEAD_LETTER_OUTCOMES:
                self.dead_letters.labels(queue, outcome)
        for reason in STUCK_REASONS:
            self.stuck_media_failed.labels(reason)
        for source in ("spool", "storage"):
            self.derive_originals.labels(source)
        for media_type in DERIVED_TYPES:
            for outcome in ("ok", "crashed"):
                self.isolated_runs.labels(media_type.value, outcome)
        for state in RECONCILED_STATES:
            for action in RECONCILER_ACTIONS:
                self.reconciler_actions.labels(state, action)
        for outcome in ("ok", "error"):
            self.reconciler_passes.labels(outcome)
