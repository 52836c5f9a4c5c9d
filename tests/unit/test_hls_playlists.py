import time

from media_service.hls import PlaylistSigner, rendition_of, rendition_url, rewrite_uris

MASTER = """#EXTM3U
#EXT-X-VERSION:3
#EXT-X-STREAM-INF:BANDWIDTH=896000,RESOLUTION=640x360,CODECS="avc1.42c01e,mp4a.40.2"
360p/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=2596000,RESOLUTION=1280x720,CODECS="avc1.42c01f,mp4a.40.2"
720p/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=1
https://elsewhere.example/evil.m3u8
"""


def test_rendition_uris_become_signed_links_and_strangers_are_dropped() -> None:
    signer = PlaylistSigner("secret")

    def sign(uri: str) -> str | None:
        rendition = rendition_of(uri)
        if rendition is None:
            return None
        return rendition_url(
            "http://media", "m_x", rendition, 99, signer.sign("m_x", rendition, 99, "bo b"), "bo b"
        )

    out = rewrite_uris(MASTER, sign)
    uris = [line for line in out.splitlines() if line and not line.startswith("#")]
    base = "http://media/v1/media/m_x/hls"
    assert uris == [
        f"{base}/{r}/index.m3u8?expires=99&reader=bo%20b&signature="
        f"{signer.sign('m_x', r, 99, 'bo b')}"
        for r in ("360p", "720p")
    ]
    assert "BANDWIDTH=1\n" not in out  # the tag of the dropped URI went with it
    assert out.count("#EXT-X-STREAM-INF") == 2


def test_signatures_bind_media_rendition_expiry_and_reader() -> None:
    signer = PlaylistSigner("secret")
    later = int(time.time()) + 60
    signature = signer.sign("m_a", "360p", later, "bob")
    assert signer.verify("m_a", "360p", later, signature, "bob")
    assert not signer.verify("m_b", "360p", later, signature, "bob")
    assert not signer.verify("m_a", "720p", later, signature, "bob")
    assert not signer.verify("m_a", "360p", later + 1, signature, "bob")
    assert not signer.verify("m_a", "360p", later, signature, "carol")
    assert not PlaylistSigner("other").verify("m_a", "360p", later, signature, "bob")


def test_expired_links_are_refused() -> None:
    signer = PlaylistSigner("secret")
    past = int(time.time()) - 1
    assert not signer.verify("m_a", "360p", past, signer.sign("m_a", "360p", past, "bob"), "bob")


def test_only_rendition_playlists_are_renditions() -> None:
    assert rendition_of("360p/index.m3u8") == "360p"
    assert rendition_of("../360p/index.m3u8") is None
    assert rendition_of("360p/seg_00001.ts") is None
    assert rendition_of("https://x/360p/index.m3u8") is None
