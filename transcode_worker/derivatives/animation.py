"""The `animation` variant of an animated image (GIF, animated WebP, APNG): a short muted MP4.

Chat apps show animated GIFs as small looping videos: H.264 in MP4 is a tenth of a GIF's size,
plays everywhere, and the client loops it. The image's thumbnails stay first-frame stills. We
encode each frame as shown (Pillow applies the GIF disposal methods when it seeks; transparency
is flattened on white), at its own timing (variable frame rate), scaled to fit `max_edge`,
cut at `max_seconds`. Frames are read one at a time, so memory does not grow with the frame
count (which the image limits already cap).

Moderation sees sampled frames of the animation too (`FrameSampler`), not just the first one.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from PIL import Image, ImageSequence

from transcode_worker.derivatives.flatten import on_white
from transcode_worker.derivatives.moderation import FrameSampler
from transcode_worker.derivatives.types import DerivedFile, DerivedVariant, DeriveError

ANIMATION_KEY = "animation.mp4"
ANIMATION_CONTENT_TYPE = "video/mp4"
_MILLISECONDS = Fraction(1, 1000)
# Browsers play GIF frames stated as 0-10 ms at 100 ms; we follow them.
_MIN_FRAME_MS = 20
_DEFAULT_FRAME_MS = 100


@dataclass(frozen=True, kw_only=True)
class AnimationLimits:
    max_edge: int = 640  # longest edge of the MP4 (never upscaled)
    max_seconds: float = 15.0  # the loop is cut there
    crf: int = 28  # x264 quality: small files; GIF sources are low quality anyway

    def __post_init__(self) -> None:
        if self.max_edge < 16 or self.max_seconds <= 0 or not 0 <= self.crf <= 51:
            raise ValueError("animation limits out of range")


def _even_size(width: int, height: int, edge: int) -> tuple[int, int]:
    scale = min(1.0, edge / max(width, height))
    return max(2, round(width * scale) // 2 * 2), max(2, round(height * scale) // 2 * 2)


def write_animation(
    image: Image.Image,
    out_dir: Path,
    *,
    limits: AnimationLimits,
    sampler: FrameSampler | None = None,
) -> tuple[DerivedFile, DerivedVariant]:
    """Encode the frames of the opened animated `image` to `out_dir/animation.mp4`.

    Raises `DeriveError` (corrupt frames), `ModerationBlocked` / `ScanFailed` from the sampler.
    """
    # PyAV (FFmpeg) and numpy load only in a process that meets an animation: a still image's
    # job stays the size of a bare Pillow one (issue 14, item 4).
    import av
    import numpy as np
    from av.video.stream import VideoStream

    path = out_dir / ANIMATION_KEY
    size = _even_size(image.width, image.height, limits.max_edge)
    elapsed_ms = 0
    try:
        with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
            stream = out.add_stream(
                "libx264", rate=30, options={"crf": str(limits.crf), "preset": "veryfast"}
            )
            assert isinstance(stream, VideoStream)
            stream.width, stream.height = size
            stream.pix_fmt = "yuv420p"
            stream.time_base = _MILLISECONDS
            for frame in ImageSequence.Iterator(image):
                if elapsed_ms >= limits.max_seconds * 1000:
                    break
                picture = on_white(frame, "RGB")
                if picture.size != size:
                    picture = picture.resize(size, Image.Resampling.LANCZOS)
                if sampler is not None and sampler.wants(elapsed_ms / 1000):
                    sampler.take(elapsed_ms / 1000, picture)
                video_frame = av.VideoFrame.from_ndarray(np.asarray(picture), format="rgb24")
                video_frame.pts = elapsed_ms
                video_frame.time_base = _MILLISECONDS
                out.mux(stream.encode(video_frame))
                duration = int(frame.info.get("duration") or 0)
                elapsed_ms += duration if duration >= _MIN_FRAME_MS else _DEFAULT_FRAME_MS
            out.mux(stream.encode(None))
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        path.unlink(missing_ok=True)
        raise DeriveError(
            "corrupt_media", f"an animation frame cannot be decoded: {error}"
        ) from None
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    variant = DerivedVariant(
        name="animation",
        key=ANIMATION_KEY,
        content_type=ANIMATION_CONTENT_TYPE,
        size=path.stat().st_size,
        width=size[0],
        height=size[1],
    )
    return DerivedFile(key=ANIMATION_KEY, path=path, content_type=ANIMATION_CONTENT_TYPE), variant
