"""End to end: an on-demand task through gateway → scheduler → scraper → X simulator → parser →
dedup-counter → ClickHouse, with every part real (broker, chdb, simulator, OS processes): on
either broker, and with ClickHouse embedded (chdb://) or over HTTP (http://, infra/chdb_http)."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import UTC
from pathlib import Path

import pytest

from infra.local import free_port
from infra.service_process import ServiceProcess, wait_until
from libs.storage.clickhouse import ClickHouseStore
from services.task_gateway.scheduler import search_query

from .harness import Gateway, Simulator, fresh_prefix

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "x"
START, END = "2026-10-01T00:00:00Z", "2026-10-02T00:00:00Z"  # 1,440 posts at 60/h


def clickhouse_dsn(chdb_dir: str) -> str:
    """`chdb_dir` is a chdb data directory, or a whole `http://` DSN."""
    return chdb_dir if chdb_dir.startswith("http") else f"chdb://{chdb_dir}"


def pipeline_settings(kafka, xsim: str, tmp_path: Path, chdb_dir: str, **overrides):
    opts = dict(
        topic_prefix=fresh_prefix(kafka.bootstrap),
        clickhouse_dsn=clickhouse_dsn(chdb_dir),
        object_store_url=f"file://{tmp_path / 'objects'}",
        data_dir=str(tmp_path / "xget"),
        x_graphql_url=f"{xsim}/i/api/graphql",
        x_media_base=xsim,  # `all` includes the media-downloader: media from the simulator
        x_video_base=xsim,
        x_transaction_id="static",
        x_accounts="acc1:tok-a1:ct0-a1,acc2:tok-a2:ct0-a2,acc3:tok-a3:ct0-a3",
        gateway_port=free_port(),
        account_admin_port=free_port(),
        account_key="e2e-account-key",
        api_token="e2e-token",
    )
    opts.update(overrides)
    return kafka.settings(**opts)


def fixture_expectations() -> tuple[dict, dict]:
    """From the raw fixture, independently of the parser: per template post, what the record
    must say. Keyed by (author handle, like count) — unique among raw_search's posts."""
    doc = json.loads((FIXTURES / "raw_search.json").read_text())
    entries = doc["data"]["search_by_raw_query"]["search_timeline"]["timeline"]["instructions"][0]
    plain, retweets = {}, {}
    for e in entries["entries"]:
        res = (e["content"].get("itemContent") or {}).get("tweet_results", {}).get("result")
        if not res:
            continue
        if res.get("__typename") == "TweetWithVisibilityResults":
            res = res["tweet"]
        user = res["core"]["user_results"]["result"]
        handle = "@" + (
            (user.get("core") or {}).get("screen_name") or user["legacy"]["screen_name"]
        )
        leg = res["legacy"]
        if leg.get("retweeted_status_result"):
            orig = leg["retweeted_status_result"]["result"]
            if orig.get("__typename") == "TweetWithVisibilityResults":
                orig = orig["tweet"]
            ou = orig["core"]["user_results"]["result"]
            retweets[handle] = "@" + (
                (ou.get("core") or {}).get("screen_name") or ou["legacy"]["screen_name"]
            )
            continue
        views = (res.get("views") or {}).get("count")
        photos = [m for m in (leg.get("extended_entities") or {}).get("media", [])]
        plain[(handle, leg["favorite_count"])] = {
            "retweet_count": leg["retweet_count"],
            "comment_count": leg["reply_count"],
            "quote_count": leg["quote_count"],
            "view_count": int(views) if views else None,
            "is_quote": bool(leg.get("is_quote_status")),
            "media": len(photos),
        }
    return plain, retweets


