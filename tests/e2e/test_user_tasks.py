"""User tasks end to end: `retweeters` pages X's Retweeters list of a post by cursor and
`user_profile` fetches one profile (UserByScreenName); each page goes to raw-pages, the parser
turns it into users, the dedup-counter stores them (users + task_users) and counts them, and
the reporter reports them as user records — against the simulator, the broker and chdb."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from infra.service_process import wait_until
from libs.storage.clickhouse import ClickHouseStore
from libs.storage.objects import open_object_store
from tests.webhook_server import WebhookServer

from .harness import Simulator
from .test_reports import SECRET, Stack, completed_report, report_settings

pytestmark = pytest.mark.e2e

RETWEETERS = 45  # the simulator's list length for our post: 3 pages of 20, then the end


def sim_retweeters(xsim: str, post_id: str) -> list[str]:
    """The list as the simulator holds it, read in one large page (not the scraper's 20s)."""
    r = httpx.get(
        f"{xsim}/i/api/graphql/q/Retweeters",
        params={"variables": json.dumps({"tweetId": post_id, "count": 100})},
        cookies={"auth_token": "expected-list", "ct0": "c"},
    )
    r.raise_for_status()
    ids = []
    for inst in r.json()["data"]["retweeters_timeline"]["timeline"]["instructions"]:
        for e in inst.get("entries", []):
            if e["entryId"].startswith("user-"):
                ids.append(e["content"]["itemContent"]["user_results"]["result"]["rest_id"])
    return ids


def task_users(chdb_dir: str, task_id: str) -> list[tuple]:
    with ClickHouseStore(f"chdb://{chdb_dir}") as ch:
        return ch.query_rows_sync(
            "SELECT t.user_id, t.relation, t.subject, t.retweeted_at, u.user_name "
            "FROM (SELECT * FROM task_users FINAL WHERE task_id = {t:String}) AS t "
            "LEFT JOIN (SELECT * FROM users FINAL) AS u ON u.user_id = t.user_id "
            "ORDER BY t.rank",
            {"t": task_id},
        )


def test_retweeters_and_user_profile(noida, xsim, s3, tmp_path, chdb_path):
    settings = report_settings(
        noida, xsim, tmp_path, chdb_path, s3, report_media_wait_s=0, report_batch_size=20
    )
    sim = Simulator(xsim)
    post_id = str(1_800_000_000_000_000_000 + int(uuid.uuid4().hex[:8], 16))
    handle = f"u{uuid.uuid4().hex[:8]}"
    sim.configure(users_per_target={post_id: RETWEETERS})
    expected = sim_retweeters(xsim, post_id)
    assert len(expected) == RETWEETERS
    seq = max((e["seq"] for e in sim.log()), default=0)

    with WebhookServer(SECRET) as hook, Stack(settings, tmp_path) as stack:
        gw = stack.gw

        def search(**body):
            return gw.client.post("/api/v1/tasks/search", json=body)

        rt = search(type="retweeters", post_id=post_id, callback_url=hook.url)
        up = search(type="user_profile", username=f"@{handle}", callback_url=hook.url)
        assert rt.status_code == up.status_code == 200, (rt.text, up.text)
        rt_id, up_id = rt.json()["task_id"], up.json()["task_id"]
        assert rt.json()["estimate"]["x_requests"] >= 1 and up.json()["estimate"]["x_requests"] == 1
        # the same request again is idempotent (the task's window is fixed for user tasks)
        again = search(type="retweeters", post_id=post_id, callback_url=hook.url, task_id=rt_id)
        assert again.status_code == 200 and "idempotent" in again.json()["message"], again.text

        for tid in (rt_id, up_id):
            wait_until(lambda tid=tid: completed_report(hook, tid), 120, f"{tid} reported")
            st = gw.status(tid)
            assert st["status"] == "completed", st
        assert gw.status(rt_id)["progress"]["collected"] == RETWEETERS
        assert gw.status(up_id)["progress"]["collected"] == 1
        for kind, tid in (("retweeters", rt_id), ("user_profile", up_id)):
            items = gw.client.get("/api/v1/tasks", params={"type": kind}).json()
            assert [t["task_id"] for t in items] == [tid], items
            assert items[0]["mode"] == "ondemand" and items[0]["type"] == kind

        # Bad input names the field.
        for body, field in (
            ({"type": "retweeters", "post_id": "abc"}, "post_id"),
            ({"type": "retweeters"}, "post_id"),
            ({"type": "user_profile", "username": "no spaces"}, "username"),
            (
                {"type": "keyword_search", "keyword": "k", "end_time": "2026-10-01T00:00:00Z"},
                "start_time",  # half a window: the default is for none
            ),
        ):
            r = search(**body)
            assert r.status_code == 422 and r.json()["detail"][0]["field"] == field, r.text

        # The profile is readable from the data API like any stored user.
        u = gw.client.get(f"/api/v1/data/users/{handle}")
        assert u.status_code == 200 and u.json()["user_name"] == handle, u.text

    # X was paged by cursor: 3 pages of users, then the page that ends the list; each cursor
    # asked once (never twice), all for our post.
    calls = [
        e
        for e in sim.log()
        if e["seq"] > seq and e["operation"] == "Retweeters" and e["raw_query"] == post_id
    ]
    assert len(calls) == 4, calls
    assert calls[0]["cursor"] is None and len({c["cursor"] for c in calls}) == 4
    profile_calls = [
        e
        for e in sim.log()
        if e["seq"] > seq and e["operation"] == "UserByScreenName" and e["raw_query"] == handle
    ]
    assert len(profile_calls) == 1

    # Stored: every retweeter once, in X's order, retweet time unknown (X does not give it).
    rows = task_users(chdb_path, rt_id)
    assert [r[0] for r in rows] == expected
    assert {(r[1], r[2], r[3]) for r in rows} == {("retweeter", post_id, None)}
    assert all(r[4] for r in rows)
    prof = task_users(chdb_path, up_id)
    assert [(r[1], r[2], r[4]) for r in prof] == [("profile", handle, handle)]

    # Reported: user ids in batches of 20, every user once, the batch files hold the records.
    objects = open_object_store(settings)
    bodies = sorted(
        (r.body for r in hook.accepted() if r.body["task_id"] == rt_id), key=lambda b: b["batch_id"]
    )
    reported = [i for b in bodies for i in b["user_ids"]]
    assert reported == expected
    assert [b["batch_size"] for b in bodies] == [20, 20, 5]
    assert all(b["post_ids"] == [] for b in bodies)
    assert {b["post_id"] for b in bodies} == {post_id}  # the design's post_id: the retweeted post
    assert bodies[-1]["completion_status"] == "completed"
    assert bodies[-1]["total_collected"] == RETWEETERS
    recs = json.loads(objects.get_sync(bodies[0]["oss_file_path"]))
    assert [r["user_id"] for r in recs] == bodies[0]["user_ids"]
    assert recs[0]["relation"] == "retweeter" and recs[0]["subject"] == post_id
    assert recs[0]["retweeted_at"] is None and recs[0]["user_name"]
    prof_body = completed_report(hook, up_id).body
    assert prof_body["user_ids"] == [prof[0][0]] and prof_body["post_ids"] == []
