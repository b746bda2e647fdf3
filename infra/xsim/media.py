"""Deterministic media bytes for every media path the simulator's posts carry.

A tiny valid baseline JPEG (8x8 grey) and PNG (1x1) are built once; bytes are made unique per
path with a JPEG COM segment / PNG tEXt chunk holding the path.
"""

from __future__ import annotations

import hashlib
import struct
import zlib


def _seg(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def _build_jpeg_parts() -> tuple[bytes, bytes]:
    soi = b"\xff\xd8"
    app0 = _seg(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    dqt = _seg(0xDB, b"\x00" + b"\x01" * 64)
    sof0 = _seg(0xC0, b"\x08\x00\x08\x00\x08\x01\x01\x11\x00")
    one_code = bytes([1] + [0] * 15)
    dht_dc = _seg(0xC4, b"\x00" + one_code + b"\x00")
    dht_ac = _seg(0xC4, b"\x10" + one_code + b"\x00")
    sos = _seg(0xDA, b"\x01\x01\x00\x00\x3f\x00")
    scan = b"\x3f"  # DC category 0 ("0"), EOB ("0"), padded with 1 bits
    eoi = b"\xff\xd9"
    return soi + app0, dqt + sof0 + dht_dc + dht_ac + sos + scan + eoi


JPEG_HEAD, JPEG_TAIL = _build_jpeg_parts()
TINY_JPEG = JPEG_HEAD + JPEG_TAIL


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


PNG_SIG = b"\x89PNG\r\n\x1a\n"


def png_bytes(path: str) -> bytes:
    rgb = hashlib.sha256(path.encode()).digest()[:3]
    ihdr = _chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
    text = _chunk(b"tEXt", b"Comment\x00" + path.encode("utf-8", "replace")[:60000])
    idat = _chunk(b"IDAT", zlib.compress(b"\x00" + rgb))
    return PNG_SIG + ihdr + text + idat + _chunk(b"IEND", b"")


def _padding(path: str, pad_kb: int) -> bytes:
    """pad_kb KiB of filler derived from the path (bytes stay unique per path)."""
    if pad_kb <= 0:
        return b""
    seed = hashlib.sha256(path.encode()).digest()
    n = pad_kb * 1024
    return (seed * (n // len(seed) + 1))[:n]


def jpeg_bytes(path: str, pad_kb: int = 0) -> bytes:
    com = _seg(0xFE, ("xsim:" + path).encode("utf-8", "replace")[:65000])
    pad = _padding(path, pad_kb)
    # Comment segments hold at most 65533 bytes each.
    filler = b"".join(_seg(0xFE, pad[i : i + 65000]) for i in range(0, len(pad), 65000))
    return JPEG_HEAD + com + filler + JPEG_TAIL


MP4_FTYP = struct.pack(">I", 24) + b"ftypisom" + struct.pack(">I", 512) + b"isomiso2"


def mp4_bytes(path: str, pad_kb: int = 0) -> bytes:
    payload = ("xsim:" + path).encode("utf-8", "replace") + _padding(path, pad_kb)
    free = struct.pack(">I", 8 + len(payload)) + b"free" + payload
    return MP4_FTYP + free


def media_for(path: str, query: str = "", pad_kb: int = 0) -> tuple[bytes, str]:
    """(body, content-type) for a media path such as /media/abc.jpg?name=orig; video variant
    paths (video.twimg.com/.../*.mp4) answer an MP4."""
    key = path + ("?" + query if query else "")
    low = path.lower()
    if low.endswith(".mp4") or low.endswith(".m4s"):
        return mp4_bytes(key, pad_kb), "video/mp4"
    if low.endswith(".png") or "format=png" in query:
        return png_bytes(key), "image/png"
    return jpeg_bytes(key, pad_kb), "image/jpeg"


def huge_stream(size_mb: float, content_type: str = "image/jpeg", chunk: int = 1 << 20):
    """size_mb MiB: a valid head of the type, then zeros."""
    total = int(size_mb * (1 << 20))
    head = MP4_FTYP if content_type == "video/mp4" else JPEG_HEAD
    yield head
    sent = len(head)
    zeros = b"\x00" * chunk
    while sent < total:
        n = min(chunk, total - sent)
        yield zeros[:n]
        sent += n


HTML_PAGE = (
    b"<!DOCTYPE html><html><head><title>Just a moment...</title></head>"
    b"<body><h1>Checking your browser before accessing x.com</h1></body></html>"
)
