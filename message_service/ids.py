"""Identifiers of conversations and messages (pure).

A message id names its conversation and seq, so a pending delivery or an ack needs no lookup
to find the message, and the same (conversation, seq) always has the same id.
"""

from __future__ import annotations

import re
import secrets

_CONVERSATION_ID = re.compile(r"^c_[A-Za-z0-9_-]{8,64}$")


def new_conversation_id() -> str:
    return "c_" + secrets.token_urlsafe(12)


def is_conversation_id(value: str) -> bool:
    return bool(_CONVERSATION_ID.fullmatch(value))


def message_id(conversation_id: str, seq: int) -> str:
    return f"{conversation_id}.{seq}"


def parse_message_id(value: str) -> tuple[str, int] | None:
    conversation_id, dot, seq = value.rpartition(".")
    if not dot or not is_conversation_id(conversation_id) or not seq.isdigit():
        return None
    number = int(seq)
    return (conversation_id, number) if number >= 1 else None


def idempotency_key(sender: str, client_msg_id: str) -> str:
    # A unit separator cannot appear in a user id, so keys of different senders never collide.
    return f"{sender}\x1f{client_msg_id}"


def device_key(user_id: str, device_id: str) -> str:
    return f"{user_id}\x1f{device_id}"
