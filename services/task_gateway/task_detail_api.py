"""What the console's task page shows beyond status and statistics: the task's slices, and
every batch reported with its delivery state, and a replay of dead-lettered batches.

  GET  /api/v1/tasks/{task_id}/slices          ended slices (task_slices): pages, end reason
  GET  /api/v1/tasks/{task_id}/batches         report_batches: posts, delivery state, attempts
  POST /api/v1/tasks/{task_id}/batches/replay  {batch_no?}: dead-lettered batches sent again

A replay publishes the same ReportsReplay command as `xget reports replay --task ID`
(services/reporter/replay.py): the reporter that owns the task sends the batch again under its
original batch id if it is still dead, and ignores it otherwise, so a double click delivers
nothing twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, ConfigDict, Field

from libs.kafka import Outgoing
from libs.settings import Settings
from libs.storage.clickhouse import ClickHouseStore
from services.reporter.replay import replay_command

from .api_models import open_model
from .task_view import TaskView
from .unavailable import DependencyUnavailable, root_cause

StoreGetter = Callable[[], Awaitable[ClickHouseStore]]
Publish = Callable[[Outgoing], Awaitable[None]]


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    batch_no: int | None = Field(
        None, ge=1, le=1_000_000, description="One batch; none: every dead-lettered batch."
    )


class SliceOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    slice_id: str
    slice_count: int | None = None
    end_reason: str | None = None
    pages: int
    ended_at: datetime | None = None


class SlicesOut(BaseModel):
    """A task's ended slices and the X requests they made."""

    model_config = open_model(
        {
            "task_id": "od-5f0c2a9e1b7d4c3a",
            "slice_count": 1,
            "slices_done": 1,
            "x_requests": 3,
            "items": [
                {
                    "slice_id": "d20260801T000000",
                    "slice_count": 1,
                    "end_reason": "target_reached",
                    "pages": 3,
                    "ended_at": "2026-12-06T06:30:58Z",
                }
            ],
        }
    )
    task_id: str
    slice_count: int | None = None
    slices_done: int | None = None
    x_requests: int
    items: list[SliceOut]


class BatchOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    batch_no: int
    batch_id: str
    post_count: int
    delivery_state: str = Field(description="delivered, retrying, dead_lettered or pending.")
    attempts: int
    last_error: str | None = None


class BatchesOut(BaseModel):
    """Every batch reported for a task, with its delivery state."""

    model_config = open_model(
        {
            "task_id": "od-5f0c2a9e1b7d4c3a",
            "states": {"delivered": 1},
            "items": [
                {
                    "batch_no": 1,
                    "batch_id": "od-5f0c2a9e1b7d4c3a_batch_001",
                    "post_count": 40,
                    "delivery_state": "delivered",
                    "attempts": 0,
                    "last_error": None,
                }
            ],
        }
    )
    task_id: str
    states: dict[str, int]
    items: list[BatchOut]


class ReplayOut(BaseModel):
    model_config = open_model(
        {"status": "accepted", "task_id": "od-5f0c2a9e1b7d4c3a", "replayed": [2]}
    )
    status: str
    task_id: str
    replayed: list[int]


def _utc(t: datetime | None) -> datetime | None:
    return t.replace(tzinfo=UTC) if isinstance(t, datetime) and t.tzinfo is None else t


def delivery_state(state: str, attempts: int) -> str:
    """The console's word for a batch: delivered, retrying, dead_lettered or pending."""
    if state == "delivered":
        return "delivered"
    if state == "dead":
        return "dead_lettered"
    return "retrying" if attempts > 0 else "pending"


def create_router(
    settings: Settings, get_store: StoreGetter, view: TaskView, publish: Publish
) -> APIRouter:
    r = APIRouter(tags=["tasks"])
    task_id_param = Path(max_length=settings.api_max_string_length)

    async def store() -> ClickHouseStore:
        try:
            return await get_store()
        except Exception as e:
            raise DependencyUnavailable(
                "clickhouse", type(root_cause(e)).__name__, f"{type(e).__name__}: {e}"[:500]
            ) from e

    def known(task_id: str) -> None:
        if view.status(task_id) is None:
            raise HTTPException(404, f"no task {task_id}")

    async def batches_of(task_id: str) -> list[dict]:
        ch = await store()
        rows = await ch.query_dicts(
            "SELECT batch_no, batch_id, length(post_ids) AS post_count, oss_file_path, "
            "completion_status, total_collected, state, attempts, last_error, created_at, "
            "delivered_at FROM report_batches FINAL WHERE task_id = {t:String} ORDER BY batch_no",
            {"t": task_id},
        )
        for b in rows:
            b["delivery_state"] = delivery_state(b["state"], b["attempts"])
            b["created_at"], b["delivered_at"] = _utc(b["created_at"]), _utc(b["delivered_at"])
        return rows

    @r.get("/api/v1/tasks/{task_id}/slices", response_model=SlicesOut)
    async def slices(task_id: str = task_id_param):
        """The task's slices that have ended (a slice is a UTC day of the window, or an hour
        cut from a dense day), with the pages each fetched from X; `x_requests` is their sum
        (one successful X request per page)."""
        known(task_id)
        ch = await store()
        rows = await ch.query_dicts(
            "SELECT slice_id, slice_count, end_reason, pages, ended_at FROM task_slices FINAL "
            "WHERE task_id = {t:String} ORDER BY slice_id",
            {"t": task_id},
        )
        for s in rows:
            s["ended_at"] = _utc(s["ended_at"])
        prog = view.progress.rows.get(task_id)
        return {
            "task_id": task_id,
            "slice_count": getattr(prog, "slice_count", None),
            "slices_done": getattr(prog, "slices_done", len(rows)),
            "x_requests": sum(s["pages"] for s in rows),
            "items": rows,
        }

    @r.get("/api/v1/tasks/{task_id}/batches", response_model=BatchesOut)
    async def batches(task_id: str = task_id_param):
        """Every batch reported for the task, in order, with its delivery state."""
        known(task_id)
        items = await batches_of(task_id)
        counts: dict[str, int] = {}
        for b in items:
            counts[b["delivery_state"]] = counts.get(b["delivery_state"], 0) + 1
        return {"task_id": task_id, "states": counts, "items": items}

    @r.post("/api/v1/tasks/{task_id}/batches/replay", response_model=ReplayOut)
    async def replay(task_id: str = task_id_param, body: ReplayRequest | None = None):
        """Send dead-lettered batches to the webhook again (one, or all of the task's)."""
        known(task_id)
        dead = [b["batch_no"] for b in await batches_of(task_id) if b["state"] == "dead"]
        wanted = dead if body is None or body.batch_no is None else [body.batch_no]
        for n in wanted:
            if n not in dead:
                raise HTTPException(409, f"batch {n} of {task_id} is not dead-lettered")
        for n in wanted:
            await publish(replay_command(task_id, n))
        return {"status": "accepted", "task_id": task_id, "replayed": wanted}

    return r
