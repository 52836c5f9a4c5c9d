"""What both halves of the Media Service (uploads, serving) work with, built once per app."""

from __future__ import annotations

from dataclasses import dataclass

from media_service.access import AccessPolicy
from media_service.holds import Holds
from media_service.lifecycle_records import LifecycleRecords
from media_service.lookup import MediaLookup
from media_service.metrics import MediaMetrics
from media_service.reclaim import Reclaimer
from media_service.settings import Settings
from media_service.storage import MediaBucket
from shared.media_records import MediaRecords


@dataclass(frozen=True, kw_only=True)
class MediaParts:
    settings: Settings
    records: MediaRecords
    bucket: MediaBucket
    lookup: MediaLookup
    access: AccessPolicy
    metrics: MediaMetrics
    lifecycle: LifecycleRecords
    reclaimer: Reclaimer
    holds: Holds


class UsesMediaParts:
    """A use case over the shared parts, each one an attribute of its own."""

    def __init__(self, parts: MediaParts) -> None:
        self.settings = parts.settings
        self.records = parts.records
        self.bucket = parts.bucket
        self.lookup = parts.lookup
        self.access = parts.access
        self.metrics = parts.metrics
        self.lifecycle = parts.lifecycle
        self.reclaimer = parts.reclaimer
        self.holds = parts.holds
