"""Pure parts of the Message Service v1.1: direct ids, list cursors, tombstone frames, admins."""

from __future__ import annotations

import pytest

from gateway.connections import backlog_frame
from message_service.conversations import BadCursor, conversation_of, decode_cursor, encode_cursor
from message_service.ids import is_conversation_id
from message_service.messages import stored_message
from message_service.service import direct_conversation_id
from shared.admitted import AdmittedCache
from shared.models import DeletedMessage, Message


def test_a_pair_has_one_direct_id_whoever_asks() -> None:
    one = direct_conversation_id("alice", "bob")
    assert one == direct_conversation_id("bob", "alice")
    assert is_conversation_id(one)
    assert one != direct_conversation_id("alice", "carol")
    # The separator keeps ("a", "b c") and ("a b", "c") apart.
    assert direct_conversation_id("a", "bc") != direct_conversation_id("ab", "c")


def test_a_cursor_round_trips_and_belongs_to_its_user() -> None:
    key = {
        "conversation_id": {"S": "c_12345678"},
        "user_id": {"S": "alice"},
        "last_message_at": {"S": "2026-01-01T00:00:00.000000Z"},
    }
    cursor = encode_cursor(key)
    assert decode_cursor(cursor, "alice") == key
    with pytest.raises(BadCursor):
        decode_cursor(cursor, "bob")
    for forged in ("not base64!", "e30=", encode_cursor({"user_id": {"S": "alice"}})):
        with pytest.raises(BadCursor):
            decode_cursor(forged, "alice")


def test_a_pending_tombstone_becomes_a_message_deleted_frame() -> None:
    tombstone = DeletedMessage(
        message_id="c_12345678.3",
        conversation_id="c_12345678",
        seq=3,
        sender="alice",
        created_at="2026-01-01T00:00:00Z",
    ).model_dump(mode="json")
    assert backlog_frame(tombstone) == {
        "type": "message_deleted",
        "conversation_id": "c_12345678",
        "message_id": "c_12345678.3",
        "seq": 3,
    }
    message = {"message_id": "c_12345678.4", "seq": 4}
    assert backlog_frame(message) == {"type": "message", "message": message}


def test_a_deleted_row_reads_as_its_tombstone_only() -> None:
    row = {
        "message_id": "c_12345678.1",
        "conversation_id": "c_12345678",
        "seq": 1,
        "sender": "alice",
        "sender_device": "phone",
        "client_msg_id": "x",
        "created_at": "2026-01-01T00:00:00.000000Z",
        "deleted": True,
        "deleted_at": "2026-01-02T00:00:00.000000Z",
        "released_media": ["m_1"],
    }
    tombstone = stored_message(row)
    assert isinstance(tombstone, DeletedMessage)
    assert set(tombstone.model_dump()) == {
        "message_id",
        "conversation_id",
        "seq",
        "sender",
        "created_at",
        "deleted",
    }
    alive = {k: v for k, v in row.items() if k not in ("deleted", "deleted_at", "released_media")}
    assert isinstance(stored_message({**alive, "text": "hi"}), Message)


def test_rows_older_than_admins_make_the_creator_admin() -> None:
    row = {"conversation_id": "c_12345678", "created_at": "2026-01-01T00:00:00Z"}
    assert conversation_of({**row, "created_by": "alice"}, ["alice", "bob"]).admins == ["alice"]
    assert conversation_of({**row, "admins": ["bob"]}, ["alice", "bob"]).admins == ["bob"]


def test_the_admission_cache_forgets() -> None:
    cache = AdmittedCache(ttl_seconds=60, size=2)
    cache.add(("a", "1"))
    cache.add(("a", "2"))
    cache.add(("a", "3"))  # the oldest goes
    assert not cache.hit(("a", "1"))
    assert cache.hit(("a", "3"))
    cache.forget(("a", "3"))
    assert not cache.hit(("a", "3"))
    assert not AdmittedCache(ttl_seconds=0).hit(("a", "1"))
