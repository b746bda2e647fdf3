"""task-gateway HTTP API (FastAPI): task creation and status.

Creation only validates and writes the command to the task-commands topic, the same record a
client may publish there directly; everything else follows from that topic.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Literal

from fastapi import Depends, FastAPI, HTTPException, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import Field, ValidationError, field_validator

from libs.kafka import Outgoing, Producer
from libs.query import HANDLE, SearchFilters
from libs.records.reports import ReportsResume
from libs.records.tasks import OnDemandTask, ScheduledTask, SearchType
from libs.settings import Settings
from libs.topics import REPORT_CONTROLS, TASK_COMMANDS
from libs.webhooks import WebhookUrlError, check_url

from . import (
    admin_api,
    analytics_api,
    console_api,
    cost_api,
    data_api,
    kol_tasks,
    pool_forward,
    pricing,
    static_ui,
    statistics_api,
    tasks_api,
    unavailable,
)
from . import alerts as alerts_api
from .api_models import (
    CONFLICT,
    ERRORS,
    NOT_FOUND,
    OPENAPI_TAGS,
    TAG_ADMIN,
    TAG_DATA,
    TAG_TASKS,
    Rejection,
    ReportsResumed,
    TaskCreated,
    TaskOut,
    TaskStatusOut,
)
from .audit import AuditMiddleware
from .console_auth import Authorizer
from .console_users import ConsoleUsers
from .estimate import completion, estimate
from .kol_tasks import KolTaskView
from .limits import FieldError, check_body
from .schedules import run_task
from .strict import StrictModel, document_rejections, reject_unknown
from .task_view import TaskView
from .tasks_api import task_out


class ScheduledRequest(StrictModel):
    task_id: str | None = None
    keyword: str
    priority: int = Field(5, ge=1, le=10)
    frequency: Literal["hourly", "daily", "weekly"]
    frequency_count: int = Field(1, ge=1, le=3600)
    filters: SearchFilters | None = None
    callback_url: str | None = None
    download_video: bool = False


class _WindowRequest(StrictModel):
    """What every search-over-a-window request carries (on-demand and generic search)."""

    task_id: str | None = None
    priority: int = Field(5, ge=1, le=10)
    required_count: int = Field(0, ge=0)
    start_time: datetime
    end_time: datetime
    callback_url: str | None = None
    filters: SearchFilters | None = None
    download_video: bool = False

    def task(
        self, task_id: str, keyword: str, search_type: SearchType | None = None
    ) -> OnDemandTask:
        """The on-demand command for this request (raises ValidationError on bad input)."""
        return OnDemandTask(
            task_id=self.task_id or task_id,
            keyword=keyword,
            priority=self.priority,
            required_count=self.required_count,
            start_time=self.start_time,
            end_time=self.end_time,
            callback_url=self.callback_url,
            filters=self.filters,
            download_video=self.download_video,
            submitted_at=datetime.now(UTC),
            search_type=search_type,
        )


class OnDemandRequest(_WindowRequest):
    keyword: str


class SearchRequest(_WindowRequest):
    """The design's TaskRequest (type, keyword, username, count, priority "high"/"normal"/…,
    start_date, end_date) and our names for the same things (required_count, priority 1-10,
    start_time, end_time), plus post_id for quotes and retweeters."""

    type: SearchType
    keyword: str | None = None
    username: str | None = None
    post_id: str | None = None
    count: int | None = Field(
        None, ge=1, le=10000, description="Design's name of required_count (1-10000)."
    )
    priority: int = Field(  # type: ignore[assignment]
        5,
        ge=1,
        le=10,
        description="1 (highest) to 10, or the design's words: urgent 1, high 2, normal 5, low 8.",
    )
    start_date: datetime | None = Field(None, description="Design's name of start_time.")
    end_date: datetime | None = Field(None, description="Design's name of end_time.")
    # user_profile and retweeters fetch a user list, not a window of posts; searches without
    # a window cover the last XGET_API_DEFAULT_WINDOW_DAYS days
    start_time: datetime | None = None  # type: ignore[assignment]
    end_time: datetime | None = None  # type: ignore[assignment]

    @field_validator("priority", mode="before")
    @classmethod
    def _priority_word(cls, v):
        if isinstance(v, str) and not v.strip().isdigit():
            word = v.strip().lower()
            if word not in PRIORITY_WORDS:
                raise ValueError(
                    f"priority is 1-10 or one of {', '.join(PRIORITY_WORDS)}, not {v!r}"
                )
            return PRIORITY_WORDS[word]
        return v

    def merged(self, default_days: int) -> SearchRequest | JSONResponse:
        """Our names filled from the design's (a 422 when both are given and differ), and the
        default window for a search without one."""
        out = self.model_copy()
        for ours, theirs in (
            ("required_count", "count"),
            ("start_time", "start_date"),
            ("end_time", "end_date"),
        ):
            a, b = getattr(self, ours), getattr(self, theirs)
            if b is None:
                continue
            if ours in self.model_fields_set and a != b:
                return _field_error(theirs, f"{theirs} and {ours} are the same field; give one")
            setattr(out, ours, b)
        if (
            self.type not in ("user_profile", "retweeters")
            and out.start_time is None
            and out.end_time is None
        ):
            end = datetime.now(UTC).replace(microsecond=0)
            out.start_time, out.end_time = end - timedelta(days=default_days), end
        return out

    def user_task(self, task_id: str, operation: str, target: str) -> OnDemandTask:
        """The command of a user operation. Its window is not used; it is fixed (X's first
        day) so that resubmitting the same request stays idempotent."""
        return OnDemandTask(
            task_id=self.task_id or task_id,
            keyword=USER_TASK_KEYWORD[operation] + target,
            priority=self.priority,
            required_count=self.required_count,
            start_time=X_EPOCH,
            end_time=X_EPOCH + timedelta(days=1),
            callback_url=self.callback_url,
            operation=operation,
            target=target,
            submitted_at=datetime.now(UTC),
            search_type=self.type,
        )


X_EPOCH = datetime(2006, 3, 21, tzinfo=UTC)
PRIORITY_WORDS = {"urgent": 1, "high": 2, "normal": 5, "low": 8}
USER_TASK_KEYWORD = {"UserByScreenName": "profile:", "Retweeters": "retweeters:"}


def _field_error(field: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"status": "rejected", "detail": [{"field": field, "message": message}]}, status_code=422
    )


# Where FastAPI says a parameter came from; the field's name alone is what the client sent.
_LOCATIONS = ("body", "query", "path", "header")


def _errors(e: ValidationError | RequestValidationError) -> list[dict]:
    out = []
    for err in e.errors():
        loc = [str(x) for x in err.get("loc", ())]
        if loc and loc[0] in _LOCATIONS:
            loc = loc[1:]
        out.append({"field": ".".join(loc) or None, "message": err.get("msg")})
    return out


def create_app(
    settings: Settings,
    producer: Producer,
    view: TaskView,
    get_store: data_api.StoreGetter | None = None,
    kol_view: KolTaskView | None = None,
    *,
    alerts: alerts_api.AlertEvaluator | None = None,
    users: ConsoleUsers | None = None,
) -> FastAPI:
    # Who may call what is decided once, for every route (console_auth): the bearer token or
    # a console session, CSRF, and the role the route needs. An empty token accepts nobody.
    # `auth` is the same callable, so routes that name it run it once per request.
    auth = Authorizer(settings, users)
    app = FastAPI(
        title="XGet task gateway",
        version="1",
        docs_url=None,  # served from local files by static_ui (works offline)
        redoc_url=None,
        # An unknown parameter or field is a 422 before anything else looks at the request.
        dependencies=[Depends(reject_unknown), Depends(auth)],
        openapi_tags=OPENAPI_TAGS,
    )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError):
        return JSONResponse({"status": "rejected", "detail": _errors(e)}, status_code=422)

    @app.exception_handler(FieldError)
    async def _out_of_bounds(_: Request, e: FieldError):
        return _field_error(e.field, e.message)

    unavailable.install(app, settings)
    document_rejections(app, Rejection)

    async def publish(out: Outgoing) -> None:
        """Write one command; a broker that does not acknowledge it in time is a 503."""
        await unavailable.within(settings, "kafka", producer.send_and_wait(out))

    # Every state-changing request, done or refused, goes to the audit log (audit.py).
    app.add_middleware(AuditMiddleware, publish=publish)
    static_ui.install(app, settings)

    @app.get("/health", tags=[TAG_ADMIN])
    async def health():
        return {"status": "ok"}

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
            return JSONResponse({"status": "rejected", "detail": _errors(e)}, status_code=422)
        task_id = task.task_id
        if task.callback_url is not None:
            try:
                await asyncio.to_thread(check_url, task.callback_url, settings.webhook_allow_hosts)
            except WebhookUrlError as e:
                return _field_error("callback_url", str(e))
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
        est = estimate(settings, task, view.active_accounts())
        return created(task, again or message.format(task=task), est)

    @app.post(
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

    @app.post(
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
        if req.type == "user_profile":
            if not req.username or not HANDLE.match(req.username):
                return _field_error("username", "user_profile needs an X handle")
            name = req.username.lstrip("@")
            made = lambda: req.user_task(f"up-{uuid.uuid4().hex[:16]}", "UserByScreenName", name)  # noqa: E731
        elif req.type == "retweeters":
            if not req.post_id or not req.post_id.isdigit() or len(req.post_id) > 19:
                return _field_error(
                    "post_id", "retweeters needs the retweeted post's id (up to 19 digits)"
                )
            made = lambda: req.user_task(f"rt-{uuid.uuid4().hex[:16]}", "Retweeters", req.post_id)  # noqa: E731
        else:
            for name in ("start_time", "end_time"):
                if getattr(req, name) is None:
                    return _field_error(name, f"{req.type} needs a window: {name} is required")
            if req.type == "keyword_search":
                if not req.keyword:
                    return _field_error("keyword", "keyword_search needs a keyword")
                keyword = req.keyword
            elif req.type == "user_timeline":
                if not req.username or not HANDLE.match(req.username):
                    return _field_error("username", "user_timeline needs an X handle")
                keyword = f"from:{req.username.lstrip('@')}"
            else:  # quotes
                if not req.post_id or not req.post_id.isdigit():
                    return _field_error("post_id", "quotes needs the quoted post's id (digits)")
                keyword = f"quoted_tweet_id:{req.post_id}"
            made = lambda: req.task(f"{req.type[:2]}-{uuid.uuid4().hex[:16]}", keyword, req.type)  # noqa: E731
        got = await accept(made, same_window=bool(own_window))
        if isinstance(got, JSONResponse):
            return got
        task, again = got
        est = estimate(settings, task, view.active_accounts())
        out = task_out(view, kol_view, task.task_id) or {}
        return {
            **out,
            "message": again or f"搜索任务创建成功: {task.kind()} '{task.keyword}'",
            "estimated_completion": completion(task.submitted_at, est),
            "estimate": est,
            "quote": pricing.quote_for(task, settings),
        }

    @app.post(
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
            return JSONResponse({"status": "rejected", "detail": _errors(e)}, status_code=422)
        if task.callback_url is not None:
            try:
                await asyncio.to_thread(check_url, task.callback_url, settings.webhook_allow_hosts)
            except WebhookUrlError as e:
                return _field_error("callback_url", str(e))
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
        est = estimate(settings, run, view.active_accounts())
        return created(task, message, est, next_execution=nxt, finish=completion(nxt, est))

    if kol_view is not None:
        app.include_router(kol_tasks.router(settings, publish, kol_view, auth, created))

    @app.get(
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

    @app.post(
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

    app.include_router(tasks_api.create_router(settings, publish, view, auth, kol_view))
    app.include_router(admin_api.create_router(settings, view, kol_view, get_store, auth))
    app.include_router(pricing.router(settings, auth))
    if alerts is not None:
        app.include_router(alerts_api.router(alerts, auth))
    if get_store is not None:
        app.include_router(statistics_api.create_router(settings, get_store, view, auth))
        app.include_router(data_api.create_router(settings, get_store, view, auth), tags=[TAG_DATA])
        app.include_router(cost_api.create_router(settings, get_store, view, auth, kol_view))
        app.include_router(analytics_api.create_router(settings, get_store, view))
    if users is not None:
        app.include_router(console_api.create_router(settings, users, auth))
    app.include_router(pool_forward.create_router(settings))
    return app
