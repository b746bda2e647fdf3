"""KOL followings through the api source: storage, sharing, field mapping, dry runs."""

from __future__ import annotations

from collections import Counter

import httpx

from libs.parsing.x import parse_x_time

from .conftest import API_KEY, PAGE, PER_KOL

PAGES_PER_KOL = -(-PER_KOL // PAGE)


def _source_users(env, handle: str) -> dict[str, dict]:
    """The API's own answer for a handle, paged by the test itself (another key)."""
    users, cursor = {}, None
    with httpx.Client(base_url=env.sim, headers={"X-API-Key": "oracle-" + API_KEY}) as c:
        while True:
            params = {"userName": handle, "pageSize": 200, **({"cursor": cursor} if cursor else {})}
            doc = c.get("/twitter/user/followings", params=params).json()
            users.update({u["id"]: u for u in doc["followings"]})
            if not doc["has_next_page"]:
                return users
            cursor = doc["next_cursor"]


def test_ten_kols_stored_once_shared_users_one_row_and_field_mapping(kol_env):
    env = kol_env
    assert env.cli("kol", "import", str(env.write_kols()))[0] == 0
    since = env.log_seq()
    code, out = env.cli("kol-followings")
    assert code == 0, out
    assert "10 of 10 KOLs complete" in out

    # every KOL's pages were asked once (plus one id lookup each), nothing twice
    calls = env.calls(since)
    per_kol = Counter(c["raw_query"] for c in calls)
    assert per_kol == {h: PAGES_PER_KOL for h in env.handles}
    assert len({(c["raw_query"], c["cursor"]) for c in calls}) == len(calls)
    assert len(env.calls(since, op="api.info")) == 10

    expected_edges = {(h, uid) for h in env.handles for uid in env.expected(h)}
    by_user = Counter(uid for _, uid in expected_edges)
    shared3 = [uid for uid, n in by_user.items() if n == 3]
    assert shared3, "the simulator should make users followed by exactly 3 KOLs"

    rows = env.query(
        "SELECT id, name, user_name, avatar, description, created_at, "
        "created_at_time, followers, following, statuses_count "
        "FROM twitter_kol_all FINAL"
    )
    ids = [r[0] for r in rows]
    assert len(ids) == len(set(ids)) == len(by_user)
    assert env.query("SELECT count() FROM twitter_kol_all")[0][0] >= len(by_user)
    kol_ids = dict(env.query("SELECT user_name, id FROM twitter_kol FINAL"))
    assert all(kol_ids[h] for h in env.handles)
    edges = env.query(
        "SELECT kol_id, following_id, min(first_seen), max(last_seen) "
        "FROM twitter_kol_following GROUP BY kol_id, following_id"
    )
    name_of = {v: k for k, v in kol_ids.items()}
    assert {(name_of[k], f) for k, f, *_ in edges} == expected_edges
    for uid in shared3:
        assert ids.count(uid) == 1
        assert sum(1 for _, f, *_ in edges if f == uid) == 3

    # the client's field mapping, for every row, against the API's own answer
    source = {}
    for h in env.handles:
        source.update(_source_users(env, h))
    for (
        uid,
        name,
        user_name,
        avatar,
        desc,
        created,
        created_time,
        followers,
        following,
        statuses,
    ) in rows:
        u = source[uid]
        assert (name, user_name, avatar, desc, created) == (
            u["name"],
            u["screen_name"],
            u["profile_image_url_https"],
            u["description"],
            u["created_at"],
        )
        assert created_time.replace(tzinfo=None) == parse_x_time(u["created_at"]).replace(
            tzinfo=None
        )
        assert (followers, following, statuses) == (
            u["followers_count"],
            u["following_count"],
            u["statuses_count"],
        )

    done = env.query("SELECT count() FROM twitter_kol_progress FINAL WHERE status = 'done'")
    assert done[0][0] == 10
    # a second run finds nothing to do and calls nothing
    since = env.log_seq()
    code, out = env.cli("kol-followings")
    assert code == 0 and "0 of 0 KOLs" in out, out
    assert env.calls(since) == [] and env.calls(since, op="api.info") == []


def test_test_and_dry_run_write_nothing_and_dry_run_limit_1_calls_one_kol(kol_env):
    env = kol_env
    assert env.cli("kol", "import", str(env.write_kols()))[0] == 0
    since = env.log_seq()
    code, out = env.cli("kol-followings", "--test")
    assert code == 0, out
    assert "ClickHouse ok: 10 KOLs listed, 0 done" in out
    assert out.count("would call:") == 3  # the first 3 KOLs, nothing cached yet
    assert f"@{env.handles[0]}" in out
    assert env.calls(since) == [] and env.calls(since, op="api.info") == []

    code, out = env.cli("kol-followings", "--dry-run", "--limit", "1")
    assert code == 0, out
    calls = env.calls(since)
    assert {c["raw_query"] for c in calls} == {env.handles[0]}
    assert len(calls) == PAGES_PER_KOL
    assert f"# @{env.handles[0]}: {PER_KOL} rows" in out
    assert out.count('"user_name"') == PER_KOL

    # nothing was written by either
    assert env.query("SELECT count() FROM twitter_kol_all")[0][0] == 0
    assert env.query("SELECT count() FROM twitter_kol_following")[0][0] == 0
    assert env.query("SELECT count() FROM twitter_kol_progress")[0][0] == 0

    # the dry run's pages are cached: --test now walks KOL 1 from the cache, and a real
    # run stores it without asking the API again
    code, out = env.cli("kol-followings", "--test")
    assert code == 0 and out.count("would call:") == 2, out
    assert f"cache hits {PAGES_PER_KOL + 1}" in out
    since = env.log_seq()
    code, out = env.cli("kol-followings", "--limit", "1")
    assert code == 0, out
    assert env.calls(since) == [] and env.calls(since, op="api.info") == []
    assert env.query("SELECT count() FROM twitter_kol_all FINAL")[0][0] == PER_KOL


def test_cache_status_and_clear_cache(kol_env):
    env = kol_env
    assert env.cli("kol", "import", str(env.write_kols(env.handles[:2])))[0] == 0
    assert env.cli("kol-followings", "--dry-run")[0] == 0
    code, out = env.cli("kol-followings", "--cache-status")
    assert code == 0, out
    calls = 2 * (PAGES_PER_KOL + 1)
    assert f"2 KOLs, {calls} pages" in out
    assert f"calls spent: {calls} ({calls} paid API calls answered, est. $" in out
    assert "KOLs done: 0 of 2" in out

    code, out = env.cli("kol-followings", "--clear-cache", stdin="no\n")
    assert code == 1 and "nothing cleared" in out
    assert f"2 KOLs, {calls} pages" in env.cli("kol-followings", "--cache-status")[1]

    assert env.cli("kol-followings", "--limit", "1")[0] == 0  # from the cache, no call
    assert "KOLs done: 1 of 2" in env.cli("kol-followings", "--cache-status")[1]
    code, out = env.cli("kol-followings", "--clear-cache", "--yes")
    assert code == 0 and "cache cleared" in out and "progress cleared" in out, out
    out = env.cli("kol-followings", "--cache-status")[1]
    assert "0 KOLs, 0 pages" in out and "KOLs done: 0 of 2" in out
    # everything is fetched again after a clear
    since = env.log_seq()
    assert env.cli("kol-followings")[0] == 0
    assert len(env.calls(since)) == 2 * PAGES_PER_KOL
