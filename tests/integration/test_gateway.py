"""The Edge Gateway against real processes: the WebSocket edge, pushes, the registry, limits.

Nothing here needs the Message Service (sends may be answered `unavailable` or by the Message
Service's own refusal; either way each send gets exactly one answer). Tests that need odd
settings (a tiny outbound queue, a fast heartbeat) or that stop a gateway start their own
gateway process next to the fleet, on the same emulator and resources.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from devstack.processes import ServiceProcess, free_port, stopped_cleanly
from shared.auth import issue_token
from shared.aws import AwsClients
from tests.integration.helpers import Fleet
from tests.waiting import eventually, scaled

WAIT = scaled(10.0)


@pytest.fixture
def gateway_url(fleet: Fleet) -> str:
    if not fleet.gateway_urls:
        pytest.fail("the fleet runs no gateway")
    return fleet.gateway_urls[0]


def ws_url(http_url: str, token: str | None = None) -> str:
    url = http_url.replace("http://", "ws://", 1) + "/v1/ws"
    return f"{url}?token={token}" if token else url


@asynccontextmanager
async def client(
    fleet: Fleet, http_url: str, user: str, device: str = "phone", **options: Any
) -> AsyncIterator[ClientConnection]:
    """A WebSocket client of `user`'s `device`, authenticated by header."""
    async with connect(
        ws_url(http_url),
        additional_headers=fleet.auth(user, device),
        open_timeout=WAIT,
        **options,
    ) as websocket:
        yield websocket


async def receive(websocket: ClientConnection) -> dict[str, Any]:
    frame = json.loads(await asyncio.wait_for(websocket.recv(), WAIT))
    assert isinstance(frame, dict)
    return frame


async def receive_type(websocket: ClientConnection, frame_type: str) -> dict[str, Any]:
    """The next frame of this type (a pending backlog may come first on a shared fleet)."""
    while (frame := await receive(websocket))["type"] != frame_type:
        pass
    return frame


async def read_until_closed(websocket: ClientConnection) -> None:
    """Read (and drop) frames until the server's close arrives; then `close_code` is set."""
    try:
        while True:
            await asyncio.wait_for(websocket.recv(), WAIT)
    except ConnectionClosed:
        return


async def push(
    http: httpx.AsyncClient, fleet: Fleet, gateway: str, deliveries: list[dict[str, Any]]
) -> dict[str, int]:
    response = await http.post(
        f"{gateway}/internal/push",
        json={"deliveries": deliveries},
        headers=fleet.internal_headers(),
    )
    assert response.status_code == 200, response.text
    result: dict[str, int] = response.json()
    return result


async def registry_row(aws: AwsClients, fleet: Fleet, user: str, device: str) -> dict[str, Any]:
    response = await aws.dynamodb.get_item(
        TableName=fleet.resources.connections_table,
        Key={"user_id": {"S": user}, "device_id": {"S": device}},
        ConsistentRead=True,
    )
    item: dict[str, Any] = response.get("Item", {})
    return item


async def metric(http: httpx.AsyncClient, gateway: str, series: str) -> float:
    """The value of one series (`name{labels}` as exposed) on a gateway's /metrics."""
    text = (await http.get(f"{gateway}/metrics")).text
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@asynccontextmanager
async def own_gateway(fleet: Fleet, **overrides: str) -> AsyncIterator[ServiceProcess]:
    """One more gateway process on the fleet's resources, with these settings overridden."""
    name = f"gateway-own-{secrets.token_hex(3)}"
    process = ServiceProcess(
        "gateway",
        name=name,
        port=free_port(),
        env={**fleet.env, **overrides},
        log_dir=fleet.log_dir,
    )
    await asyncio.to_thread(process.start)
    try:
        yield process
    finally:
        code = await asyncio.to_thread(process.stop)
        assert stopped_cleanly(code), f"{name} exited with {code}:\n{process.log_tail()}"


# --- the handshake -------------------------------------------------------------------------------


