"""The local stack: bootstrap, the process wrappers, the fleet fixture and `make run` itself."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from devstack.bootstrap import bootstrap
from devstack.ports import CONTRACT_PORTS, LOCALHOST, free_port, port_is_free
from devstack.processes import (
    Emulator,
    ProcessFailed,
    ServiceProcess,
    available_services,
)
from devstack.tables import TABLES
from shared.auth import verify_token
from shared.aws import AwsClients
from shared.media_records import OWNER_CREATED_INDEX, PENDING_INDEX, SWEEP_INDEX, WATCH_INDEX
from shared.moderation import MODERATION_INDEX
from tests.integration.conftest import TEST_GATEWAYS
from tests.integration.helpers import Fleet
from tests.waiting import eventually, scaled

if TYPE_CHECKING:
    from types_aiobotocore_sqs.literals import QueueAttributeNameType

# --- bootstrap -----------------------------------------------------------------------------------


async def _queue_arn(aws: AwsClients, name: str) -> tuple[str, dict[QueueAttributeNameType, str]]:
    url = (await aws.sqs.get_queue_url(QueueName=name))["QueueUrl"]
    attributes = await aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
    return url, attributes["Attributes"]


async def _snapshot(aws: AwsClients, fleet: Fleet) -> dict[str, Any]:
    """What a needless write would change: queue attributes and the bucket's sub-resources."""
    bucket = fleet.resources.bucket
    state: dict[str, Any] = {}
    for queue, dead_letter_queue in fleet.resources.queues():
        for name in (queue, dead_letter_queue):
            state[name] = (await _queue_arn(aws, name))[1]
    for operation in (
        "get_bucket_cors",
        "get_bucket_lifecycle_configuration",
        "get_bucket_notification_configuration",
    ):
        response = await getattr(aws.s3, operation)(Bucket=bucket)
        response.pop("ResponseMetadata", None)
        state[operation] = response
    return state


async def test_bootstrap_twice_changes_nothing(
    fleet: Fleet, aws: AwsClients, caplog: pytest.LogCaptureFixture
) -> None:
    before = await _snapshot(aws, fleet)
    with caplog.at_level(logging.INFO, logger="ferry.devstack.bootstrap"):
        await bootstrap(fleet.settings)
        await bootstrap(fleet.settings)
    said = [r.getMessage() for r in caplog.records if r.name == "ferry.devstack.bootstrap"]
    assert said
    assert [line for line in said if "already present" not in line] == []
    assert await _snapshot(aws, fleet) == before


