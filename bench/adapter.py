"""Every import of Ferry's internals that the bench makes, in one place.

Other modules of `bench` import only this one (and `devstack`, which starts fleets), so a rename
inside a service costs one edit here. Each function takes and returns plain values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# What the worker's JSON log says when a media reaches `uploaded` (its bytes verified) and when
# it settles; `state` is a structured field of the event-publishing line too, so either works.
VERIFIED_MESSAGES = frozenset({"upload verified"})
SETTLED_MESSAGES = frozenset({"media settled", "published media event"})


def ferry_thumbnails(source: Path, out_dir: Path, thumb_format: str) -> None:
    """The worker's image derivation, as a pool process runs it (moderation scan included)."""
    from transcode_worker.derivatives.images import ImageLimits, derive_image
    from transcode_worker.derivatives.moderation import PerceptualHashScanner

    scanner = PerceptualHashScanner(blocklist=frozenset({"0123456789abcdef"}))
    derive_image(source, out_dir, limits=ImageLimits(), thumb_format=thumb_format, scanner=scanner)


def import_ferry_thumbnails() -> None:
    """Only the imports `ferry_thumbnails` needs (the floor of its memory)."""
    import transcode_worker.derivatives.images
    import transcode_worker.derivatives.moderation  # noqa: F401


def thumb_settings() -> dict[str, Any]:
    """Edges, quality and libwebp effort of the worker's thumbnails (the anchors copy them)."""
    from transcode_worker.derivatives.images import ImageLimits

    limits = ImageLimits()
    return {
        "sizes": sorted(limits.thumb_sizes, reverse=True),
        "quality": limits.quality,
        "webp_method": limits.webp_method,
        "jpeg_optimize": limits.jpeg_optimize,
    }


def ferry_video(source: Path, out_dir: Path) -> dict[str, Any]:
    """The worker's video derivation (poster + HLS ladder); what it made."""
    from transcode_worker.derivatives.av_probe import AvLimits
    from transcode_worker.derivatives.video import derive_video

    derived = derive_video(source, out_dir, limits=AvLimits())
    return {
        "files": len(derived.files),
        "output_bytes": sum(file.path.stat().st_size for file in derived.files),
    }


def video_settings() -> dict[str, Any]:
    """The ladder ((short side, bit rate), ...), segment length, audio bit rate, poster time."""
    from transcode_worker.derivatives.av_probe import AvLimits

    limits = AvLimits()
    return {
        "ladder": [list(rung) for rung in limits.ladder],
        "segment_seconds": limits.segment_seconds,
        "audio_bitrate": limits.audio_bitrate,
        "voice_bitrate": limits.voice_bitrate,
        "poster_seconds": limits.poster_seconds,
        "preset": "veryfast",  # transcode_worker.derivatives.video's libx264 preset
    }


def ferry_voice(source: Path, out_dir: Path) -> dict[str, Any]:
    """The worker's voice-note derivation (Opus `voice_low` and the waveform)."""
    from transcode_worker.derivatives.audio import derive_voice
    from transcode_worker.derivatives.av_probe import AvLimits

    derived = derive_voice(source, out_dir, limits=AvLimits())
    return {"output_bytes": sum(file.path.stat().st_size for file in derived.files)}


def issue_token(user: str, secret: str) -> str:
    from shared.auth import issue_token as issue

    return issue(user, secret, device_id="phone")


def check_bearer(authorization: str | None, secret: str) -> str:
    """The fleet's JWT check of an `Authorization` header: the user id, or ValueError."""
    from shared.auth import bearer_token, verify_token
    from shared.errors import Unauthorized

    try:
        return verify_token(bearer_token(authorization), secret).user_id
    except Unauthorized as error:
        raise ValueError(str(error)) from error
