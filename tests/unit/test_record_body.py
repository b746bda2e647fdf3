"""A record's large verbatim document (X's page, a post's raw JSON) travels as the xget-body
header: not escaped inside the JSON value, byte for byte as X sent it, and records written
before the move (v1, body inside the value) still read the same."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from libs.records.pages import RawPage
from libs.records.posts import Post
from libs.topics import POSTS, RAW_PAGES

FIXTURES = Path(os.environ.get("XGET_FIXTURES", "/work/shared/fixtures")) / "x"


def _page(body: str | None) -> RawPage:
    return RawPage(
        task_id="t1",
        slice_id="s0",
        page_no=3,
        keyword="k",
        operation="SearchTimeline",
        query="k since:2026-01-01",
        requested_at=datetime(2026, 1, 2, tzinfo=UTC),
        response=body,
        entries=20,
    )


def test_page_body_is_the_header_bytes_and_not_in_the_value():
    body = (FIXTURES / "raw_search.json").read_text()
    page = _page(body)
    value, header = page.encode(), page.encode_body()
    assert header == body.encode()  # verbatim: no escapes, nothing re-serialized
    assert "response" not in orjson.loads(value)
    assert len(value) < 2_000  # the metadata only
    back = RawPage.decode(value, header)
    assert back == page and back.response == body


def test_record_without_body_has_no_header():
    page = _page(None)
    assert page.encode_body() is None
    assert RawPage.decode(page.encode(), None).response is None


def test_v1_records_with_the_body_inside_the_value_still_decode():
    """raw-pages keeps 30 days and kol-pages is a cache kept for good: v1 records stay readable."""
    body = (FIXTURES / "raw_search.json").read_text()
    page = _page(body)
    v1_value = orjson.dumps({**orjson.loads(page.encode()), "response": body})
    assert RAW_PAGES.schema_for("xget.RawPage/v1") is RawPage
    assert RAW_PAGES.schema_for("xget.RawPage/v2") is RawPage
    assert RawPage.decode(v1_value) == page


def test_post_schema_versions_and_unknown_one():
    assert POSTS.schema_for("xget.Post/v2") is Post
    assert POSTS.schema_for("xget.Post/v1") is Post
    assert POSTS.schema_for("xget.Post/v3") is None


def test_body_that_is_not_utf8_is_a_value_error():
    page = _page("{}")
    with pytest.raises(ValueError):
        RawPage.decode(page.encode(), b"\xff\xfe{}")
