"""SearchTimeline through XClient: corpus windows, ids, paging, GET and POST."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import httpx
import orjson

from infra.xsim.corpus import snowflake_ms
from libs.xclient import XClient

from .helpers import account, entries, page_all, post_ids, tweets

WINDOW = "since:2026-01-01 until:2026-01-01_03:00:00_UTC"


def corpus(admin: httpx.Client, keyword: str, since: str, until: str) -> list[str]:
    r = admin.get("/_sim/corpus", params={"keyword": keyword, "since": since, "until": until})
    r.raise_for_status()
    return r.json()["ids"]


async def test_paging_yields_exactly_the_corpus(settings, admin):
    expected = corpus(admin, "tesla", "2026-01-01", "2026-01-01_03:00:00_UTC")
    assert len(expected) == 180  # 60 posts/hour default
    client = XClient(settings)
    try:
        ids, results = await page_all(client, account(), f"tesla {WINDOW}")
    finally:
        await client.aclose()
    assert ids == expected  # every post exactly once, newest first
    assert len(set(ids)) == len(ids)
    assert [int(x) for x in ids] == sorted((int(x) for x in ids), reverse=True)
    last = results[-1]
    assert last.exhausted and last.entries == 0
    assert last.cursor_out == results[-2].cursor_out  # X's end: repeated cursor
    assert all(r.entries == 20 for r in results[:-1])
    assert all(not r.exhausted for r in results[:-1])
    assert results[0].rate_limit_limit == 50


async def test_post_method_answers_the_same(settings, admin):
    get_c, post_c = XClient(settings), XClient(settings, method="POST")
    try:
        q = "spacex since:2026-02-01 until:2026-02-01_01:00:00_UTC"
        a, _ = await page_all(get_c, account(), q, count=25)
        b, _ = await page_all(post_c, account(), q, count=25)
    finally:
        await get_c.aclose()
        await post_c.aclose()
    assert a == b == corpus(admin, "spacex", "2026-02-01", "2026-02-01_01:00:00_UTC")
    methods = {
        e["method"]
        for e in admin.get("/_sim/log").json()
        if e["operation"] == "SearchTimeline" and "spacex" in (e["raw_query"] or "")
    }
    assert methods == {"GET", "POST"}


async def test_ids_unique_across_keywords_and_time_ordered(settings, admin):
    a = corpus(admin, "alpha", "2026-01-01", "2026-01-02")
    b = corpus(admin, "beta", "2026-01-01", "2026-01-02")
    assert len(a) == len(b) == 1440
    assert not set(a) & set(b)
    for pid in a + b:
        assert isinstance(pid, str) and re.fullmatch(r"[1-9][0-9]{0,18}", pid)
    lo = datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000
    hi = datetime(2026, 1, 2, tzinfo=UTC).timestamp() * 1000
    assert all(lo <= snowflake_ms(int(x)) < hi for x in a)


async def test_since_until_and_created_at(settings, admin):
    since, until = 1767268800, 1767268800 + 1800  # 2026-01-01 12:00 UTC, 30 minutes
    client = XClient(settings)
    try:
        r = await client.search_page(
            account(), f"gold since_time:{since} until_time:{until}", None, count=100
        )
    finally:
        await client.aclose()
    assert r.outcome == "ok" and r.entries == 30
    for tw in tweets(r.body):
        ts = datetime.strptime(tw["legacy"]["created_at"], "%a %b %d %H:%M:%S %z %Y").timestamp()
        assert since <= ts < until
        # the snowflake agrees with created_at (to the second)
        assert int(snowflake_ms(int(tw["rest_id"])) // 1000) == int(ts)
        assert tw["legacy"]["id_str"] == tw["rest_id"]
        assert tw["legacy"]["conversation_id_str"] == tw["rest_id"]


async def test_window_without_since_is_capped_and_without_until_is_now(admin):
    r = admin.get("/_sim/corpus", params={"keyword": "cap", "until": "2026-01-01"}).json()
    assert r["count"] == 2000
    now = datetime.now(UTC).timestamp()
    r = admin.get("/_sim/corpus", params={"keyword": "live", "since": str(int(now - 3600))}).json()
    assert 59 <= r["count"] <= 61
    assert all(p["time"] < now + 1 for p in r["posts"])


async def test_density_is_configurable_per_keyword(admin):
    admin.post("/_sim/config", json={"densities": {"dense": 600}}).raise_for_status()
    try:
        assert len(corpus(admin, "dense", "2026-01-01", "2026-01-01_01:00:00_UTC")) == 600
    finally:
        admin.post("/_sim/config", json={"densities": {"dense": None}})
    assert len(corpus(admin, "dense", "2026-01-01", "2026-01-01_01:00:00_UTC")) == 60


async def test_posts_keep_template_content_with_derived_ids(settings, sim_url, admin):
    fixture = orjson.loads(open(settings_fixture_path(), "rb").read())
    ins = fixture["data"]["search_by_raw_query"]["search_timeline"]["timeline"]["instructions"]
    tpl = [
        e["content"]["itemContent"]["tweet_results"]["result"]
        for e in ins[0]["entries"]
        if e["entryId"].startswith("tweet-")
    ]
    fixture_ids = {t["rest_id"] for t in tpl}
    texts = {t["legacy"]["full_text"] for t in tpl}
    client = XClient(settings)
    try:
        r = await client.search_page(account(), f"tesla {WINDOW}", None, count=40)
    finally:
        await client.aclose()
    tws = tweets(r.body)
    assert len(tws) == 40
    quotes = 0
    for tw in tws:
        assert tw["rest_id"] not in fixture_ids
        assert tw["legacy"]["full_text"] in texts
        if "quoted_status_result" in tw:
            quotes += 1
            q = tw["quoted_status_result"]["result"]
            q = q.get("tweet", q)
            assert q["rest_id"] == tw["legacy"]["quoted_status_id_str"]
            assert q["rest_id"] not in fixture_ids and q["rest_id"] != tw["rest_id"]
            assert int(q["rest_id"]) < int(tw["rest_id"])  # the quoted post is older
    assert quotes >= 4
    assert all(
        e["entryId"] == f"tweet-{e['sortIndex']}"
        for e in entries(r.body)
        if e["entryId"].startswith("tweet-")
    )


def settings_fixture_path():
    from infra.xsim.templates import default_fixtures_dir

    return default_fixtures_dir() / "raw_search.json"


async def test_raw_get_and_post_and_end_cursor(sim_url):
    q = {"rawQuery": "raw since:2026-03-01 until:2026-03-01_00:30:00_UTC", "count": 20}
    feats = orjson.dumps({"x": True}).decode()
    async with httpx.AsyncClient(base_url=sim_url) as c:
        g = await c.get(
            "/i/api/graphql/anyId123/SearchTimeline",
            params={"variables": orjson.dumps(q).decode(), "features": feats},
        )
        p = await c.post(
            "/i/api/graphql/otherId/SearchTimeline",
            json={"variables": q, "features": {"x": True}, "queryId": "otherId"},
        )
        assert g.status_code == p.status_code == 200
        assert post_ids(g.text) == post_ids(p.text) and len(post_ids(g.text)) == 20
        cur = next(e for e in entries(g.text) if e["entryId"].startswith("cursor-bottom"))
        q2 = {**q, "cursor": cur["content"]["value"]}
        r2 = await c.post("/i/api/graphql/x/SearchTimeline", json={"variables": q2})
        assert len(post_ids(r2.text)) == 10
        cur2 = next(e for e in entries(r2.text) if e["entryId"].startswith("cursor-bottom"))
        q3 = {**q, "cursor": cur2["content"]["value"]}
        r3 = await c.post("/i/api/graphql/x/SearchTimeline", json={"variables": q3})
        assert post_ids(r3.text) == []
        cur3 = next(e for e in entries(r3.text) if e["entryId"].startswith("cursor-bottom"))
        assert cur3["content"]["value"] == cur2["content"]["value"]


def test_account_repr_hides_secrets():
    acc = account("secret")
    assert acc.auth_token not in repr(acc) and acc.ct0 not in repr(acc)


async def test_twscrape_transaction_id_generator_is_used(settings, admin, monkeypatch):
    from twscrape.queue_client import XClIdGenStore

    calls = []

    class Gen:
        def calc(self, method, path):
            calls.append((method, path))
            return "generated-tx-id"

    async def _get(cls, username, proxy=None, cookies=None, fresh=False):
        assert set(cookies) == {"auth_token", "ct0"}
        return Gen()

    monkeypatch.setattr(XClIdGenStore, "get", classmethod(_get))
    client = XClient(settings.model_copy(update={"x_transaction_id": "twscrape"}))
    try:
        r = await client.search_page(account(), "txid since:2026-01-01 until:2026-01-02", None)
    finally:
        await client.aclose()
    assert r.outcome == "ok" and r.entries == 20
    assert calls == [("GET", "/i/api/graphql/hyPfJYJ_XAtDYoslQc-Rgg/SearchTimeline")]
