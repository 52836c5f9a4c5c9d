"""Queue attributes, as data: every queue has a dead-letter queue, and how long each keeps what."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from shared.resources import MAX_RECEIVE_COUNT

if TYPE_CHECKING:
    from types_aiobotocore_sqs.literals import QueueAttributeNameType

# A dead letter waits two weeks (SQS's maximum) for someone to look at it.
DLQ_RETENTION_SECONDS = 14 * 24 * 3600
# Long enough for one message's work; long jobs extend it while they run.
VISIBILITY_TIMEOUT_SECONDS = 60


def dead_letter_queue_attributes() -> dict[QueueAttributeNameType, str]:
    return {"MessageRetentionPeriod": str(DLQ_RETENTION_SECONDS)}


def queue_attributes(dead_letter_queue_arn: str) -> dict[QueueAttributeNameType, str]:
    redrive = {"deadLetterTargetArn": dead_letter_queue_arn, "maxReceiveCount": MAX_RECEIVE_COUNT}
    return {
        "VisibilityTimeout": str(VISIBILITY_TIMEOUT_SECONDS),
        "RedrivePolicy": json.dumps(redrive),
    }
