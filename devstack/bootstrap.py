"""Create the fleet's AWS resources, idempotently: run it twice and nothing changes the second time.

`python -m devstack.bootstrap` (or `await bootstrap(settings)`) converges the bucket, queues,
the bucket's event notification and the tables named by `settings.resources`. Each piece is read
first and written only when it differs, so a re-run neither fails nor disturbs anything (an
S3 notification write, for one, sends a test event to the queue). Endpoints and credentials come
from botocore's own configuration (`AWS_ENDPOINT_URL`, ...), so the same code targets moto,
LocalStack or AWS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import ClientError

from devstack import bucket as bucket_config
from devstack import queues as queue_config
from devstack.tables import TABLES, TableSpec, create_table_request
from shared.aws import AwsClients, error_code, open_aws_clients
from shared.lifecycle import LifecycleSettings
from shared.logging import configure_logging
from shared.resources import ResourceNames
from shared.settings import CommonSettings

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient
    from types_aiobotocore_s3.client import S3Client
    from types_aiobotocore_s3.literals import FilterRuleNameType
    from types_aiobotocore_sqs.client import SQSClient
    from types_aiobotocore_sqs.literals import QueueAttributeNameType

log = logging.getLogger("ferry.devstack.bootstrap")

TABLE_ACTIVE_TIMEOUT_SECONDS = 300
DEVELOPMENT_CORS_ORIGINS = ("*",)


async def bootstrap(
    settings: CommonSettings, *, cors_origins: Sequence[str] = DEVELOPMENT_CORS_ORIGINS
) -> None:
    """Converge every AWS resource the fleet needs (see `shared.resources.ResourceNames`)."""
    resources = settings.resources
    async with AsyncExitStack() as stack:
        aws = await open_aws_clients(stack, settings, "s3", "sqs", "dynamodb")
        await _ensure_bucket(aws.s3, resources.bucket, settings.aws_region)
        await _ensure_bucket_setting(
            aws.s3,
            resources.bucket,
            "CORS",
            bucket_config.cors_configuration(cors_origins),
            read="get_bucket_cors",
            write="put_bucket_cors",
            argument="CORSConfiguration",
            absent="NoSuchCORSConfiguration",
        )
        await _ensure_bucket_setting(
            aws.s3,
            resources.bucket,
            "lifecycle",
            # Settings read the environment and `.env` (a file): off the event loop.
            bucket_config.lifecycle_configuration(await asyncio.to_thread(LifecycleSettings)),
            read="get_bucket_lifecycle_configuration",
            write="put_bucket_lifecycle_configuration",
            argument="LifecycleConfiguration",
            absent="NoSuchLifecycleConfiguration",
        )
        uploads_queue_arn = await _ensure_queues(aws, resources)
        await _ensure_notification(aws.s3, resources.bucket, uploads_queue_arn)
        async with asyncio.TaskGroup() as group:
            for spec in TABLES:
                group.create_task(_ensure_table(aws.dynamodb, spec, resources))


# --- comparing what is there with what should be ---------------------------------------------


def _covers(actual: Any, wanted: Any) -> bool:
    """Whether `actual` holds everything in `wanted` (AWS adds defaults we never asked for).

    Dicts may carry extra keys; lists must match item by item; numbers compare by value,
    whether AWS returns them as numbers or as strings.
    """
    if isinstance(wanted, dict):
        return isinstance(actual, dict) and all(
            key in actual and _covers(actual[key], value) for key, value in wanted.items()
        )
    if isinstance(wanted, list | tuple):
        return (
            isinstance(actual, list | tuple)
            and len(actual) == len(wanted)
            and all(_covers(a, w) for a, w in zip(actual, wanted, strict=True))
        )
    if isinstance(wanted, bool) or isinstance(actual, bool):
        return bool(actual == wanted)
    if isinstance(wanted, int):
        return str(actual) == str(wanted)
    return bool(actual == wanted)


def _same_queue_attribute(name: str, actual: str | None, wanted: str) -> bool:
    if actual is None:
        return False
    if name in ("RedrivePolicy", "Policy"):  # JSON documents: compare content, not spelling
        return _covers(json.loads(actual), json.loads(wanted))
    return actual == wanted


# --- the bucket --------------------------------------------------------------------------------


async def _ensure_bucket(s3: S3Client, name: str, region: str) -> None:
    try:
        await s3.head_bucket(Bucket=name)
    except ClientError as error:
        if error_code(error) not in ("404", "NoSuchBucket", "NotFound"):
            raise RuntimeError(f"bucket {name} exists but is not ours to use: {error}") from error
        request: dict[str, Any] = {"Bucket": name, "ObjectLockEnabledForBucket": True}
        if region != "us-east-1":  # us-east-1 refuses its own name as a location constraint
            request["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            await s3.create_bucket(**request)
            log.info("bucket %s created (object lock enabled)", name)
        except ClientError as create_error:
            # Someone (a concurrent bootstrap) made it between our look and our create.
            if error_code(create_error) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
            log.info("bucket %s already present", name)
    else:
        log.info("bucket %s already present", name)
    # Object Lock can only be switched on at creation (or with versioning, by hand): a bucket
    # made elsewhere without it is used as is, but legal holds will fail on it.
    try:
        lock = await s3.get_object_lock_configuration(Bucket=name)
        enabled = lock.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"
    except ClientError as error:
        if error_code(error) != "ObjectLockConfigurationNotFoundError":
            raise
        enabled = False
    if not enabled:
        log.warning("bucket %s has no object lock: legal holds will be refused", name)


async def _ensure_bucket_setting(
    s3: S3Client,
    name: str,
    what: str,
    wanted: dict[str, Any],
    *,
    read: str,
    write: str,
    argument: str,
    absent: str,
) -> None:
    """Read one bucket sub-resource (CORS, lifecycle) and write it only if it differs."""
    try:
        current = await getattr(s3, read)(Bucket=name)
    except ClientError as error:
        if error_code(error) != absent:
            raise
        current = {}
    if _covers(current, wanted):
        log.info("bucket %s %s already present", name, what)
        return
    await getattr(s3, write)(Bucket=name, **{argument: wanted})
    log.info("bucket %s %s %s", name, what, "updated" if current else "created")


async def _ensure_notification(s3: S3Client, name: str, queue_arn: str) -> None:
    wanted = bucket_config.notification_configuration(queue_arn)
    current = await s3.get_bucket_notification_configuration(Bucket=name)
    # The API documents "prefix", but S3 may answer "Prefix": compare case-blind.
    for queue in current.get("QueueConfigurations", []):
        for rule in queue.get("Filter", {}).get("Key", {}).get("FilterRules", []):
            # Lowered, S3's "Prefix" is the stubs' "prefix": the cast only forgets the case.
            rule["Name"] = cast("FilterRuleNameType", str(rule.get("Name", "")).lower())
    if _covers(current, wanted):
        log.info("bucket %s notification to the uploads queue already present", name)
        return
    await s3.put_bucket_notification_configuration(Bucket=name, NotificationConfiguration=wanted)
    log.info("bucket %s notification (o/ → uploads queue) created", name)


# --- queues ------------------------------------------------------------------------------------


async def _ensure_queues(aws: AwsClients, resources: ResourceNames) -> str:
    """Each queue with its dead-letter queue; returns the uploads queue's ARN."""
    uploads_arn = ""
    for queue, dead_letter_queue in resources.queues():
        dlq_arn = await _ensure_queue(
            aws.sqs, dead_letter_queue, queue_config.dead_letter_queue_attributes()
        )
        # Only the uploads queue hears from S3; no other queue grants S3 anything.
        policy_bucket = resources.bucket if queue == resources.uploads_queue else None
        arn = await _ensure_queue(
            aws.sqs, queue, queue_config.queue_attributes(dlq_arn), s3_bucket=policy_bucket
        )
        if queue == resources.uploads_queue:
            uploads_arn = arn
    if not uploads_arn:
        raise RuntimeError("resources.queues() does not include the uploads queue")
    return uploads_arn


