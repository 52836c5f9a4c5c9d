"""The task roles in deploy/cloudformation/ferry.yaml are least-privilege: the facts that matter."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import cfn_yaml

from devstack.tables import TABLES

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "cloudformation" / "ferry.yaml"

TASK_ROLES = {
    "gateway": "GatewayTaskRole",
    "media_service": "MediaServiceTaskRole",
    "message_service": "MessageServiceTaskRole",
    "transcode_worker": "TranscodeWorkerTaskRole",
}
# Not services: the sweeper (an ECS scheduled task of the Media Service's image) and what starts it.
SWEEPER_ROLE = "MediaSweeperTaskRole"
SCHEDULER_ROLE = "SweeperSchedulerRole"
# Listing the bucket: the sweeper (whole bucket: orphans, multipart uploads); the Media Service
# only under `d/` (one media's derivatives, for a delete or a legal hold), by condition.
LISTING = {"s3:listbucketversions", "s3:listbucketmultipartuploads"}
# Actions AWS authorizes on "*" only; each use carries a comment in the template.
UNSCOPABLE = {"ecr:GetAuthorizationToken"}
ORIGINALS = "${MediaBucket.Arn}/o/*"
DERIVATIVES = "${MediaBucket.Arn}/d/*"


def _logical(resource: str) -> str:
    return "".join(part.capitalize() for part in resource.split("_"))


TABLE_OF = {spec.resource: _logical(spec.resource) for spec in TABLES}


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    loaded = json.loads(json.dumps(cfn_yaml.loads(TEMPLATE.read_text())))
    result: dict[str, Any] = loaded["Resources"]
    return result


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _name(resource: Any) -> str:
    """A resource as text: `Table.Arn`, `${Bucket.Arn}/o/*`, or a literal ARN / "*"."""
    if isinstance(resource, str):
        return resource
    if "Fn::GetAtt" in resource:
        return ".".join(resource["Fn::GetAtt"])
    if "Fn::Sub" in resource:
        return str(resource["Fn::Sub"])
    if "Ref" in resource:
        return str(resource["Ref"])
    raise AssertionError(f"unexpected resource {resource}")


def _statements(resources: dict[str, Any], role: str) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = []
    for policy in resources[role]["Properties"]["Policies"]:
        statements += policy["PolicyDocument"]["Statement"]
    return statements


def _grants(resources: dict[str, Any], role: str) -> dict[str, set[str]]:
    """Action → every resource an Allow statement of the role grants it on."""
    grants: dict[str, set[str]] = defaultdict(set)
    for statement in _statements(resources, role):
        assert statement["Effect"] == "Allow", "task roles allow; the bucket policy denies"
        for action in _as_list(statement["Action"]):
            grants[action] |= {_name(resource) for resource in _as_list(statement["Resource"])}
    return grants


def _roles(resources: dict[str, Any]) -> list[str]:
    return [name for name, r in resources.items() if r["Type"] == "AWS::IAM::Role"]


def test_no_wildcard_actions_no_list_bucket_and_star_only_where_unavoidable(
    resources: dict[str, Any],
) -> None:
    expected = set(TASK_ROLES.values()) | {"TaskExecutionRole", SWEEPER_ROLE, SCHEDULER_ROLE}
    assert expected == set(_roles(resources))
    for role in _roles(resources):
        for action, granted in _grants(resources, role).items():
            assert "*" not in action, f"{role}: wildcard action {action}"
            assert action.lower() != "s3:listbucket", role
            if action.lower() in LISTING:
                assert role in (SWEEPER_ROLE, TASK_ROLES["media_service"]), role
            if "*" in granted:
                assert action in UNSCOPABLE, f'{role}: {action} on "*"'
            for resource in granted - {"*"}:  # a wildcard only scopes a key prefix
                revisions = resource.endswith("-media-sweeper:*")  # every revision of one family
                assert resource.endswith("/*") or revisions or "*" not in resource, (
                    f"{role}: {resource}"
                )
    for name, resource in resources.items():  # not in any bucket or queue policy either
        text = json.dumps(resource.get("Properties", {})).lower()
        assert '"s3:listbucket"' not in text, name
        if name not in (SWEEPER_ROLE, TASK_ROLES["media_service"]):
            assert "s3:listbucket" not in text, name
    listing = [
        statement
        for statement in _statements(resources, TASK_ROLES["media_service"])
        if "s3:ListBucketVersions" in _as_list(statement["Action"])
    ]
    (only_derivatives,) = listing
    assert only_derivatives["Condition"] == {"StringLike": {"s3:prefix": "d/*"}}


def test_task_roles_trust_only_ecs_tasks_of_this_account(resources: dict[str, Any]) -> None:
    (scheduler,) = resources[SCHEDULER_ROLE]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert scheduler["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert "aws:SourceAccount" in scheduler["Condition"]["StringEquals"]
    for role in set(_roles(resources)) - {SCHEDULER_ROLE}:
        (statement,) = resources[role]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert statement["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
        assert statement["Action"] == "sts:AssumeRole"
        assert "aws:SourceAccount" in statement["Condition"]["StringEquals"]


def test_media_service_signs_reads_and_holds_but_lists_only_derivatives(
    resources: dict[str, Any],
) -> None:
    grants = _grants(resources, TASK_ROLES["media_service"])
    s3 = {action: granted for action, granted in grants.items() if action.startswith("s3:")}
    assert s3 == {
        # A presigned PUT acts with the signer's permissions: the role must hold PutObject.
        "s3:PutObject": {ORIGINALS},
        "s3:ListMultipartUploadParts": {ORIGINALS},
        "s3:AbortMultipartUpload": {ORIGINALS},
        "s3:GetObject": {ORIGINALS, DERIVATIVES},
        "s3:GetObjectVersion": {ORIGINALS},
        "s3:DeleteObject": {ORIGINALS},
        # Deleting a media takes its derivatives nobody else shares; legal holds lock both.
        "s3:DeleteObjectVersion": {ORIGINALS, DERIVATIVES},
        "s3:PutObjectLegalHold": {ORIGINALS, DERIVATIVES},
        "s3:GetObjectLegalHold": {ORIGINALS, DERIVATIVES},
        "s3:ListBucketVersions": {"MediaBucket.Arn"},  # under d/ only (condition above)
        # /readyz: a bucket-level read that lists nothing.
        "s3:GetBucketVersioning": {"MediaBucket.Arn"},
    }
    # Quarantine and restore announce the media's state as the worker does.
    sqs = {action: granted for action, granted in grants.items() if action.startswith("sqs:")}
    assert sqs == {
        "sqs:SendMessage": {"MediaEventsQueue.Arn"},
        "sqs:GetQueueUrl": {"MediaEventsQueue.Arn"},
    }


def test_worker_reads_originals_and_writes_derivatives_only(resources: dict[str, Any]) -> None:
    grants = _grants(resources, TASK_ROLES["transcode_worker"])
    s3 = {action: granted for action, granted in grants.items() if action.startswith("s3:")}
    assert s3 == {
        "s3:GetObject": {ORIGINALS},
        "s3:GetObjectVersion": {ORIGINALS},
        "s3:DeleteObjectVersion": {ORIGINALS},  # rejected bytes, by version only
        "s3:PutObject": {DERIVATIVES},
    }
    # Its three lanes and their dead-letter queues (whose letters it settles).
    consumed = {
        f"{queue}{kind}.Arn"
        for queue in ("Uploads", "Derive", "DeriveVideo")
        for kind in ("Queue", "DeadLetterQueue")
    }
    assert grants["sqs:ReceiveMessage"] == consumed
    assert grants["sqs:DeleteMessage"] == consumed
    assert grants["sqs:ChangeMessageVisibility"] == consumed
    # Media events; hand-offs to the derivation lanes; the reconciler's S3 events sent again.
    assert grants["sqs:SendMessage"] == {
        "MediaEventsQueue.Arn",
        "UploadsQueue.Arn",
        "DeriveQueue.Arn",
        "DeriveVideoQueue.Arn",
    }


def test_message_service_consumes_media_events_only(resources: dict[str, Any]) -> None:
    grants = _grants(resources, TASK_ROLES["message_service"])
    assert not any(action.startswith("s3:") for action in grants)
    sqs = {action: granted for action, granted in grants.items() if action.startswith("sqs:")}
    assert set(sqs) == {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueUrl",
        "sqs:GetQueueAttributes",
    }
    assert all(granted == {"MediaEventsQueue.Arn"} for granted in sqs.values())


def test_gateway_touches_its_registry_and_nothing_else(resources: dict[str, Any]) -> None:
    grants = _grants(resources, TASK_ROLES["gateway"])
    assert all(action.startswith("dynamodb:") for action in grants)
    assert all(granted == {"ConnectionsTable.Arn"} for granted in grants.values())


def _tables_written(grants: dict[str, set[str]]) -> set[str]:
    writes = ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem")
    return {
        resource.split(".")[0].removeprefix("${")
        for action in writes
        for resource in grants.get(action, set())
    }


def _tables_read(grants: dict[str, set[str]]) -> set[str]:
    return {
        resource.split(".")[0].removeprefix("${")
        for action, granted in grants.items()
        if action.startswith("dynamodb:")
        for resource in granted
    }


def test_each_service_writes_only_the_tables_it_owns(resources: dict[str, Any]) -> None:
    owned: dict[str, set[str]] = defaultdict(set)
    for spec in TABLES:
        owned[spec.owner].add(TABLE_OF[spec.resource])
    # The worker writes media and blob rows as the Media Service's back end, and the owner's
    # usage counters (in the rate-limits table) in the same transactions.
    allowed_writes = {
        **owned,
        "transcode_worker": {
            TABLE_OF["media_table"],
            TABLE_OF["blobs_table"],
            TABLE_OF["rate_limits_table"],
        },
    }
    # The Message Service reads the connection registry to push to gateways.
    allowed_reads = {
        service: set(tables) | ({"ConnectionsTable"} if service == "message_service" else set())
        for service, tables in allowed_writes.items()
    }
    for service, role in TASK_ROLES.items():
        grants = _grants(resources, role)
        assert _tables_written(grants) == allowed_writes[service], service
        assert _tables_read(grants) == allowed_reads[service], service
        for action, granted in grants.items():
            if action.startswith("dynamodb:"):
                assert all(g.endswith(".Arn") or g.endswith(".Arn}/index/*") for g in granted)


def test_execution_role_reads_only_the_fleets_parameters(resources: dict[str, Any]) -> None:
    grants = _grants(resources, "TaskExecutionRole")
    assert set(grants) == {
        "ecr:GetAuthorizationToken",
        "ecr:BatchCheckLayerAvailability",
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "ssm:GetParameters",
    }
    (parameters,) = grants["ssm:GetParameters"]
    assert parameters.endswith(":parameter/${Prefix}/*")
    assert all(repository.endswith("Repository.Arn") for repository in grants["ecr:BatchGetImage"])


def test_the_sweeper_scans_deletes_and_holds_but_writes_no_object(
    resources: dict[str, Any],
) -> None:
    grants = _grants(resources, SWEEPER_ROLE)
    s3 = {action: granted for action, granted in grants.items() if action.startswith("s3:")}
    assert s3 == {
        "s3:ListBucketVersions": {"MediaBucket.Arn"},
        "s3:ListBucketMultipartUploads": {"MediaBucket.Arn"},
        "s3:DeleteObjectVersion": {ORIGINALS, DERIVATIVES},
        "s3:AbortMultipartUpload": {ORIGINALS, DERIVATIVES},
        "s3:PutObjectLegalHold": {ORIGINALS, DERIVATIVES},
        "s3:GetObjectLegalHold": {ORIGINALS, DERIVATIVES},
    }
    assert grants["sqs:SendMessage"] == {"MediaEventsQueue.Arn"}
    scheduler = _grants(resources, SCHEDULER_ROLE)
    assert set(scheduler) == {"ecs:RunTask", "iam:PassRole"}
    (task,) = scheduler["ecs:RunTask"]
    assert task.endswith(":task-definition/${Prefix}-media-sweeper:*")
