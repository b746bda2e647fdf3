"""The client's task API beyond creation: list, read, progress, cancel, pause/resume,
priority and (scheduled tasks) frequency. Controls are written to the compacted task-controls topic; the scraper reads them
before every request to X, so a cancel stops X requests within one page per running slice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Literal, get_args

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from libs.kafka import Outgoing
from libs.records.tasks import SearchType, TaskControl
from libs.settings import Settings
from libs.topics import TASK_CONTROLS

from .limits import check_body
from .task_view import TaskView

Publish = Callable[[Outgoing], Awaitable[None]]

STATUSES = (
    "scheduled",
    "pending",
    "running",
    "waiting_for_accounts",
    "paused",
    "completed",
    "failed",
    "cancelled",
    "rejected",
)
FINAL = ("completed", "failed", "cancelled", "rejected")
# The list's `type` filter: how the task was created, or the search type it runs.
TASK_TYPES = ("ondemand", "scheduled", *get_args(SearchType))


class TaskPatch(BaseModel):
    priority: int | None = Field(None, ge=1, le=10, description="1 is the highest.")
    action: Literal["pause", "resume"] | None = None
    reason: str | None = Field(None, max_length=500)
    # scheduled tasks only: the runs not fired yet are re-planned (schedules.Plan)
    frequency: Literal["hourly", "daily", "weekly"] | None = None
    frequency_count: int | None = Field(None, ge=1, le=3600, description="Runs per period.")


class CancelBody(BaseModel):
    reason: str | None = Field(None, max_length=500)


def create_router(settings: Settings, publish: Publish, view: TaskView, auth) -> APIRouter:
    """`publish` writes one record (the app's: a broker that does not answer is a 503)."""
    r = APIRouter(dependencies=[Depends(auth)])

    def known(task_id: str) -> dict:
        st = view.status(task_id)
        if st is None:
            raise HTTPException(404, f"no task {task_id}")
        return st

    async def write_control(task_id: str, **changes) -> TaskControl:
        prev = view.control(task_id)
        base = prev.model_dump(exclude={"updated_at"}) if prev else {"task_id": task_id}
        ctl = TaskControl(**{**base, **changes, "updated_at": datetime.now(UTC)})
        await publish(Outgoing(TASK_CONTROLS, task_id, ctl))
        view.controls.rows[task_id] = ctl  # read-your-writes before the table catches up
        return ctl

    @r.get("/api/v1/tasks")
    async def list_tasks(
        status: Literal[STATUSES] | None = None,  # type: ignore[valid-type]
        type: Literal[TASK_TYPES] | None = None,  # type: ignore[valid-type]
        keyword: str | None = Query(None, min_length=1, max_length=settings.api_max_string_length),
        limit: int = Query(50, ge=1, le=settings.api_max_page_size),
        offset: int = Query(0, ge=0, le=settings.api_max_offset),
    ):
        items = []
        for task_id in view.task_ids():
            st = view.status(task_id)
            task = view.task(task_id)
            if st is None or (status and st["status"] != status):
                continue
            task = task or view.scheduled(task_id)
            kind, search_type = _kinds(view, task_id)
            if keyword and (task is None or task.keyword != keyword):
                continue
            if type and type not in (kind, search_type):
                continue
            items.append(
                {
                    **st,
                    "type": kind,
                    "search_type": search_type,
                    "keyword": task.keyword if task else None,
                    "priority": _priority(view, task_id),
                }
            )
        items.sort(
            key=lambda x: (x["created_at"] or datetime.min.replace(tzinfo=UTC), x["task_id"]),
            reverse=True,
        )
        return {
            "total": len(items),
            "limit": limit,
            "offset": offset,
            "items": items[offset : offset + limit],
        }

    @r.get("/api/v1/tasks/{task_id}")
    async def get_task(task_id: str = Path(max_length=settings.api_max_string_length)):
        st = known(task_id)
        task = view.task(task_id) or view.scheduled(task_id)
        kind, search_type = _kinds(view, task_id)
        return {
            **st,
            "type": kind,
            "search_type": search_type,
            "priority": _priority(view, task_id),
            "task": task.model_dump(mode="json") if task else None,
        }

    @r.get("/api/v1/tasks/{task_id}/progress")
    async def progress(task_id: str = Path(max_length=settings.api_max_string_length)):
        st = known(task_id)
        prog = view.progress.rows.get(task_id)
        return {
            **st,
            "slices_done": getattr(prog, "slices_done", 0),
            "slice_count": getattr(prog, "slice_count", None),
            "end_reason": getattr(prog, "end_reason", None),
        }

    @r.post("/api/v1/tasks/{task_id}/cancel")
    async def cancel(
        task_id: str = Path(max_length=settings.api_max_string_length),
        body: CancelBody | None = None,
    ):
        check_body(settings, body)
        st = known(task_id)
        if st["status"] in FINAL:
            raise HTTPException(409, f"task {task_id} is already {st['status']}")
        await write_control(task_id, state="cancelled", reason=body.reason if body else None)
        return view.status(task_id)

    @r.patch("/api/v1/tasks/{task_id}")
    async def patch(
        body: TaskPatch, task_id: str = Path(max_length=settings.api_max_string_length)
    ):
        check_body(settings, body)
        st = known(task_id)
        if all(
            v is None for v in (body.priority, body.action, body.frequency, body.frequency_count)
        ):
            raise HTTPException(
                422, "nothing to change: give priority, action, frequency and/or frequency_count"
            )
        if st["status"] in FINAL:
            raise HTTPException(409, f"task {task_id} is already {st['status']}")
        changes: dict = {}
        for name in ("frequency", "frequency_count"):
            value = getattr(body, name)
            if value is None:
                continue
            if view.scheduled(task_id) is None:
                return JSONResponse(
                    {
                        "status": "rejected",
                        "detail": [
                            {
                                "field": name,
                                "message": f"{task_id} is an on-demand task: only "
                                "scheduled tasks have a frequency",
                            }
                        ],
                    },
                    status_code=422,
                )
            changes[name] = value
        if body.priority is not None:
            changes["priority"] = body.priority
        if body.action == "pause":
            changes.update(state="paused", reason=body.reason)
        elif body.action == "resume":
            changes.update(state="active", reason=None)
        await write_control(task_id, **changes)
        out = {**view.status(task_id), "priority": _priority(view, task_id)}
        sched = view.scheduled(task_id)
        if sched is not None and view.schedules is not None:
            plan = view.schedules.pending_plan(sched)
            out.update(frequency=plan.frequency, frequency_count=plan.frequency_count)
        return out

    return r


def _kinds(view: TaskView, task_id: str) -> tuple[str, str]:
    """(ondemand|scheduled, search type) of a task."""
    if view.scheduled(task_id) is not None:
        return "scheduled", "keyword_search"
    task = view.task(task_id)
    return "ondemand", task.kind() if task else "keyword_search"


def _priority(view: TaskView, task_id: str) -> int | None:
    ctl = view.control(task_id)
    if ctl is not None and ctl.priority is not None:
        return ctl.priority
    task = view.task(task_id) or view.scheduled(task_id)
    return task.priority if task else None
