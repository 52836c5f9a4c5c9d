"""Frame dispatch decisions of the gateway: what a client frame means, how failures answer."""

import json

import pytest

from gateway.close_codes import disconnect_reason
from gateway.message_client import MessageServiceUnavailable, SendRejected, failure_of
from gateway.metrics import DisconnectReason, inbound_label, outbound_label
from gateway.session import interpret, rejection_frame
from shared.frames import ErrorFrame, PingFrame, ReceivedFrame, SendFrame

LONG = "x" * 8001


def test_a_ping_is_a_ping() -> None:
    assert isinstance(interpret('{"type": "ping"}'), PingFrame)


def test_a_send_keeps_its_fields_and_ignores_unknown_ones() -> None:
    frame = interpret(
        json.dumps(
            {
                "type": "send",
                "client_msg_id": "c-1",
                "conversation_id": "conv",
                "text": "hello",
                "media": [{"media_id": "m-1"}],
                "future_field": 1,
            }
        )
    )
    assert isinstance(frame, SendFrame)
    assert (frame.client_msg_id, frame.conversation_id, frame.text) == ("c-1", "conv", "hello")
    assert [ref.media_id for ref in frame.media] == ["m-1"]


def test_received_lists_message_ids() -> None:
    frame = interpret('{"type": "received", "message_ids": ["a", "b"]}')
    assert isinstance(frame, ReceivedFrame)
    assert frame.message_ids == ["a", "b"]


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        "{}",
        '{"type": "teleport"}',
        '{"type": "received", "message_ids": "a"}',
        '{"type": "send", "conversation_id": "c"}',
        json.dumps({"type": "send", "client_msg_id": "", "conversation_id": "c"}),
        json.dumps(
            {"type": "send", "client_msg_id": "c", "conversation_id": "c", "text": "x" * 8001}
        ),
        None,  # a binary frame
    ],
)
def test_anything_else_is_a_bad_frame_answered_with_a_reason(text: str | None) -> None:
    frame = interpret(text)
    assert isinstance(frame, ErrorFrame)
    assert frame.code == "bad_frame"
    assert frame.message


def test_a_bad_send_is_answered_with_its_client_msg_id_when_it_has_one() -> None:
    bad = interpret('{"type": "send", "client_msg_id": "c-9"}')
    assert isinstance(bad, ErrorFrame)
    assert bad.client_msg_id == "c-9"
    for text in ('{"type": "send", "client_msg_id": 5}', "[1]", "nope"):
        frame = interpret(text)
        assert isinstance(frame, ErrorFrame)
        assert frame.client_msg_id is None


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (1000, DisconnectReason.CLIENT_CLOSED),
        (1001, DisconnectReason.CLIENT_CLOSED),
        (4321, DisconnectReason.CLIENT_CLOSED),
        (1005, DisconnectReason.CONNECTION_LOST),
        (1006, DisconnectReason.CONNECTION_LOST),
        (1009, DisconnectReason.FRAME_TOO_LARGE),
        (1012, DisconnectReason.SHUTDOWN),
    ],
)
def test_disconnect_codes_map_to_bounded_reasons(code: int, reason: DisconnectReason) -> None:
    assert disconnect_reason(code) is reason


def test_a_refusal_passes_the_message_services_error_through() -> None:
    body = json.dumps({"error": {"code": "media_not_uploaded", "message": "upload it first"}})
    failure = failure_of(409, body.encode())
    assert isinstance(failure, SendRejected)
    frame = rejection_frame("c-1", failure)
    assert (frame.code, frame.message, frame.client_msg_id) == (
        "media_not_uploaded",
        "upload it first",
        "c-1",
    )


def test_a_refusal_without_the_error_body_still_answers() -> None:
    failure = failure_of(404, b"<html>not found</html>")
    assert isinstance(failure, SendRejected)
    assert (failure.status, failure.code) == (404, "rejected")


@pytest.mark.parametrize("status", [500, 502, 503, 401, 403, 302])
def test_server_errors_and_a_refused_internal_token_are_unavailable(status: int) -> None:
    body = json.dumps({"error": {"code": "internal_only", "message": "no"}}).encode()
    failure = failure_of(status, body)
    assert isinstance(failure, MessageServiceUnavailable)
    frame = rejection_frame("c-2", failure)
    assert (frame.code, frame.client_msg_id) == ("unavailable", "c-2")


def test_metric_labels_stay_bounded() -> None:
    assert inbound_label("send") == "send"
    assert inbound_label("anything") == "invalid"
    assert inbound_label(None) == "invalid"
    assert outbound_label("message") == "message"
    assert outbound_label("x" * 100) == "other"
    assert outbound_label(7) == "other"
