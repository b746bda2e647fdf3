"""What the media-downloader decides from bytes alone: type by magic, image size, and where
an X media URL is fetched from."""

from __future__ import annotations

import io

from infra.xsim.media import HTML_PAGE, jpeg_bytes, mp4_bytes, png_bytes
from services.media_downloader.fetch import source_url
from services.media_downloader.sniff import dimensions, extension, sniff
from tests.conftest import make_settings


def test_types_come_from_the_magic_bytes():
    assert sniff(jpeg_bytes("/a.jpg")[:16]) == "image/jpeg"
    assert sniff(png_bytes("/a.png")[:16]) == "image/png"
    assert sniff(b"GIF89a\x01\x00\x01\x00" + b"\x00" * 6) == "image/gif"
    assert sniff(b"RIFF\x10\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert sniff(mp4_bytes("/v.mp4")[:16]) == "video/mp4"
    assert sniff(b"\x00\x00\x00\x1cftypavif\x00\x00") is None  # an AVIF still is not a video
    assert sniff(HTML_PAGE[:16]) is None and sniff(b"") is None
    assert [extension(t) for t in ("image/jpeg", "image/png", "video/mp4")] == ["jpg", "png", "mp4"]


def test_dimensions_from_the_header():
    assert dimensions(io.BytesIO(jpeg_bytes("/a.jpg", pad_kb=100))) == (8, 8)
    assert dimensions(io.BytesIO(png_bytes("/a.png"))) == (1, 1)
    assert dimensions(io.BytesIO(b"\xff\xd8\xff")) == (None, None)  # truncated header


def test_x_media_hosts_are_rewritten_only_when_a_base_is_set():
    url = "https://pbs.twimg.com/media/abc.jpg?name=orig"
    video = "https://video.twimg.com/ext_tw_video/1/pu/vid/avc1/720x720/a.mp4?tag=12"
    plain = make_settings()
    assert source_url(url, "image", plain) == url and source_url(video, "video", plain) == video
    sim = make_settings(x_media_base="http://127.0.0.1:1/", x_video_base="http://127.0.0.1:2")
    assert source_url(url, "image", sim) == "http://127.0.0.1:1/media/abc.jpg?name=orig"
    assert source_url(video, "video", sim) == (
        "http://127.0.0.1:2/ext_tw_video/1/pu/vid/avc1/720x720/a.mp4?tag=12"
    )
    assert source_url("https://example.com/x.jpg", "image", sim) == "https://example.com/x.jpg"
