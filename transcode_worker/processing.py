"""The processing step between "uploaded" and "ready": where derivatives are made.

The commit step calls a `Processor` on every verified original and records what it returns,
first on the blob (so a later dedup hit copies it) and then on the media. The worker runs
`transcode_worker.deriving.DerivingProcessor`; `NoProcessing` (ready once verified) serves the
commit step's own tests. A processor must be idempotent: a redelivered message runs it again on
the same bytes, so its derivatives go to content-addressed keys
(`shared.keys.derivative_object_key`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.media_records import MediaRecord, StoredVariant
from shared.models import ErrorDetail, MediaState


@dataclass(frozen=True, kw_only=True)
class Processed:
    """What processing concluded about some verified bytes."""

    meta: dict[str, Any]
    variants: list[StoredVariant] = field(default_factory=list)
    # READY normally; a processor may conclude BLOCKED (moderation) or FAILED (undecodable).
    state: MediaState = MediaState.READY
    # Why, when `state` is FAILED or BLOCKED (shown to users in the media document).
    error: ErrorDetail | None = None


class Processor(Protocol):
    async def process(self, record: MediaRecord) -> Processed:
        """Derive what the media needs from its verified original (`record.object_key`,
        `record.version_id`). Raising means "retry later"; the consumer backs off."""
        ...


class NoProcessing:
    """No derivatives yet: the media is ready as soon as its bytes are verified."""

    async def process(self, record: MediaRecord) -> Processed:
        return Processed(meta={"mime": record.content_type})
