"""Figures for the console's analytics page, under /api/v1/admin/analytics/ (viewer+).

  summary      collected today vs yesterday (trend %), X request success rate today, active
               tasks, total posts
  collection   unique posts collected per hour over 24 h (granularity=hour) or per day over
               30 days (granularity=day)
  keywords     unique posts per keyword over the last `days`
  accounts     account usage distribution: X requests today per account, with status, health
  monthly      unique posts per keyword per calendar month (the billing figures)
  errors       X request outcomes per hour (account-events) and dead letters per hour by
               service and cause (dead-letters), over the last `hours`
  lag          consumer lag, rate, inflow, time to drain and recommended replicas per group and
               topic: the figures of `xget lag` (libs/lag.py), over a `sample_s` sample

Posts are counted from ClickHouse (task_posts, keyword_month_posts, posts; uniqExact, so exact
before merges); X outcomes and dead letters are read from their topics over the window
asked for, and the result is kept for ERRORS_CACHE_S so a page polling every 2 s does not
re-read a day of events each time; a lag measurement is shared by the requests that arrive
while it runs and reused for LAG_CACHE_S.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from libs import lag
from libs.kafka import scan_partition
from libs.records.accounts import AccountEvent, AccountState
from libs.records.dead_letter import DeadLetter
from libs.settings import Settings
from libs.storage.clickhouse import ClickHouseStore
from libs.topics import ACCOUNT_EVENTS, DEAD_LETTERS, TopicSpec
from services.declarations import consumer_groups
from services.parser.replay import start_offsets

from .data_api import StoreGetter
from .task_view import TaskView
from .unavailable import opened_store

ACTIVE = frozenset({"pending", "running", "waiting_for_accounts", "paused", "scheduled"})
ERRORS_CACHE_S = 15.0
LAG_CACHE_S = 2.0  # a page polling every 2 s gets one measurement per poll, not one each
PREFIX = "/api/v1/admin/analytics"


class Summary(BaseModel):
    collected_today: int
    collected_yesterday: int
    trend_percent: float | None  # None when nothing was collected yesterday
    x_requests_24h: int
    x_success_rate_24h: float | None  # 0..1; None without requests
    active_tasks: int
    total_posts: int
    at: datetime


class Bucket(BaseModel):
    start: datetime
    posts: int


class Collection(BaseModel):
    granularity: Literal["hour", "day"]
    buckets: list[Bucket]


class KeywordPosts(BaseModel):
    keyword: str
    posts: int


class Keywords(BaseModel):
    days: int
    keywords: list[KeywordPosts]


class AccountUsage(BaseModel):
    account: str
    status: str
    health: float
    requests_today: int
    by_operation: dict[str, int]
    last_used_at: datetime | None


class AccountsUsage(BaseModel):
    day: str
    accounts: list[AccountUsage]


class MonthlyKeyword(BaseModel):
    period: str  # YYYY-MM
    keyword: str
    unique_posts_count: int


class Monthly(BaseModel):
    from_: str = Field(alias="from")
    statistics: list[MonthlyKeyword]


class OutcomeCount(BaseModel):
    hour: datetime
    outcome: str
    count: int


class DeadLetterCount(BaseModel):
    hour: datetime
    service: str
    cause: str
    count: int


class Errors(BaseModel):
    hours: int
    x_outcome_totals: dict[str, int]
    x_outcomes: list[OutcomeCount]
    dead_letters: list[DeadLetterCount]


class GroupLag(BaseModel):
    group: str
    topic: str
    lag: int
    partitions: dict[int, int]
    rate: float
    inflow: float
    drain_s: float | None  # None: does not drain at the current rates
    members: int
    recommended_replicas: int


class Lag(BaseModel):
    sample_s: float
    groups: list[GroupLag]


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


def _hour(t: datetime) -> datetime:
    return _utc(t).replace(minute=0, second=0, microsecond=0)


def cause_of(error: str) -> str:
    """A dead letter's cause for grouping: the error's first clause, e.g. 'ValidationError'."""
    head = error.strip().splitlines()[0] if error.strip() else "unknown"
    return head.split(":", 1)[0].strip()[:80] or "unknown"


async def _scan_since(settings: Settings, spec: TopicSpec, since: datetime):
    ranges = await start_offsets(settings, int(since.timestamp() * 1000), spec)
    for p, (start, end) in sorted(ranges.items()):
        if start < end:
            async for _, rec in scan_partition(
                settings, spec, p, start, end_offset=end, deadline_s=60
            ):
                yield rec


def create_router(settings: Settings, get_store: StoreGetter, view: TaskView) -> APIRouter:
    r = APIRouter(tags=["analytics"])
    errors_cache: dict[int, tuple[float, dict]] = {}
    lag_cache: dict[float, tuple[float, dict]] = {}
    lag_lock = asyncio.Lock()

    async def store() -> ClickHouseStore:
        return await opened_store(get_store)

    def active_tasks() -> int:
        n = 0
        for task_id in view.task_ids():
            st = view.status(task_id)
            if st is not None and st["status"] in ACTIVE:
                n += 1
        return n

    def accounts() -> list[AccountState]:
        return [
            a for a in view.accounts.rows.values() if isinstance(a, AccountState) and not a.removed
        ]

    @r.get(f"{PREFIX}/summary", response_model=Summary)
    async def summary():
        """Key figures: today's unique posts with the trend against yesterday (UTC days), X
        request success rate today (from the account pool's per-day counts and events),
        active tasks, total stored posts."""
        ch = await store()
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        rows = await ch.query_rows(
            "SELECT uniqExactIf(post_id, collected_at >= {t:DateTime64(3, 'UTC')}), "
            "uniqExactIf(post_id, collected_at < {t:DateTime64(3, 'UTC')}) FROM task_posts "
            "WHERE collected_at >= {y:DateTime64(3, 'UTC')}",
            {"t": today, "y": today - timedelta(days=1)},
        )
        collected_today, yesterday = rows[0]
        total = (await ch.query_rows("SELECT uniqExact(post_id) FROM posts"))[0][0]
        outcomes = (await errors_window(24))["x_outcome_totals"]
        requests = sum(outcomes.values())
        trend = round(100.0 * (collected_today - yesterday) / yesterday, 1) if yesterday else None
        return {
            "collected_today": collected_today,
            "collected_yesterday": yesterday,
            "trend_percent": trend,
            "x_requests_24h": requests,
            "x_success_rate_24h": round(outcomes.get("ok", 0) / requests, 4) if requests else None,
            "active_tasks": active_tasks(),
            "total_posts": total,
            "at": datetime.now(UTC),
        }

    @r.get(f"{PREFIX}/collection", response_model=Collection)
    async def collection(granularity: Literal["hour", "day"] = Query("hour")):
        """Unique posts collected per hour over the last 24 h, or per day over 30 days (UTC);
        every bucket is present, empty ones with 0."""
        ch = await store()
        now = datetime.now(UTC)
        if granularity == "hour":
            start, step, fn = _hour(now) - timedelta(hours=23), timedelta(hours=1), "toStartOfHour"
            n = 24
        else:
            start = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=29)
            step, fn, n = timedelta(days=1), "toStartOfDay", 30
        rows = await ch.query_rows(
            f"SELECT {fn}(collected_at) AS b, uniqExact(post_id) FROM task_posts "
            "WHERE collected_at >= {s:DateTime64(3, 'UTC')} GROUP BY b ORDER BY b",
            {"s": start},
        )
        got = {_utc(b): c for b, c in rows}
        buckets = [
            {"start": start + i * step, "posts": got.get(start + i * step, 0)} for i in range(n)
        ]
        return {"granularity": granularity, "buckets": buckets}

    @r.get(f"{PREFIX}/keywords", response_model=Keywords)
    async def keywords(days: int = Query(30, ge=1, le=366), limit: int = Query(20, ge=1, le=500)):
        """Unique posts per keyword collected over the last `days`, largest first."""
        ch = await store()
        rows = await ch.query_rows(
            "SELECT keyword, uniqExact(post_id) AS n FROM task_posts "
            "WHERE collected_at >= {s:DateTime64(3, 'UTC')} GROUP BY keyword "
            "ORDER BY n DESC, keyword LIMIT {l:UInt32}",
            {"s": datetime.now(UTC) - timedelta(days=days), "l": limit},
        )
        return {"days": days, "keywords": [{"keyword": k, "posts": n} for k, n in rows]}

    @r.get(f"{PREFIX}/accounts", response_model=AccountsUsage)
    async def account_usage():
        """Account usage distribution: X requests made today (UTC) per account and operation,
        with each account's status and health."""
        today = datetime.now(UTC).date().isoformat()
        out = []
        for a in sorted(accounts(), key=lambda a: a.account_id):
            ops = {op: w.day_used for op, w in a.ops.items() if w.day == today}
            out.append(
                {
                    "account": a.account_id,
                    "status": a.status,
                    "health": a.health,
                    "requests_today": sum(ops.values()),
                    "by_operation": ops,
                    "last_used_at": a.last_used_at,
                }
            )
        return {"day": today, "accounts": out}

    @r.get(f"{PREFIX}/monthly", response_model=Monthly, response_model_by_alias=True)
    async def monthly(months: int = Query(6, ge=1, le=36)):
        """Unique posts per keyword per calendar month of collection (UTC): the billing
        figures of GET /api/v1/statistics/monthly, for the last `months` months."""
        ch = await store()
        d = datetime.now(UTC).date().replace(day=1)
        for _ in range(months - 1):
            d = (d - timedelta(days=1)).replace(day=1)
        rows = await ch.query_rows(
            "SELECT month, keyword, uniqExactMerge(posts) FROM keyword_month_counts "
            "WHERE month >= {m:Date} GROUP BY month, keyword ORDER BY month, keyword",
            {"m": d},
        )
        return {
            "from": d.isoformat()[:7],
            "statistics": [
                {
                    "period": m.isoformat()[:7] if isinstance(m, date) else str(m)[:7],
                    "keyword": k,
                    "unique_posts_count": n,
                }
                for m, k, n in rows
            ],
        }

    async def errors_window(hours: int) -> dict:
        hit = errors_cache.get(hours)
        if hit is not None and time.monotonic() - hit[0] < ERRORS_CACHE_S:
            return hit[1]
        since = datetime.now(UTC) - timedelta(hours=hours)
        outcomes: Counter = Counter()
        totals: Counter = Counter()
        async for rec in _scan_since(settings, ACCOUNT_EVENTS, since):
            if isinstance(rec, AccountEvent) and rec.at >= since:
                outcomes[(_hour(rec.at), rec.outcome)] += 1
                totals[rec.outcome] += 1
        dead: Counter = Counter()
        async for rec in _scan_since(settings, DEAD_LETTERS, since):
            if isinstance(rec, DeadLetter) and rec.failed_at >= since:
                dead[(_hour(rec.failed_at), rec.service, cause_of(rec.error))] += 1
        result = {
            "hours": hours,
            "x_outcome_totals": dict(totals),
            "x_outcomes": [
                {"hour": h, "outcome": o, "count": n} for (h, o), n in sorted(outcomes.items())
            ],
            "dead_letters": [
                {"hour": h, "service": s, "cause": c, "count": n}
                for (h, s, c), n in sorted(dead.items())
            ],
        }
        errors_cache[hours] = (time.monotonic(), result)
        return result

    @r.get(f"{PREFIX}/errors", response_model=Errors)
    async def errors(hours: int = Query(24, ge=1, le=168)):
        """Errors by kind over time: X request outcomes per hour (every outcome, `ok`
        included, so rates can be drawn) and dead letters per hour by service and cause."""
        return await errors_window(hours)

    @r.get(f"{PREFIX}/lag", response_model=Lag)
    async def consumer_lag(sample_s: float = Query(2.0, ge=0.5, le=10.0)):
        """Per consumer group and input topic: lag, consumption rate and inflow (records/s
        over `sample_s`), time to drain and recommended replicas, as `xget lag` prints."""
        async with lag_lock:  # concurrent pollers share one measurement
            hit = lag_cache.get(sample_s)
            if hit is not None and time.monotonic() - hit[0] < LAG_CACHE_S:
                return hit[1]
            result = await measure_lag(sample_s)
            lag_cache[sample_s] = (time.monotonic(), result)
            return result

    async def measure_lag(sample_s: float) -> dict:
        declared = consumer_groups()
        groups = {
            g.group_id(settings.topic_prefix): [settings.topic_prefix + s.name for s in g.inputs]
            for g in declared.values()
        }
        first = await lag.snapshot(settings, groups)
        await asyncio.sleep(sample_s)
        second = await lag.snapshot(settings, groups)
        rows = lag.report(first, second, 300.0)
        return {
            "sample_s": sample_s,
            "groups": [
                {
                    "group": x.group,
                    "topic": x.topic,
                    "lag": x.lag,
                    "partitions": x.partitions,
                    "rate": round(x.rate, 2),
                    "inflow": round(x.inflow, 2),
                    "drain_s": None if x.drain_s == float("inf") else round(x.drain_s, 1),
                    "members": x.members,
                    "recommended_replicas": x.recommended_replicas,
                }
                for x in rows
            ],
        }

    return r
