"""Media bytes for post URLs, media faults, and the request log."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx

from libs.xclient import XClient

from .helpers import account


def test_media_bytes_deterministic_valid_and_typed(admin):
    a = admin.get("/media/abc.jpg", params={"name": "orig"})
    b = admin.get("/media/abc.jpg", params={"name": "orig"})
    c = admin.get("/media/abd.jpg", params={"name": "orig"})
    assert a.status_code == 200 and a.headers["content-type"] == "image/jpeg"
    assert a.content == b.content != c.content
    assert a.content[:3] == b"\xff\xd8\xff" and a.content.endswith(b"\xff\xd9")
    p = admin.get("/profile_images/1/x_normal.png")
    assert p.headers["content-type"] == "image/png" and p.content[:8] == b"\x89PNG\r\n\x1a\n"
    v = admin.get("/ext_tw_video/1/pu/vid/avc1/720x720/a.mp4")
    assert v.headers["content-type"] == "video/mp4" and v.content[4:8] == b"ftyp"


async def test_every_media_url_of_a_page_is_served(settings, sim_url):
    client = XClient(settings)
    try:
        r = await client.search_page(account(), "pics since:2026-01-01 until:2026-01-02", None)
    finally:
        await client.aclose()
    urls = set(re.findall(r"https://pbs\.twimg\.com/[^\"\\\s]+", r.body))
    assert len(urls) > 10
    async with httpx.AsyncClient(base_url=sim_url) as c:
        for u in sorted(urls):
            parts = urlsplit(u)
            rep = await c.get(parts.path + ("?" + parts.query if parts.query else ""))
            assert rep.status_code == 200, u
            assert rep.headers["content-type"] in ("image/jpeg", "image/png")


def test_media_faults(admin):
    admin.post("/_sim/media-faults", json={"path_contains": "gone", "kind": "404"})
    admin.post("/_sim/media-faults", json={"path_contains": "page", "kind": "html"})
    admin.post("/_sim/media-faults", json={"path_contains": "big", "kind": "huge", "size_mb": 3})
    assert admin.get("/media/gone.jpg").status_code == 404
    h = admin.get("/media/page.jpg")
    assert h.status_code == 200 and h.headers["content-type"].startswith("text/html")
    with admin.stream("GET", "/media/big.jpg") as s:
        assert s.headers["content-length"] == str(3 << 20)
        assert sum(len(x) for x in s.iter_bytes()) == 3 << 20
    admin.delete("/_sim/media-faults")
    assert admin.get("/media/gone.jpg").status_code == 200


async def test_request_log_records_operation_account_cursor(settings, admin):
    seq = admin.get("/_sim/log").json()
    start = seq[-1]["seq"] if seq else 0
    acc = account("logged")
    q = "logme since:2026-01-01 until:2026-01-01_01:00:00_UTC"
    client = XClient(settings)
    try:
        r1 = await client.search_page(acc, q, None)
        r2 = await client.search_page(acc, q, r1.cursor_out)
    finally:
        await client.aclose()
    rows = [
        e
        for e in admin.get("/_sim/log", params={"since_seq": start}).json()
        if e["account"] == acc.auth_token
    ]
    assert [e["operation"] for e in rows] == ["SearchTimeline", "SearchTimeline"]
    assert [e["cursor"] for e in rows] == [None, r1.cursor_out]
    assert all(e["raw_query"] == q and e["status"] == 200 and e["method"] == "GET" for e in rows)
    assert rows[0]["seq"] < rows[1]["seq"] and r2.outcome == "ok"
    assert all(e["seq"] > start for e in admin.get("/_sim/log", params={"since_seq": start}).json())


def test_config_roundtrip(admin):
    cfg = admin.get("/_sim/config").json()
    assert cfg["limits"]["SearchTimeline"] == 50 and cfg["window_seconds"] == 900
    assert admin.post("/_sim/config", json={"no_such": 1}).status_code == 400
