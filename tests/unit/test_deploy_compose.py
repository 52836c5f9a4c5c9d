"""docker-compose.yml, checked offline: the compose-spec schema, then the fleet's structure."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from compose_spec import PyOptions
from pydantic_settings import BaseSettings

from gateway.settings import Settings as GatewaySettings
from media_service.settings import Settings as MediaSettings
from message_service.settings import Settings as MessageSettings
from shared.settings import DEV_INTERNAL_TOKEN, DEV_JWT_SECRET, CommonSettings
from transcode_worker.settings import Settings as WorkerSettings

ROOT = Path(__file__).resolve().parents[2]

# compose service → (package built into its image, settings class, port inside, port on the host)
FLEET: dict[str, tuple[str, type[BaseSettings], int, int]] = {
    "gateway": ("gateway", GatewaySettings, 8080, 8080),
    "media-service": ("media_service", MediaSettings, 8081, 8081),
    "message-service": ("message_service", MessageSettings, 8082, 8082),
    "transcode-worker": ("transcode_worker", WorkerSettings, 8083, 8083),
    "gateway-2": ("gateway", GatewaySettings, 8080, 8084),
}
# Variables botocore reads itself (not settings): endpoints and credentials.
BOTOCORE_VARIABLES = {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
DEV_SECRET_VALUES = {"test", DEV_JWT_SECRET, DEV_INTERNAL_TOKEN}
SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|PRIVATE_KEY|CREDENTIAL", re.IGNORECASE)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    text = (ROOT / "docker-compose.yml").read_text()
    project = PyOptions(apply_merge=True).from_yaml(text)  # raises on any schema violation
    project.validate()  # references to networks, volumes, configs, secrets
    return project.to_dict()


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = compose["services"]
    return result


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment as a mapping, so merges and checks are exact"
    return {name: str(value) for name, value in env.items()}


def _port(settings: type[BaseSettings]) -> int:
    default = settings.model_fields["bind_port"].default
    assert isinstance(default, int)
    return default


def test_the_whole_fleet_is_there_on_the_contract_ports(services: dict[str, Any]) -> None:
    assert set(services) == {"localstack", "bootstrap", "clamd", *FLEET}
    for name, (package, settings, inside, host) in FLEET.items():
        service = services[name]
        assert service["build"] == {"context": ".", "args": {"SERVICE": package}}, name
        assert service["ports"] == [f"127.0.0.1:{host}:{inside}"], name
        env = _environment(service)
        assert env["BIND_PORT"] == str(inside), name
        assert env["BIND_HOST"] == "0.0.0.0", name
        if name != "gateway-2":
            assert inside == _port(settings), f"{name} listens on its default port"


def test_localstack_is_health_checked_and_bootstrap_runs_once(services: dict[str, Any]) -> None:
    localstack = services["localstack"]
    assert ":" in localstack["image"]
    assert not localstack["image"].endswith(":latest")
    assert localstack["ports"] == ["127.0.0.1:4566:4566"]
    assert set(localstack["environment"]["SERVICES"].split(",")) == {"s3", "sqs", "dynamodb"}
    assert "_localstack/health" in " ".join(localstack["healthcheck"]["test"])

    bootstrap = services["bootstrap"]
    assert bootstrap["command"] == ["python", "-m", "devstack.bootstrap"]  # as `make run`
    assert bootstrap["build"]["args"] == {"SERVICE": "devstack"}
    assert bootstrap["restart"] == "no"
    assert "ports" not in bootstrap
    assert bootstrap["depends_on"] == {"localstack": {"condition": "service_healthy"}}


def test_services_start_in_order_and_are_health_checked(services: dict[str, Any]) -> None:
    for name in FLEET:
        service = services[name]
        depends = service["depends_on"]
        assert depends["localstack"] == {"condition": "service_healthy"}, name
        assert depends["bootstrap"] == {"condition": "service_completed_successfully"}, name
        for target, rule in depends.items():
            assert target in services, f"{name} depends on unknown {target}"
            assert rule["condition"] in ("service_healthy", "service_completed_successfully")
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no healthcheck"
        check = service["healthcheck"]
        assert check["test"][0] == "CMD", "exec form: no shell needed in the image"
        inside = FLEET[name][2]
        assert f"http://127.0.0.1:{inside}/readyz" in " ".join(check["test"]), name
    # The graph has no cycle (compose refuses one).
    graph = {name: set(service.get("depends_on", {})) for name, service in services.items()}
    done: set[str] = set()
    while graph:
        ready = {name for name, needs in graph.items() if needs <= done}
        assert ready, f"depends_on cycle among {sorted(graph)}"
        done |= ready
        graph = {name: needs for name, needs in graph.items() if name not in ready}


def test_the_second_gateway_sits_behind_a_profile_with_its_own_address(
    services: dict[str, Any],
) -> None:
    profiled = {name for name, service in services.items() if service.get("profiles")}
    assert profiled == {"gateway-2"}
    assert services["gateway-2"]["profiles"] == ["two-gateways"]
    for name in ("gateway", "gateway-2"):
        url = urlsplit(_environment(services[name])["ADVERTISED_URL"])
        # The Message Service pushes to each gateway by its compose DNS name.
        assert (url.hostname, url.port) == (name, FLEET[name][2])


def test_every_service_finds_the_others_and_aws_by_compose_names(services: dict[str, Any]) -> None:
    for name in ("bootstrap", *FLEET):
        env = _environment(services[name])
        assert env["AWS_ENDPOINT_URL"] == "http://localstack:4566", name
        assert env["AWS_ACCESS_KEY_ID"] == env["AWS_SECRET_ACCESS_KEY"] == "test", name
        assert env["AWS_REGION"], name
        assert env["RESOURCE_PREFIX"] == "ferry", name
        assert env["S3_ADDRESSING_STYLE"] == "path", name
        for variable in ("MEDIA_SERVICE_URL", "MESSAGE_SERVICE_URL"):
            if variable in env:
                url = urlsplit(env[variable])
                assert url.hostname in services, f"{name}: {variable} names no service"
                assert url.port == FLEET[str(url.hostname)][2], f"{name}: {variable} port"
    assert "MESSAGE_SERVICE_URL" in _environment(services["gateway"])
    assert "MESSAGE_SERVICE_URL" in _environment(services["media-service"])
    assert "MEDIA_SERVICE_URL" in _environment(services["message-service"])


def test_presigned_urls_name_the_hosts_address_of_localstack(services: dict[str, Any]) -> None:
    env = _environment(services["media-service"])
    public = urlsplit(env["S3_PUBLIC_ENDPOINT_URL"])
    assert public.hostname == "localhost"
    assert f"127.0.0.1:{public.port}:4566" in services["localstack"]["ports"]
    assert urlsplit(env["AWS_ENDPOINT_URL"]).hostname == "localstack"  # calls stay inside


def test_environment_only_known_settings_and_no_secrets_but_dev_defaults(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    assert not compose.get("secrets")
    assert not compose.get("configs")
    settings_of = {name: spec[1] for name, spec in FLEET.items()}
    settings_of["bootstrap"] = CommonSettings
    for name, settings in settings_of.items():
        service = services[name]
        assert "env_file" not in service, f"{name}: environment variables only"
        env = _environment(service)
        assert env["ENVIRONMENT"] == "development", name
        unknown = {
            variable
            for variable in env
            if variable not in BOTOCORE_VARIABLES and variable.lower() not in settings.model_fields
        }
        assert not unknown, f"{name}: not settings of the service: {sorted(unknown)}"
        for variable, value in env.items():
            if SECRET_NAME.search(variable):
                assert value in DEV_SECRET_VALUES, f"{name}: {variable} is a real secret"
    # Nothing but LocalStack's own switch configures LocalStack.
    assert set(services["localstack"]["environment"]) == {"SERVICES"}


def test_stop_grace_outlasts_each_services_own_drain(services: dict[str, Any]) -> None:
    for name in ("gateway", "gateway-2", "message-service", "transcode-worker"):
        settings = FLEET[name][1]
        grace = settings.model_fields["shutdown_grace_seconds"].default
        stop = services[name]["stop_grace_period"]
        assert stop.endswith("s"), name
        assert int(stop[:-1]) > grace, name


def test_the_worker_scans_documents_with_the_clamd_service(services: dict[str, Any]) -> None:
    clamd = services["clamd"]
    assert ":" in clamd["image"]
    assert not clamd["image"].endswith(":latest")
    assert "ports" not in clamd  # reached on this network only
    mounted = clamd["volumes"][0].split(":")
    config = (ROOT / mounted[0].removeprefix("./")).read_text()
    assert mounted[1] == "/etc/clamav/clamd.conf"
    assert "TCPSocket 3310" in config
    assert "StreamMaxLength 101M" in config  # above MAX_DOCUMENT_BYTES
    env = _environment(services["transcode-worker"])
    assert env["CLAMD_ADDRESS"] == "tcp://clamd:3310"
