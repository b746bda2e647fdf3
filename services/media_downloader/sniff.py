"""What a media body really is, from its first bytes (never from the server's word alone)."""

from __future__ import annotations

from typing import BinaryIO

import imagesize

# Enough leading bytes to tell every type below apart.
SNIFF_BYTES = 16

IMAGE_TYPES = {"image/jpeg": "jpg", "image/png": "png", "image/gif": "gif", "image/webp": "webp"}
VIDEO_TYPES = {"video/mp4": "mp4"}


def sniff(head: bytes) -> str | None:
    """The content type the magic bytes say, or None when they are none we store."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp" and head[8:12] not in (b"avif", b"avis", b"heic", b"heix", b"mif1"):
        return "video/mp4"
    return None


def extension(content_type: str) -> str:
    return IMAGE_TYPES.get(content_type) or VIDEO_TYPES[content_type]


def declared_type(header: str | None) -> str:
    """The server's Content-Type without parameters, for failure causes."""
    return (header or "").split(";", 1)[0].strip().lower() or "no content-type"


def dimensions(body: BinaryIO) -> tuple[int | None, int | None]:
    """Width and height from the image header; (None, None) when the header has none."""
    body.seek(0)
    try:
        w, h = imagesize.get(body)
    except Exception:  # noqa: BLE001 - a truncated header is not worth failing the image for
        w, h = -1, -1
    finally:
        body.seek(0)
    return (w, h) if w > 0 and h > 0 else (None, None)
