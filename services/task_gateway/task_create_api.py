"""Task creation (on-demand, generic search, scheduled), a task's status and the resume of
its reports: each create validates, checks the webhook and writes the command to task-commands
(idempotent per task id), and answers the design's shape with our estimate and quote."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial

from fastapi import APIRouter, Depends, HTTPException, Path
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from libs.kafka import Outgoing
from libs.query import HANDLE
from libs.records.reports import ReportsResume
from libs.records.tasks import OnDemandTask, ScheduledTask
from libs.settings import Settings
from libs.topics import REPORT_CONTROLS, TASK_COMMANDS
from libs.webhooks import WebhookUrlError, check_url

from . import kol_tasks, pricing
from .api_models import (
    CONFLICT,
    ERRORS,
    NOT_FOUND,
    TAG_TASKS,
    ReportsResumed,
    TaskCreated,
    TaskOut,
    TaskStatusOut,
)
from .estimate import completion, estimate
from .kol_tasks import KolTaskView
from .limits import check_body
from .schedules import run_task
from .task_requests import (
    OnDemandRequest,
    ScheduledRequest,
    SearchRequest,
    field_error,
    validation_errors,
)
from .task_view import TaskView
from .tasks_api import task_out


def search_task_factory(req: SearchRequest) -> Callable[[], OnDemandTask] | JSONResponse:
    """What a generic search request makes, by its type: a user task (user_profile,
    retweeters: no window) or an X advanced search (keyword_search, user_timeline as
    from:USER, quotes as quoted_tweet_id:ID); a 422 naming the field the type needs."""
    if req.type == "user_profile":
        if not req.username or not HANDLE.match(req.username):
            return field_error("username", "user_profile needs an X handle")
        name = req.username.lstrip("@")
        return partial(req.user_task, f"up-{uuid.uuid4().hex[:16]}", "UserByScreenName", name)
    if req.type == "retweeters":
        if not req.post_id or not req.post_id.isdigit() or len(req.post_id) > 19:
            return field_error(
                "post_id", "retweeters needs the retweeted post's id (up to 19 digits)"
            )
        return partial(req.user_task, f"rt-{uuid.uuid4().hex[:16]}", "Retweeters", req.post_id)
    for name in ("start_time", "end_time"):
        if getattr(req, name) is None:
            return field_error(name, f"{req.type} needs a window: {name} is required")
    if req.type == "keyword_search":
        if not req.keyword:
            return field_error("keyword", "keyword_search needs a keyword")
        keyword = req.keyword
    elif req.type == "user_timeline":
        if not req.username or not HANDLE.match(req.username):
            return field_error("username", "user_timeline needs an X handle")
        keyword = f"from:{req.username.lstrip('@')}"
    else:  # quotes
        if not req.post_id or not req.post_id.isdigit():
            return field_error("post_id", "quotes needs the quoted post's id (digits)")
        keyword = f"quoted_tweet_id:{req.post_id}"
    return partial(req.task, f"{req.type[:2]}-{uuid.uuid4().hex[:16]}", keyword, req.type)


def create_router(
    settings: Settings,
    publish: Callable[[Outgoing], Awaitable[None]],
    view: TaskView,
    auth,
    kol_view: KolTaskView | None = None,
) -> APIRouter:
    r = APIRouter()

    def created(task, message: str, est: dict, **extra) -> dict:
        """The design's answer to a create: status success, task_id, message, estimate."""
        return {
            "status": "success",
            "task_id": task.task_id,
            "message": message,
            "estimated_completion": extra.pop("finish", None) or completion(task.submitted_at, est),
            **extra,
            "estimate": est,
            "quote": pricing.quote_task(task, settings),  # the design's price (pricing.py)
        }

    async def accept(
        make_task, same_window: bool = True
    ) -> tuple[OnDemandTask, str] | JSONResponse:
        """Validate, check the webhook, then write the command (idempotent per task id).
        `same_window` False: a resubmission may differ in its window (one the gateway chose)."""
        try:
            task: OnDemandTask = make_task()
        except ValidationError as e:
            return JSONResponse(
                {"status": "rejected", "detail": validation_errors(e)}, status_code=422
            )
        task_id = task.task_id
        if task.callback_url is not None:
            try:
                await asyncio.to_thread(check_url, task.callback_url, settings.webhook_allow_hosts)
            except WebhookUrlError as e:
                return field_error("callback_url", str(e))
        known = view.task(task_id)
        if known is not None:
            skip = {"submitted_at"} | (set() if same_window else {"start_time", "end_time"})
            if known.model_dump(exclude=skip) != task.model_dump(exclude=skip):
                raise HTTPException(409, f"task {task_id} exists with a different body")
            return known, "task already exists (idempotent resubmission)"
        await publish(Outgoing(TASK_COMMANDS, task_id, task))
        view.commands.rows[task_id] = task  # read-your-writes before the table catches up
        return task, ""

    async def ondemand_created(make_task, message: str, same_window: bool = True):
        got = await accept(make_task, same_window)
        if isinstance(got, JSONResponse):
            return got
        task, again = got
        est = estimate(settings, task, view.active_accounts(), view.capacity(task))
        return created(task, again or message.format(task=task), est)

    @r.post(
        "/api/v1/tasks/ondemand",
        dependencies=[Depends(auth)],
        tags=[TAG_TASKS],
        response_model=TaskCreated,
        response_model_exclude_none=True,  # no next_execution: it runs now
        responses={**ERRORS, **CONFLICT},
        summary="按需搜索任务下发 (on-demand search)",
    )
    async def create_ondemand(req: OnDemandRequest):
        check_body(settings, req)
        return await ondemand_created(
            lambda: req.task(f"od-{uuid.uuid4().hex[:16]}", req.keyword),
            "按需搜索任务创建成功: collecting '{task.keyword}'",
        )

    @r.post(
        "/api/v1/tasks/search",
        dependencies=[Depends(auth)],
        tags=[TAG_TASKS],
        response_model=TaskOut,
        responses={**ERRORS, **CONFLICT},
        summary="创建搜索任务 (generic search task)",
    )
    async def create_search(req: SearchRequest):
        """Generic search tasks, in the design's TaskRequest or our names. keyword_search,
        user_timeline and quotes are X advanced searches (from:USER, quoted_tweet_id:ID) and
        run, store and report like keyword searches (without a window: the last
        XGET_API_DEFAULT_WINDOW_DAYS days, up to `count`); user_profile (X's UserByScreenName)
        and retweeters (X's Retweeters list of a post) collect users: stored in ClickHouse
        (users, task_users) and reported as user records. Answers the design's task
        response (status pending) with message, estimated_completion and estimate."""
        merged = req.merged(settings.api_default_window_days)
        if isinstance(merged, JSONResponse):
            return merged
        own_window = req.start_time or req.end_time or req.start_date or req.end_date
        req = merged
        check_body(settings, req)
        made = search_task_factory(req)
        if isinstance(made, JSONResponse):
            return made
        got = await accept(made, same_window=bool(own_window))
        if isinstance(got, JSONResponse):
            return got
        task, again = got
        est = estimate(settings, task, view.active_accounts(), view.capacity(task))
        out = task_out(view, kol_view, task.task_id) or {}
        return {
            **out,
            "message": again or f"搜索任务创建成功: {task.kind()} '{task.keyword}'",
            "estimated_completion": completion(task.submitted_at, est),
            "estimate": est,
            "quote": pricing.quote_for(task, settings),
        }

    @r.post(
        "/api/v1/tasks/scheduled",
        dependencies=[Depends(auth)],
        tags=[TAG_TASKS],
        response_model=TaskCreated,
        responses={**ERRORS, **CONFLICT},
        summary="定时搜索任务下发 (scheduled search)",
    )
    async def create_scheduled(req: ScheduledRequest):
        check_body(settings, req)
        task_id = req.task_id or f"sc-{uuid.uuid4().hex[:16]}"
        try:
            task = ScheduledTask(
                task_id=task_id,
                **req.model_dump(exclude={"task_id"}),
                submitted_at=datetime.now(UTC),
            )
        except ValidationError as e:
            return JSONResponse(
                {"status": "rejected", "detail": validation_errors(e)}, status_code=422
            )
        if task.callback_url is not None:
            try:
                await asyncio.to_thread(check_url, task.callback_url, settings.webhook_allow_hosts)
            except WebhookUrlError as e:
                return field_error("callback_url", str(e))
        known = view.commands.rows.get(task_id)
        if known is not None:
            if not isinstance(known, ScheduledTask) or known.model_dump(
                exclude={"submitted_at"}
            ) != task.model_dump(exclude={"submitted_at"}):
                raise HTTPException(409, f"task {task_id} exists with a different body")
            task, message = known, "task already exists (idempotent resubmission)"
        else:
            await publish(Outgoing(TASK_COMMANDS, task_id, task))
            view.commands.rows[task_id] = task
            message = (
                f"定时搜索任务创建成功: collecting '{task.keyword}' "
                f"{task.frequency_count} time(s) {task.frequency}"
            )
        nxt = view.schedules.next_execution(task) if view.schedules else task.submitted_at
        # The estimate is the next run's: the window it covers (one interval) collected
        # after it fires.
        run = run_task(task, max(0, view.schedules.last_run(task_id) + 1) if view.schedules else 0)
        est = estimate(settings, run, view.active_accounts(), view.capacity(run))
        return created(task, message, est, next_execution=nxt, finish=completion(nxt, est))

    if kol_view is not None:
        r.include_router(kol_tasks.router(settings, publish, kol_view, auth, created))

    @r.get(
        "/api/v1/tasks/{task_id}/status",
        dependencies=[Depends(auth)],
        tags=[TAG_TASKS],
        response_model=TaskStatusOut,
        responses={**ERRORS, **NOT_FOUND},
        summary="任务状态查询 (task status)",
    )
    async def task_status(task_id: str = Path(max_length=settings.api_max_string_length)):
        st = view.status(task_id) or (kol_view.status(task_id) if kol_view else None)
        if st is None:
            raise HTTPException(404, f"no task {task_id}")
        return st

    @r.post(
        "/api/v1/tasks/{task_id}/reports/resume",
        dependencies=[Depends(auth)],
        tags=[TAG_TASKS],
        response_model=ReportsResumed,
        responses={**ERRORS, **NOT_FOUND},
    )
    async def resume_reports(task_id: str = Path(max_length=settings.api_max_string_length)):
        """The client is ready for more batches after answering next_batch_allowed=false."""
        if view.status(task_id) is None:
            raise HTTPException(404, f"no task {task_id}")
        await publish(
            Outgoing(
                REPORT_CONTROLS,
                task_id,
                ReportsResume(task_id=task_id, requested_at=datetime.now(UTC)),
            )
        )
        return {"status": "accepted", "task_id": task_id, "message": "reports resume"}

    return r
