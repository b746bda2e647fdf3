"""Billing statistics and the stored-data API, end to end through the gateway: unique posts
per keyword per calendar month of collection, exact across overlapping tasks and months."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime

import pytest

from infra.service_process import wait_until
from libs.kafka import Outgoing, Producer
from libs.topics import POSTS, POSTS_TARGET_HEADER

from .harness import Simulator
from .test_reports import Stack, report_settings

pytestmark = pytest.mark.e2e

# 60 posts per hour: A holds 600 posts, B 600, and they share the 300 of 05:00-10:00.
A = ("2026-10-01T00:00:00Z", "2026-10-01T10:00:00Z")
B = ("2026-10-01T05:00:00Z", "2026-10-01T15:00:00Z")


def month_after(t: datetime) -> datetime:
    return datetime(t.year + (t.month == 12), t.month % 12 + 1, 1, 12, tzinfo=UTC)


def wait_done(gw, task_id: str) -> dict:
    return wait_until(
        lambda: (s := gw.status(task_id))["status"] == "completed" and s,
        180,
        f"task {task_id} to complete",
    )


async def collect_again(settings, posts: list[dict], task_id: str, when: datetime) -> None:
    """The same posts collected by another task at `when`, as the parser publishes them."""
    from libs.records.posts import Post

    producer = await Producer(settings, "test-collect-again").start()
    try:
        outs = []
        for p in posts:
            rec = Post.model_validate(
                {
                    **{k: v for k, v in p.items() if k in Post.model_fields},
                    "task_id": task_id,
                    "collected_at": when,
                    "hashtags": ["XGetBilling", f"h{int(p['post_id']) % 3}"],
                }
            )
            outs.append(Outgoing(POSTS, task_id, rec, ((POSTS_TARGET_HEADER, b"0"),)))
        await producer.send_all(outs)
    finally:
        await producer.stop()


def test_monthly_unique_counts_and_data_api(noida, xsim, s3, tmp_path, chdb_path):
    settings = report_settings(noida, xsim, tmp_path, chdb_path, s3, report_media_wait_s=0)
    Simulator(xsim).configure(limits={"SearchTimeline": 100_000})
    keyword = f"bill{uuid.uuid4().hex[:6]}"
    with Stack(settings, tmp_path) as stack:
        gw = stack.gw
        ta, tb, tc = (f"{keyword}-{x}" for x in "abc")
        assert (
            gw.submit(task_id=ta, keyword=keyword, start_time=A[0], end_time=A[1]).status_code
            == 200
        )
        wait_done(gw, ta)
        assert (
            gw.submit(task_id=tb, keyword=keyword, start_time=B[0], end_time=B[1]).status_code
            == 200
        )
        wait_done(gw, tb)
        now = datetime.now(UTC)

        def monthly(t: datetime, kw: str | None = keyword) -> dict:
            params = {"year": t.year, "month": t.month} | ({"keyword": kw} if kw else {})
            r = gw.client.get("/api/v1/statistics/monthly", params=params)
            assert r.status_code == 200, r.text
            return r.json()

        this = monthly(now)
        assert this["period"] == f"{now:%Y-%m}"
        assert [(s["keyword"], s["unique_posts_count"]) for s in this["statistics"]] == [
            (keyword, 900)
        ]
        # the design's routes: one keyword, and every keyword of the month
        ym = {"year": now.year, "month": now.month}
        one = gw.client.get(f"/api/v1/statistics/monthly/{keyword}", params=ym).json()
        assert (one["keyword"], one["unique_posts_count"], one["period"]) == (
            keyword,
            900,
            f"{now:%Y-%m}",
        )
        assert (one["year"], one["month"]) == (now.year, now.month)
        every = gw.client.get("/api/v1/statistics/monthly/all", params=ym).json()
        assert every["total_keywords"] == 1 and every["statistics"] == [
            {**one, "calculated_at": every["statistics"][0]["calculated_at"]}
        ]
        other = gw.client.get("/api/v1/statistics/monthly/nothing-here", params=ym).json()
        assert other["unique_posts_count"] == 0

        sa = gw.client.get(f"/api/v1/statistics/tasks/{ta}").json()
        sb = gw.client.get(f"/api/v1/statistics/tasks/{tb}").json()
        assert (sa["total_collected"], sa["unique_posts"], sa["duplicate_rate"]) == (600, 600, 0.0)
        assert (sb["total_collected"], sb["unique_posts"], sb["duplicate_rate"]) == (600, 300, 0.5)
        assert sb["task_status"] == "completed" and sb["keyword"] == keyword
        assert sb["completed_at"] and sb["created_at"]

        # Data API: every post of the keyword, pages without overlap.
        first = gw.client.get(
            "/api/v1/data/tweets/search",
            params={"task_keyword": keyword, "limit": 500, "include_raw": True},
        )
        assert first.headers["X-Total-Count"] == "900"
        # the second page is where the first one's Link says
        page1, page2 = first.json(), gw.client.get(first.links["next"]["url"]).json()
        ids = [p["post_id"] for p in page1 + page2]
        assert len(ids) == len(set(ids)) == 900
        liked = gw.client.get(
            "/api/v1/data/tweets/search",
            params={"task_keyword": keyword, "min_likes": 100, "limit": 1000},
        )
        assert int(liked.headers["X-Total-Count"]) == sum(
            1 for p in page1 + page2 if p["like_count"] >= 100
        )
        one = page1[0]
        got = gw.client.get(f"/api/v1/data/tweets/{one['post_id']}").json()
        assert got["post_id"] == one["post_id"] and got["post_content"] == one["post_content"]
        handle = one["author_handle"].lstrip("@")
        user = gw.client.get(f"/api/v1/data/users/{handle}")
        assert user.status_code == 200 and user.json()["user_name"].lower() == handle.lower()
        r = gw.client.get(f"/api/v1/data/users/{handle}/tweets", params={"limit": 1000})
        theirs = r.json()
        assert int(r.headers["X-Total-Count"]) == len(theirs) >= 1
        assert all(p["author_handle"].lower() == one["author_handle"].lower() for p in theirs)
        assert gw.client.get("/api/v1/data/tweets/1").status_code == 404
        assert (
            gw.client.get(
                "/api/v1/statistics/monthly", params={"year": 2026, "month": 13}
            ).status_code
            == 422
        )

        # The posts of A collected again next month count again there, and only there.
        a0, a1 = (datetime.fromisoformat(x) for x in A)
        posts_a = [p for p in page1 + page2 if a0 <= datetime.fromisoformat(p["post_time"]) < a1]
        assert len(posts_a) == 600
        nxt = month_after(now)
        asyncio.run(collect_again(settings, posts_a, tc, nxt))
        wait_until(
            lambda: monthly(nxt)["statistics"][0]["unique_posts_count"] == 600,
            60,
            "next month's count",
        )
        assert monthly(now)["statistics"][0]["unique_posts_count"] == 900
        assert [
            (x["keyword"], x["unique_posts_count"], x["period"])
            for x in monthly(nxt, None)["statistics"]
        ] == [(keyword, 600, f"{nxt:%Y-%m}")]

        r = gw.client.get("/api/v1/data/analytics/trending", params={"hours": 24 * 90, "limit": 5})
        assert r.status_code == 200, r.text
        trending = r.json()
        expected = Counter({"xgetbilling": 600})
        expected.update(f"h{int(p['post_id']) % 3}" for p in posts_a)
        top = {h["hashtag"]: h["posts"] for h in trending["hashtags"]}
        for tag, n in expected.items():
            assert top.get(tag) == n, (tag, top)
