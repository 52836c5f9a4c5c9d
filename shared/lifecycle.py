"""Media lifetime: the one settings module both the sweeper and the bucket's lifecycle rules read.

The sweeper (`media_service.sweeper`) applies the rules record by record; the bucket's lifecycle
rules (devstack's bootstrap, CloudFormation) are generated here from the same values, so the two
can never disagree. The bucket rules never delete an original by age: only the sweeper decides
when bytes go, from the records (references, legal holds); the bucket only moves cold objects
to a cheaper class that stays directly readable, and cleans up what the sweeper left behind
(hidden versions of deleted keys, stale delete markers, incomplete multipart uploads).
"""

from __future__ import annotations

import math
from typing import Any, Literal, Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.keys import DERIVATIVES_PREFIX, ORIGINALS_PREFIX

DAY_SECONDS = 86_400
# Classes whose objects are read like STANDARD ones (no restore): safe for objects users fetch.
DIRECTLY_READABLE_CLASSES = frozenset(
    {"STANDARD", "STANDARD_IA", "GLACIER_IR", "INTELLIGENT_TIERING"}
)
# Classes whose objects must be restored before a GET works (hours): `url` answers 409 then.
RESTORE_NEEDED_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})
ColdStorageClass = Literal[
    "STANDARD_IA", "GLACIER_IR", "INTELLIGENT_TIERING", "GLACIER", "DEEP_ARCHIVE"
]
# A deleted key's hidden bytes (Object Lock forces versioning) go after this grace; a version
# under legal hold is never removed by lifecycle.
NONCURRENT_VERSIONS_EXPIRE_DAYS = 7


class LifecycleSettings(BaseSettings):
    """Media lifetime, in seconds so tests can shorten them (the bucket rules round up to days)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    # A media no message has referenced this long after it was created (or after its last
    # reference went) is deleted: record, bytes, derivatives nobody else shares.
    unsent_media_ttl_seconds: int = Field(
        86_400,
        ge=1,
        description=(
            "a media no message references this long after creation (or after its last "
            "reference went) is deleted"
        ),
    )
    # The original's bytes are retired this long after creation (the media becomes `expired`).
    retention_original_seconds: int = Field(
        31_536_000, ge=1, description="the original's bytes are retired (media `expired`, 410)"
    )
    # Derivatives (thumbnails, posters, HLS) are retired this long after creation.
    retention_derivatives_seconds: int = Field(
        63_072_000, ge=1, description="derivatives are retired too (410 for every variant)"
    )
    # Originals move to COLD_STORAGE_CLASS this long after they were written (bucket rule).
    cold_storage_after_seconds: int = Field(
        30 * DAY_SECONDS,
        ge=DAY_SECONDS,
        description="originals move to COLD_STORAGE_CLASS (bucket rule, whole days)",
    )
    # GLACIER_IR: a GET answers in milliseconds like STANDARD, at a fraction of the storage
    # price, for objects read rarely. GLACIER/DEEP_ARCHIVE need a restore first (`url` says so).
    cold_storage_class: ColdStorageClass = Field(
        "GLACIER_IR",
        description="GLACIER/DEEP_ARCHIVE need a restore: `url` answers 409 media_archived",
    )
    # How long a multipart upload session stays open; older incomplete uploads are aborted.
    multipart_ttl_seconds: int = Field(
        24 * 3600, ge=300, description="how long a multipart upload stays open"
    )
    # The sweeper: seconds between passes (`--loop`, `make run`) and records per query page.
    sweep_interval_seconds: float = Field(
        60, gt=0, description="seconds between sweeper passes (`--loop`, `make run`)"
    )
    sweep_batch_size: int = Field(
        100, ge=1, le=1000, description="records per sweep-index page (orphan scan: 10x)"
    )

    @model_validator(mode="after")
    def _derivatives_outlive_originals(self) -> Self:
        if self.retention_derivatives_seconds < self.retention_original_seconds:
            raise ValueError(
                "RETENTION_DERIVATIVES_SECONDS must be at least RETENTION_ORIGINAL_SECONDS"
            )
        return self

    @property
    def cold_needs_restore(self) -> bool:
        return self.cold_storage_class in RESTORE_NEEDED_CLASSES


def days(seconds: int) -> int:
    """Lifecycle rules count whole days: round up, never below one."""
    return max(1, math.ceil(seconds / DAY_SECONDS))


def bucket_lifecycle_rules(settings: LifecycleSettings) -> dict[str, Any]:
    """The bucket's lifecycle configuration (S3 API shape) for these settings.

    No rule expires a current object by age: the sweeper does that from the records.
    """
    noncurrent = {"NoncurrentDays": NONCURRENT_VERSIONS_EXPIRE_DAYS}
    return {
        "Rules": [
            {
                "ID": "originals",
                "Status": "Enabled",
                "Filter": {"Prefix": ORIGINALS_PREFIX},
                "Transitions": [
                    {
                        "Days": days(settings.cold_storage_after_seconds),
                        "StorageClass": settings.cold_storage_class,
                    }
                ],
                "Expiration": {"ExpiredObjectDeleteMarker": True},
                "NoncurrentVersionExpiration": noncurrent,
            },
            {
                # Thumbnails and posters are read at every scroll, and most are smaller than
                # the 128 KiB that IA classes bill at least: they stay STANDARD.
                "ID": "derivatives",
                "Status": "Enabled",
                "Filter": {"Prefix": DERIVATIVES_PREFIX},
                "Expiration": {"ExpiredObjectDeleteMarker": True},
                "NoncurrentVersionExpiration": noncurrent,
            },
            {
                "ID": "abandoned-multipart-uploads",
                "Status": "Enabled",
                "Filter": {"Prefix": ""},
                "AbortIncompleteMultipartUpload": {
                    "DaysAfterInitiation": days(settings.multipart_ttl_seconds)
                },
            },
        ]
    }


def cloudformation_lifecycle_rules(configuration: dict[str, Any]) -> list[dict[str, Any]]:
    """The same rules in `AWS::S3::Bucket` `LifecycleConfiguration.Rules` shape."""
    rules = []
    for rule in configuration["Rules"]:
        cfn: dict[str, Any] = {"Id": rule["ID"], "Status": rule["Status"]}
        if rule["Filter"].get("Prefix"):
            cfn["Prefix"] = rule["Filter"]["Prefix"]
        if "Transitions" in rule:
            cfn["Transitions"] = [
                {"StorageClass": t["StorageClass"], "TransitionInDays": t["Days"]}
                for t in rule["Transitions"]
            ]
        expiration = rule.get("Expiration", {})
        if "Days" in expiration:
            cfn["ExpirationInDays"] = expiration["Days"]
        if expiration.get("ExpiredObjectDeleteMarker"):
            cfn["ExpiredObjectDeleteMarker"] = True
        if "NoncurrentVersionExpiration" in rule:
            cfn["NoncurrentVersionExpiration"] = dict(rule["NoncurrentVersionExpiration"])
        if "AbortIncompleteMultipartUpload" in rule:
            cfn["AbortIncompleteMultipartUpload"] = dict(rule["AbortIncompleteMultipartUpload"])
        rules.append(cfn)
    return rules
