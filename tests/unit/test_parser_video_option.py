"""The parser names a media job's video only when the task asked for video."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from libs.kafka import Incoming
from libs.records.pages import RawPage
from libs.records.posts import MediaJob
from services.parser.handler import parse_raw_page

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "x"


def jobs(download_video: bool) -> list[MediaJob]:
    page = RawPage(
        task_id="t",
        slice_id="s0",
        page_no=0,
        keyword="k",
        operation="SearchTimeline",
        query="k",
        requested_at=datetime.now(UTC),
        response=(FIXTURES / "raw_search.json").read_text(),
        download_video=download_video,
    )
    outs = parse_raw_page(Incoming("raw-pages", 0, 0, "t", page))
    return [o.record for o in outs if isinstance(o.record, MediaJob)]


def test_video_url_only_when_the_task_asks():
    asked, not_asked = jobs(True), jobs(False)
    assert [(j.post_id, j.original_url) for j in asked] == [
        (j.post_id, j.original_url) for j in not_asked
    ]  # covers are always there
    assert any(j.type == "video_cover" for j in asked)
    assert all(j.video_url for j in asked if j.type != "image")
    assert not any(j.video_url for j in not_asked)
