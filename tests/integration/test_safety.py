"""Trust and safety end to end (issue 13) on the session fleet: PDQ hash list, NSFW flag and
admin-only score, the admin moderation list, clamd on documents, PDF previews, the codecs
phones send, animated GIFs."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from shared.auth import issue_token
from tests.integration.conftest import Fleet, banned_picture
from tests.integration.media_client import slot_request
from tests.integration.test_processing import process, variant_names
from tests.media_factory import codecs, documents, images, safety


def _jpeg(picture: Image.Image, quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    picture.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _png(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def _admin(fleet: Fleet, name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(name, fleet.secret, roles=('admin',))}"}


async def _moderation_list(
    fleet: Fleet, http: httpx.AsyncClient, headers: dict[str, str], state: str
) -> list[dict[str, Any]]:
    """Every item of the admin list for `state`, following the cursor."""
    items: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        params = {"state": state, "limit": "100", **({"after": after} if after else {})}
        response = await http.get(
            f"{fleet.media_url}/v1/admin/moderation", params=params, headers=headers
        )
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        after = page["next"]
        if after is None:
            return items


async def test_a_listed_photo_and_a_resized_copy_are_blocked_an_unrelated_one_is_not(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    alice = user("alice")
    banned = _jpeg(banned_picture(), quality=80)  # not banned_photo()'s bytes: no dedup
    media_id, exact = await process(fleet, http, alice, banned, "image/jpeg")
    assert exact["state"] == "blocked", exact
    assert exact["error"]["code"] == "hash_match"
    assert exact["variants"] == []

    copy = _jpeg(safety.recompressed(banned_picture(), scale=0.85, quality=65))
    _, resized = await process(fleet, http, alice, copy, "image/jpeg")
    assert resized["state"] == "blocked", resized
    assert resized["error"]["code"] == "hash_match"

    other = _jpeg(safety.textured_photo(320, 240, seed=5))
    _, unrelated = await process(fleet, http, alice, other, "image/jpeg")
    assert unrelated["state"] == "ready", unrelated

    # Admins find the blocked photo in the moderation list, with its reason.
    listed = await _moderation_list(fleet, http, _admin(fleet, user("ops")), "blocked")
    entry = next(item for item in listed if item["media_id"] == media_id)
    assert entry["reason"] == "hash_match"
    assert entry["owner"] == alice

    # The same bytes again are deduplicated straight to the same verdict and error code.
    bob = fleet.auth(user("bob"))
    answer = await http.post(
        f"{fleet.media_url}/v1/media/uploads", json=slot_request(banned), headers=bob
    )
    assert answer.status_code == 200, answer.text
    slot = answer.json()
    challenge = slot["dedup"]
    chunk = banned[challenge["offset"] : challenge["offset"] + challenge["length"]]
    proof = hashlib.sha256(bytes.fromhex(challenge["nonce"]) + chunk).hexdigest()
    proved = await http.post(
        f"{fleet.media_url}/v1/media/{slot['media_id']}/proof", json={"proof": proof}, headers=bob
    )
    assert proved.status_code == 200, proved.text
    assert proved.json()["state"] == "blocked"
    assert proved.json()["error"]["code"] == "hash_match"


async def test_a_video_whose_frame_at_5_s_is_listed_is_blocked(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str], tmp_path: Path
) -> None:
    clip = safety.video_showing(tmp_path / "clip.mp4", banned_picture()).read_bytes()
    _, document = await process(fleet, http, user("alice"), clip, "video/mp4")
    assert document["state"] == "blocked", document
    assert document["error"]["code"] == "hash_match"
    assert document["variants"] == []


async def test_a_sensitive_image_is_flagged_and_only_admins_see_its_score(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    alice = user("alice")
    media_id, document = await process(fleet, http, alice, _png(safety.figure(256)), "image/png")
    assert document["state"] == "ready", document
    assert document["meta"]["sensitive"] is True
    assert "nsfw_score" not in document  # the owner is no admin

    ops = _admin(fleet, user("ops"))
    response = await http.get(f"{fleet.media_url}/v1/media/{media_id}", headers=ops)
    assert response.status_code == 200
    assert response.json()["nsfw_score"] >= 0.8

    listed = await _moderation_list(fleet, http, ops, "flagged")
    entry = next(item for item in listed if item["media_id"] == media_id)
    assert entry["reason"] == "sensitive"
    assert entry["nsfw_score"] >= 0.8

    _, plain = await process(fleet, http, alice, _png(safety.landscape()), "image/png")
    assert plain["meta"]["sensitive"] is False


async def test_the_moderation_list_is_for_admins_only(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    url = f"{fleet.media_url}/v1/admin/moderation"
    response = await http.get(url, params={"state": "blocked"}, headers=fleet.auth(user()))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert (await http.get(url, params={"state": "blocked"})).status_code == 401
    ops = _admin(fleet, user("ops"))
    bad_state = await http.get(url, params={"state": "ready"}, headers=ops)
    assert bad_state.status_code == 422
    bad_cursor = await http.get(url, params={"state": "blocked", "after": "x"}, headers=ops)
    assert bad_cursor.status_code == 422


async def test_documents_are_scanned_and_pdfs_get_a_preview(
    fleet: Fleet,
    http: httpx.AsyncClient,
    user: Callable[..., str],
    clamd_address: str | None,
) -> None:
    alice = user("alice")
    _, clean = await process(fleet, http, alice, documents.pdf(), "application/pdf")
    assert clean["state"] == "ready", clean
    assert clean["meta"]["page_count"] == 3
    (preview,) = [variant for variant in clean["variants"] if variant["name"] == "preview"]
    assert max(preview["width"], preview["height"]) <= 1280
    assert clean["meta"]["malware_scan"] == ("clean" if clamd_address else "not_scanned")

    _, fake = await process(fleet, http, alice, documents.fake_pdf(), "application/pdf")
    assert fake["state"] == "failed", fake
    assert fake["error"]["code"] == "corrupt_media"

    if clamd_address is None:
        pytest.skip("clamd is not installed: the malware case needs it")
    _, infected = await process(fleet, http, alice, documents.infected_pdf(), "application/pdf")
    assert infected["state"] == "blocked", infected
    assert infected["error"]["code"] == "malware"
    assert infected["variants"] == []


@pytest.mark.parametrize(
    ("make", "content_type", "codec"),
    [
        (codecs.mjpeg_mp4, "video/mp4", "mjpeg"),
        (codecs.mpeg4_mp4, "video/mp4", "mpeg4"),
        (codecs.pcm_mov, "video/quicktime", "h264"),
    ],
)
async def test_camera_codecs_end_ready_with_hls(
    fleet: Fleet,
    http: httpx.AsyncClient,
    user: Callable[..., str],
    tmp_path: Path,
    make: Callable[[Path], Path],
    content_type: str,
    codec: str,
) -> None:
    clip = make(tmp_path / "clip").read_bytes()
    _, document = await process(fleet, http, user("alice"), clip, content_type)
    assert document["state"] == "ready", document
    assert document["meta"]["video_codec"] == codec
    assert document["meta"]["has_audio"] is True
    assert {"poster", "hls"} <= variant_names(document)


async def test_an_amr_voice_note_gets_voice_low(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str], tmp_path: Path
) -> None:
    note = codecs.amr_nb(tmp_path / "note.amr").read_bytes()
    _, document = await process(fleet, http, user("alice"), note, "audio/amr")
    assert document["state"] == "ready", document
    assert variant_names(document) == {"voice_low"}
    assert document["meta"]["audio_codec"] == "amr_nb"


async def test_an_animated_gif_gets_an_mp4_loop(
    fleet: Fleet, http: httpx.AsyncClient, user: Callable[..., str]
) -> None:
    gif = images.animated_gif(frames=4, size=(120, 80))
    _, document = await process(fleet, http, user("alice"), gif, "image/gif")
    assert document["state"] == "ready", document
    assert {"thumb_320", "animation"} <= variant_names(document)
    (animation,) = [variant for variant in document["variants"] if variant["name"] == "animation"]
    assert animation["content_type"] == "video/mp4"
