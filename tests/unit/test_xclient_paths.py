"""The scraper's direct-path reading of SearchTimeline pages answers exactly what twscrape's
recursive search answers (entries and cursors), on every captured search page."""

import json
from pathlib import Path

import pytest
from twscrape.utils import find_obj, get_by_path

from libs.xclient import SKIP_ENTRY_PREFIXES, get_cursor, gql_entries

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "x"
SEARCH_PAGES = [
    p for p in sorted(FIXTURES.glob("*.json")) if "search_by_raw_query" in p.read_text()
]


def generic_entries(obj):
    els = get_by_path(obj, "entries") or get_by_path(obj, "items_results") or []
    return [x for x in els if not str(x.get("entryId", "")).startswith(SKIP_ENTRY_PREFIXES)]


def generic_cursor(obj, kind):
    cur = find_obj(obj, lambda x: x.get("cursorType") == kind)
    return cur.get("value") if cur else None


@pytest.mark.parametrize("path", SEARCH_PAGES, ids=lambda p: p.name)
def test_direct_path_matches_twscrape(path):
    obj = json.loads(path.read_text())
    assert gql_entries(obj) == generic_entries(obj)
    for kind in ("Bottom", "Top"):
        assert get_cursor(obj, kind) == generic_cursor(obj, kind)
    assert gql_entries(obj) and get_cursor(obj, "Bottom")


def test_search_pages_exist():
    assert SEARCH_PAGES, "no captured SearchTimeline page in the fixtures"


# --- the skeleton summary (libs/x_page_summary) the scraper classifies pages with -------------
ALL_PAGES = sorted(FIXTURES.glob("*.json"))


def _classify_both(monkeypatch, text: str, cursor_in=None):
    """classify through the skeleton, and through the generic orjson path."""
    import httpx

    from libs import xclient

    headers = httpx.Headers({"content-type": "application/json"})
    fast = xclient.classify(200, headers, text, cursor_in)
    with monkeypatch.context() as m:
        m.setattr(xclient, "summarize", lambda *_a, **_k: None)
        generic = xclient.classify(200, headers, text, cursor_in)
    return fast, generic


@pytest.mark.parametrize("path", SEARCH_PAGES, ids=lambda p: p.name)
def test_summary_matches_twscrape_on_search_pages(path):
    from libs.x_page_summary import summarize

    text = path.read_text()
    obj = json.loads(text)
    s = summarize(text)
    assert s is not None, "the skeleton must explain a captured SearchTimeline page"
    assert s.entries == len(generic_entries(obj)) > 0
    assert s.cursor == generic_cursor(obj, "Bottom")
    assert summarize(text, "Top").cursor == generic_cursor(obj, "Top")


@pytest.mark.parametrize("path", ALL_PAGES, ids=lambda p: p.name)
def test_classify_same_with_and_without_summary(monkeypatch, path):
    fast, generic = _classify_both(monkeypatch, path.read_text())
    assert fast == generic


def _search_doc(entries, errors=None, extra_instruction=None):
    insts = [{"type": "TimelineAddEntries", "entries": entries}]
    if extra_instruction:
        insts.append(extra_instruction)
    doc = {
        "data": {"search_by_raw_query": {"search_timeline": {"timeline": {"instructions": insts}}}}
    }
    if errors is not None:
        doc["errors"] = errors
    return json.dumps(doc, indent=1)  # whitespace X may send does not matter


def _cursor(kind, value):
    return {
        "entryId": f"cursor-{kind.lower()}-1",
        "content": {"entryType": "TimelineTimelineCursor", "cursorType": kind, "value": value},
    }


TWEET = {"entryId": "tweet-1", "content": {"entryType": "TimelineTimelineItem"}}


@pytest.mark.parametrize(
    "text, cursor_in",
    [
        # an end of timeline: no content entries and the same cursor again
        (_search_doc([_cursor("Top", "t"), _cursor("Bottom", "b")]), "b"),
        # a new cursor but no entries: not the end
        (_search_doc([_cursor("Bottom", "b2")]), "b"),
        # X's later pages move the bottom cursor into a TimelineReplaceEntry
        (
            _search_doc(
                [TWEET],
                extra_instruction={
                    "type": "TimelineReplaceEntry",
                    "entry": _cursor("Bottom", "b3"),
                },
            ),
            None,
        ),
        # partial errors next to data
        (
            _search_doc(
                [TWEET, _cursor("Bottom", "b4")],
                errors=[{"code": 88, "message": "Rate limit exceeded"}],
            ),
            None,
        ),
        (_search_doc([TWEET, _cursor("Bottom", "b5")], errors=[{"code": "x", "message": 5}]), None),
        # no cursor in the instructions at all, entries without entryId, odd shapes
        (_search_doc([TWEET]), None),
        (_search_doc([{"content": {}}, _cursor("Bottom", "b6")]), None),
        (_search_doc([{"entryId": 7, "content": "not an object"}]), None),
        ('{"data": {"search_by_raw_query": null}}', None),
        ('{"errors": [{"code": 32, "message": "Could not authenticate you"}]}', None),
        ('{"data": {"search_by_raw_query": {"search_timeline": {"timeline": ', None),
        ("[1, 2]", None),
    ],
)
def test_classify_edge_cases_same_with_and_without_summary(monkeypatch, text, cursor_in):
    fast, generic = _classify_both(monkeypatch, text, cursor_in)
    assert fast == generic
