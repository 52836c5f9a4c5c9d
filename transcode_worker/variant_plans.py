"""Which derivation each media type gets, bound to the limits in settings (picklable)."""

from __future__ import annotations

import functools
from pathlib import Path

from shared.models import MediaType
from transcode_worker.derivatives.animation import AnimationLimits
from transcode_worker.derivatives.audio import derive_voice
from transcode_worker.derivatives.av_probe import AvLimits
from transcode_worker.derivatives.clean_original import with_clean_original
from transcode_worker.derivatives.documents import DocumentLimits, derive_document
from transcode_worker.derivatives.images import ImageLimits, derive_image
from transcode_worker.derivatives.moderation import Moderation, PerceptualHashScanner, Scanner
from transcode_worker.derivatives.strip_images import strip_image
from transcode_worker.derivatives.strip_mp4 import strip_video
from transcode_worker.derivatives.video import derive_video
from transcode_worker.pipeline import DeriveFunction, DerivePlans, FileCheck
from transcode_worker.safety.malware import MalwareCheck
from transcode_worker.safety.nsfw import NsfwClassifier
from transcode_worker.safety.pdq import PdqScanner
from transcode_worker.settings import Settings


def moderation_of(settings: Settings) -> Moderation:
    """The scanners and classifier the settings ask for. A hash list that cannot be read or
    parsed fails here, at start, rather than on the first image."""
    scanners: list[Scanner] = []
    if settings.moderation_pdq_hashlist:
        scanners.append(
            PdqScanner.from_file(
                Path(settings.moderation_pdq_hashlist),
                max_distance=settings.moderation_pdq_distance,
            )
        )
    if settings.moderation_blocklist:
        scanners.append(
            PerceptualHashScanner(
                blocklist=frozenset(settings.moderation_blocklist),
                max_distance=settings.moderation_max_distance,
            )
        )
    return Moderation(
        scanners=tuple(scanners),
        classifier=NsfwClassifier() if settings.nsfw_enabled else None,
        threshold=settings.nsfw_threshold,
        block_nsfw=settings.nsfw_policy == "block",
        frame_interval=settings.moderation_frame_interval_seconds,
        max_frames=settings.moderation_max_frames,
    )


def derive_plans(settings: Settings) -> DerivePlans:
    moderation = moderation_of(settings)
    image = functools.partial(
        derive_image,
        limits=ImageLimits(
            max_pixels=settings.max_image_pixels,
            max_dimension=settings.max_image_dimension,
            max_frames=settings.max_image_frames,
            quality=settings.thumbnail_quality,
        ),
        thumb_format=settings.thumbnail_format,
        moderation=moderation,
        animation=AnimationLimits(),
    )
    # Images and videos also get the recipients' copy of the original (privacy of originals).
    plans: dict[MediaType, DeriveFunction] = {
        MediaType.IMAGE: functools.partial(with_clean_original, derive=image, strip=strip_image),
    }
    av_limits = AvLimits(
        max_voice_duration_seconds=settings.max_voice_seconds,
        max_video_duration_seconds=settings.max_video_seconds,
        max_width=settings.max_video_dimension,
        max_height=settings.max_video_dimension,
        ladder=tuple(settings.hls_ladder),
        voice_bitrate=settings.voice_bitrate,
        segment_seconds=settings.hls_segment_seconds,
    )
    plans[MediaType.VOICE] = functools.partial(derive_voice, limits=av_limits)
    video = functools.partial(derive_video, limits=av_limits, moderation=moderation)
    plans[MediaType.VIDEO] = functools.partial(with_clean_original, derive=video, strip=strip_video)
    plans[MediaType.DOCUMENT] = functools.partial(
        derive_document,
        limits=DocumentLimits(
            preview_format=settings.thumbnail_format, quality=settings.thumbnail_quality
        ),
    )
    malware = MalwareCheck(
        address=settings.clamd_address,
        fail_open=settings.clamd_fail_open,
        timeout_seconds=settings.clamd_timeout_seconds,
        connect_attempts=settings.clamd_connect_attempts,
    )
    checks: dict[MediaType, FileCheck] = {MediaType.DOCUMENT: malware.check}
    return DerivePlans(by_type=plans, checks=checks)
