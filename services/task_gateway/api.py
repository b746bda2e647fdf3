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
from pydantic import BaseModel, Field, ValidationError

from libs.kafka import Outgoing, Producer
from libs.query import HANDLE, SearchFilters
from libs.records.reports import ReportsResume
from libs.records.tasks import OnDemandTask, ScheduledTask, SearchType
from libs.settings import Settings
from libs.topics import REPORT_CONTROLS, TASK_COMMANDS
from libs.webhooks import WebhookUrlError, check_url

from . import (
    analytics_api,
    console_api,
    data_api,
    kol_tasks,
    pool_forward,
    static_ui,
    task_detail_api,
    tasks_api,
    unavailable,
)
from .audit import AuditMiddleware
from .console_auth import Authorizer, document_roles
from .console_users import ConsoleUsers
from .estimate import completion, estimate
from .kol_tasks import KolTaskView
from .limits import FieldError, check_body
from .task_view import TaskView


class ScheduledRequest(BaseModel):
    task_id: str | None = None
    keyword: str
    priority: int = Field(5, ge=1, le=10)
    frequency: Literal["hourly", "daily", "weekly"]
    frequency_count: int = Field(1, ge=1, le=3600)
    filters: SearchFilters | None = None
    callback_url: str | None = None
    download_video: bool = False
    account_tag: str | None = Field(
        None, max_length=64, description="Only accounts with this tag serve its runs."
    )


class _WindowRequest(BaseModel):
    """What every search-over-a-window request carries (on-demand and generic search)."""

    task_id: str | None = None
    priority: int = Field(5, ge=1, le=10)
    required_count: int = Field(0, ge=0)
    start_time: datetime
    end_time: datetime
    callback_url: str | None = None
    filters: SearchFilters | None = None
    download_video: bool = False
    account_tag: str | None = Field(
        None, max_length=64, description="Only accounts with this tag serve the task."
    )

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
            account_tag=self.account_tag,
        )


class OnDemandRequest(_WindowRequest):
    keyword: str


class SearchRequest(_WindowRequest):
    type: SearchType
    keyword: str | None = None
    username: str | None = None
    post_id: str | None = None
    # user_profile and retweeters fetch a user list, not a window of posts
    start_time: datetime | None = None  # type: ignore[assignment]
    end_time: datetime | None = None  # type: ignore[assignment]

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
            account_tag=self.account_tag,
        )


