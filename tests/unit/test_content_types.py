import pytest

from shared.content_types import looks_like, media_type_of
from shared.models import MediaType

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 40
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40
MP4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\x00" * 30
HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 30


@pytest.mark.parametrize(
    ("content_type", "head"),
    [
        ("image/jpeg", JPEG),
        ("image/png", PNG),
        ("image/gif", b"GIF89a" + b"\x00" * 10),
        ("image/webp", b"RIFF\x00\x00\x00\x00WEBPVP8 "),
        ("image/heic", HEIC),
        ("video/mp4", MP4),
        ("audio/ogg", b"OggS\x00\x02"),
        ("video/webm", b"\x1a\x45\xdf\xa3\x9f"),
        ("audio/mpeg", b"ID3\x04\x00"),
        ("audio/amr", b"#!AMR\n\x3c"),
        ("audio/amr", b"#!AMR-WB\n\x44"),
        ("audio/3gpp", b"\x00\x00\x00\x18ftyp3gp4\x00\x00\x02\x00isom3gp4"),
        ("video/3gpp", b"\x00\x00\x00\x18ftyp3gp5\x00\x00\x02\x00isom3gp5"),
        ("application/pdf", b"%PDF-1.7\n"),
        ("text/plain", "héllo wörld".encode()),
        ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", b"PK\x03\x04"),
    ],
)
def test_real_signatures_match(content_type: str, head: bytes) -> None:
    assert looks_like(content_type, head)


@pytest.mark.parametrize(
    ("content_type", "head"),
    [
        ("image/jpeg", PNG),
        ("image/png", JPEG),
        ("video/mp4", HEIC),
        ("image/heic", MP4),
        ("text/plain", b"\x00\x01binary"),
        ("application/x-unknown", JPEG),
        ("image/jpeg", b""),
        ("audio/amr", b"#!AMR-XX\n"),
        ("audio/amr", MP4),
    ],
)
def test_lies_do_not_match(content_type: str, head: bytes) -> None:
    assert not looks_like(content_type, head)


def test_text_cut_inside_a_character_is_still_text() -> None:
    assert looks_like("text/plain", "aé".encode()[:2])


def test_media_types() -> None:
    assert media_type_of("image/jpeg") is MediaType.IMAGE
    assert media_type_of("audio/ogg") is MediaType.VOICE
    assert media_type_of("audio/amr") is MediaType.VOICE
    assert media_type_of("audio/3gpp") is MediaType.VOICE
    assert media_type_of("video/3gpp") is MediaType.VIDEO
    assert media_type_of("video/quicktime") is MediaType.VIDEO
    assert media_type_of("application/pdf") is MediaType.DOCUMENT
    assert media_type_of("application/x-msdownload") is None
