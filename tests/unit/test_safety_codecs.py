"""The codec test clips: PyAV's bundled FFmpeg encodes each, and decodes it back."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import av
import pytest

from tests.media_factory import codecs

CLIPS: list[tuple[Callable[[Path], Path], str, list[str]]] = [
    (codecs.mpeg4_mp4, "clip.mp4", ["mpeg4", "aac"]),
    (codecs.h263_3gp, "clip.3gp", ["h263", "amrnb"]),
    (codecs.mjpeg_mp4, "clip.mp4", ["mjpeg", "aac"]),
    (codecs.prores_mov, "clip.mov", ["prores", "pcm_s16le"]),
    (codecs.pcm_mov, "clip.mov", ["h264", "pcm_s16le"]),
    (codecs.pcm_wav, "clip.wav", ["pcm_s16le"]),
    (codecs.alac_m4a, "clip.m4a", ["alac"]),
    (codecs.flac, "clip.flac", ["flac"]),
    (codecs.amr_nb, "clip.amr", ["amrnb"]),
    (codecs.amr_wb, "clip.amr", ["amrwb"]),
]


@pytest.mark.parametrize(("make", "name", "expected"), CLIPS, ids=[c[0].__name__ for c in CLIPS])
def test_clip_encodes_and_decodes(
    tmp_path: Path, make: Callable[[Path], Path], name: str, expected: list[str]
) -> None:
    path = make(tmp_path / name)
    with av.open(str(path)) as container:
        assert [stream.codec_context.name for stream in container.streams] == expected
        decoded: dict[str, int] = {stream.type: 0 for stream in container.streams}
        for frame in container.decode(*container.streams):
            kind = "video" if isinstance(frame, av.VideoFrame) else "audio"
            decoded[kind] += 1
    assert all(count > 0 for count in decoded.values()), decoded


def test_amr_wb_starts_with_its_magic(tmp_path: Path) -> None:
    assert codecs.amr_wb(tmp_path / "v.amr").read_bytes().startswith(codecs.AMR_WB_MAGIC)
