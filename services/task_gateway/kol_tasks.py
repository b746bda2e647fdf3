"""Gateway task type `kol-followings`: POST /api/v1/tasks/kol-followings and its status.

Creation writes a KolFollowingsTask to kol-commands (the kol-worker runs it); status comes
from the worker's kol-progress records, in the same shape as every task's status.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import JSONResponse
from pydantic import Field, ValidationError

from libs.kafka import Outgoing
from libs.records.kol import KolFollowingsTask, KolTaskProgress
from libs.settings import Settings
from libs.strict_params import StrictModel
from libs.topic_table import TopicTable
from libs.topics import KOL_COMMANDS, KOL_PROGRESS, TASK_ACCOUNT_WAITS

from .api_models import CONFLICT, ERRORS, TAG_TASKS, TaskCreated
from .estimate import kol_estimate
from .limits import check_body
from .task_view import TaskView


class KolFollowingsRequest(StrictModel):
    task_id: str | None = None
    handles: list[str] | Literal["all"] = Field(
        description='KOL handles (or ids), or "all" for every KOL not yet done.'
    )
    limit: int | None = Field(None, ge=1)


class KolTaskView(TaskView):
    """The same two-table read model as on-demand tasks, over the KOL topics."""

    # No super().__init__(): it would read the on-demand topics; these tables replace them.
    def __init__(self, settings: Settings):
        self.commands = TopicTable(settings, KOL_COMMANDS)
        self.progress = TopicTable(settings, KOL_PROGRESS, on_record=self._progress_seen)
        self.started: dict[str, datetime] = {}
        # TaskView.start/stop/waiting_for_accounts read it (merge of issues 4 and 6).
        self.account_waits = TopicTable(settings, TASK_ACCOUNT_WAITS)

    async def start(self) -> None:
        for t in (self.commands, self.progress):
            await t.start()
        for t in (self.commands, self.progress):
            await t.wait_caught_up()

    async def stop(self) -> None:
        for t in (self.commands, self.progress):
            await t.stop()

    def waiting_for_accounts(self, task_id: str) -> dict | None:
        return None

    def task_ids(self) -> list[str]:
        ids = {k for k, v in self.commands.rows.items() if isinstance(v, KolFollowingsTask)}
        return sorted(
            ids | {k for k, v in self.progress.rows.items() if isinstance(v, KolTaskProgress)}
        )

    def kol_task(self, task_id: str) -> KolFollowingsTask | None:
        t = self.commands.rows.get(task_id)
        return t if isinstance(t, KolFollowingsTask) else None

    def status(self, task_id: str) -> dict | None:
        task = self.commands.rows.get(task_id)
        prog = self.progress.rows.get(task_id)
        if not isinstance(task, KolFollowingsTask) and not isinstance(prog, KolTaskProgress):
            return None
        if isinstance(prog, KolTaskProgress):
            done, total, status, updated = (
                prog.kols_done,
                prog.kols_total,
                prog.status,
                prog.updated_at,
            )
            details = {
                "pages": prog.pages,
                "rows": prog.rows,
                "api_calls": prog.api_calls,
                "cache_hits": prog.cache_hits,
                "estimated_cost": prog.estimated_cost,
                "error": prog.error,
            }
        else:
            assert isinstance(task, KolFollowingsTask)  # one of the two is there (checked above)
            done, total, status, updated, details = 0, 0, "pending", task.submitted_at, {}
        pct = 100.0 if status == "completed" else (round(100.0 * done / total, 2) if total else 0.0)
        return {
            "task_id": task_id,
            "type": "kol-followings",
            "status": status,
            "progress": {"collected": done, "target": total, "percentage": pct},
            "details": details,
            "created_at": task.submitted_at
            if isinstance(task, KolFollowingsTask)
            else prog.created_at,  # type: ignore[union-attr]  # one of the two is there
            "updated_at": updated,
        }


def router(settings: Settings, publish, view: KolTaskView, auth, created) -> APIRouter:
    """`publish` writes one record (the app's: a broker that does not answer is a 503);
    `created(task, message, estimate)` is the app's answer to a create."""
    r = APIRouter()

    @r.post(
        "/api/v1/tasks/kol-followings",
        dependencies=[Depends(auth)],
        tags=[TAG_TASKS],
        response_model=TaskCreated,
        responses={**ERRORS, **CONFLICT},
        summary="KOL following lists",
    )
    async def create_kol_followings(req: KolFollowingsRequest):
        check_body(settings, req)
        task_id = req.task_id or f"kol-{uuid.uuid4().hex[:16]}"
        handles = [] if req.handles == "all" else list(req.handles)
        if req.handles != "all" and not handles:
            return JSONResponse(
                {
                    "status": "rejected",
                    "detail": [
                        {"field": "handles", "message": 'give at least one handle, or "all"'}
                    ],
                },
                422,
            )
        try:
            task = KolFollowingsTask(
                task_id=task_id, handles=handles, limit=req.limit, submitted_at=datetime.now(UTC)
            )
        except ValidationError as e:
            return JSONResponse(
                {
                    "status": "rejected",
                    "detail": [
                        {
                            "field": ".".join(str(x) for x in err["loc"]) or None,
                            "message": err["msg"],
                        }
                        for err in e.errors()
                    ],
                },
                422,
            )
        known = view.commands.rows.get(task_id)
        if isinstance(known, KolFollowingsTask):
            if (known.handles, known.limit) != (task.handles, task.limit):
                raise HTTPException(409, f"task {task_id} exists with a different body")
            return created(
                known,
                "task already exists (idempotent resubmission)",
                kol_estimate(settings, known),
                next_execution=known.submitted_at,
            )
        await publish(Outgoing(KOL_COMMANDS, task_id, task))
        view.commands.rows[task_id] = task  # read-your-writes before the table catches up
        what = f"{len(handles)} KOL(s)" if handles else "every KOL not yet done"
        return created(
            task,
            f"fetching the followings of {what}",
            kol_estimate(settings, task),
            next_execution=task.submitted_at,
        )

    return r
