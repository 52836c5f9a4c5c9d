"""Text logs cannot be forged through logged values (issue 9 item 11)."""

from __future__ import annotations

import logging

from shared.logging import TextFormatter, accepted_request_id, request_id_var


def _format(message: str, *args: object, **extra: object) -> str:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return TextFormatter("svc").format(record)


def test_a_request_id_outside_the_strict_set_is_replaced() -> None:
    forged = "x] user_id=admin status=200 [y"
    assert accepted_request_id(forged) != forged
    assert accepted_request_id("ab\r\ncd-1234") != "ab\r\ncd-1234"
    assert accepted_request_id("short") != "short"
    assert accepted_request_id("x" * 129) != "x" * 129
    kept = "client-1.2_abcdef"
    assert accepted_request_id(kept) == kept


def test_field_values_cannot_close_the_field_list_or_add_fields() -> None:
    line = _format("GET %s", "/v1/x", client_value="x] user_id=admin status=200 [y")
    # One field: the value is quoted, so its brackets, spaces and `=` cannot start another.
    assert line.endswith('[client_value="x] user_id=admin status=200 [y"]')


def test_a_newline_in_a_logged_value_does_not_start_a_line() -> None:
    token = request_id_var.set(None)
    try:
        line = _format("name %s", "a\r\nsvc INFO forged", note="b\nc")
    finally:
        request_id_var.reset(token)
    assert "\n" not in line
    assert r"a\x0d\x0asvc INFO forged" in line
    assert r'note="b\nc"' in line


def test_plain_values_print_as_they_are() -> None:
    line = _format("ok", status=200, queue_url="http://127.0.0.1:4566/q/ferry-uploads")
    assert line.endswith("[status=200 queue_url=http://127.0.0.1:4566/q/ferry-uploads]")
