"""Statistics (billing) and stored-data queries, answered from ClickHouse.

Every query binds its values as server-side parameters, never by formatting SQL. Counts are
exact (uniqExact / FINAL), so they are right before ClickHouse has merged parts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime

from fastapi import APIRouter, Depends, HTTPException, Path, Query

from libs.settings import Settings
from libs.storage.clickhouse import ClickHouseStore

from .data_routes import data_routes
from .task_view import TaskView
from .unavailable import DependencyUnavailable, root_cause

StoreGetter = Callable[[], Awaitable[ClickHouseStore]]


def create_router(settings: Settings, get_store: StoreGetter, view: TaskView, auth) -> APIRouter:
    r = APIRouter(dependencies=[Depends(auth)])
    # Bounds of every parameter (Settings.api_*): beyond them a 422 names the parameter.
    text = settings.api_max_string_length
    first, last = settings.api_earliest_time.year, settings.api_latest_time.year

    async def store() -> ClickHouseStore:
        try:
            return await get_store()
        except Exception as e:
            raise DependencyUnavailable(
                "clickhouse", type(root_cause(e)).__name__, f"{type(e).__name__}: {e}"[:500]
            ) from e

    # --- statistics ------------------------------------------------------------------------------
    @r.get("/api/v1/statistics/monthly")
    async def monthly(
        year: int = Query(..., ge=first, le=last),
        month: int = Query(..., ge=1, le=12),
        keyword: str | None = Query(None, min_length=1, max_length=text),
    ):
        ch = await store()
        params: dict = {"m": date(year, month, 1)}
        where = "month = {m:Date}"
        if keyword is not None:
            where += " AND keyword = {k:String}"
            params["k"] = keyword
        rows = await ch.query_rows(
            f"SELECT keyword, uniqExact(post_id) FROM keyword_month_posts WHERE {where} "
            "GROUP BY keyword ORDER BY keyword",
            params,
        )
        now = datetime.now(UTC)
        items = [
            {
                "keyword": k,
                "period": f"{year:04d}-{month:02d}",
                "unique_posts_count": n,
                "calculated_at": now,
            }
            for k, n in rows
        ]
        if keyword is not None and not items:
            items = [
                {
                    "keyword": keyword,
                    "period": f"{year:04d}-{month:02d}",
                    "unique_posts_count": 0,
                    "calculated_at": now,
                }
            ]
        return {"period": f"{year:04d}-{month:02d}", "statistics": items}

    @r.get("/api/v1/statistics/tasks/{task_id}")
    async def task_stats(task_id: str = Path(max_length=text)):
        status = view.status(task_id)
        ch = await store()
        rows = await ch.query_rows(
            "SELECT any(keyword), uniqExact(post_id), min(collected_at) FROM task_posts "
            "WHERE task_id = {t:String}",
            {"t": task_id},
        )
        keyword, total, _ = rows[0]
        if status is None and not total:
            raise HTTPException(404, f"no task {task_id}")
        # A post is a duplicate for this task when another task collected it, for the same
        # keyword, before this task did: the client was already billed for it.
        dup = (
            await ch.query_rows(
                "SELECT count() FROM (SELECT post_id, min(collected_at) AS mine FROM task_posts "
                " WHERE task_id = {t:String} GROUP BY post_id) AS m "
                "INNER JOIN (SELECT post_id, min(collected_at) AS first FROM task_posts "
                " WHERE keyword = {k:String} AND task_id != {t:String} AND post_id IN "
                " (SELECT post_id FROM task_posts WHERE task_id = {t:String}) GROUP BY post_id) AS o "
                "USING post_id WHERE o.first < m.mine",
                {"t": task_id, "k": keyword or ""},
            )
        )[0][0]
        task = view.task(task_id)
        prog = view.progress.rows.get(task_id)
        completed_at = (
            getattr(prog, "updated_at", None)
            if status and status["status"] == "completed"
            else None
        )
        return {
            "task_id": task_id,
            "keyword": task.keyword if task else keyword,
            "task_status": status["status"] if status else "unknown",
            "total_collected": total,
            "unique_posts": total - dup,
            "duplicate_rate": round(dup / total, 4) if total else 0.0,
            "created_at": status["created_at"] if status else None,
            "completed_at": completed_at,
        }

    # --- data ------------------------------------------------------------------------------------
    data_routes(r, settings, store)
    return r
