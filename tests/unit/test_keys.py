import pytest

from shared import keys


def test_new_media_ids_are_unique_and_valid() -> None:
    ids = {keys.new_media_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(keys.is_media_id(media_id) for media_id in ids)


def test_original_key_layout() -> None:
    media_id = keys.new_media_id()
    assert keys.original_key(media_id) == f"o/{media_id}"


def test_event_keys_are_url_decoded() -> None:
    media_id = keys.new_media_id()
    assert keys.media_id_from_event_key(f"o%2F{media_id}") == media_id
    assert keys.media_id_from_event_key(f"o/{media_id}") == media_id


@pytest.mark.parametrize("raw", ["d%2Fabc", "o%2F..%2Fx", "o/", "other", "o/short"])
def test_keys_outside_originals_are_ignored(raw: str) -> None:
    assert keys.media_id_from_event_key(raw) is None


def test_derivative_keys_are_content_addressed_per_family() -> None:
    sha = "a" * 64
    blob = keys.blob_key("video", sha)
    assert blob == f"video/{sha}"
    assert keys.derivative_object_key(blob, "thumb_320.webp") == f"d/video/{sha}/thumb_320.webp"
    assert keys.hls_prefix(blob) == f"d/video/{sha}/hls/"
    # The same bytes as another family are another blob, with other derivative keys.
    assert keys.derivative_prefix(keys.blob_key("voice", sha)) == f"d/voice/{sha}/"
    with pytest.raises(ValueError, match="blob key"):
        keys.derivative_object_key("../etc", "thumb_320.webp")
    with pytest.raises(ValueError, match="blob key"):
        keys.derivative_object_key(sha, "thumb_320.webp")
    with pytest.raises(ValueError, match="family"):
        keys.blob_key("audio", sha)
    with pytest.raises(ValueError, match="sha256"):
        keys.blob_key("video", "A" * 64)


def test_original_key_refuses_traversal() -> None:
    with pytest.raises(ValueError, match="not a media id"):
        keys.original_key("../../secret")


def test_derivative_files_nest_under_their_blob() -> None:
    sha = "b" * 64
    blob = keys.blob_key("image", sha)
    assert keys.derivative_object_key(blob, "thumb_320.webp") == f"d/image/{sha}/thumb_320.webp"
    assert (
        keys.derivative_object_key(blob, "hls/360p/seg_00001.ts")
        == f"d/image/{sha}/hls/360p/seg_00001.ts"
    )
    assert keys.derivative_object_key(blob, "hls/master.m3u8") == f"d/image/{sha}/hls/master.m3u8"
    assert keys.derivative_object_key(blob, "original_clean.jpg").endswith("/original_clean.jpg")
    for bad in ("../x", "hls/../../o/m", "/abs", "hls//x", ""):
        with pytest.raises(ValueError, match="derivative"):
            keys.derivative_object_key(blob, bad)