async def _ensure_queue(
    sqs: SQSClient,
    name: str,
    attributes: Mapping[QueueAttributeNameType, str],
    *,
    s3_bucket: str | None = None,
) -> str:
    """Create a queue or bring its attributes to `attributes`; returns its ARN.

    With `s3_bucket`, the queue also gets a policy letting that bucket send it events; the
    policy names the queue's own ARN, so it is written once the queue exists.
    """
    try:
        url = (await sqs.get_queue_url(QueueName=name))["QueueUrl"]
        created = False
    except ClientError as error:
        if error_code(error) not in (
            "AWS.SimpleQueueService.NonExistentQueue",
            "QueueDoesNotExist",
        ):
            raise
        url = (await sqs.create_queue(QueueName=name, Attributes=attributes))["QueueUrl"]
        created = True
    current = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"]))["Attributes"]
    arn = str(current["QueueArn"])
    wanted = dict(attributes)
    if s3_bucket is not None:
        wanted["Policy"] = json.dumps(bucket_config.s3_events_queue_policy(arn, s3_bucket))
    stale = {
        key: value
        for key, value in wanted.items()
        if not _same_queue_attribute(key, current.get(key), value)
    }
    if stale:
        await sqs.set_queue_attributes(QueueUrl=url, Attributes=stale)
    if created:
        log.info("queue %s created", name)
    elif stale:
        log.info("queue %s already present; updated %s", name, ", ".join(sorted(stale)))
    else:
        log.info("queue %s already present", name)
    return arn


