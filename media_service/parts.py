"""What both halves of the Media Service (uploads, serving) work with, built once per app."""

from __future__ import annotations

from dataclasses import dataclass

from media_service.access import AccessPolicy
from media_service.lookup import MediaLookup
from media_service.metrics import MediaMetrics
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


class UsesMediaParts:
    """A use case over the shared parts, each one an attribute of its own."""

    def __init__(self, parts: MediaParts) -> None:
        self.settings = parts.settings
        self.records = parts.records
        self.bucket = parts.bucket
        self.lookup = parts.lookup
        self.access = parts.access
        self.metrics = parts.metrics
