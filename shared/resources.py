"""Names of the fleet's AWS resources, derived from one configurable prefix.

The devstack bootstrap creates exactly these; every service finds them by the same names.
"""

from __future__ import annotations

from dataclasses import dataclass

# maxReceiveCount of every queue's redrive policy: after this many receives a message moves
# to the queue's dead-letter queue.
MAX_RECEIVE_COUNT = 5

# Secondary indexes of the Message Service's tables (devstack/tables.py creates them).
ACTIVITY_INDEX = "by-user-activity"
UNFANNED_INDEX = "unfanned"
UNREFERENCED_INDEX = "unreferenced"


@dataclass(frozen=True, kw_only=True)
class ResourceNames:
    prefix: str = "ferry"
    bucket_override: str | None = None

    @property
    def bucket(self) -> str:
        return self.bucket_override or f"{self.prefix}-media"

    # --- queues
    @property
    def uploads_queue(self) -> str:
        return f"{self.prefix}-uploads"

    @property
    def uploads_dlq(self) -> str:
        return f"{self.prefix}-uploads-dlq"

    # Derivation lanes, fed by the commit step: images and voice notes; videos on their own, so
    # a long video never holds the slots photos wait for.
    @property
    def derive_queue(self) -> str:
        return f"{self.prefix}-derive"

    @property
    def derive_dlq(self) -> str:
        return f"{self.prefix}-derive-dlq"

    @property
    def derive_video_queue(self) -> str:
        return f"{self.prefix}-derive-video"

    @property
    def derive_video_dlq(self) -> str:
        return f"{self.prefix}-derive-video-dlq"

    @property
    def media_events_queue(self) -> str:
        return f"{self.prefix}-media-events"

    @property
    def media_events_dlq(self) -> str:
        return f"{self.prefix}-media-events-dlq"

    # --- tables owned by the Media Service (the worker writes media rows as its back end)
    @property
    def media_table(self) -> str:
        return f"{self.prefix}-media"

    @property
    def blobs_table(self) -> str:
        return f"{self.prefix}-blobs"

    @property
    def rate_limits_table(self) -> str:
        return f"{self.prefix}-rate-limits"

    @property
    def usage_table(self) -> str:
        """Per-user usage counters share the per-user counters' table (shared.usage)."""
        return self.rate_limits_table

    @property
    def audit_table(self) -> str:
        return f"{self.prefix}-audit"

    # --- tables owned by the Message Service
    @property
    def conversations_table(self) -> str:
        return f"{self.prefix}-conversations"

    @property
    def members_table(self) -> str:
        return f"{self.prefix}-members"

    @property
    def messages_table(self) -> str:
        return f"{self.prefix}-messages"

    @property
    def idempotency_table(self) -> str:
        return f"{self.prefix}-idempotency"

    @property
    def pending_table(self) -> str:
        return f"{self.prefix}-pending"

    @property
    def media_refs_table(self) -> str:
        return f"{self.prefix}-media-refs"

    @property
    def message_rate_limits_table(self) -> str:
        return f"{self.prefix}-message-rate-limits"

    @property
    def devices_table(self) -> str:
        return f"{self.prefix}-devices"

    # --- table owned by the Edge Gateway
    @property
    def connections_table(self) -> str:
        return f"{self.prefix}-connections"

    def queues(self) -> tuple[tuple[str, str], ...]:
        """Each queue with its dead-letter queue."""
        return (
            (self.uploads_queue, self.uploads_dlq),
            (self.derive_queue, self.derive_dlq),
            (self.derive_video_queue, self.derive_video_dlq),
            (self.media_events_queue, self.media_events_dlq),
        )
