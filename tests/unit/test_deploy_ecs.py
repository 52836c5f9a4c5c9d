"""deploy/ecs/*.json, checked offline against botocore's own RegisterTaskDefinition model, the
services' settings (in production mode) and the CloudFormation template's names."""

from __future__ import annotations

import json
import re
from pathlib import Path
from string import Template
from typing import Any

import pytest
from botocore.session import get_session
from botocore.validate import ParamValidator
from cfnlint.decode import cfn_yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic_settings import BaseSettings

from gateway.settings import Settings as GatewaySettings
from media_service.settings import Settings as MediaSettings
from message_service.settings import Settings as MessageSettings
from transcode_worker.settings import Settings as WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
ECS = ROOT / "deploy" / "ecs"
DOCS = ROOT / "docs" / "deploy.md"

# task definition file → (package in the image, settings class)
SERVICES: dict[str, tuple[str, type[BaseSettings]]] = {
    "gateway": ("gateway", GatewaySettings),
    "media-service": ("media_service", MediaSettings),
    "message-service": ("message_service", MessageSettings),
    "transcode-worker": ("transcode_worker", WorkerSettings),
}
# The placeholders docs/deploy.md documents, with sample values.
PLACEHOLDERS = {
    "ACCOUNT_ID": "123456789012",
    "REGION": "eu-west-1",
    "IMAGE_TAG": "3f9c2ab",
    "RESOURCE_PREFIX": "ferry",
    "CDN_BASE_URL": "https://d111111abcdef8.cloudfront.net",
    "CDN_KEY_PAIR_ID": "K2JCJMDEHXQW5F",
}
# Fargate's CPU units → the memory sizes (MiB) each allows.
FARGATE_SIZES: dict[int, range] = {
    256: range(512, 2049, 512),
    512: range(1024, 4097, 1024),
    1024: range(2048, 8193, 1024),
    2048: range(4096, 16385, 1024),
    4096: range(8192, 30721, 1024),
}
SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|PRIVATE_KEY|CREDENTIAL", re.IGNORECASE)
SHARED_SECRETS = {"AUTH_JWT_SECRET", "INTERNAL_TOKEN"}


def _raw(name: str) -> str:
    return (ECS / f"{name}.json").read_text()


def _rendered(name: str) -> dict[str, Any]:
    """As after `envsubst`: every placeholder must be a documented one (KeyError otherwise)."""
    result: dict[str, Any] = json.loads(Template(_raw(name)).substitute(PLACEHOLDERS))
    return result


def _container(task: dict[str, Any]) -> dict[str, Any]:
    (container,) = task["containerDefinitions"]
    assert isinstance(container, dict)
    return container


def _environment(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container["environment"]}


# Scheduled tasks (no port, no health check: they run and exit) → (package, settings class).
SCHEDULED: dict[str, tuple[str, type[BaseSettings]]] = {
    "media-sweeper": ("media_service", MediaSettings),
}


def test_there_is_one_task_definition_per_service() -> None:
    assert {path.stem for path in ECS.glob("*.json")} == set(SERVICES) | set(SCHEDULED)


def test_the_sweeper_runs_the_media_service_image_once_per_schedule() -> None:
    shape = get_session().get_service_model("ecs").operation_model("RegisterTaskDefinition")
    assert shape.input_shape is not None
    for params in (json.loads(_raw("media-sweeper")), _rendered("media-sweeper")):
        report = ParamValidator().validate(params, shape.input_shape)
        assert not report.has_errors(), report.generate_report()
    task = _rendered("media-sweeper")
    container = _container(task)
    assert container["command"] == ["python", "-m", "media_service.sweeper"]
    assert container["image"] == _container(_rendered("media-service"))["image"]
    assert task["family"] == "ferry-media-sweeper"
    assert task["taskRoleArn"].endswith(":role/ferry-media-sweeper-task")
    assert "portMappings" not in container
    environment = _environment(container)
    assert environment["ENVIRONMENT"] == "production"
    MediaSettings.model_validate(
        {
            **{k.lower(): v for k, v in environment.items()},
            "auth_jwt_secret": "x" * 40,
            "internal_token": "y" * 40,
        }
    )


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_task_definitions_fit_botocores_register_task_definition_model(name: str) -> None:
    shape = get_session().get_service_model("ecs").operation_model("RegisterTaskDefinition")
    assert shape.input_shape is not None
    validator = ParamValidator()
    for params in (json.loads(_raw(name)), _rendered(name)):
        report = validator.validate(params, shape.input_shape)
        assert not report.has_errors(), report.generate_report()


