"""deploy/cloudformation/ferry.yaml: cfn-lint finds nothing, and the resources are those the
devstack bootstrap creates locally (tables, queues, bucket settings), so the two never drift."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint
from cfnlint.decode import cfn_yaml

from devstack import bucket as bucket_config
from devstack import queues as queue_config
from devstack.tables import TABLES, TableSpec, create_table_request
from shared.lifecycle import cloudformation_lifecycle_rules
from shared.resources import MAX_RECEIVE_COUNT, ResourceNames

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "cloudformation" / "ferry.yaml"
# Names as the template spells them: `!Sub "${Prefix}-..."`.
NAMES = ResourceNames(prefix="${Prefix}")


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(json.dumps(cfn_yaml.loads(TEMPLATE.read_text())))
    return loaded


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = template["Resources"]
    return result


def _of_type(resources: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r["Properties"] for name, r in resources.items() if r["Type"] == kind}


def _sub(value: Any) -> Any:
    return value["Fn::Sub"] if isinstance(value, dict) and "Fn::Sub" in value else value


def test_cfn_lint_finds_nothing() -> None:
    matches = lint(TEMPLATE.read_text(), config=ManualArgs(regions=["us-east-1", "eu-west-1"]))
    assert not matches, "\n".join(str(match) for match in matches)


# --- tables -------------------------------------------------------------------------------------


def _table_shape(request: dict[str, Any]) -> dict[str, Any]:
    """What must agree between CreateTable and the template, order-insensitive."""
    return {
        "TableName": request["TableName"],
        "BillingMode": request["BillingMode"],
        "KeySchema": request["KeySchema"],
        "AttributeDefinitions": sorted(
            request["AttributeDefinitions"], key=lambda item: item["AttributeName"]
        ),
        "GlobalSecondaryIndexes": sorted(
            (
                {
                    "IndexName": index["IndexName"],
                    "KeySchema": index["KeySchema"],
                    "Projection": index["Projection"],
                }
                for index in request.get("GlobalSecondaryIndexes", [])
            ),
            key=lambda index: index["IndexName"],
        ),
    }


def test_tables_match_devstack_tables_exactly(resources: dict[str, Any]) -> None:
    tables = {
        _sub(props["TableName"]): props
        for props in _of_type(resources, "AWS::DynamoDB::Table").values()
    }
    expected: dict[str, TableSpec] = {spec.name(NAMES): spec for spec in TABLES}
    assert set(tables) == set(expected)
    for name, spec in expected.items():
        props = tables[name]
        template_request = {**props, "TableName": name}
        assert _table_shape(template_request) == _table_shape(create_table_request(spec, NAMES)), (
            name
        )
        ttl = props.get("TimeToLiveSpecification")
        if spec.ttl_attribute:
            assert ttl == {"AttributeName": spec.ttl_attribute, "Enabled": True}, name
        else:
            assert ttl is None, name


# --- queues -------------------------------------------------------------------------------------


def test_queues_have_dead_letter_queues_as_devstack_makes_them(resources: dict[str, Any]) -> None:
    queues = _of_type(resources, "AWS::SQS::Queue")
    logical_of = {_sub(props["QueueName"]): name for name, props in queues.items()}
    pairs = NAMES.queues()
    assert set(logical_of) == {name for pair in pairs for name in pair}
    dlq_attributes = queue_config.dead_letter_queue_attributes()
    for queue, dead_letter_queue in pairs:
        props = queues[logical_of[queue]]
        assert props["RedrivePolicy"] == {
            "deadLetterTargetArn": {"Fn::GetAtt": [logical_of[dead_letter_queue], "Arn"]},
            "maxReceiveCount": MAX_RECEIVE_COUNT,
        }
        assert props["VisibilityTimeout"] == queue_config.VISIBILITY_TIMEOUT_SECONDS
        dlq = queues[logical_of[dead_letter_queue]]
        assert str(dlq["MessageRetentionPeriod"]) == dlq_attributes["MessageRetentionPeriod"]
        assert "RedrivePolicy" not in dlq


def test_only_the_bucket_may_send_to_the_uploads_queue(resources: dict[str, Any]) -> None:
    (policy,) = _of_type(resources, "AWS::SQS::QueuePolicy").values()
    assert policy["Queues"] == [{"Ref": "UploadsQueue"}]
    local = bucket_config.s3_events_queue_policy("arn:aws:sqs:us-east-1:123:q", "b")
    (statement,) = policy["PolicyDocument"]["Statement"]
    (expected,) = local["Statement"]
    for key in ("Effect", "Principal", "Action"):
        assert statement[key] == expected[key]
    assert set(statement["Condition"]) == set(expected["Condition"])
    source = _sub(statement["Condition"]["ArnEquals"]["aws:SourceArn"])
    bucket_name = _sub(resources["MediaBucket"]["Properties"]["BucketName"])
    assert source == "arn:${AWS::Partition}:s3:::" + bucket_name


# --- the bucket ---------------------------------------------------------------------------------


def test_bucket_locks_versions_and_blocks_public_access(resources: dict[str, Any]) -> None:
    bucket = resources["MediaBucket"]
    props = bucket["Properties"]
    assert bucket["DeletionPolicy"] == "Retain"
    assert props["ObjectLockEnabled"] is True
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert all(props["PublicAccessBlockConfiguration"].values())


def test_bucket_lifecycle_is_the_generated_one(resources: dict[str, Any]) -> None:
    """CloudFormation's rules equal the ones generated from the sweeper's default settings."""
    rules = resources["MediaBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    generated = cloudformation_lifecycle_rules(bucket_config.lifecycle_configuration())
    assert rules == generated
    assert not any("ExpirationInDays" in rule for rule in rules)  # no delete by age


def test_bucket_cors_and_notification_match_devstack(resources: dict[str, Any]) -> None:
    props = resources["MediaBucket"]["Properties"]
    (rule,) = props["CorsConfiguration"]["CorsRules"]
    (expected,) = bucket_config.cors_configuration(["*"])["CORSRules"]
    assert rule["Id"] == expected["ID"]
    assert rule["AllowedOrigins"] == {"Ref": "CorsAllowedOrigins"}
    assert rule["AllowedMethods"] == expected["AllowedMethods"]
    assert rule["AllowedHeaders"] == expected["AllowedHeaders"]
    assert rule["ExposedHeaders"] == expected["ExposeHeaders"]
    assert rule["MaxAge"] == expected["MaxAgeSeconds"]

    (queue,) = props["NotificationConfiguration"]["QueueConfigurations"]
    (local,) = bucket_config.notification_configuration("arn")["QueueConfigurations"]
    assert [queue["Event"]] == local["Events"]
    assert queue["Filter"]["S3Key"]["Rules"] == local["Filter"]["Key"]["FilterRules"]
    assert queue["Queue"] == {"Fn::GetAtt": ["UploadsQueue", "Arn"]}
    assert "UploadsQueuePolicy" in resources["MediaBucket"]["DependsOn"]


def test_cloudfront_reads_media_through_origin_access_control_only(
    resources: dict[str, Any],
) -> None:
    (policy,) = _of_type(resources, "AWS::S3::BucketPolicy").values()
    allows = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    (allow,) = allows
    assert allow["Principal"] == {"Service": "cloudfront.amazonaws.com"}
    assert allow["Action"] == "s3:GetObject"
    assert sorted(_sub(resource) for resource in allow["Resource"]) == [
        "${MediaBucket.Arn}/d/*",
        "${MediaBucket.Arn}/o/*",
    ]
    source = _sub(allow["Condition"]["StringEquals"]["AWS:SourceArn"])
    assert source.endswith(":distribution/${CdnDistribution}")

    config = resources["CdnDistribution"]["Properties"]["DistributionConfig"]
    (origin,) = config["Origins"]
    assert origin["DomainName"] == {"Fn::GetAtt": ["MediaBucket", "RegionalDomainName"]}
    assert origin["OriginAccessControlId"] == {"Fn::GetAtt": ["CdnOriginAccessControl", "Id"]}
    behaviour = config["DefaultCacheBehavior"]
    assert "CacheBehaviors" not in config  # every path needs a signature
    assert behaviour["TrustedKeyGroups"] == [{"Ref": "CdnKeyGroup"}]
    assert behaviour["ViewerProtocolPolicy"] == "https-only"
    assert behaviour["AllowedMethods"] == ["GET", "HEAD"]
    key_group = resources["CdnKeyGroup"]["Properties"]["KeyGroupConfig"]
    assert key_group["Items"] == [{"Ref": "CdnSigningPublicKey"}]
    public_key = resources["CdnSigningPublicKey"]["Properties"]["PublicKeyConfig"]
    assert public_key["EncodedKey"] == {"Ref": "CdnPublicKey"}


def test_outputs_give_the_media_service_its_cdn_settings(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert outputs["CdnKeyPairId"]["Value"] == {"Ref": "CdnSigningPublicKey"}
    assert _sub(outputs["CdnBaseUrl"]["Value"]).startswith("https://")
    assert outputs["BucketName"]["Value"] == {"Ref": "MediaBucket"}