@pytest.mark.parametrize("credentials", ["missing", "forged", "expired"])
async def test_a_bad_token_gets_401_before_the_upgrade(
    fleet: Fleet, gateway_url: str, user: Callable[..., str], credentials: str
) -> None:
    token = {
        "missing": None,
        "forged": issue_token(user(), "not-the-fleet-secret-" + "x" * 32),
        "expired": issue_token(user(), fleet.secret, ttl=-timedelta(minutes=5)),
    }[credentials]
    with pytest.raises(InvalidStatus) as refused:
        async with connect(ws_url(gateway_url, token), open_timeout=WAIT):
            pass
    response = refused.value.response
    assert response.status_code == 401
    assert json.loads(response.body or b"{}")["error"]["code"] in ("unauthorized", "token_expired")


async def test_the_token_may_come_as_a_query_parameter(
    fleet: Fleet, gateway_url: str, user: Callable[..., str]
) -> None:
    async with connect(ws_url(gateway_url, fleet.token(user())), open_timeout=WAIT) as websocket:
        await websocket.send(json.dumps({"type": "ping"}))
        assert await receive_type(websocket, "pong") == {"type": "pong"}


# --- frames --------------------------------------------------------------------------------------


async def test_ping_gets_pong(fleet: Fleet, gateway_url: str, user: Callable[..., str]) -> None:
    async with client(fleet, gateway_url, user()) as websocket:
        for _ in range(3):
            await websocket.send(json.dumps({"type": "ping"}))
            assert await receive_type(websocket, "pong") == {"type": "pong"}


async def test_a_frame_over_64_kib_closes_the_connection_with_1009(
    fleet: Fleet, http: httpx.AsyncClient, gateway_url: str, user: Callable[..., str]
) -> None:
    too_large = 'ferry_ws_disconnects_total{reason="frame_too_large"}'
    before = await metric(http, gateway_url, too_large)
    async with client(fleet, gateway_url, user()) as websocket:
        await websocket.send(json.dumps({"type": "ping", "padding": "x" * 100 * 1024}))
        await read_until_closed(websocket)
        assert websocket.close_code == 1009

    async def counted() -> bool:
        return await metric(http, gateway_url, too_large) >= before + 1

    await eventually(counted)


@pytest.mark.parametrize(
    ("frame", "client_msg_id"),
    [
        ("not json at all", None),
        (json.dumps({"type": "teleport"}), None),
        (json.dumps(["send"]), None),
        (json.dumps({"type": "send", "client_msg_id": "c-1"}), "c-1"),  # no conversation_id
        (json.dumps({"type": "received", "message_ids": "m-1"}), None),
        (b"\x00binary", None),
    ],
)
async def test_a_malformed_frame_gets_an_error_and_the_connection_stays(
    fleet: Fleet,
    gateway_url: str,
    user: Callable[..., str],
    frame: str | bytes,
    client_msg_id: str | None,
) -> None:
    async with client(fleet, gateway_url, user()) as websocket:
        await websocket.send(frame)
        error = await receive_type(websocket, "error")
        assert error["code"] == "bad_frame"
        assert error["message"]
        assert error.get("client_msg_id") == client_msg_id
        await websocket.send(json.dumps({"type": "ping"}))
        assert await receive_type(websocket, "pong") == {"type": "pong"}


async def test_every_send_is_answered_and_a_flood_is_rate_limited(
    fleet: Fleet, gateway_url: str, user: Callable[..., str]
) -> None:
    conversation = f"conv-{secrets.token_hex(4)}"
    async with client(fleet, gateway_url, user()) as websocket:
        for n in range(100):
            await websocket.send(
                json.dumps(
                    {
                        "type": "send",
                        "client_msg_id": f"c-{n}",
                        "conversation_id": conversation,
                        "text": "hi",
                    }
                )
            )
        answers: dict[str, dict[str, Any]] = {}
        while len(answers) < 100:
            frame = await receive(websocket)
            if "client_msg_id" in frame:
                answers[frame["client_msg_id"]] = frame
    assert set(answers) == {f"c-{n}" for n in range(100)}
    limited = [a for a in answers.values() if a.get("code") == "rate_limited"]
    # A burst of 40, refilled at 20/s: most of a fast flood of 100 is refused, not forwarded.
    assert 30 <= len(limited) <= 60
    assert all(a["type"] == "error" for a in limited)