def test_every_placeholder_is_documented() -> None:
    docs = DOCS.read_text()
    used: set[str] = set()
    for name in [*SERVICES, *SCHEDULED]:
        used |= set(re.findall(r"\$\{([A-Z_]+)\}", _raw(name)))
    assert used == set(PLACEHOLDERS)
    for placeholder in used:
        assert f"${{{placeholder}}}" in docs, f"docs/deploy.md does not explain ${placeholder}"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_fargate_sized_for_the_work(name: str) -> None:
    task = _rendered(name)
    assert task["requiresCompatibilities"] == ["FARGATE"]
    assert task["networkMode"] == "awsvpc"
    cpu, memory = int(task["cpu"]), int(task["memory"])
    assert memory in FARGATE_SIZES[cpu], f"{cpu} CPU units cannot have {memory} MiB"
    if name == "transcode-worker":
        assert cpu >= 2048
        assert memory >= 4096
        assert task["ephemeralStorage"]["sizeInGiB"] >= 21  # originals and HLS on local disk
    else:
        assert cpu <= 512


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_container_port_health_logs_and_graceful_stop(name: str) -> None:
    package, settings = SERVICES[name]
    task = _rendered(name)
    container = _container(task)
    env = _environment(container)
    port = settings.model_fields["bind_port"].default
    assert container["essential"] is True
    assert container["image"].startswith("123456789012.dkr.ecr.eu-west-1.amazonaws.com/")
    assert container["image"].endswith(f"/ferry/{package}:3f9c2ab")
    assert [mapping["containerPort"] for mapping in container["portMappings"]] == [port]
    assert env["BIND_PORT"] == str(port)
    assert env["BIND_HOST"] == "0.0.0.0"
    assert env["ENVIRONMENT"] == "production"
    check = container["healthCheck"]
    assert check["command"][0] == "CMD"
    assert "/healthz" in check["command"][-1]
    logs = container["logConfiguration"]
    assert logs["logDriver"] == "awslogs"
    assert logs["options"]["awslogs-group"] == f"/ecs/ferry/{name}"
    assert logs["options"]["awslogs-region"] == "eu-west-1"
    assert logs["options"]["awslogs-stream-prefix"]
    stop = container["stopTimeout"]
    assert stop <= 120  # Fargate's maximum
    assert stop == 120 if name == "transcode-worker" else 30 <= stop <= 60
    grace = env.get("SHUTDOWN_GRACE_SECONDS")
    if grace is None and "shutdown_grace_seconds" in settings.model_fields:
        grace = str(settings.model_fields["shutdown_grace_seconds"].default)
    if grace is not None:
        assert int(grace) + 10 <= stop, "the drain must end before ECS sends SIGKILL"
    # Non-root, read-only root file system with a scratch volume for temporary files.
    assert container["user"] == "10001:10001"
    assert container["readonlyRootFilesystem"] is True
    volumes = {volume["name"] for volume in task["volumes"]}
    assert {mount["sourceVolume"] for mount in container["mountPoints"]} <= volumes
    # Fargate bind mounts are root-only unless the image declares the path a VOLUME.
    dockerfile = (ROOT / "Dockerfile").read_text()
    for mount in container["mountPoints"]:
        assert f'VOLUME ["{mount["containerPath"]}"]' in dockerfile


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_secrets_come_from_parameter_store_and_nothing_secret_is_plain(name: str) -> None:
    container = _container(_rendered(name))
    secrets = {item["name"]: item["valueFrom"] for item in container["secrets"]}
    expected = SHARED_SECRETS | ({"CDN_PRIVATE_KEY"} if name == "media-service" else set())
    assert set(secrets) == expected
    for value in secrets.values():
        assert value.startswith("arn:aws:ssm:eu-west-1:123456789012:parameter/ferry/")
    plain = {variable for variable in _environment(container) if SECRET_NAME.search(variable)}
    assert not plain, f"secrets in plain environment: {plain}"


