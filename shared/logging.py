"""JSON logs, one object a line, carrying the request id of whatever is being handled."""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

REQUEST_ID_HEADER = "X-Request-ID"
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


# What a caller's `X-Request-ID` may be; anything else is replaced, never logged as given.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,128}")
# Logged values made only of these print as they are; any other character is escaped.
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9._:/@+,-]*")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def new_request_id() -> str:
    return uuid.uuid4().hex


def accepted_request_id(incoming: str) -> str:
    """The caller's request id when it is safe to log and echo, else a fresh one."""
    return incoming if _REQUEST_ID.fullmatch(incoming) else new_request_id()


def _escaped(value: Any) -> str:
    """One logged value that cannot forge fields or lines: a value that is not plain is written
    as a JSON string (logfmt's quoting), so `x] user_id=admin [y` reads as the one value it is
    and stays readable: `"x] user_id=admin [y"`; controls and quotes are escaped inside it."""
    text = str(value)
    if _PLAIN_VALUE.fullmatch(text):
        return text
    return json.dumps(text)


def _escape_char(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        # `extra={...}` fields travel as structured keys.
        entry.update({k: v for k, v in record.__dict__.items() if k not in _RESERVED})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """One line for humans (`LOG_JSON=false`, `make run`'s default), still with the request id
    and the structured fields, as `key=value` after the message."""

    def __init__(self, service: str) -> None:
        super().__init__(f"%(asctime)s {service} %(levelname)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        # A CR or LF inside a logged value must not start a forged line of its own.
        record.message = _CONTROLS.sub(lambda m: _escape_char(m.group()), record.message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields: dict[str, Any] = {}
        request_id = request_id_var.get()
        if request_id:
            fields["request_id"] = request_id
        # uvicorn's `color_message` repeats the message with terminal colours: not a field.
        fields.update(
            {k: v for k, v in record.__dict__.items() if k not in _RESERVED | {"color_message"}}
        )
        if not fields:
            return line
        extra = " ".join(f"{key}={_escaped(value)}" for key, value in fields.items())
        head, newline, rest = line.partition("\n")  # a traceback stays below the fields
        return f"{head} [{extra}]{newline}{rest}"


_TOKEN_IN_TEXT = re.compile(r"(token=)[^&\s\"'\]]+")


class RedactTokens(logging.Filter):
    """Browsers put their JWT in the WebSocket URL (`?token=`), and servers log request lines:
    no bearer credential may reach a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "token=" in message:
            record.msg = _TOKEN_IN_TEXT.sub(r"\1[redacted]", message)
            record.args = ()
        return True


def configure_logging(service: str, level: str = "INFO", *, json_lines: bool = True) -> None:
    """Route every logger (uvicorn's included) to stderr in one format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactTokens())
    if json_lines:
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(TextFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Per-request access lines come from our middleware, with the request id.
    logging.getLogger("uvicorn.access").setLevel("WARNING")
    for noisy in ("botocore", "aiobotocore", "aioboto3", "urllib3", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel("WARNING")
