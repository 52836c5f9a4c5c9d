"""The local connection set and the per-connection writer: ordering, bounds, replacement."""

import asyncio
import json
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from gateway.close_codes import CloseCode
from gateway.connections import (
    LocalConnection,
    LocalConnections,
    PendingWindow,
    message_id_of,
)
from gateway.metrics import DisconnectReason, GatewayMetrics
from gateway.settings import Settings
from shared.connections import Connection
from shared.frames import PongFrame
from tests.waiting import scaled


def message(message_id: str) -> dict[str, Any]:
    return {"type": "message", "message": {"message_id": message_id, "seq": 1}}


def row(user: str = "alice", device: str = "phone", connection_id: str = "c1") -> Connection:
    return Connection(user, device, "http://gw", connection_id, expires_at=100)


class Client:
    """The wire: collects what is written; `reading = False` makes its buffer fill up."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.reading = True
        self.gone = False
        self.closed: tuple[int | None, str] | None = None

    def writable(self) -> bool:
        return self.reading

    def write_text(self, text: str) -> bool:
        if self.gone:
            return False
        self.frames.append(json.loads(text))
        return True

    def close(self, code: int | None, reason: str) -> None:
        self.closed = (code, reason)


def connection(
    metrics: GatewayMetrics, *, queue: int = 8, client: Client | None = None, **kwargs: str
) -> LocalConnection:
    return LocalConnection(
        row(**kwargs), queue_frames=queue, metrics=metrics, wire=client or Client()
    )


@pytest.fixture
def metrics() -> GatewayMetrics:
    return GatewayMetrics(CollectorRegistry())


# --- the pending window ----------------------------------------------------------------------


def test_message_ids_come_only_from_message_frames() -> None:
    assert message_id_of(message("m1")) == "m1"
    assert message_id_of({"type": "media_update", "media_id": "x"}) is None
    assert message_id_of({"type": "message", "message": "odd"}) is None
    assert message_id_of({"type": "message", "message": {"message_id": 3}}) is None


def test_the_window_dedupes_by_message_id_and_keeps_other_frames() -> None:
    window = PendingWindow(limit=10)
    assert window.first_sight(message("m1"))
    update = {"type": "media_update", "media_id": "x"}
    for frame in (message("m1"), message("m2"), update, message("m2"), update):
        assert window.hold(frame)
    assert window.take_held() == [message("m2"), update, update]
    assert window.take_held() == []


def test_the_window_is_bounded() -> None:
    window = PendingWindow(limit=2)
    assert window.hold(message("a"))
    assert window.hold(message("b"))
    assert not window.hold(message("c"))


# --- the writer ------------------------------------------------------------------------------


def test_the_backlog_goes_first_then_held_frames_without_duplicates(
    metrics: GatewayMetrics,
) -> None:
    client = Client()
    conn = connection(metrics, client=client)
    # Live frames while the backlog is fetched: held, even the one pushed first.
    assert conn.push(message("m3"))
    assert conn.push(message("m2"))  # stored after registering: pending and pushed
    assert conn.reply(PongFrame())  # the gateway's own replies need not wait
    assert client.frames == [{"type": "pong"}]
    conn.deliver_pending([message("m1")["message"], message("m2")["message"]])
    assert conn.push(message("m4"))  # the gate is open: straight to the socket
    ids = [frame["message"]["message_id"] for frame in client.frames[1:]]
    assert ids == ["m1", "m2", "m3", "m4"]


def test_a_failed_backlog_fetch_still_releases_held_frames(metrics: GatewayMetrics) -> None:
    client = Client()
    conn = connection(metrics, client=client)
    conn.push(message("m1"))
    conn.deliver_pending([])
    conn.deliver_pending([message("m0")["message"]])  # only the first hand-over counts
    assert client.frames == [message("m1")]


def test_a_backlog_longer_than_the_queue_is_no_slow_reader(metrics: GatewayMetrics) -> None:
    client = Client()
    conn = connection(metrics, queue=4, client=client)
    client.reading = False  # even into a full buffer: the backlog is in memory already
    conn.deliver_pending([message(f"m{n}")["message"] for n in range(50)])
    assert len(client.frames) == 50
    assert not conn.closing


def test_frames_wait_while_the_socket_is_full_and_flow_when_it_drains(
    metrics: GatewayMetrics,
) -> None:
    client = Client()
    conn = connection(metrics, queue=4, client=client)
    conn.deliver_pending([])
    client.reading = False
    assert all(conn.push({"type": "media_update", "n": n}) for n in range(4))
    assert client.frames == []
    assert conn.queued == 4
    client.reading = True
    conn.drain()
    assert [frame["n"] for frame in client.frames] == [0, 1, 2, 3]
    assert conn.queued == 0
    assert conn.push({"type": "media_update", "n": 4})  # straight through again
    assert client.frames[-1]["n"] == 4


def test_a_full_queue_closes_the_connection_with_1013(metrics: GatewayMetrics) -> None:
    client = Client()
    conn = connection(metrics, queue=4, client=client)
    conn.deliver_pending([])
    client.reading = False  # the client stops reading
    delivered = [conn.push({"type": "media_update", "n": n}) for n in range(10)]
    assert delivered.count(False) >= 1
    assert conn.close_request is not None
    assert (conn.close_request.why, conn.close_request.code) == (
        DisconnectReason.SLOW_READER,
        CloseCode.TRY_AGAIN_LATER,
    )
    assert client.closed is not None
    assert client.closed[0] == CloseCode.TRY_AGAIN_LATER
    assert not conn.push({"type": "media_update"})  # nothing more is queued once closing
    assert not conn.reply(PongFrame())


def test_too_many_frames_held_during_the_fetch_close_too(metrics: GatewayMetrics) -> None:
    conn = connection(metrics, queue=2)
    assert conn.push(message("a"))
    assert conn.push(message("b"))
    assert not conn.push(message("c"))
    assert conn.close_request is not None
    assert conn.close_request.why is DisconnectReason.SLOW_READER


def test_a_client_gone_ends_the_connection(metrics: GatewayMetrics) -> None:
    client = Client()
    conn = connection(metrics, client=client)
    client.gone = True
    conn.deliver_pending([message("m1")["message"]])
    assert conn.close_request is not None
    assert (conn.close_request.why, conn.close_request.code) == (
        DisconnectReason.CONNECTION_LOST,
        None,
    )


def test_the_first_close_wins(metrics: GatewayMetrics) -> None:
    client = Client()
    conn = connection(metrics, client=client)
    conn.close(DisconnectReason.REPLACED)
    conn.close(DisconnectReason.SHUTDOWN)
    request = conn.close_request
    assert request is not None
    assert (request.why, request.code, request.reason) == (
        DisconnectReason.REPLACED,
        CloseCode.REPLACED,
        "replaced by a newer connection",
    )
    assert client.closed == (CloseCode.REPLACED, "replaced by a newer connection")


# --- the set of local connections ------------------------------------------------------------


async def test_a_device_holds_one_connection_and_the_newer_wins(metrics: GatewayMetrics) -> None:
    connections = LocalConnections(metrics)
    older = connection(metrics, connection_id="c1")
    newer = connection(metrics, connection_id="c2")
    other = connection(metrics, device="laptop", connection_id="c3")
    connections.add(older)
    connections.add(other)
    connections.add(newer)
    assert older.close_request is not None
    assert (older.close_request.why, older.close_request.code) == (
        DisconnectReason.REPLACED,
        CloseCode.REPLACED,
    )
    assert connections.get("alice", "phone") is newer
    assert len(connections) == 2
    connections.remove(older)  # the older session ending must not drop the newer one
    assert connections.get("alice", "phone") is newer
    connections.remove(newer)
    connections.remove(other)
    assert len(connections) == 0
    await asyncio.wait_for(connections.wait_empty(), scaled(1))


async def test_close_all_closes_everything_and_stops_accepting(metrics: GatewayMetrics) -> None:
    connections = LocalConnections(metrics)
    held = [connection(metrics, device=f"d{n}", connection_id=f"c{n}") for n in range(3)]
    for conn in held:
        connections.add(conn)
    connections.close_all(DisconnectReason.SHUTDOWN)
    connections.close_all(DisconnectReason.SHUTDOWN)  # twice is fine
    assert not connections.accepting
    assert all(c.close_request and c.close_request.code == 1001 for c in held)


def test_the_renewed_row_only_moves_the_expiry(metrics: GatewayMetrics) -> None:
    conn = connection(metrics)
    renewed = conn.renewed(500)
    assert renewed.expires_at == 500
    assert (renewed.user_id, renewed.connection_id) == (conn.row.user_id, conn.row.connection_id)


# --- settings --------------------------------------------------------------------------------


def test_the_advertised_url_defaults_to_the_bind_address() -> None:
    settings = Settings(bind_host="127.0.0.1", bind_port=9000)
    assert settings.public_url == "http://127.0.0.1:9000"
    assert Settings(advertised_url="http://gw-1.internal:8080/").public_url == (
        "http://gw-1.internal:8080"
    )
    assert Settings(registry_ttl_seconds=90).heartbeat_interval_seconds == 30


def test_production_needs_an_advertised_url() -> None:
    secret, token = "s" * 40, "t" * 40
    with pytest.raises(ValueError, match="ADVERTISED_URL"):
        Settings(environment="production", auth_jwt_secret=secret, internal_token=token)
    Settings(
        environment="production",
        auth_jwt_secret=secret,
        internal_token=token,
        advertised_url="http://10.0.0.5:8080",
    )