# --- pushes --------------------------------------------------------------------------------------


async def test_push_needs_the_internal_token(
    fleet: Fleet, http: httpx.AsyncClient, gateway_url: str
) -> None:
    body: dict[str, list[Any]] = {"deliveries": []}
    for headers in ({}, {"X-Internal-Token": "wrong"}, fleet.auth("alice")):
        response = await http.post(f"{gateway_url}/internal/push", json=body, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "internal_only"


async def test_a_push_reaches_the_connected_device_and_counts_the_others(
    fleet: Fleet, http: httpx.AsyncClient, gateway_url: str, user: Callable[..., str]
) -> None:
    alice = user("alice")
    frame = {"type": "media_update", "media_id": "m-1", "state": "ready", "meta": {"w": 1}}
    async with client(fleet, gateway_url, alice, "phone") as websocket:
        result = await push(
            http,
            fleet,
            gateway_url,
            [
                {"user_id": alice, "device_id": "phone", "frame": frame},
                {"user_id": alice, "device_id": "laptop", "frame": frame},
                {"user_id": user("nobody"), "device_id": "phone", "frame": frame},
            ],
        )
        assert result == {"delivered": 1, "not_connected": 2}
        assert await receive_type(websocket, "media_update") == frame


async def test_a_device_on_the_second_gateway_gets_pushes_sent_there(
    fleet: Fleet,
    http: httpx.AsyncClient,
    aws: AwsClients,
    user: Callable[..., str],
) -> None:
    assert len(fleet.gateway_urls) == 2
    first, second = fleet.gateway_urls
    bob = user("bob")
    frame = {"type": "media_update", "media_id": "m-2", "state": "failed"}
    delivery = {"user_id": bob, "device_id": "tablet", "frame": frame}
    async with client(fleet, second, bob, "tablet") as websocket:
        row = await eventually(lambda: registry_row(aws, fleet, bob, "tablet"))
        # The registry tells the Message Service which instance to push to.
        assert row["gateway_url"]["S"] == second
        assert await push(http, fleet, first, [delivery]) == {"delivered": 0, "not_connected": 1}
        assert await push(http, fleet, second, [delivery]) == {"delivered": 1, "not_connected": 0}
        assert await receive_type(websocket, "media_update") == frame


# --- the registry --------------------------------------------------------------------------------


async def test_a_registry_row_exists_while_connected_and_goes_on_close(
    fleet: Fleet, aws: AwsClients, gateway_url: str, user: Callable[..., str]
) -> None:
    carol = user("carol")
    async with client(fleet, gateway_url, carol, "watch") as websocket:
        row = await eventually(lambda: registry_row(aws, fleet, carol, "watch"))
        assert row["gateway_url"]["S"] == gateway_url
        assert row["connection_id"]["S"]
        assert int(row["expires_at"]["N"]) > 0
        await websocket.send(json.dumps({"type": "ping"}))
        await receive_type(websocket, "pong")

    async def gone() -> bool:
        return not await registry_row(aws, fleet, carol, "watch")

    await eventually(gone)


async def test_a_reconnecting_device_replaces_its_older_connection(
    fleet: Fleet, aws: AwsClients, gateway_url: str, user: Callable[..., str]
) -> None:
    dave = user("dave")
    async with client(fleet, gateway_url, dave, "phone") as older:
        first = await eventually(lambda: registry_row(aws, fleet, dave, "phone"))
        async with client(fleet, gateway_url, dave, "phone") as newer:
            await read_until_closed(older)
            assert older.close_code == 4000
            await newer.send(json.dumps({"type": "ping"}))
            await receive_type(newer, "pong")

            async def replaced() -> dict[str, Any] | None:
                row = await registry_row(aws, fleet, dave, "phone")
                same = row.get("connection_id") == first["connection_id"]
                return None if same or not row else row

            # The older connection's deregistration did not remove the newer one's row.
            await eventually(replaced)


async def test_metrics_count_connections_and_frames(
    fleet: Fleet, http: httpx.AsyncClient, gateway_url: str, user: Callable[..., str]
) -> None:
    pings = 'ferry_ws_frames_total{direction="in",type="ping"}'
    before = await metric(http, gateway_url, pings)
    async with client(fleet, gateway_url, user()) as websocket:
        await websocket.send(json.dumps({"type": "ping"}))
        await receive_type(websocket, "pong")
        assert await metric(http, gateway_url, "ferry_ws_connections") >= 1
    assert await metric(http, gateway_url, pings) >= before + 1
    text = (await http.get(f"{gateway_url}/metrics")).text
    for name in ("ferry_ws_send_seconds", "ferry_ws_disconnects_total"):
        assert name in text


# --- gateways of our own -------------------------------------------------------------------------


def _open_and_stop_reading(url: str, token: str) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads again.

    A raw socket with a small receive buffer: a client library would keep reading into its
    own buffers, and the kernel's autotuned buffers would absorb megabytes.
    """
    address = httpx.URL(url)
    peer = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    peer.settimeout(WAIT)
    peer.connect((address.host, address.port or 80))
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    peer.sendall(
        (
            f"GET /v1/ws?token={token} HTTP/1.1\r\nHost: {address.host}:{address.port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += peer.recv(1)  # byte by byte: not one frame byte more than the handshake
    assert head.startswith(b"HTTP/1.1 101"), head
    return peer


def _read_to_the_end(peer: socket.socket) -> str:
    """Read what the gateway left in the pipe; how the connection ended ("eof" or "reset")."""
    try:
        while peer.recv(65536):
            pass
    except ConnectionResetError:
        return "reset"
    return "eof"


# Frames of 30 KB pushed a few at a time: each push fits the queue (16), so only a client that
# does not read can fill it.
PUSH_FRAME = {"type": "media_update", "media_id": "m-3", "state": "ready", "pad": "x" * 30_000}
PUSH_BATCH = 8


async def written_at_least(http: httpx.AsyncClient, gateway: str, count: int) -> bool:
    series = 'ferry_ws_frames_total{direction="out",type="media_update"}'
    return await metric(http, gateway, series) >= count


async def test_a_client_that_stops_reading_is_disconnected_and_aborted(
    fleet: Fleet, http: httpx.AsyncClient, aws: AwsClients, user: Callable[..., str]
) -> None:
    erin = user("erin")
    deliveries = [{"user_id": erin, "device_id": "default", "frame": PUSH_FRAME}] * PUSH_BATCH
    async with own_gateway(fleet, OUTBOUND_QUEUE_FRAMES="16", CLOSE_TIMEOUT_SECONDS="1") as gateway:
        peer = await asyncio.to_thread(_open_and_stop_reading, gateway.url, fleet.token(erin))
        try:
            await eventually(lambda: registry_row(aws, fleet, erin, "default"))
            # Frames that arrive before the backlog is fetched are held (not written); wait
            # until the first ones went out, so it is the unread socket that fills the queue.
            pushed = (await push(http, fleet, gateway.url, deliveries))["delivered"]
            await eventually(lambda: written_at_least(http, gateway.url, pushed))
            for _ in range(250):  # up to 60 MB: far beyond what socket buffers absorb
                result = await push(http, fleet, gateway.url, deliveries)
                pushed += result["delivered"]
                if result["not_connected"]:
                    break
            else:
                pytest.fail("the gateway kept queueing for a client that does not read")

            async def disconnected() -> bool:
                slow = 'ferry_ws_disconnects_total{reason="slow_reader"}'
                return await metric(http, gateway.url, slow) == 1

            await eventually(disconnected)
            assert await metric(http, gateway.url, "ferry_ws_connections") == 0
            # The close frame cannot get past the unread buffer, so after CLOSE_TIMEOUT the
            # gateway aborts the TCP connection instead of holding that buffer forever.
            assert await asyncio.to_thread(_read_to_the_end, peer) == "reset"
        finally:
            peer.close()

        async def gone() -> bool:
            return not await registry_row(aws, fleet, erin, "default")

        await eventually(gone)
    assert pushed >= 16


async def test_a_client_that_never_answers_pings_is_dropped(
    fleet: Fleet, http: httpx.AsyncClient, aws: AwsClients, user: Callable[..., str]
) -> None:
    hal = user("hal")
    async with own_gateway(fleet, PING_INTERVAL_SECONDS="0.5", PING_TIMEOUT_SECONDS="0.5") as gw:
        peer = await asyncio.to_thread(_open_and_stop_reading, gw.url, fleet.token(hal))
        try:
            await eventually(lambda: registry_row(aws, fleet, hal, "default"))

            async def dropped() -> bool:
                lost = 'ferry_ws_disconnects_total{reason="connection_lost"}'
                return await metric(http, gw.url, lost) == 1

            await eventually(dropped)
            assert await asyncio.to_thread(_read_to_the_end, peer) == "reset"
        finally:
            peer.close()
        assert not await registry_row(aws, fleet, hal, "default")


async def test_a_client_that_reads_keeps_up_with_the_same_pushes(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    fay = user("fay")
    deliveries = [{"user_id": fay, "device_id": "phone", "frame": PUSH_FRAME}] * PUSH_BATCH
    async with (
        own_gateway(fleet, OUTBOUND_QUEUE_FRAMES="16") as gateway,
        client(fleet, gateway.url, fay, "phone") as websocket,
    ):
        received = 0

        async def read() -> None:
            nonlocal received
            while True:
                if (await receive(websocket))["type"] == "media_update":
                    received += 1

        async with asyncio.TaskGroup() as tasks:
            reader = tasks.create_task(read())
            await push(http, fleet, gateway.url, deliveries)
            await eventually(lambda: asyncio.sleep(0, received == PUSH_BATCH))
            for _ in range(24):
                assert await push(http, fleet, gateway.url, deliveries) == {
                    "delivered": PUSH_BATCH,
                    "not_connected": 0,
                }
            await eventually(lambda: asyncio.sleep(0, received == 25 * PUSH_BATCH))
            reader.cancel()


async def test_a_device_that_reconnected_elsewhere_is_closed_by_the_heartbeat(
    fleet: Fleet, aws: AwsClients, gateway_url: str, user: Callable[..., str]
) -> None:
    frank = user("frank")
    async with (
        own_gateway(fleet, REGISTRY_TTL_SECONDS="3") as gateway,  # a heartbeat every second
        client(fleet, gateway.url, frank, "phone") as stale,
    ):
        await eventually(lambda: registry_row(aws, fleet, frank, "phone"))
        async with client(fleet, gateway_url, frank, "phone") as fresh:

            async def on_fleet_gateway() -> bool:
                row = await registry_row(aws, fleet, frank, "phone")
                url: str | None = row.get("gateway_url", {}).get("S")
                return url == gateway_url

            await eventually(on_fleet_gateway)
            await read_until_closed(stale)
            assert stale.close_code == 4000
            # The stale gateway's deregistration left the fresh row alone.
            assert await on_fleet_gateway()
            await fresh.send(json.dumps({"type": "ping"}))
            await receive_type(fresh, "pong")


async def test_a_stopping_gateway_closes_with_1001_and_deregisters(
    fleet: Fleet, aws: AwsClients, user: Callable[..., str]
) -> None:
    gina = user("gina")
    async with own_gateway(fleet) as gateway:
        websocket = await connect(
            ws_url(gateway.url), additional_headers=fleet.auth(gina, "phone"), open_timeout=WAIT
        )
        await eventually(lambda: registry_row(aws, fleet, gina, "phone"))
        code = await asyncio.to_thread(gateway.stop)
        assert stopped_cleanly(code), gateway.log_tail()
        await read_until_closed(websocket)
        assert websocket.close_code == 1001
        await websocket.close()
        assert not await registry_row(aws, fleet, gina, "phone")
