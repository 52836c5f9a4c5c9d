"""Pure parts of g-web's work: HLS playback links, Uppy capabilities, CORS origins, frames."""

from __future__ import annotations

from gateway.session import interpret
from media_service.hls_links import MAX_PRESIGN_SECONDS, MasterLinkSigner, playback_seconds
from media_service.uppy import CapabilitySigner
from shared.cors import parse_origins
from shared.frames import AuthFrame, ErrorFrame


def test_a_playback_link_lives_for_the_duration_plus_the_grace() -> None:
    assert playback_seconds({"duration_ms": 30_000}, 600) == 631
    assert playback_seconds({}, 600) == 601
    assert playback_seconds({"duration_ms": "x"}, 0) == 1
    assert playback_seconds({"duration_ms": 10**12}, 600) == MAX_PRESIGN_SECONDS


def test_a_master_link_names_its_media_reader_and_expiry() -> None:
    signer = MasterLinkSigner("secret")
    signature = signer.sign("m_1", "alice", 2_000)
    assert signer.verify("m_1", "alice", 2_000, signature, now=1_000)
    assert not signer.verify("m_1", "alice", 2_000, signature, now=2_001)  # expired
    assert not signer.verify("m_1", "mallory", 2_000, signature, now=1_000)
    assert not signer.verify("m_2", "alice", 2_000, signature, now=1_000)
    assert not signer.verify("m_1", "alice", 2_001, signature, now=1_000)
    assert not MasterLinkSigner("other").verify("m_1", "alice", 2_000, signature, now=1_000)
    assert not signer.verify("m_1", "alice", 2_000, "é" + signature[1:], now=1_000)


def test_an_uppy_capability_names_its_owner_and_refuses_forgeries() -> None:
    signer = CapabilitySigner("secret")
    token = signer.mint("alice.w-1", 2_000)
    granted = signer.read(token, now=1_000)
    assert granted is not None
    assert (granted.owner, granted.expires) == ("alice.w-1", 2_000)
    assert signer.read(token, now=2_001) is None
    expires, owner, mac = token.split(".")
    assert (
        signer.read(
            f"{expires}.{CapabilitySigner('x').mint('bob', 2_000).split('.')[1]}.{mac}", now=0
        )
        is None
    )
    assert signer.read(f"3000.{owner}.{mac}", now=0) is None
    for junk in ("", "a.b.c", "1.2", "1.!!!.x", "1..x"):
        assert signer.read(junk, now=0) is None


def test_cors_origins_are_a_comma_separated_list() -> None:
    assert parse_origins("http://a:1, http://b/ ,,") == ("http://a:1", "http://b")
    assert parse_origins("") == ()
    assert parse_origins("*") == ("*",)


def test_nested_brackets_get_an_error_frame_not_a_recursion_error() -> None:
    for text in ("[" * 30_000 + "]" * 30_000, '{"a":' * 10_000 + "1" + "}" * 10_000):
        frame = interpret(text)
        assert isinstance(frame, ErrorFrame)
        assert frame.code == "bad_frame"


def test_an_auth_frame_is_a_client_frame() -> None:
    frame = interpret('{"type": "auth", "token": "abc"}')
    assert isinstance(frame, AuthFrame)
    assert frame.token == "abc"
    assert isinstance(interpret('{"type": "auth", "token": ""}'), ErrorFrame)
