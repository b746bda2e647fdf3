"""task-gateway HTTP API (FastAPI): task creation and status.

Creation only validates and writes the command to the task-commands topic, the same record a
client may publish there directly; everything else follows from that topic.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from datetime import datetime, timezone
from typing import Literal

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field, ValidationError

from libs.kafka import Outgoing, Producer
from libs.query import SearchFilters
from libs.records.reports import ReportsResume
from libs.records.tasks import OnDemandTask, ScheduledTask
from libs.settings import Settings
from libs.topics import REPORT_CONTROLS, TASK_COMMANDS
from libs.webhooks import WebhookUrlError, check_url

from . import kol_tasks
from .kol_tasks import KolTaskView
from . import data_api, tasks_api
from .estimate import completion, estimate
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


class OnDemandRequest(BaseModel):
    task_id: str | None = None
    keyword: str
    priority: int = Field(5, ge=1, le=10)
    required_count: int = Field(0, ge=0)
    start_time: datetime
    end_time: datetime
    callback_url: str | None = None
    filters: SearchFilters | None = None
    download_video: bool = False


def _errors(e: ValidationError | RequestValidationError) -> list[dict]:
    out = []
    for err in e.errors():
        loc = [str(x) for x in err.get("loc", ()) if x != "body"]
        out.append({"field": ".".join(loc) or None, "message": err.get("msg")})
    return out


def create_app(settings: Settings, producer: Producer, view: TaskView,
               get_store: data_api.StoreGetter | None = None,
               kol_view: KolTaskView | None = None) -> FastAPI:
    app = FastAPI(title="XGet task gateway", version="1")
    bearer = HTTPBearer(auto_error=False)
    token = settings.api_token.get_secret_value()

    def auth(creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if creds is None or not secrets.compare_digest(creds.credentials.encode(),
                                                       token.encode()):
            raise HTTPException(401, "missing or wrong bearer token",
                                headers={"WWW-Authenticate": "Bearer"})

    if kol_view is not None:
        app.include_router(kol_tasks.router(producer, kol_view, auth))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError):
        return JSONResponse({"status": "rejected", "detail": _errors(e)}, status_code=422)

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.post("/api/v1/tasks/ondemand", dependencies=[Depends(auth)])
    async def create_ondemand(req: OnDemandRequest):
        task_id = req.task_id or f"od-{uuid.uuid4().hex[:16]}"
        try:
            task = OnDemandTask(
                task_id=task_id, keyword=req.keyword, priority=req.priority,
                required_count=req.required_count, start_time=req.start_time,
                end_time=req.end_time, callback_url=req.callback_url, filters=req.filters,
                download_video=req.download_video,
                submitted_at=datetime.now(timezone.utc),
            )
        except ValidationError as e:
            return JSONResponse({"status": "rejected", "detail": _errors(e)}, status_code=422)
        if task.callback_url is not None:
            try:
                await asyncio.to_thread(check_url, task.callback_url, settings.webhook_allow_hosts)
            except WebhookUrlError as e:
                return JSONResponse({"status": "rejected", "detail": [
                    {"field": "callback_url", "message": str(e)}]}, status_code=422)
        known = view.task(task_id)
        if known is not None:
            same = known.model_dump(exclude={"submitted_at"}) == task.model_dump(
                exclude={"submitted_at"})
            if not same:
                raise HTTPException(409, f"task {task_id} exists with a different body")
            est = estimate(settings, known, view.active_accounts())
            return {"status": "accepted", "task_id": task_id,
                    "message": "task already exists (idempotent resubmission)",
                    "estimated_completion": completion(known.submitted_at, est),
                    "estimate": est}
        await producer.send_and_wait(Outgoing(TASK_COMMANDS, task_id, task))
        view.commands.rows[task_id] = task  # read-your-writes before the table catches up
        est = estimate(settings, task, view.active_accounts())
        return {"status": "accepted", "task_id": task_id,
                "message": f"collecting '{task.keyword}'",
                "estimated_completion": completion(task.submitted_at, est), "estimate": est}

    @app.post("/api/v1/tasks/scheduled", dependencies=[Depends(auth)])
    async def create_scheduled(req: ScheduledRequest):
        task_id = req.task_id or f"sc-{uuid.uuid4().hex[:16]}"
        try:
            task = ScheduledTask(task_id=task_id, **req.model_dump(exclude={"task_id"}),
                                 submitted_at=datetime.now(timezone.utc))
        except ValidationError as e:
            return JSONResponse({"status": "rejected", "detail": _errors(e)}, status_code=422)
        if task.callback_url is not None:
            try:
                await asyncio.to_thread(check_url, task.callback_url, settings.webhook_allow_hosts)
            except WebhookUrlError as e:
                return JSONResponse({"status": "rejected", "detail": [
                    {"field": "callback_url", "message": str(e)}]}, status_code=422)
        known = view.commands.rows.get(task_id)
        if known is not None:
            if not isinstance(known, ScheduledTask) or known.model_dump(
                    exclude={"submitted_at"}) != task.model_dump(exclude={"submitted_at"}):
                raise HTTPException(409, f"task {task_id} exists with a different body")
            task, message = known, "task already exists (idempotent resubmission)"
        else:
            await producer.send_and_wait(Outgoing(TASK_COMMANDS, task_id, task))
            view.commands.rows[task_id] = task
            message = (f"collecting '{task.keyword}' {task.frequency_count} time(s) "
                       f"{task.frequency}")
        nxt = view.schedules.next_execution(task) if view.schedules else task.submitted_at
        return {"status": "accepted", "task_id": task_id, "message": message,
                "next_execution": nxt}

    @app.get("/api/v1/tasks/{task_id}/status", dependencies=[Depends(auth)])
    async def task_status(task_id: str):
        st = view.status(task_id) or (kol_view.status(task_id) if kol_view else None)
        if st is None:
            raise HTTPException(404, f"no task {task_id}")
        return st

    @app.post("/api/v1/tasks/{task_id}/reports/resume", dependencies=[Depends(auth)])
    async def resume_reports(task_id: str):
        """The client is ready for more batches after answering next_batch_allowed=false."""
        if view.status(task_id) is None:
            raise HTTPException(404, f"no task {task_id}")
        await producer.send_and_wait(Outgoing(REPORT_CONTROLS, task_id, ReportsResume(
            task_id=task_id, requested_at=datetime.now(timezone.utc))))
        return {"status": "accepted", "task_id": task_id, "message": "reports resume"}

    app.include_router(tasks_api.create_router(producer, view, auth))
    if get_store is not None:
        app.include_router(data_api.create_router(get_store, view, auth))
    return app
