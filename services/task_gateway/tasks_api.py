"""The client's task API beyond creation: list, read, progress, cancel, pause/resume,
priority and (scheduled tasks) frequency. Controls are written to the compacted task-controls topic; the scraper reads them
before every request to X, so a cancel stops X requests within one page per running slice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Literal, get_args

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response
from fastapi.responses import JSONResponse
from pydantic import Field
from starlette.datastructures import URL

from libs.kafka import Outgoing
from libs.records.tasks import SearchType, TaskControl, TaskProgress
from libs.settings import Settings
from libs.strict_params import StrictModel
from libs.topics import TASK_CONTROLS

from .api_models import (
    CONFLICT,
    ERRORS,
    NOT_FOUND,
    TAG_TASKS,
    TASK_EXAMPLE,
    CancelOut,
    ProgressOut,
    TaskOut,
    TaskStatusOut,
)
from .kol_tasks import KolTaskView
from .limits import check_body
from .paging import page_headers, paged_responses, request_url
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
# The list's `type` filter: how the task was created (mode), or the type it runs.
TASK_TYPES = ("ondemand", "scheduled", "kol", *get_args(SearchType), "kol_followings")
# What ends a task, and when (completed_at): the statuses after which nothing runs.
ENDED = ("completed", "failed", "cancelled", "rejected")


class TaskPatch(StrictModel):
    priority: int | None = Field(None, ge=1, le=10, description="1 is the highest.")
    action: Literal["pause", "resume"] | None = None
    reason: str | None = Field(None, max_length=500)
    # scheduled tasks only: the runs not fired yet are re-planned (schedules.Plan)
    frequency: Literal["hourly", "daily", "weekly"] | None = None
    frequency_count: int | None = Field(None, ge=1, le=3600, description="Runs per period.")


class CancelBody(StrictModel):
    reason: str | None = Field(None, max_length=500)


def create_router(
    settings: Settings, publish: Publish, view: TaskView, auth, kol_view: KolTaskView | None = None
) -> APIRouter:
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

    @r.get(
        "/api/v1/tasks",
        tags=[TAG_TASKS],
        response_model=list[TaskOut],
        responses={**ERRORS, **paged_responses("A page of tasks", [TASK_EXAMPLE])},
        summary="获取任务列表 (list tasks)",
    )
    async def list_tasks(
        response: Response,
        # A Literal of the status tuple: FastAPI lists the values (mypy wants them literal).
        status: Literal[STATUSES] | None = Query(None, description="Task status."),  # type: ignore[valid-type]
        type: Literal[TASK_TYPES] | None = Query(  # type: ignore[valid-type]
            None, description="ondemand, scheduled or kol (mode), or the task's type."
        ),
        keyword: str | None = Query(None, min_length=1, max_length=settings.api_max_string_length),
        limit: int = Query(50, ge=1, le=settings.api_max_page_size),
        offset: int = Query(0, ge=0, le=settings.api_max_offset),
        url: URL = Depends(request_url),
    ):
        """Every task, KOL tasks included, newest first, in the design's task fields: the
        body is the page (a JSON list), X-Total-Count the number of matching tasks, Link the
        next and previous pages."""
        items = []
        ids = view.task_ids() + (kol_view.task_ids() if kol_view is not None else [])
        for task_id in dict.fromkeys(ids):
            out = task_out(view, kol_view, task_id)
            if out is None or (status and out["status"] != status):
                continue
            if keyword and out["keyword"] != keyword:
                continue
            if type and type not in (out["mode"], out["type"]):
                continue
            out.pop("task", None)  # the command itself: GET /tasks/{id} shows it
            items.append(out)
        items.sort(
            key=lambda x: (x["created_at"] or datetime.min.replace(tzinfo=UTC), x["task_id"]),
            reverse=True,
        )
        response.headers.update(
            page_headers(url, len(items), limit, offset, settings.api_max_offset)
        )
        return items[offset : offset + limit]

    @r.get(
        "/api/v1/tasks/{task_id}",
        tags=[TAG_TASKS],
        response_model=TaskOut,
        responses={**ERRORS, **NOT_FOUND},
        summary="获取任务详情 (read a task)",
    )
    async def get_task(task_id: str = Path(max_length=settings.api_max_string_length)):
        out = task_out(view, kol_view, task_id)
        if out is None:
            raise HTTPException(404, f"no task {task_id}")
        return out

    @r.get(
        "/api/v1/tasks/{task_id}/progress",
        tags=[TAG_TASKS],
        response_model=ProgressOut,
        responses={**ERRORS, **NOT_FOUND},
        summary="获取任务进度 (progress)",
    )
    async def progress(task_id: str = Path(max_length=settings.api_max_string_length)):
        st = known(task_id)
        prog = view.progress.rows.get(task_id)
        design = task_out(view, None, task_id)["progress"]  # type: ignore[index]  # known above
        return {
            **st,
            # the design's TaskProgress at the top level: total, collected, failed, percentage
            **{k: design[k] for k in ("total", "collected", "failed", "percentage")},
            "slices_done": getattr(prog, "slices_done", 0),
            "slice_count": getattr(prog, "slice_count", None),
            "end_reason": getattr(prog, "end_reason", None),
        }

    @r.post(
        "/api/v1/tasks/{task_id}/cancel",
        tags=[TAG_TASKS],
        response_model=CancelOut,
        responses={**ERRORS, **NOT_FOUND, **CONFLICT},
        summary="取消任务 (cancel)",
    )
    async def cancel(
        task_id: str = Path(max_length=settings.api_max_string_length),
        body: CancelBody | None = None,
    ):
        check_body(settings, body)
        st = known(task_id)
        if st["status"] in FINAL:
            raise HTTPException(409, f"task {task_id} is already {st['status']}")
        await write_control(task_id, state="cancelled", reason=body.reason if body else None)
        return {"message": "任务已取消", **known(task_id)}  # the design's message

    @r.patch(
        "/api/v1/tasks/{task_id}",
        tags=[TAG_TASKS],
        response_model=TaskStatusOut,
        responses={**ERRORS, **NOT_FOUND, **CONFLICT},
        summary="pause, resume, priority, frequency",
    )
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
        out = {**(view.status(task_id) or {}), "priority": _priority(view, task_id)}
        sched = view.scheduled(task_id)
        if sched is not None and view.schedules is not None:
            plan = view.schedules.pending_plan(sched)
            out.update(frequency=plan.frequency, frequency_count=plan.frequency_count)
        return out

    return r


def _kinds(view: TaskView, task_id: str) -> tuple[str, str]:  # (mode, type)
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


def task_out(view: TaskView, kol_view: KolTaskView | None, task_id: str) -> dict | None:
    """A task in the design's TaskResponse fields (type, status, parameters, progress
    {total, collected, failed, percentage}, created/started/completed_at, error_message),
    with the status details of GET …/status (reason, waiting_for_accounts, runs…)."""
    st = view.status(task_id)
    if st is None and kol_view is not None:
        return _kol_out(kol_view, task_id)
    if st is None:
        return None
    task = view.task(task_id) or view.scheduled(task_id)
    mode, kind = _kinds(view, task_id)
    prog = view.progress.rows.get(task_id)
    ctl = view.control(task_id)
    failed = 0
    if isinstance(prog, TaskProgress):
        failed = prog.slices_failed or (prog.slice_count if prog.end_reason == "failed" else 0)
    completed_at = None
    if st["status"] in ENDED:
        completed_at = (
            ctl.updated_at
            if ctl is not None and st["status"] in ("cancelled", "rejected")
            else getattr(prog, "updated_at", None)
        )
    parameters = (
        task.model_dump(mode="json", exclude={"task_id", "submitted_at"}, exclude_none=True)
        if task
        else {}
    )
    progress = st.get("progress") or {"collected": 0, "target": 0, "percentage": 0.0}
    return {
        **st,
        "type": kind,
        "mode": mode,
        "search_type": kind,
        "keyword": task.keyword if task else None,
        "priority": _priority(view, task_id),
        "parameters": parameters,
        "progress": {**progress, "total": progress["target"], "failed": failed},
        "started_at": view.started.get(task_id),
        "completed_at": completed_at,
        "error_message": st.get("reason") if st["status"] in ("failed", "rejected") else None,
        "task": task.model_dump(mode="json") if task else None,
    }


def _kol_out(kol_view: KolTaskView, task_id: str) -> dict | None:
    st = kol_view.status(task_id)
    if st is None:
        return None
    task = kol_view.kol_task(task_id)
    prog = kol_view.progress.rows.get(task_id)
    error = st["details"].get("error")
    progress = st["progress"]
    return {
        **st,
        "type": "kol_followings",
        "mode": "kol",
        "search_type": "kol_followings",
        "keyword": None,
        "priority": None,
        "parameters": task.model_dump(mode="json", exclude={"task_id", "submitted_at"})
        if task
        else {},
        "progress": {
            **progress,
            "total": progress["target"],
            "failed": getattr(prog, "kols_failed", 0),
        },
        "started_at": kol_view.started.get(task_id),
        "completed_at": getattr(prog, "updated_at", None)
        if st["status"] in ("completed", "failed")
        else None,
        "error_message": error if st["status"] == "failed" else None,
    }