# --- tables ------------------------------------------------------------------------------------


async def _ensure_table(
    dynamodb: DynamoDBClient, spec: TableSpec, resources: ResourceNames
) -> None:
    name = spec.name(resources)
    try:
        described = (await dynamodb.describe_table(TableName=name))["Table"]
    except ClientError as error:
        if error_code(error) != "ResourceNotFoundException":
            raise
        await dynamodb.create_table(**create_table_request(spec, resources))
        waiter = dynamodb.get_waiter("table_exists")
        await waiter.wait(
            TableName=name,
            WaiterConfig={"Delay": 1, "MaxAttempts": TABLE_ACTIVE_TIMEOUT_SECONDS},
        )
        log.info("table %s created", name)
    else:
        present = {index["IndexName"] for index in described.get("GlobalSecondaryIndexes", [])}
        missing = [index.name for index in spec.indexes if index.name not in present]
        if missing:
            # Adding an index to a live table is a migration, not a bootstrap's business.
            log.warning("table %s already present but lacks indexes %s", name, missing)
        else:
            log.info("table %s already present", name)
    if spec.ttl_attribute:
        await _ensure_ttl(dynamodb, name, spec.ttl_attribute)


async def _ensure_ttl(dynamodb: DynamoDBClient, table: str, attribute: str) -> None:
    described = (await dynamodb.describe_time_to_live(TableName=table))["TimeToLiveDescription"]
    status = described.get("TimeToLiveStatus")
    if status in ("ENABLED", "ENABLING") and described.get("AttributeName") == attribute:
        log.info("table %s TTL on %s already present", table, attribute)
        return
    try:
        await dynamodb.update_time_to_live(
            TableName=table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": attribute},
        )
    except ClientError as error:
        # A concurrent bootstrap got there first.
        if error_code(error) != "ValidationException" or "already" not in str(error).lower():
            raise
        log.info("table %s TTL on %s already present", table, attribute)
        return
    log.info("table %s TTL on %s created", table, attribute)


# --- command line ------------------------------------------------------------------------------


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devstack.bootstrap", description=__doc__)
    parser.add_argument(
        "--cors-origin",
        action="append",
        dest="cors_origins",
        metavar="ORIGIN",
        help="an origin browsers may upload from (repeatable; default: any)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    settings = CommonSettings()
    configure_logging("bootstrap", settings.log_level, json_lines=settings.log_json)
    origins = tuple(args.cors_origins or DEVELOPMENT_CORS_ORIGINS)
    asyncio.run(bootstrap(settings, cors_origins=origins))
    return 0


if __name__ == "__main__":
    sys.exit(main())
