"""Which derivation each media type gets, bound to the limits in settings (picklable)."""

from __future__ import annotations

import functools

from shared.models import MediaType
from transcode_worker.derivatives.audio import derive_voice
from transcode_worker.derivatives.av_probe import AvLimits
from transcode_worker.derivatives.clean_original import with_clean_original
from transcode_worker.derivatives.images import ImageLimits, derive_image
from transcode_worker.derivatives.moderation import PerceptualHashScanner
from transcode_worker.derivatives.strip_images import strip_image
from transcode_worker.derivatives.strip_mp4 import strip_video
from transcode_worker.derivatives.video import derive_video
from transcode_worker.pipeline import DeriveFunction, DerivePlans
from transcode_worker.settings import Settings


def derive_plans(settings: Settings) -> DerivePlans:
    image = functools.partial(
        derive_image,
        limits=ImageLimits(
            max_pixels=settings.max_image_pixels,
            max_dimension=settings.max_image_dimension,
            max_frames=settings.max_image_frames,
            quality=settings.thumbnail_quality,
        ),
        thumb_format=settings.thumbnail_format,
        scanner=PerceptualHashScanner(
            blocklist=frozenset(settings.moderation_blocklist),
            max_distance=settings.moderation_max_distance,
        ),
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
    video = functools.partial(derive_video, limits=av_limits)
    plans[MediaType.VIDEO] = functools.partial(with_clean_original, derive=video, strip=strip_video)
    return DerivePlans(by_type=plans)
