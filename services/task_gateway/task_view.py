"""The gateway's read model of tasks, rebuilt from Kafka (commands, counter progress, and the
account-manager's word on tasks waiting for an account)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import TYPE_CHECKING

from libs.records.accounts import AccountState, TaskAccountWait
from libs.records.tasks import OnDemandTask, ScheduledTask, TaskControl, TaskProgress
from libs.settings import Settings
from libs.topic_table import TopicTable
from libs.topics import (
    ACCOUNT_STATE,
    TASK_ACCOUNT_WAITS,
    TASK_COMMANDS,
    TASK_CONTROLS,
    TASK_PROGRESS,
)

from .estimate import Capacity, capacity, requests_for
from .schedules import run_id

if TYPE_CHECKING:
    from .schedules import ScheduleRunner


class TaskView:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.commands = TopicTable(settings, TASK_COMMANDS)
        self.progress = TopicTable(settings, TASK_PROGRESS, on_record=self._progress_seen)
        # task id -> the first progress this view read (its started_at): after the compacted
        # topic dropped the earliest records, the earliest one kept.
        self.started: dict[str, datetime] = {}
        self.account_waits = TopicTable(settings, TASK_ACCOUNT_WAITS)
        self.controls = TopicTable(settings, TASK_CONTROLS)
        self.accounts = TopicTable(settings, ACCOUNT_STATE)  # for estimates: the pool's size
        # A command refused at any stage is a `rejected` control (rejections.py).
        # The ScheduleRunner, once the gateway wires it (next runs).
        self.schedules: ScheduleRunner | None = None

    def _progress_seen(self, task_id: str | None, rec) -> None:
        at = getattr(rec, "updated_at", None)
        if task_id is not None and at is not None and getattr(rec, "status", None) != "pending":
            self.started.setdefault(task_id, at)

    def _tables(self) -> list[TopicTable]:
        return [self.commands, self.progress, self.account_waits, self.controls, self.accounts]

    def capacity(self, task: OnDemandTask, now: datetime | None = None) -> Capacity:
        """The pool's budget for the task's operation now, and the requests of the tasks
        queued ahead of it (same operation and account tag, priority at least as high,
        submitted before it, not finished)."""
        c = capacity(
            self.settings,
            (a for a in self.accounts.rows.values() if isinstance(a, AccountState)),
            task.operation,
            task.account_tag,
            now,
        )
        for other in self.commands.rows.values():
            if (
                not isinstance(other, OnDemandTask)
                or other.task_id == task.task_id
                or other.operation != task.operation
                or other.account_tag != task.account_tag
                or other.priority > task.priority
                or other.submitted_at > task.submitted_at
            ):
                continue
            ctl = self.control(other.task_id)
            if ctl is not None and ctl.state in ("cancelled", "rejected"):
                continue
            prog = self.progress.rows.get(other.task_id)
            if isinstance(prog, TaskProgress) and prog.status == "completed":
                continue
            posts, requests = requests_for(self.settings, other)
            done = prog.collected if isinstance(prog, TaskProgress) else 0
            c.ahead += math.ceil(requests * max(0.0, 1 - done / posts)) if posts else requests
        return c

    def active_accounts(self) -> int:
        return sum(
            1
            for a in self.accounts.rows.values()
            if isinstance(a, AccountState) and a.status == "active" and not a.removed
        )

    async def start(self) -> None:
        for t in self._tables():
            await t.start()
        for t in self._tables():
            await t.wait_caught_up()

    async def stop(self) -> None:
        for t in self._tables():
            await t.stop()

    def control(self, task_id: str) -> TaskControl | None:
        c = self.controls.rows.get(task_id)
        return c if isinstance(c, TaskControl) else None

    def task_ids(self) -> list[str]:
        ids = {
            k
            for k, v in self.commands.rows.items()
            if isinstance(v, (OnDemandTask, ScheduledTask)) and v.task_id == k
        }
        refused = {
            k
            for k, c in self.controls.rows.items()
            if isinstance(c, TaskControl) and c.state == "rejected"
        }
        return sorted(ids | refused)

    def _command(self, task_id: str):
        """The task's command, if its record was published under its own task_id (a record
        under another key is no task: the scheduler rejects it under that key)."""
        t = self.commands.rows.get(task_id)
        return t if getattr(t, "task_id", None) == task_id else None

    def scheduled(self, task_id: str) -> ScheduledTask | None:
        t = self._command(task_id)
        return t if isinstance(t, ScheduledTask) else None

    def rejection(self, task_id: str) -> dict | None:
        """The status of a command the scheduler refused (rejected control), else None."""
        ctl = self.control(task_id)
        if ctl is None or ctl.state != "rejected":
            return None
        task = self._command(task_id)
        return {
            "task_id": task_id,
            "status": "rejected",
            "reason": ctl.reason,
            "progress": {"collected": 0, "target": 0, "percentage": 0.0},
            "created_at": task.submitted_at if task else ctl.updated_at,
            "updated_at": ctl.updated_at,
        }

    def scheduled_status(self, task: ScheduledTask) -> dict:
        ctl = self.control(task.task_id)
        state = ctl.state if ctl else "active"
        runs = self.schedules.last_run(task.task_id) + 1 if self.schedules else 0
        out = {
            "task_id": task.task_id,
            "type": "scheduled",
            "status": {"active": "scheduled"}.get(state, state),
            "runs_fired": runs,
            "run_task_ids": [run_id(task.task_id, n) for n in range(runs)],
            "next_execution": (
                self.schedules.next_execution(task)
                if self.schedules and state == "active"
                else None
            ),
            "progress": {
                "collected": sum(
                    p.collected
                    for n in range(runs)
                    if isinstance(
                        p := self.progress.rows.get(run_id(task.task_id, n)), TaskProgress
                    )
                ),
                "target": 0,
                "percentage": 0.0,
            },
            "created_at": task.submitted_at,
            "updated_at": ctl.updated_at if ctl else task.submitted_at,
        }
        if self.schedules:  # the frequency in force (a PATCH may have changed it)
            plan = self.schedules.pending_plan(task)
            out.update(frequency=plan.frequency, frequency_count=plan.frequency_count)
        if ctl and ctl.reason:
            out["reason"] = ctl.reason
        return out

    def waiting_for_accounts(self, task_id: str) -> dict | None:
        """{'message': 'waiting for accounts', 'until': earliest free time} while it waits."""
        w = self.account_waits.rows.get(task_id)
        if not isinstance(w, TaskAccountWait) or not w.waiting:
            return None
        return {
            "message": w.reason or "waiting for accounts",
            "until": w.earliest_free_at,
            "operation": w.operation,
        }

    def task(self, task_id: str) -> OnDemandTask | None:
        t = self._command(task_id)
        return t if isinstance(t, OnDemandTask) else None

    def status(self, task_id: str) -> dict | None:
        refused = self.rejection(task_id)
        if refused is not None:
            return refused
        sched = self.scheduled(task_id)
        if sched is not None:
            return self.scheduled_status(sched)
        task = self.task(task_id)
        prog = self.progress.rows.get(task_id)
        if task is None and prog is None:
            return None
        status: str  # the view's statuses are more than progress's running/completed
        if isinstance(prog, TaskProgress):
            status, collected, updated = prog.status, prog.collected, prog.updated_at
            target = prog.target
        else:
            assert task is not None  # no progress yet: the command is there (checked above)
            status, collected, updated = "pending", 0, task.submitted_at
            target = task.required_count
        reason = None
        if status == "completed" and isinstance(prog, TaskProgress) and prog.end_reason == "failed":
            status, reason = "failed", "every slice failed (X kept refusing; see dead letters)"
        ctl = self.control(task_id)
        if ctl is not None and ctl.state == "cancelled":
            status, reason = "cancelled", ctl.reason
        elif ctl is not None and ctl.state == "paused" and status != "completed":
            status, reason = "paused", ctl.reason
        elif status in ("pending", "running") and self.waiting_for_accounts(task_id):
            status = "waiting_for_accounts"
        if status in ("completed", "failed"):
            pct = 100.0
        elif target:
            pct = round(min(100.0, 100.0 * collected / target), 2)
        else:
            pct = 0.0
        out = {
            "task_id": task_id,
            "status": status,
            "progress": {"collected": collected, "target": target, "percentage": pct},
            "created_at": task.submitted_at if task else None,
            "updated_at": max(updated, ctl.updated_at) if ctl else updated,
        }
        if reason:
            out["reason"] = reason
        if status not in ("completed", "cancelled") and (
            waiting := self.waiting_for_accounts(task_id)
        ):
            out["waiting_for_accounts"] = waiting  # no account free: when one will be
        return out