def stored(chdb_dir: str, task_id: str) -> dict:
    with ClickHouseStore(clickhouse_dsn(chdb_dir)) as ch:
        posts = ch.query_dicts_sync(
            "SELECT post_id, author_handle, like_count, retweet_count, comment_count, "
            "quote_count, view_count, is_quote, is_retweet, original_author_handle, "
            "original_post_id, post_images, post_time, post_url, keyword, raw_data "
            "FROM posts FINAL WHERE task_id = {t:String}",
            {"t": task_id},
        )
        counts = ch.query_rows_sync(
            "SELECT (SELECT uniqExact(post_id) FROM task_posts WHERE task_id = {t:String}), "
            "(SELECT count() FROM posts FINAL WHERE task_id = {t:String}), "
            "(SELECT uniqExact(post_id) FROM keyword_month_posts WHERE task_id = {t:String})",
            {"t": task_id},
        )[0]
    return {"posts": posts, "task_posts": counts[0], "posts_final": counts[1], "billing": counts[2]}


@pytest.mark.parametrize(
    "broker,clickhouse", [("noida", "chdb"), ("tansu", "chdb"), ("noida", "http")]
)
def test_ondemand_task_collects_exactly_the_requested_posts(
    broker, clickhouse, request, xsim, tmp_path, chdb_path
):
    kafka = request.getfixturevalue(broker)
    if clickhouse == "http":
        chdb_path = request.getfixturevalue("clickhouse_http_dsn")
    settings = pipeline_settings(kafka, xsim, tmp_path, chdb_path)
    sim = Simulator(xsim)
    sim.configure(limits={"SearchTimeline": 100_000})
    keyword = f"tesla{uuid.uuid4().hex[:6]}"

    proc = ServiceProcess("xget-all", ["all"], settings, tmp_path).start()
    gw = Gateway(settings)
    try:
        wait_until(lambda: proc.alive() and gw.ready(), 60, "the gateway to answer")
        r = gw.submit(
            keyword=keyword, priority=3, required_count=500, start_time=START, end_time=END
        )
        assert r.status_code == 200, r.text
        body = r.json()
        task_id = body["task_id"]
        assert body["status"] == "success" and body["estimated_completion"]

        final = wait_until(
            lambda: (s := gw.status(task_id))["status"] == "completed" and s,
            240,
            f"task {task_id} to complete\n{proc.tail()}",
        )
        assert final["progress"] == {"collected": 500, "target": 500, "percentage": 100.0}
        assert final["created_at"] and final["updated_at"]
    finally:
        proc.stop()

    got = stored(chdb_path, task_id)
    assert got["task_posts"] == got["posts_final"] == got["billing"] == 500
    ids = [p["post_id"] for p in got["posts"]]
    assert len(set(ids)) == 500
    # Exactly the 500 newest posts the simulator holds for the window, as X orders them.
    corpus = sim.corpus_ids(search_query(keyword, _dt(START), _dt(END)))
    assert set(ids) == set(corpus[:500])

    plain, retweets = fixture_expectations()
    seen = Counter()
    for p in got["posts"]:
        assert p["keyword"] == keyword
        assert p["post_url"] == f"https://x.com/{p['author_handle'][1:]}/status/{p['post_id']}"
        post_time = p["post_time"].replace(tzinfo=p["post_time"].tzinfo or UTC)
        assert _dt(START) <= post_time < _dt(END)
        assert json.loads(p["raw_data"])["rest_id"] == p["post_id"]
        if p["is_retweet"]:
            assert p["original_author_handle"] == retweets[p["author_handle"]]
            assert p["original_post_id"] and p["original_post_id"] != p["post_id"]
            seen["retweet"] += 1
            continue
        want = plain[(p["author_handle"], p["like_count"])]
        for field in ("retweet_count", "comment_count", "quote_count", "view_count", "is_quote"):
            assert p[field] == want[field], (field, p["post_id"])
        assert len(json.loads(p["post_images"])) == want["media"], p["post_id"]
        seen[(p["author_handle"], p["like_count"])] += 1
    # Every template post of the fixture shows up among 500 derived posts.
    assert len([k for k in seen if k != "retweet"]) == len(plain)


def _dt(s: str):
    from datetime import datetime

    return datetime.fromisoformat(s.replace("Z", "+00:00"))
