"""The scraper's direct-path reading of SearchTimeline pages answers exactly what twscrape's
recursive search answers (entries and cursors), on every captured search page."""

import json
from pathlib import Path

import pytest
from twscrape.utils import find_obj, get_by_path

from libs.xclient import SKIP_ENTRY_PREFIXES, get_cursor, gql_entries

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "x"
SEARCH_PAGES = [p for p in sorted(FIXTURES.glob("*.json"))
                if "search_by_raw_query" in p.read_text()]


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
