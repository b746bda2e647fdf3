"""The paging headers of the design's list routes: X-Total-Count, and Link next/prev only
where such a page exists and the route would accept its offset."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from starlette.datastructures import URL

from services.task_gateway.paging import page_headers, search_headers

BASE = URL("http://gw/api/v1/tasks?status=running&limit=10&offset=20&post_type=a&post_type=b")


def _links(headers: dict[str, str]) -> dict[str, dict[str, list[str]]]:
    out = {}
    for part in headers.get("Link", "").split(", ") if "Link" in headers else []:
        target, rel = part.split("; ")
        out[rel.removeprefix('rel="').rstrip('"')] = parse_qs(urlsplit(target[1:-1]).query)
    return out


def test_middle_page_links_both_ways_keeping_every_other_parameter():
    h = page_headers(BASE, total=45, limit=10, offset=20, max_offset=10_000)
    assert h["X-Total-Count"] == "45"
    kept = {"status": ["running"], "post_type": ["a", "b"], "limit": ["10"]}
    assert _links(h) == {"next": {**kept, "offset": ["30"]}, "prev": {**kept, "offset": ["10"]}}


def test_ends_and_limits():
    # first page: no prev; last page (exactly full): no next; nothing: no Link at all
    assert set(_links(page_headers(BASE, 45, 10, 0, 10_000))) == {"next"}
    assert set(_links(page_headers(BASE, 30, 10, 20, 10_000))) == {"prev"}
    assert "Link" not in page_headers(BASE, 0, 10, 0, 10_000)
    # a prev never goes below 0; a next the route would refuse (offset > max) is not linked
    assert _links(page_headers(BASE, 45, 10, 5, 10_000))["prev"]["offset"] == ["0"]
    assert set(_links(page_headers(BASE, 10**6, 10, 95, 100))) == {"prev"}


def test_a_search_whose_total_is_a_lower_bound_still_links_the_next_page():
    """Past XGET_API_EXACT_TOTAL_LIMIT the total is at least what was counted: a full page at
    the bound's end links the next one (more posts match), a short page ends the list, and
    X-Total-Count-Exact says which kind of total it is."""
    bound = search_headers(BASE, 10_001, False, 10, 10, 10_000, 100_000)
    assert bound["X-Total-Count"] == "10001" and bound["X-Total-Count-Exact"] == "false"
    assert _links(bound)["next"]["offset"] == ["10010"]
    short = search_headers(BASE, 10_001, False, 4, 10, 10_000, 100_000)
    assert set(_links(short)) == {"prev"}
    exact = search_headers(BASE, 45, True, 5, 10, 40, 100_000)
    assert exact["X-Total-Count-Exact"] == "true" and set(_links(exact)) == {"prev"}
