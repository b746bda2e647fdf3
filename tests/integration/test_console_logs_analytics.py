"""The console's system log view and analytics figures, from the real broker and ClickHouse."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from libs.kafka import Outgoing
from libs.log_shipper import LogShipper
from libs.records.accounts import AccountEvent, AccountState, OpWindow
from libs.records.dead_letter import DeadLetter
from libs.topics import ACCOUNT_EVENTS, ACCOUNT_STATE, DEAD_LETTERS
from services.runtime import clickhouse_for
from services.task_gateway.api import create_app
from tests.integration.test_console_auth import (
    PASSWORDS,
    ROLES,
    Gateway,
    _settings,
    eventually,
)


async def test_service_warnings_reach_the_log_view_bounded(noida):
    settings = _settings(noida).model_copy(update={"log_ship_per_minute": 5})
    g = await Gateway(settings).start()
    for name, role in ROLES.items():
        await g.users.add(name, role, PASSWORDS[name])
    shipper = LogShipper(settings, "xget:scraper").install()
    running = asyncio.create_task(shipper.run())
    try:
        logger = logging.getLogger("services.scraper.test")
        logger.info("an info line is not shipped")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("page 3 failed")
        for i in range(9):
            logger.warning("warning %d", i)
        async with g.signed_in("op") as c:

            async def shipped() -> bool:
                r = await c.get("/api/v1/admin/logs", params={"limit": 50})
                return r.json()["total"] >= 5

            await eventually(shipped, 30, "5 log records on service-logs")
            await asyncio.sleep(1.5)  # one more flush: nothing beyond the bound arrives
            page = (await c.get("/api/v1/admin/logs", params={"limit": 50})).json()
        async with g.signed_in("view") as c:
            assert (await c.get("/api/v1/admin/logs")).status_code == 403
    finally:
        shipper.stop()
        await running
        await g.stop()
    items = page["items"]
    assert page["total"] == 5 and len(items) == 5  # 5 a minute: the rest were dropped
    assert shipper.handler.dropped == 5
    oldest = items[-1]
    assert oldest["level"] == "ERROR" and oldest["process"] == "xget:scraper"
    assert "page 3 failed" in oldest["message"] and "ValueError: boom" in oldest["message"]
    assert [i["message"] for i in items[:4]] == [f"warning {n}" for n in (3, 2, 1, 0)]
    assert not any("info line" in i["message"] for i in items)


async def test_analytics_figures(noida, clickhouse_http_dsn):
    settings = _settings(noida).model_copy(update={"clickhouse_dsn": clickhouse_http_dsn})
    store = await clickhouse_for(settings, wait=False)
    now = datetime.now(UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    hour = now.replace(minute=0, second=0, microsecond=0)
    yesterday = today - timedelta(seconds=1)
    early = today + (now - today) / 2  # today, whatever the time of day
    # task_posts: 3 unique posts today (one collected by two tasks), 2 yesterday, 1 long ago
    rows = [
        ("t1", "p1", "alpha", early),
        ("t2", "p1", "alpha", early),
        ("t1", "p2", "alpha", early),
        ("t3", "p3", "beta", early),
        ("t4", "p4", "beta", yesterday),
        ("t4", "p5", "beta", yesterday),
        ("t5", "p6", "gamma", now - timedelta(days=40)),
    ]
    await store.insert("task_posts", rows, ["task_id", "post_id", "keyword", "collected_at"])
    month = now.date().replace(day=1)
    await store.insert(
        "keyword_month_posts",
        [("alpha", month, "p1", "t1", now), ("alpha", month, "p2", "t1", now)],
        ["keyword", "month", "post_id", "task_id", "collected_at"],
    )
    await store.insert("posts", [(f"p{i}", now) for i in range(1, 7)], ["post_id", "collected_at"])

    g = await Gateway(settings).start()
    await g.users.add("view", "viewer", PASSWORDS["view"])
    # X outcomes: 3 ok, 1 rate_limited now; one event two days ago (outside 24 h)
    events = [
        AccountEvent(account_id="sim1", operation="SearchTimeline", outcome=o, at=t)
        for o, t in [
            ("ok", now),
            ("ok", now),
            ("ok", now),
            ("rate_limited", now),
            ("server_error", now - timedelta(days=2)),
        ]
    ]
    letters = [
        DeadLetter(
            service="parser",
            source_topic="raw-pages",
            partition=0,
            offset=i,
            value="{}",
            error="ValidationError: 1 validation error for Post",
            failed_at=now,
        )
        for i in range(2)
    ]
    state = AccountState(
        account_id="sim1",
        name="sim1",
        status="active",
        ops={"SearchTimeline": OpWindow(limit=50, used=4, day=now.date().isoformat(), day_used=4)},
        added_at=now,
        updated_at=now,
    )
    await g.producer.send_all(
        [Outgoing(ACCOUNT_EVENTS, e.account_id, e) for e in events]
        + [Outgoing(DEAD_LETTERS, "k", d) for d in letters]
        + [Outgoing(ACCOUNT_STATE, "sim1", state)]
    )

    async def store_getter():
        return store

    g.app = create_app(settings, g.producer, g.view, store_getter, g.kol_view, g.users)
    try:
        await eventually(
            lambda: asyncio.sleep(0, "sim1" in g.view.accounts.rows), 20, "account state"
        )
        async with g.signed_in("view") as c:
            base = "/api/v1/admin/analytics"
            s = (await c.get(f"{base}/summary")).json()
            assert s["collected_today"] == 3 and s["collected_yesterday"] == 2
            assert s["trend_percent"] == 50.0
            assert s["x_requests_24h"] == 4 and s["x_success_rate_24h"] == 0.75
            assert s["total_posts"] == 6 and s["active_tasks"] == 0
            h = (await c.get(f"{base}/collection", params={"granularity": "hour"})).json()
            assert len(h["buckets"]) == 24
            last = h["buckets"][-1]
            assert datetime.fromisoformat(last["start"].replace("Z", "+00:00")) == hour
            in_24h = {p for _, p, _, t in rows if t >= hour - timedelta(hours=23)}
            assert sum(b["posts"] for b in h["buckets"]) == len(in_24h)
            d = (await c.get(f"{base}/collection", params={"granularity": "day"})).json()
            assert len(d["buckets"]) == 30 and d["buckets"][-1]["posts"] == 3
            assert sum(b["posts"] for b in d["buckets"]) == 5  # p6 is 40 days old
            k = (await c.get(f"{base}/keywords", params={"days": 30})).json()["keywords"]
            assert k == [{"keyword": "beta", "posts": 3}, {"keyword": "alpha", "posts": 2}]
            m = (await c.get(f"{base}/monthly", params={"months": 1})).json()["statistics"]
            assert m == [
                {"period": month.isoformat()[:7], "keyword": "alpha", "unique_posts_count": 2}
            ]
            a = (await c.get(f"{base}/accounts")).json()["accounts"]
            assert a[0]["account"] == "sim1" and a[0]["requests_today"] == 4
            e = (await c.get(f"{base}/errors", params={"hours": 24})).json()
            assert e["x_outcome_totals"] == {"ok": 3, "rate_limited": 1}
            assert [(x["service"], x["cause"], x["count"]) for x in e["dead_letters"]] == [
                ("parser", "ValidationError", 2)
            ]
            lag = (await c.get(f"{base}/lag", params={"sample_s": 0.5})).json()
            groups = {x["group"] for x in lag["groups"]}
            assert f"{settings.topic_prefix}parser" in groups
            assert all(x["lag"] >= 0 for x in lag["groups"])
            # A viewer reads analytics but cannot pass a bad parameter through.
            r = await c.get(f"{base}/collection", params={"granularity": "week"})
            assert r.status_code == 422
    finally:
        await g.stop()
