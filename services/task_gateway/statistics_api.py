"""Statistics (billing), answered from ClickHouse: unique posts per keyword per calendar month
of collection, and a task's completion figures.

Every query binds its values as server-side parameters, never by formatting SQL. Counts are
exact (uniqExact / FINAL), so they are right before ClickHouse has merged parts.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from fastapi import APIRouter, Depends, HTTPException, Path, Query

from libs.settings import Settings
from libs.storage.clickhouse import ClickHouseStore

from .api_models import ERRORS, NOT_FOUND, TAG_STATISTICS, KeywordMonth, MonthlyAll, TaskStatistics
from .data_api import StoreGetter
from .month_counts import unique_posts_per_keyword
from .task_view import TaskView
from .unavailable import opened_store


def create_router(settings: Settings, get_store: StoreGetter, view: TaskView, auth) -> APIRouter:
    r = APIRouter(dependencies=[Depends(auth)], tags=[TAG_STATISTICS])
    # Bounds of every parameter (Settings.api_*): beyond them a 422 names the parameter.
    text = settings.api_max_string_length
    first, last = settings.api_earliest_time.year, settings.api_latest_time.year

    async def store() -> ClickHouseStore:
        return await opened_store(get_store)

    async def month_counts(year: int, month: int, keyword: str | None) -> list[dict]:
        """Unique posts per keyword collected in the month (one keyword, or all of them)."""
        counts = await unique_posts_per_keyword(await store(), date(year, month, 1), keyword)
        rows = list(counts.items())
        if keyword is not None and not rows:
            rows = [(keyword, 0)]
        now = datetime.now(UTC)
        return [
            {
                "keyword": k,
                "year": year,
                "month": month,
                "unique_posts_count": n,
                "period": f"{year:04d}-{month:02d}",
                "calculated_at": now,
            }
            for k, n in rows
        ]

    async def month_all(year: int, month: int, keyword: str | None) -> dict:
        stats = await month_counts(year, month, keyword)
        return {
            "period": f"{year:04d}-{month:02d}",
            "total_keywords": len(stats),
            "statistics": stats,
        }

    def year_q():
        return Query(..., ge=first, le=last, description="年份 (year)")

    def month_q():
        return Query(..., ge=1, le=12, description="月份 (month, 1-12)")

    @r.get(
        "/api/v1/statistics/monthly",
        response_model=MonthlyAll,
        responses=ERRORS,
        summary="月度去重统计 (all keywords, or one with keyword=)",
    )
    async def monthly(
        year: int = year_q(),
        month: int = month_q(),
        keyword: str | None = Query(None, min_length=1, max_length=text),
    ):
        return await month_all(year, month, keyword)

    # Declared before /monthly/{keyword}: "all" is this route, not a keyword.
    @r.get(
        "/api/v1/statistics/monthly/all",
        response_model=MonthlyAll,
        responses=ERRORS,
        summary="获取所有关键词月度统计 (every keyword of a month)",
    )
    async def monthly_all(year: int = year_q(), month: int = month_q()):
        return await month_all(year, month, None)

    @r.get(
        "/api/v1/statistics/monthly/{keyword}",
        response_model=KeywordMonth,
        responses=ERRORS,
        summary="获取关键词月度去重统计 (one keyword)",
    )
    async def monthly_keyword(
        keyword: str = Path(min_length=1, max_length=text),
        year: int = year_q(),
        month: int = month_q(),
    ):
        return (await month_counts(year, month, keyword))[0]

    async def task_figures(ch: ClickHouseStore, task_id: str) -> tuple[str | None, int, int]:
        """(the task's keyword, its unique posts, how many of them another task of the keyword
        collected before it did), exact before any merge. A post is such a duplicate when the
        client was already billed for it: another task of the same keyword collected it
        earlier (ties are not duplicates).

        One pass over the keyword's tasks' rows of task_posts (each task's range of its sorting
        key, found through task_counts): per post, the earliest time this task collected it
        and the earliest any other task did. Measured side by side on the 10M-post bench store
        whose tasks overlap (bench/query_data.py: 2 tasks of 1.2M posts sharing 400k), median
        of 5: the sets' sizes from task_counts' uniqExact states (265 ms) plus a join of the
        task's posts with the other tasks' ones (~500 ms) took ~770 ms, this pass ~260 ms.
        Also tried: the pass restricted to the task's posts by an IN set (~500 ms) or by
        their id range (~315 ms: no pruning when tasks cover the same months), and grouping
        by the id as a number (~10 % faster; ids are digit strings by contract, not checked
        in the store)."""
        found = await ch.query_rows(
            "SELECT any(keyword) FROM task_counts WHERE task_id = {t:String} HAVING count() > 0",
            {"t": task_id},
        )
        if not found:
            return None, 0, 0
        keyword = found[0][0]
        total, dup = (
            await ch.query_rows(
                "SELECT countIf(mine IS NOT NULL), countIf(theirs < mine) FROM ("
                " SELECT minIfOrNull(collected_at, task_id = {t:String}) AS mine,"
                "  minIfOrNull(collected_at, task_id != {t:String}) AS theirs"
                " FROM task_posts"
                " WHERE task_id IN (SELECT task_id FROM task_counts WHERE keyword = {k:String})"
                " GROUP BY post_id)",
                {"t": task_id, "k": keyword},
            )
        )[0]
        return keyword, total, dup

    @r.get(
        "/api/v1/statistics/tasks/{task_id}",
        response_model=TaskStatistics,
        responses={**ERRORS, **NOT_FOUND},
        summary="获取任务完成统计 (a task's figures)",
    )
    async def task_stats(task_id: str = Path(max_length=text)):
        status = view.status(task_id)
        ch = await store()
        keyword, total, dup = await task_figures(ch, task_id)
        if status is None and not total:
            raise HTTPException(404, f"no task {task_id}")
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

    return r
