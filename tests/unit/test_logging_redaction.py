import logging

from shared.logging import RedactTokens


def _record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, message, args, None)


def test_tokens_in_urls_never_reach_a_log() -> None:
    record = _record('%s - "WebSocket /v1/ws?token=%s" [accepted]', "127.0.0.1:5", "eyJ.abc.def")
    RedactTokens().filter(record)
    assert record.getMessage() == '127.0.0.1:5 - "WebSocket /v1/ws?token=[redacted]" [accepted]'


def test_other_parameters_and_messages_are_untouched() -> None:
    record = _record("GET /v1/ws?device=x&token=secret&x=1 %d", 200)
    RedactTokens().filter(record)
    assert record.getMessage() == "GET /v1/ws?device=x&token=[redacted]&x=1 200"
    plain = _record("nothing to hide %s", "here")
    RedactTokens().filter(plain)
    assert plain.getMessage() == "nothing to hide here"
