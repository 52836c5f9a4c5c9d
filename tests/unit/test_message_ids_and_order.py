from datetime import UTC, datetime, timedelta

import pytest

from message_service.deliveries import delivery_order
from message_service.ids import (
    idempotency_key,
    is_conversation_id,
    message_id,
    new_conversation_id,
    parse_message_id,
)
from message_service.service import check_message_shape
from shared.errors import PayloadTooLarge, Unprocessable
from shared.models import MediaRef, Message, SendMessage

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def msg(conversation_id: str, seq: int, seconds: float) -> Message:
    return Message(
        message_id=message_id(conversation_id, seq),
        conversation_id=conversation_id,
        seq=seq,
        sender="a",
        sender_device="d",
        client_msg_id=f"{conversation_id}{seq}",
        text="x",
        created_at=T0 + timedelta(seconds=seconds),
    )


def test_message_ids_round_trip() -> None:
    conversation_id = new_conversation_id()
    assert is_conversation_id(conversation_id)
    assert parse_message_id(message_id(conversation_id, 42)) == (conversation_id, 42)


@pytest.mark.parametrize("raw", ["", "c_abc", "c_abcdefghij.", "c_abcdefghij.0", "x.1", "c_a.1"])
def test_bad_message_ids_do_not_parse(raw: str) -> None:
    assert parse_message_id(raw) is None


def test_idempotency_keys_of_different_senders_never_collide() -> None:
    assert idempotency_key("ab", "c") != idempotency_key("a", "bc")


def test_delivery_is_oldest_first_across_conversations() -> None:
    a1, b1, a2 = msg("c_aaaaaaaaaa", 1, 0), msg("c_bbbbbbbbbb", 1, 1), msg("c_aaaaaaaaaa", 2, 2)
    assert delivery_order([a2, b1, a1]) == [a1, b1, a2]


def test_seq_order_wins_over_skewed_clocks_within_a_conversation() -> None:
    # seq 2 was stamped by an instance whose clock runs behind.
    one, two, other = (
        msg("c_aaaaaaaaaa", 1, 5),
        msg("c_aaaaaaaaaa", 2, 1),
        msg("c_bbbbbbbbbb", 1, 3),
    )
    ordered = delivery_order([one, two, other])
    in_a = [m.seq for m in ordered if m.conversation_id == "c_aaaaaaaaaa"]
    assert in_a == [1, 2]
    assert len(ordered) == 3


def test_a_message_needs_text_or_media() -> None:
    with pytest.raises(Unprocessable, match="text or media"):
        check_message_shape(SendMessage(client_msg_id="x", text="   "))


def test_thumbnails_are_limited_after_decoding() -> None:
    import base64

    fits = base64.b64encode(b"x" * 4096).decode()
    check_message_shape(
        SendMessage(client_msg_id="x", media=[MediaRef(media_id="m", thumbnail=fits)])
    )
    big = base64.b64encode(b"x" * 4097).decode()
    with pytest.raises(PayloadTooLarge):
        check_message_shape(
            SendMessage(client_msg_id="x", media=[MediaRef(media_id="m", thumbnail=big)])
        )


def test_the_same_media_twice_is_refused() -> None:
    twice = [MediaRef(media_id="m"), MediaRef(media_id="m")]
    with pytest.raises(Unprocessable, match="once"):
        check_message_shape(SendMessage(client_msg_id="x", media=twice))