@pytest.fixture(scope="module")
def rsa_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_the_environment_starts_the_service_in_production(
    name: str, monkeypatch: pytest.MonkeyPatch, rsa_pem: str
) -> None:
    """Every variable is a setting of the service, and together they pass its validation."""
    _, settings = SERVICES[name]
    container = _container(_rendered(name))
    env = _environment(container)
    unknown = {variable for variable in env if variable.lower() not in settings.model_fields}
    assert not unknown, f"not settings of {name}: {sorted(unknown)}"
    secrets = {"AUTH_JWT_SECRET": "j" * 48, "INTERNAL_TOKEN": "i" * 48, "CDN_PRIVATE_KEY": rsa_pem}
    for item in container["secrets"]:
        env[item["name"]] = secrets[item["name"]]
    if name == "gateway":
        env["ADVERTISED_URL"] = "http://10.0.3.17:8080"  # what ecs_advertise.py sets at start
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    loaded = settings().model_dump()
    assert loaded["environment"] == "production"
    assert loaded["bind_port"] == int(env["BIND_PORT"])


# --- the names the task definitions share with the CloudFormation template ----------------------


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    text = (ROOT / "deploy" / "cloudformation" / "ferry.yaml").read_text()
    loaded: dict[str, Any] = json.loads(json.dumps(cfn_yaml.loads(text)))
    return loaded


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {
        name: resource["Properties"]
        for name, resource in template["Resources"].items()
        if resource["Type"] == kind
    }


def _sub(value: Any) -> str:
    """A `!Sub "${Prefix}-..."` name, spelled as in the task definitions."""
    if isinstance(value, dict) and "Fn::Sub" in value:
        value = value["Fn::Sub"]
    if isinstance(value, dict) and "Ref" in value:
        value = "${" + value["Ref"] + "}"
    assert isinstance(value, str), value
    return value.replace("${Prefix}", "${RESOURCE_PREFIX}")


def test_roles_log_groups_and_repositories_exist_in_the_template(template: dict[str, Any]) -> None:
    roles = {_sub(props["RoleName"]) for props in _resources(template, "AWS::IAM::Role").values()}
    groups = {
        _sub(props["LogGroupName"])
        for props in _resources(template, "AWS::Logs::LogGroup").values()
    }
    repositories = {
        _sub(props["RepositoryName"])
        for props in _resources(template, "AWS::ECR::Repository").values()
    }
    for name in SERVICES:
        task = json.loads(_raw(name))
        container = _container(task)
        for arn in (task["taskRoleArn"], task["executionRoleArn"]):
            assert arn.split(":role/")[1] in roles, arn
        assert container["logConfiguration"]["options"]["awslogs-group"] in groups
        repository = container["image"].split(".amazonaws.com/")[1].split(":")[0]
        assert repository in repositories
    execution = template["Resources"]["TaskExecutionRole"]["Properties"]["Policies"][0]
    (read_secrets,) = [
        statement
        for statement in execution["PolicyDocument"]["Statement"]
        if statement["Sid"] == "ReadSecrets"
    ]
    scope = _sub(read_secrets["Resource"]).split(":parameter")[1]
    assert scope == "/${RESOURCE_PREFIX}/*"
    for name in SERVICES:
        for secret in _container(json.loads(_raw(name)))["secrets"]:
            assert secret["valueFrom"].split(":parameter")[1].startswith("/${RESOURCE_PREFIX}/")


def test_the_bucket_name_matches_the_templates(template: dict[str, Any]) -> None:
    bucket = _sub(template["Resources"]["MediaBucket"]["Properties"]["BucketName"])
    expected = bucket.replace("${AWS::AccountId}", "${ACCOUNT_ID}").replace(
        "${AWS::Region}", "${REGION}"
    )
    for name in ("media-service", "transcode-worker"):
        assert _environment(_container(json.loads(_raw(name))))["BUCKET_NAME"] == expected
