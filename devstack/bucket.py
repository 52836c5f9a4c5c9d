"""The media bucket's configuration, as data: CORS, lifecycle, event notifications.

Pure functions of names and ARNs, so the bootstrap can compare what is there with what should be
and change only what differs (a re-run changes nothing, and sends no second S3 test event).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from shared.keys import ORIGINALS_PREFIX
from shared.lifecycle import LifecycleSettings, bucket_lifecycle_rules

if TYPE_CHECKING:
    from types_aiobotocore_s3.literals import EventType
    from types_aiobotocore_s3.type_defs import NotificationConfigurationTypeDef

NOTIFICATION_ID = "ferry-originals-to-uploads"
UPLOAD_EVENTS: tuple[EventType, ...] = ("s3:ObjectCreated:*",)

# The browser PUTs to a signed URL and must read back what storage says it stored.
# POST: form uploads (Uppy's single uploads, docs/uppy.md).
CORS_METHODS = ("PUT", "POST", "GET", "HEAD")
CORS_EXPOSED_HEADERS = ("ETag", "x-amz-checksum-sha256", "x-amz-version-id")
CORS_MAX_AGE_SECONDS = 3600


def cors_configuration(origins: Sequence[str]) -> dict[str, Any]:
    return {
        "CORSRules": [
            {
                "ID": "ferry-browser-uploads",
                "AllowedOrigins": list(origins),
                "AllowedMethods": list(CORS_METHODS),
                "AllowedHeaders": ["*"],
                "ExposeHeaders": list(CORS_EXPOSED_HEADERS),
                "MaxAgeSeconds": CORS_MAX_AGE_SECONDS,
            }
        ]
    }


def lifecycle_configuration(settings: LifecycleSettings | None = None) -> dict[str, Any]:
    """Generated from the sweeper's own settings (`shared.lifecycle`): one source for both."""
    return bucket_lifecycle_rules(settings or LifecycleSettings())


def notification_configuration(uploads_queue_arn: str) -> NotificationConfigurationTypeDef:
    """Every new original (`o/...`) is announced on the uploads queue; derivatives are not."""
    return {
        "QueueConfigurations": [
            {
                "Id": NOTIFICATION_ID,
                "QueueArn": uploads_queue_arn,
                "Events": list(UPLOAD_EVENTS),
                "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": ORIGINALS_PREFIX}]}},
            }
        ]
    }


def bucket_arn(bucket: str, *, partition: str = "aws") -> str:
    return f"arn:{partition}:s3:::{bucket}"


def s3_events_queue_policy(queue_arn: str, bucket: str) -> dict[str, Any]:
    """Lets S3 send this bucket's events to the queue: needed on AWS, harmless on emulators.

    The source account is pinned as well as the bucket: bucket names are global, so a deleted
    and re-created bucket of another account must not be able to write to our queue.
    """
    _, partition, _, _, account, _ = queue_arn.split(":", 5)
    return {
        "Version": "2012-10-17",
        "Id": "ferry-s3-events",
        "Statement": [
            {
                "Sid": "BucketNotifications",
                "Effect": "Allow",
                "Principal": {"Service": "s3.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {
                    "ArnEquals": {"aws:SourceArn": bucket_arn(bucket, partition=partition)},
                    "StringEquals": {"aws:SourceAccount": account},
                },
            }
        ],
    }
