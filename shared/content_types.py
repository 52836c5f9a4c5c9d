"""Content types Ferry knows: which media type each is, and what its first bytes look like.

The Media Service uses the mapping to classify a slot; the worker's commit step uses
`looks_like` on the first bytes of what actually arrived, so a lying content type fails.
"""

from __future__ import annotations

from collections.abc import Callable

from shared.models import MediaType

MEDIA_TYPE_OF: dict[str, MediaType] = {
    "image/jpeg": MediaType.IMAGE,
    "image/png": MediaType.IMAGE,
    "image/webp": MediaType.IMAGE,
    "image/gif": MediaType.IMAGE,
    "image/heic": MediaType.IMAGE,
    "image/heif": MediaType.IMAGE,
    "audio/ogg": MediaType.VOICE,
    "audio/opus": MediaType.VOICE,
    "audio/webm": MediaType.VOICE,
    "audio/mp4": MediaType.VOICE,
    "audio/x-m4a": MediaType.VOICE,
    "audio/aac": MediaType.VOICE,
    "audio/mpeg": MediaType.VOICE,
    "audio/amr": MediaType.VOICE,  # AMR-NB / AMR-WB `.amr` files (phone voice recorders)
    "audio/3gpp": MediaType.VOICE,  # AMR or AAC in 3GP
    "video/mp4": MediaType.VIDEO,
    "video/quicktime": MediaType.VIDEO,
    "video/webm": MediaType.VIDEO,
    "video/3gpp": MediaType.VIDEO,  # H.263 / MPEG-4 Part 2 with AMR, from older phones and MMS
    "application/pdf": MediaType.DOCUMENT,
    "application/zip": MediaType.DOCUMENT,
    "text/plain": MediaType.DOCUMENT,
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": MediaType.DOCUMENT,
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": MediaType.DOCUMENT,
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": (
        MediaType.DOCUMENT
    ),
}

# How many leading bytes `looks_like` needs to decide.
SNIFF_BYTES = 64

_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"heif"}
_MP4_LIKE_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot"}


def _ftyp_brand(head: bytes) -> bytes | None:
    return head[8:12] if len(head) >= 12 and head[4:8] == b"ftyp" else None


def _is_jpeg(head: bytes) -> bool:
    return head.startswith(b"\xff\xd8\xff")


def _is_png(head: bytes) -> bool:
    return head.startswith(b"\x89PNG\r\n\x1a\n")


def _is_gif(head: bytes) -> bool:
    return head[:6] in (b"GIF87a", b"GIF89a")


def _is_webp(head: bytes) -> bool:
    return head[:4] == b"RIFF" and head[8:12] == b"WEBP"


def _is_heif(head: bytes) -> bool:
    brand = _ftyp_brand(head)
    return brand is not None and (brand in _HEIF_BRANDS or b"mif1" in head[8:SNIFF_BYTES])


def _is_iso_media(head: bytes) -> bool:
    """MP4, M4A and MOV all start with an ISO base media box."""
    return head[4:8] in _MP4_LIKE_BOXES and not _is_heif(head)


def _is_amr(head: bytes) -> bool:
    """The AMR storage format (RFC 4867, section 5): `#!AMR\n` or `#!AMR-WB\n`."""
    return head.startswith((b"#!AMR\n", b"#!AMR-WB\n"))


def _is_ogg(head: bytes) -> bool:
    return head.startswith(b"OggS")


def _is_ebml(head: bytes) -> bool:
    return head.startswith(b"\x1a\x45\xdf\xa3")


def _is_mpeg_audio(head: bytes) -> bool:
    if head.startswith(b"ID3"):
        return True
    return len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0


def _is_adts(head: bytes) -> bool:
    return len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xF6) == 0xF0


def _is_pdf(head: bytes) -> bool:
    return head.startswith(b"%PDF-")


def _is_zip(head: bytes) -> bool:
    return head.startswith(b"PK\x03\x04")


def _is_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        # A multi-byte character cut by the sniff window is still text.
        return error.start >= len(head) - 3 and error.reason == "unexpected end of data"
    return True


_SIGNATURES: dict[str, Callable[[bytes], bool]] = {
    "image/jpeg": _is_jpeg,
    "image/png": _is_png,
    "image/webp": _is_webp,
    "image/gif": _is_gif,
    "image/heic": _is_heif,
    "image/heif": _is_heif,
    "audio/ogg": _is_ogg,
    "audio/opus": _is_ogg,
    "audio/webm": _is_ebml,
    "audio/mp4": _is_iso_media,
    "audio/x-m4a": _is_iso_media,
    "audio/aac": _is_adts,
    "audio/mpeg": _is_mpeg_audio,
    "audio/amr": _is_amr,
    "audio/3gpp": _is_iso_media,
    "video/mp4": _is_iso_media,
    "video/quicktime": _is_iso_media,
    "video/webm": _is_ebml,
    "video/3gpp": _is_iso_media,
    "application/pdf": _is_pdf,
    "application/zip": _is_zip,
    "text/plain": _is_text,
}


def media_type_of(content_type: str) -> MediaType | None:
    return MEDIA_TYPE_OF.get(content_type)


def looks_like(content_type: str, head: bytes) -> bool:
    """Whether the first bytes of a file are those of `content_type` (magic bytes).

    Office documents are zip containers, so they are checked as zip. An unknown type never
    matches: the commit step only passes what it can recognise.
    """
    check = _SIGNATURES.get(content_type)
    if check is None and content_type.startswith("application/vnd.openxmlformats"):
        check = _is_zip
    return check is not None and check(head[:SNIFF_BYTES])
