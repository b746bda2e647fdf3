"""A task's actual cost, as it runs and when done, and per keyword per month.

  GET /api/v1/statistics/tasks/{task_id}/cost     what the task spent so far, with its quote
  GET /api/v1/statistics/cost/monthly?year&month[&keyword]

Spent = X requests per operation (the usage meter's task_x_requests: every request the
scrapers made for the task, from account-events), unique posts stored for it, bytes of the
media of those posts, KOL API calls (KOL tasks), each times its price
(pricing.actual_cost). A scheduled task's cost is the sum of its runs'. Under its own route
(not inside /statistics/tasks/{id}, whose body another module owns) so neither changes the
other.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from pydantic import BaseModel, Field

from libs.records.kol import KolTaskProgress
from libs.settings import Settings
from libs.storage.clickhouse import ClickHouseStore
from libs.storage.x_requests import REQUEST_ID

from .api_models import open_model
from .data_api import StoreGetter
from .kol_tasks import KolTaskView
from .month_counts import unique_posts_per_keyword
from .pricing import actual_cost, quote_for
from .task_view import TaskView
from .unavailable import opened

_ACTUAL_EXAMPLE: dict[str, Any] = {
    "x_requests": {"SearchTimeline": {"requests": 26, "cost": 0.0052}},
    "x_requests_total": 26,
    "posts": 500,
    "media_bytes": 1843200,
    "kol_api_calls": 0,
    "cost_usd": {
        "x_requests": 0.0052,
        "posts": 0.01,
        "media": 0.000037,
        "kol_api": 0.0,
        "total": 0.015237,
    },
}


class TaskCost(BaseModel):
    """What a task spent so far at the configured prices, and the design's quote for it."""

    model_config = open_model(
        {
            "task_id": "od-5f0c2a9e1b7d4c3a",
            "task_status": "completed",
            "final": True,
            "actual": _ACTUAL_EXAMPLE,
            "quote": {"kind": "search_query", "tier": 1, "total_cost": 0.2},
            "calculated_at": "2026-11-23T10:00:00Z",
        }
    )
    task_id: str
    task_status: str
    final: bool = Field(description="completed, failed or cancelled: the cost will not change.")
    actual: dict = Field(description="Counts, and their cost in USD (pricing.actual_cost).")
    quote: dict | None = Field(description="The design's quote for the task (pricing.py).")
    calculated_at: datetime


class MonthlyCost(BaseModel):
    """Actual cost per keyword for a calendar month (UTC)."""

    model_config = open_model(
        {
            "period": "2026-11",
            "costs": [{"keyword": "tesla", **_ACTUAL_EXAMPLE}],
            "calculated_at": "2026-11-23T10:00:00Z",
        }
    )
    period: str
    costs: list[dict]
    calculated_at: datetime


MEDIA_BYTES_SQL = (
    "SELECT sum(bytes) FROM media_objects FINAL WHERE status = 'stored' AND original_url IN "
    "(SELECT DISTINCT JSONExtractString(img, 'original_url') FROM posts FINAL "
    " ARRAY JOIN JSONExtractArrayRaw(post_images) AS img "
    " WHERE post_id IN (SELECT post_id FROM task_posts WHERE task_id IN {ids:Array(String)}))"
)


async def spent(ch: ClickHouseStore, ids: list[str]) -> tuple[dict[str, int], int, int]:
    """(X requests per operation, unique posts, media bytes) of these task ids together."""
    rows = await ch.query_rows(
        f"SELECT operation, uniqExact(task_id, {REQUEST_ID}) "
        "FROM task_x_requests WHERE task_id IN {ids:Array(String)} GROUP BY operation",
        {"ids": ids},
    )
    x_requests = {op: int(n) for op, n in rows}
    posts = (
        await ch.query_rows(
            "SELECT uniqExact(post_id) FROM task_posts WHERE task_id IN {ids:Array(String)}",
            {"ids": ids},
        )
    )[0][0]
    media = (await ch.query_rows(MEDIA_BYTES_SQL, {"ids": ids}))[0][0]
    return x_requests, int(posts or 0), int(media or 0)


def create_router(
    settings: Settings,
    get_store: StoreGetter,
    view: TaskView,
    auth,
    kol_view: KolTaskView | None = None,
) -> APIRouter:
    r = APIRouter(dependencies=[Depends(auth)], tags=["statistics"])
    text = settings.api_max_string_length
    first, last = settings.api_earliest_time.year, settings.api_latest_time.year

    async def store() -> ClickHouseStore:
        return await opened("clickhouse", get_store)

    @r.get("/api/v1/statistics/tasks/{task_id}/cost", response_model=TaskCost)
    async def task_cost(task_id: str = Path(max_length=text)) -> dict:
        """What the task spent so far (live while it runs), and its quote."""
        status = view.status(task_id)
        kol = kol_view.progress.rows.get(task_id) if kol_view else None
        if status is None and kol_view is not None:
            status = kol_view.status(task_id)
        if status is None:
            raise HTTPException(404, f"no task {task_id}")
        ids = [task_id, *status.get("run_task_ids", [])]  # a scheduled task: its runs too
        x_requests, posts, media = await spent(await store(), ids)
        kol_calls = kol.api_calls if isinstance(kol, KolTaskProgress) else 0
        task = view.task(task_id) or view.scheduled(task_id)
        return {
            "task_id": task_id,
            "task_status": status["status"],
            "final": status["status"] in ("completed", "failed", "cancelled"),
            "actual": actual_cost(settings, x_requests, posts, media, kol_calls),
            "quote": quote_for(task, settings) if task is not None else None,
            "calculated_at": datetime.now(UTC),
        }

    @r.get("/api/v1/statistics/cost/monthly", response_model=MonthlyCost)
    async def monthly_cost(
        year: int = Query(..., ge=first, le=last),
        month: int = Query(..., ge=1, le=12),
        keyword: str | None = Query(None, min_length=1, max_length=text),
    ) -> dict:
        """Actual cost per keyword for the month: the X requests made in it (by the time of
        the request) and the unique posts billed in it (keyword_month_posts)."""
        ch = await store()
        start = date(year, month, 1)
        end = date(year + (month == 12), month % 12 + 1, 1)
        rows = await ch.query_rows(
            f"SELECT task_id, operation, uniqExact({REQUEST_ID}) "
            "FROM task_x_requests WHERE at >= {s:Date} AND at < {e:Date} "
            "GROUP BY task_id, operation",
            {"s": start, "e": end},
        )
        per_kw: dict[str, dict[str, int]] = {}
        for task_id, op, n in rows:
            t = view.task(task_id)
            if t is None:
                continue
            if keyword is not None and t.keyword != keyword:
                continue
            ops = per_kw.setdefault(t.keyword, {})
            ops[op] = ops.get(op, 0) + int(n)
        posts = await unique_posts_per_keyword(ch, start, keyword)
        keywords = sorted(set(per_kw) | set(posts) | ({keyword} if keyword else set()))
        return {
            "period": f"{year:04d}-{month:02d}",
            "costs": [
                {"keyword": k, **actual_cost(settings, per_kw.get(k, {}), posts.get(k, 0), 0, 0)}
                for k in keywords
            ],
            "calculated_at": datetime.now(UTC),
        }

    return r
