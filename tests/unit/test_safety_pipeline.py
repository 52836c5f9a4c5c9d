"""The trust-and-safety components wired into the derivations (issue 13), on media made here:
PDQ and NSFW in images, animations and video frames; documents; the codecs phones send."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import av
import pytest
from PIL import Image

from shared.models import ErrorDetail, MediaState
from shared.moderation import moderation_fields
from tests.clamd_server import clamd_binary, running_clamd
from tests.media_factory import codecs, documents, images, safety
from transcode_worker.derivatives.animation import AnimationLimits
from transcode_worker.derivatives.audio import derive_voice
from transcode_worker.derivatives.av_probe import AvLimits
from transcode_worker.derivatives.documents import DocumentLimits, derive_document
from transcode_worker.derivatives.images import ImageLimits, derive_image
from transcode_worker.derivatives.moderation import Moderation
from transcode_worker.derivatives.types import Derived, DeriveError, ScanFailed
from transcode_worker.derivatives.video import derive_video
from transcode_worker.safety.malware import MalwareCheck
from transcode_worker.safety.nsfw import NsfwClassifier
from transcode_worker.safety.pdq import HashList, PdqScanner, pdq_hash

AV = AvLimits()


def _jpeg(picture: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    picture.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _png(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def banned() -> Image.Image:
    return safety.textured_photo(320, 240, seed=666)


@pytest.fixture
def hash_list(tmp_path: Path, banned: Image.Image) -> Path:
    path = tmp_path / "hashes.txt"
    path.write_text(f"# banned\n{pdq_hash(banned).hex}\n")
    return path


def _pdq(hash_list: Path, **changes: object) -> Moderation:
    scanner = PdqScanner(hash_list=HashList(hash_list))
    return dataclasses.replace(Moderation(scanners=(scanner,)), **changes)  # type: ignore[arg-type]


def _image(
    tmp_path: Path, data: bytes, moderation: Moderation, animation: AnimationLimits | None = None
) -> Derived:
    source = images.write(tmp_path / "source", data)
    return derive_image(
        source, tmp_path / "out", limits=ImageLimits(), moderation=moderation, animation=animation
    )


# -- PDQ -----------------------------------------------------------------------------------------


def test_a_listed_photo_and_its_resized_recompressed_copy_are_blocked(
    tmp_path: Path, banned: Image.Image, hash_list: Path
) -> None:
    moderation = _pdq(hash_list)
    exact = derive_image(
        images.write(tmp_path / "a", _jpeg(banned)), tmp_path / "a-out", limits=ImageLimits(),
        moderation=moderation,
    )  # fmt: skip
    assert exact.blocked_reason == "hash_match"
    assert exact.files == []
    assert not (tmp_path / "a-out").exists()
    copy = _jpeg(safety.recompressed(banned, scale=0.8, quality=60))
    resized = derive_image(
        images.write(tmp_path / "b", copy), tmp_path / "b-out", limits=ImageLimits(),
        moderation=moderation,
    )  # fmt: skip
    assert resized.blocked_reason == "hash_match"


def test_an_unrelated_photo_passes(tmp_path: Path, hash_list: Path) -> None:
    other = _jpeg(safety.textured_photo(320, 240, seed=7))
    derived = derive_image(
        images.write(tmp_path / "s", other), tmp_path / "o", limits=ImageLimits(),
        moderation=_pdq(hash_list),
    )  # fmt: skip
    assert derived.blocked_reason is None
    assert derived.scanned
    assert len(derived.variants) == 3


def test_the_hash_list_is_reread_when_it_changes(
    tmp_path: Path, banned: Image.Image, hash_list: Path
) -> None:
    scanner = PdqScanner(hash_list=HashList(hash_list))
    assert scanner.scan(banned).blocked
    replacement = tmp_path / "new.txt"
    replacement.write_text("# emptied by the operator\n")
    replacement.replace(hash_list)  # write-then-rename, as the docs say
    assert not scanner.scan(banned).blocked


def test_a_video_whose_frame_at_5_s_is_listed_is_blocked(
    tmp_path: Path, banned: Image.Image, hash_list: Path
) -> None:
    clip = safety.video_showing(tmp_path / "clip.mp4", banned)
    out = tmp_path / "out"
    derived = derive_video(clip, out, limits=AV, moderation=_pdq(hash_list))
    assert derived.blocked_reason == "hash_match"
    assert derived.files == []
    assert derived.variants == []
    assert not (out / "hls").exists()
    assert not (out / "poster.jpg").exists()


def test_the_same_video_without_the_frame_passes(
    tmp_path: Path, banned: Image.Image, hash_list: Path
) -> None:
    clip = safety.video_showing(tmp_path / "clip.mp4", banned, shown_from=99, shown_until=99)
    derived = derive_video(clip, tmp_path / "out", limits=AV, moderation=_pdq(hash_list))
    assert derived.blocked_reason is None
    assert derived.scanned
    assert {variant.name for variant in derived.variants} == {"poster", "hls"}


def test_a_failing_scanner_is_not_a_verdict(tmp_path: Path) -> None:
    moderation = Moderation(scanners=(PdqScanner(hash_list=HashList(tmp_path / "missing")),))
    with pytest.raises(ScanFailed):
        _image(tmp_path, _jpeg(safety.textured_photo(320, 240)), moderation)


# -- NSFW ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def classifier() -> NsfwClassifier:
    loaded = NsfwClassifier()
    loaded.load()
    return loaded


def test_a_sensitive_image_is_flagged_with_its_score(
    tmp_path: Path, classifier: NsfwClassifier
) -> None:
    derived = _image(tmp_path, _png(safety.figure(256)), Moderation(classifier=classifier))
    assert derived.meta["sensitive"] is True
    assert derived.nsfw_score is not None
    assert derived.nsfw_score >= 0.8
    assert derived.blocked_reason is None


def test_an_innocent_image_is_not_flagged(tmp_path: Path, classifier: NsfwClassifier) -> None:
    derived = _image(tmp_path, _png(safety.landscape()), Moderation(classifier=classifier))
    assert derived.meta["sensitive"] is False
    assert derived.nsfw_score is not None
    assert derived.nsfw_score < 0.1


@pytest.mark.parametrize(("threshold", "blocked"), [(0.8, True), (0.99, False)])
def test_the_block_policy_blocks_at_or_above_the_threshold(
    tmp_path: Path, classifier: NsfwClassifier, threshold: float, blocked: bool
) -> None:
    moderation = Moderation(classifier=classifier, threshold=threshold, block_nsfw=True)
    derived = _image(tmp_path, _png(safety.figure(256)), moderation)
    assert (derived.blocked_reason == "nsfw") is blocked
    if not blocked:
        assert derived.meta["sensitive"] is False


def test_the_moderation_record_fields() -> None:
    at = datetime(2026, 1, 2, tzinfo=UTC)
    blocked = moderation_fields(
        MediaState.BLOCKED, ErrorDetail(code="nsfw", message="x"), {}, 0.93, at
    )
    assert blocked["moderation"] == "blocked"
    assert blocked["moderation_reason"] == "nsfw"
    flagged = moderation_fields(MediaState.READY, None, {"sensitive": True}, 0.9, at)
    assert flagged["moderation"] == "flagged"
    assert flagged["nsfw_score"] == 0.9
    assert moderation_fields(MediaState.READY, None, {"sensitive": False}, 0.1, at) == {
        "nsfw_score": 0.1
    }


# -- animations ----------------------------------------------------------------------------------


def test_an_animated_gif_gets_a_muted_mp4_loop_and_first_frame_thumbnails(
    tmp_path: Path,
) -> None:
    derived = _image(
        tmp_path, images.animated_gif(frames=6, size=(121, 81)), Moderation(),
        animation=AnimationLimits(),
    )  # fmt: skip
    names = {variant.name for variant in derived.variants}
    assert {"thumb_320", "animation"} <= names
    animation = next(v for v in derived.variants if v.name == "animation")
    assert animation.content_type == "video/mp4"
    assert (animation.width, animation.height) == (120, 80)  # even sides for H.264
    with av.open(str(tmp_path / "out" / "animation.mp4")) as container:
        assert not container.streams.audio
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == 6


def test_a_still_gif_gets_no_animation(tmp_path: Path) -> None:
    derived = _image(tmp_path, images.static_gif(), Moderation(), animation=AnimationLimits())
    assert "animation" not in {v.name for v in derived.variants}


# -- documents -----------------------------------------------------------------------------------


def test_a_three_page_pdf_gets_a_preview_and_its_page_count(tmp_path: Path) -> None:
    source = images.write(tmp_path / "doc", documents.pdf())
    derived = derive_document(source, tmp_path / "out", limits=DocumentLimits())
    assert derived.meta["page_count"] == 3
    (preview,) = derived.variants
    assert preview.name == "preview"
    assert max(preview.width or 0, preview.height or 0) <= 1280
    with Image.open(derived.files[0].path) as picture:
        assert picture.size == (preview.width, preview.height)


def test_a_small_page_is_not_upscaled_beyond_2x(tmp_path: Path) -> None:
    source = images.write(tmp_path / "doc", documents.pdf([(100.0, 50.0)]))
    (preview,) = derive_document(source, tmp_path / "out", limits=DocumentLimits()).variants
    assert (preview.width, preview.height) == (200, 100)


def test_random_bytes_after_the_pdf_header_are_corrupt(tmp_path: Path) -> None:
    source = images.write(tmp_path / "doc", documents.fake_pdf())
    with pytest.raises(DeriveError) as raised:
        derive_document(source, tmp_path / "out", limits=DocumentLimits())
    assert raised.value.code == "corrupt_media"


def test_other_documents_get_no_derivative(tmp_path: Path) -> None:
    source = images.write(tmp_path / "doc", b"PK\x03\x04 a zip")
    assert derive_document(source, tmp_path / "out", limits=DocumentLimits()).variants == []


@pytest.fixture(scope="module")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = clamd_binary()
    if binary is None:
        pytest.skip("clamd is not installed (apt-get install clamav-daemon)")
    with running_clamd(binary, tmp_path_factory.mktemp("clamd")) as server:
        yield server.unix_address


async def test_clamd_blocks_an_infected_pdf_and_passes_a_clean_one(
    tmp_path: Path, clamd: str
) -> None:
    check = MalwareCheck(address=clamd, chunk_bytes=1024)
    infected = images.write(tmp_path / "bad.pdf", documents.infected_pdf())
    verdict = await check.check(infected)
    assert verdict.blocked_reason == "malware"
    clean = await check.check(images.write(tmp_path / "good.pdf", documents.pdf()))
    assert clean.blocked_reason is None
    assert clean.meta == {"malware_scan": "clean"}


async def test_without_clamd_documents_say_not_scanned(tmp_path: Path) -> None:
    verdict = await MalwareCheck().check(images.write(tmp_path / "d", documents.pdf()))
    assert verdict.meta == {"malware_scan": "not_scanned"}
    assert verdict.blocked_reason is None


async def test_clamd_down_fails_closed_or_open_by_setting(tmp_path: Path) -> None:
    source = images.write(tmp_path / "d", documents.pdf())
    address = f"unix://{tmp_path / 'no-clamd.sock'}"
    closed = MalwareCheck(address=address, connect_attempts=2)
    with pytest.raises(ScanFailed):
        await closed.check(source)
    opened = MalwareCheck(address=address, connect_attempts=1, fail_open=True)
    assert (await opened.check(source)).meta == {"malware_scan": "not_scanned"}


def test_a_bad_clamd_address_fails_at_start() -> None:
    with pytest.raises(ValueError, match="CLAMD_ADDRESS"):
        MalwareCheck(address="clamd:3310")


# -- codecs --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "codec"),
    [
        (codecs.mpeg4_mp4, "mpeg4"),
        (codecs.h263_3gp, "h263"),
        (codecs.mjpeg_mp4, "mjpeg"),
        (codecs.prores_mov, "prores"),
        (codecs.pcm_mov, "h264"),
    ],
)
def test_the_video_codecs_phones_and_cameras_send(tmp_path: Path, make: object, codec: str) -> None:
    source = make(tmp_path / "clip")  # type: ignore[operator]
    derived = derive_video(source, tmp_path / "out", limits=AV)
    assert derived.meta["video_codec"] == codec
    assert derived.meta["has_audio"] is True
    assert {variant.name for variant in derived.variants} == {"poster", "hls"}


def test_unusable_audio_is_dropped_and_said_so(tmp_path: Path) -> None:
    source = codecs.pcm_mov(tmp_path / "clip.mov")
    no_pcm = dataclasses.replace(AV, allowed_audio_codecs=frozenset({"aac"}))
    derived = derive_video(source, tmp_path / "out", limits=no_pcm)
    assert derived.meta["has_audio"] is False
    assert "pcm_s16" in derived.meta["audio_dropped"]
    assert {variant.name for variant in derived.variants} == {"poster", "hls"}


@pytest.mark.parametrize(
    ("make", "codec"),
    [
        (codecs.amr_nb, "amr_nb"),
        (codecs.amr_wb, "amr_wb"),
        (codecs.alac_m4a, "alac"),
    ],
)
def test_voice_notes_in_amr_and_alac(tmp_path: Path, make: object, codec: str) -> None:
    source = make(tmp_path / "note")  # type: ignore[operator]
    derived = derive_voice(source, tmp_path / "out", limits=AV)
    assert derived.meta["audio_codec"] == codec
    assert [variant.name for variant in derived.variants] == ["voice_low"]
    if codec.startswith("amr"):
        assert derived.meta["mime"] == "audio/amr"