X_EPOCH = datetime(2006, 3, 21, tzinfo=UTC)
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
        dependencies=[Depends(auth)],
    )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError):
        return JSONResponse({"status": "rejected", "detail": _errors(e)}, status_code=422)

    @app.exception_handler(FieldError)
    async def _out_of_bounds(_: Request, e: FieldError):
        return _field_error(e.field, e.message)

    unavailable.install(app, settings)

    async def publish(out: Outgoing) -> None:
        """Write one command; a broker that does not acknowledge it in time is a 503."""
        await unavailable.within(settings, "kafka", producer.send_and_wait(out))

    # Every state-changing request, done or refused, goes to the audit log (audit.py).
    app.add_middleware(AuditMiddleware, publish=publish)
    static_ui.install(app, settings)

    if kol_view is not None:
        app.include_router(kol_tasks.router(settings, publish, kol_view, auth))

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    async def accept(make_task) -> dict | JSONResponse:
        """Validate, check the webhook, then write the command (idempotent per task id)."""
        try:
            task: OnDemandTask = make_task()
        except ValidationError as e:
            return JSONResponse({"status": "rejected", "detail": _errors(e)}, status_code=422)
        task_id = task.task_id
        if task.callback_url is not None:
            try:
                await asyncio.to_thread(check_url, task.callback_url, settings.webhook_allow_hosts)
            except WebhookUrlError as e:
                return JSONResponse(
                    {
                        "status": "rejected",
                        "detail": [{"field": "callback_url", "message": str(e)}],
                    },
                    status_code=422,
                )
        known = view.task(task_id)
        if known is not None:
            same = known.model_dump(exclude={"submitted_at"}) == task.model_dump(
                exclude={"submitted_at"}
            )
            if not same:
                raise HTTPException(409, f"task {task_id} exists with a different body")
            est = estimate(settings, known, view.active_accounts(), view.capacity(known))
            return {
                "status": "accepted",
                "task_id": task_id,
                "message": "task already exists (idempotent resubmission)",
                "estimated_completion": completion(known.submitted_at, est),
                "estimate": est,
            }
        await publish(Outgoing(TASK_COMMANDS, task_id, task))
        view.commands.rows[task_id] = task  # read-your-writes before the table catches up
        est = estimate(settings, task, view.active_accounts(), view.capacity(task))
        return {
            "status": "accepted",
            "task_id": task_id,
            "message": f"collecting '{task.keyword}'",
            "estimated_completion": completion(task.submitted_at, est),
            "estimate": est,
        }

    @app.post("/api/v1/tasks/ondemand", dependencies=[Depends(auth)])
    async def create_ondemand(req: OnDemandRequest):
        check_body(settings, req)
        return await accept(lambda: req.task(f"od-{uuid.uuid4().hex[:16]}", req.keyword))

    @app.post("/api/v1/tasks/search", dependencies=[Depends(auth)])
    async def create_search(req: SearchRequest):
        """Generic search tasks. user_timeline and quotes are X advanced searches
        (from:USER, quoted_tweet_id:ID) and run, store and report like keyword searches;
        user_profile (X's UserByScreenName) and retweeters (X's Retweeters list of a post)
        collect users: stored in ClickHouse (users, task_users) and reported as user records."""
        check_body(settings, req)
        if req.type == "user_profile":
            if not req.username or not HANDLE.match(req.username):
                return _field_error("username", "user_profile needs an X handle")
            name = req.username.lstrip("@")
            return await accept(
                lambda: req.user_task(f"up-{uuid.uuid4().hex[:16]}", "UserByScreenName", name)
            )
        if req.type == "retweeters":
            if not req.post_id or not req.post_id.isdigit() or len(req.post_id) > 19:
                return _field_error(
                    "post_id", "retweeters needs the retweeted post's id (up to 19 digits)"
                )
            return await accept(
                lambda: req.user_task(f"rt-{uuid.uuid4().hex[:16]}", "Retweeters", req.post_id)
            )
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
        return await accept(
            lambda: req.task(f"{req.type[:2]}-{uuid.uuid4().hex[:16]}", keyword, req.type)
        )

    @app.post("/api/v1/tasks/scheduled", dependencies=[Depends(auth)])
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
                return JSONResponse(
                    {
                        "status": "rejected",
                        "detail": [{"field": "callback_url", "message": str(e)}],
                    },
                    status_code=422,
                )
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
            message = f"collecting '{task.keyword}' {task.frequency_count} time(s) {task.frequency}"
        nxt = view.schedules.next_execution(task) if view.schedules else task.submitted_at
        return {"status": "accepted", "task_id": task_id, "message": message, "next_execution": nxt}

    @app.get("/api/v1/tasks/{task_id}/status", dependencies=[Depends(auth)])
    async def task_status(task_id: str = Path(max_length=settings.api_max_string_length)):
        st = view.status(task_id) or (kol_view.status(task_id) if kol_view else None)
        if st is None:
            raise HTTPException(404, f"no task {task_id}")
        return st

    @app.post("/api/v1/tasks/{task_id}/reports/resume", dependencies=[Depends(auth)])
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

    app.include_router(tasks_api.create_router(settings, publish, view, auth))
    if get_store is not None:
        app.include_router(data_api.create_router(settings, get_store, view, auth))
        app.include_router(analytics_api.create_router(settings, get_store, view))
        app.include_router(task_detail_api.create_router(settings, get_store, view, publish))
    if users is not None:
        app.include_router(console_api.create_router(settings, users, auth))
    app.include_router(pool_forward.create_router(settings))
    document_roles(app)
    return app