async def test_bucket_has_object_lock_cors_and_lifecycle(fleet: Fleet, aws: AwsClients) -> None:
    bucket = fleet.resources.bucket
    lock = await aws.s3.get_object_lock_configuration(Bucket=bucket)
    assert lock["ObjectLockConfiguration"]["ObjectLockEnabled"] == "Enabled"

    (cors,) = (await aws.s3.get_bucket_cors(Bucket=bucket))["CORSRules"]
    assert sorted(cors["AllowedMethods"]) == ["GET", "HEAD", "POST", "PUT"]  # POST: Uppy
    assert cors["AllowedOrigins"] == ["*"]
    assert cors["AllowedHeaders"] == ["*"]
    assert {"ETag", "x-amz-checksum-sha256", "x-amz-version-id"} <= set(cors["ExposeHeaders"])

    lifecycle = await aws.s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    rules = {rule["ID"]: rule for rule in lifecycle["Rules"]}
    assert all(rule["Status"] == "Enabled" for rule in rules.values())
    originals = rules["originals"]
    assert originals["Filter"]["Prefix"] == "o/"
    assert originals["Transitions"] == [{"Days": 30, "StorageClass": "GLACIER_IR"}]
    # No rule deletes a current object by age: the sweeper decides from the records.
    assert originals["Expiration"] == {"ExpiredObjectDeleteMarker": True}
    derivatives = rules["derivatives"]
    assert derivatives["Filter"]["Prefix"] == "d/"
    assert derivatives["Expiration"] == {"ExpiredObjectDeleteMarker": True}
    abort = rules["abandoned-multipart-uploads"]
    assert abort["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 1


async def test_every_queue_dead_letters_after_five_receives(fleet: Fleet, aws: AwsClients) -> None:
    for queue, dead_letter_queue in fleet.resources.queues():
        _, dlq = await _queue_arn(aws, dead_letter_queue)
        _, attributes = await _queue_arn(aws, queue)
        redrive = json.loads(attributes["RedrivePolicy"])
        assert redrive["deadLetterTargetArn"] == dlq["QueueArn"]
        assert int(redrive["maxReceiveCount"]) == 5
        assert attributes["VisibilityTimeout"] == "60"
        assert dlq["MessageRetentionPeriod"] == str(14 * 24 * 3600)


async def test_only_the_uploads_queue_lets_the_bucket_send(fleet: Fleet, aws: AwsClients) -> None:
    _, uploads = await _queue_arn(aws, fleet.resources.uploads_queue)
    (statement,) = json.loads(uploads["Policy"])["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Resource"] == uploads["QueueArn"]
    source = statement["Condition"]["ArnEquals"]["aws:SourceArn"]
    assert source == f"arn:aws:s3:::{fleet.resources.bucket}"
    _, events = await _queue_arn(aws, fleet.resources.media_events_queue)
    assert "Policy" not in events


async def test_new_originals_are_announced_on_the_uploads_queue(
    fleet: Fleet, aws: AwsClients
) -> None:
    _, uploads = await _queue_arn(aws, fleet.resources.uploads_queue)
    notification = await aws.s3.get_bucket_notification_configuration(Bucket=fleet.resources.bucket)
    (target,) = notification["QueueConfigurations"]
    assert target["QueueArn"] == uploads["QueueArn"]
    assert target["Events"] == ["s3:ObjectCreated:*"]
    rules = target["Filter"]["Key"]["FilterRules"]
    assert [(rule["Name"].lower(), rule["Value"]) for rule in rules] == [("prefix", "o/")]
    for other in ("TopicConfigurations", "LambdaFunctionConfigurations"):
        assert not notification.get(other)


async def test_every_table_exists_as_specified(fleet: Fleet, aws: AwsClients) -> None:
    for spec in TABLES:
        table = (await aws.dynamodb.describe_table(TableName=spec.name(fleet.resources)))["Table"]
        assert table["TableStatus"] == "ACTIVE"
        assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        keys = {key["KeyType"]: key["AttributeName"] for key in table["KeySchema"]}
        assert keys["HASH"] == spec.hash_key.name
        assert keys.get("RANGE") == (spec.range_key.name if spec.range_key else None)
        indexes = {index["IndexName"] for index in table.get("GlobalSecondaryIndexes", [])}
        assert indexes == {index.name for index in spec.indexes}
        if spec.ttl_attribute:
            ttl = await aws.dynamodb.describe_time_to_live(TableName=table["TableName"])
            assert ttl["TimeToLiveDescription"]["TimeToLiveStatus"] == "ENABLED"
            assert ttl["TimeToLiveDescription"]["AttributeName"] == spec.ttl_attribute
    media = await aws.dynamodb.describe_table(TableName=fleet.resources.media_table)
    names = {index["IndexName"] for index in media["Table"]["GlobalSecondaryIndexes"]}
    assert names == {
        OWNER_CREATED_INDEX,
        PENDING_INDEX,
        SWEEP_INDEX,
        WATCH_INDEX,
        MODERATION_INDEX,
    }
    connections = next(spec for spec in TABLES if spec.resource == "connections_table")
    assert connections.ttl_attribute == "expires_at"


# --- the fleet -----------------------------------------------------------------------------------


def test_the_fleet_runs_every_available_service(fleet: Fleet) -> None:
    services = available_services()
    assert {process.package for process in fleet.processes.values()} == set(services)
    urls = {process.package: process.url for process in fleet.processes.values()}
    assert urls.get("media_service", fleet.media_url) == fleet.media_url
    assert urls.get("transcode_worker", fleet.worker_url) == fleet.worker_url
    assert fleet.message_url == urls.get("message_service")
    assert len(fleet.gateway_urls) == (TEST_GATEWAYS if "gateway" in services else 0)
    identity = verify_token(fleet.token("alice-x", "phone"), fleet.secret)
    assert (identity.user_id, identity.device_id) == ("alice-x", "phone")
    assert fleet.auth("alice-x")["Authorization"].startswith("Bearer ")


@pytest.mark.parametrize("package", available_services())
async def test_service_answers_health_readiness_and_metrics(
    fleet: Fleet, http: httpx.AsyncClient, package: str
) -> None:
    instances = [p for p in fleet.processes.values() if p.package == package]
    assert instances
    for process in instances:
        assert (await http.get(f"{process.url}/healthz")).status_code == 200

        async def ready(url: str = process.url) -> bool:
            return (await http.get(f"{url}/readyz")).status_code == 200

        await eventually(ready)
        metrics = await http.get(f"{process.url}/metrics")
        assert metrics.status_code == 200
        assert "ferry_" in metrics.text


# --- process wrappers (with throwaway service packages) ------------------------------------------

FAKE_SERVICE = """
import os, signal, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()
    def log_message(self, *args):
        pass

signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print("fake service starting", flush=True)
HTTPServer((os.environ["BIND_HOST"], int(os.environ["BIND_PORT"])), Handler).serve_forever()
"""
CRASHING_SERVICE = """
import sys
print("boom: BIND_PORT is " + repr(__import__("os").environ["BIND_PORT"]), flush=True)
sys.exit(3)
"""
STUBBORN_SERVICE = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("not listening, not stopping", flush=True)
while True:
    time.sleep(60)
"""


def _fake_package(root: Path, name: str, main: str) -> dict[str, str]:
    """A throwaway `python -m <name>` package under `root`; returns the env that finds it."""
    (root / name).mkdir(parents=True)
    (root / name / "__init__.py").write_text("")
    (root / name / "__main__.py").write_text(textwrap.dedent(main))
    return {**os.environ, "PYTHONPATH": str(root)}


def test_a_service_process_starts_answers_and_stops_twice(tmp_path: Path) -> None:
    env = _fake_package(tmp_path / "pkgs", "fake_ok", FAKE_SERVICE)
    process = ServiceProcess("fake_ok", port=free_port(), env=env, log_dir=tmp_path)
    with process:
        process.start()
        assert httpx.get(f"{process.url}/healthz").status_code == 200
        assert "fake service starting" in process.log_tail()
        assert process.stop() == 0
    assert process.stop() == 0  # a second stop is harmless and reports the same
    assert port_is_free(LOCALHOST, process.port)


def test_a_crashing_service_is_reported_with_its_log(tmp_path: Path) -> None:
    env = _fake_package(tmp_path / "pkgs", "fake_crash", CRASHING_SERVICE)
    process = ServiceProcess("fake_crash", port=free_port(), env=env, log_dir=tmp_path)
    with pytest.raises(ProcessFailed, match=r"(?s)exited with code 3.*boom: BIND_PORT is"):
        process.start()
    assert process.returncode == 3


def test_a_service_that_never_answers_times_out_and_is_killed(tmp_path: Path) -> None:
    env = _fake_package(tmp_path / "pkgs", "fake_stuck", STUBBORN_SERVICE)
    process = ServiceProcess("fake_stuck", port=free_port(), env=env, log_dir=tmp_path)
    process.launch()
    try:
        with pytest.raises(ProcessFailed, match="did not answer"):
            process.wait_healthy(timeout=0.5)
    finally:
        code = process.stop(timeout=0.5)  # SIGTERM is ignored: SIGKILL follows
    assert code == -signal.SIGKILL


def test_an_emulator_on_a_taken_port_says_so(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind((LOCALHOST, 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        emulator = Emulator(port=port, log_path=tmp_path / "emulator.log")
        with pytest.raises(ProcessFailed, match="already in use"):
            emulator.start()


# --- `make run` ------------------------------------------------------------------------------


def _free_port_offset() -> int:
    """An offset that puts every contract port on a free port (below the ephemeral range)."""
    for _ in range(100):
        offset = 1000 + 10 * (free_port() % 2000)
        if all(port_is_free(LOCALHOST, port + offset) for port in CONTRACT_PORTS.values()):
            return offset
    raise AssertionError("no free block of ports for the runner")


async def _read_until(stream: asyncio.StreamReader, marker: str, seen: list[str]) -> None:
    while True:
        line = (await stream.readline()).decode("utf-8", errors="replace")
        if not line:
            raise AssertionError("the runner's output ended early:\n" + "".join(seen))
        seen.append(line)
        if marker in line:
            return


async def _runner(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "devstack.run",
        *args,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def test_make_run_starts_everything_and_stops_cleanly_on_sigterm(
    tmp_path: Path, http: httpx.AsyncClient
) -> None:
    emulator_port, offset = free_port(), _free_port_offset()
    secret = "s" * 40
    env = {**os.environ, "AUTH_JWT_SECRET": secret, "RESOURCE_PREFIX": "runtest"}
    runner = await _runner(
        "--emulator-port",
        str(emulator_port),
        "--port-offset",
        str(offset),
        "--log-dir",
        str(tmp_path / "logs"),
        env=env,
    )
    assert runner.stdout is not None
    services = await asyncio.to_thread(available_services)  # looks at files: off the loop
    seen: list[str] = []
    try:
        await asyncio.wait_for(
            _read_until(runner.stdout, "Ctrl-C stops everything.", seen), scaled(90)
        )
        output = "".join(seen)
        assert "Ferry is running (embedded AWS emulator)" in output
        assert f"http://{LOCALHOST}:{emulator_port}" in output
        (token_line,) = [line for line in seen if "dev token (alice):" in line]
        identity = verify_token(token_line.rsplit(":", 1)[1].strip(), secret)
        assert identity.user_id == "alice"
        for package in services:
            url = f"http://{LOCALHOST}:{CONTRACT_PORTS[package] + offset}"
            assert url in output
            assert (await http.get(f"{url}/healthz")).status_code == 200
        assert (tmp_path / "logs" / "emulator.log").is_file()

        runner.send_signal(signal.SIGTERM)
        rest, _ = await asyncio.wait_for(runner.communicate(), scaled(60))
    finally:
        if runner.returncode is None:
            runner.kill()
            await runner.communicate()
    assert runner.returncode == 0, "".join(seen) + rest.decode()
    assert "stopped." in rest.decode()
    assert port_is_free(LOCALHOST, emulator_port)
    for package in services:
        assert port_is_free(LOCALHOST, CONTRACT_PORTS[package] + offset)


async def test_make_run_refuses_a_taken_port_clearly(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind((LOCALHOST, 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        runner = await _runner(
            "--emulator-port",
            str(port),
            "--port-offset",
            str(_free_port_offset()),
            "--log-dir",
            str(tmp_path / "logs"),
            env=dict(os.environ),
        )
        output, _ = await asyncio.wait_for(runner.communicate(), scaled(60))
    assert runner.returncode == 1
    assert f"port {port} (AWS emulator) already in use" in output.decode()
