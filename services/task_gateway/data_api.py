"""Stored-data queries, answered from ClickHouse (statistics: statistics_api.py; the data
routes themselves: data_routes.py).

Every query binds its values as server-side parameters, never by formatting SQL. Counts are
exact (uniqExact / FINAL), so they are right before ClickHouse has merged parts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Depends

from libs.settings import Settings
from libs.storage.clickhouse import ClickHouseStore

from .data_routes import data_routes
from .task_view import TaskView
from .unavailable import DependencyUnavailable, root_cause

StoreGetter = Callable[[], Awaitable[ClickHouseStore]]


def create_router(settings: Settings, get_store: StoreGetter, view: TaskView, auth) -> APIRouter:
    r = APIRouter(dependencies=[Depends(auth)])

    async def store() -> ClickHouseStore:
        try:
            return await get_store()
        except Exception as e:
            raise DependencyUnavailable(
                "clickhouse", type(root_cause(e)).__name__, f"{type(e).__name__}: {e}"[:500]
            ) from e

    data_routes(r, settings, store)
    return r
