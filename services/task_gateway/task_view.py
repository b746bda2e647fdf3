"""The gateway's read model of tasks, rebuilt from Kafka (commands, counter progress, and the
account-manager's word on tasks waiting for an account)."""

from __future__ import annotations

from libs.kafka import TopicTable
from libs.records.accounts import TaskAccountWait
from libs.records.tasks import OnDemandTask, TaskProgress
from libs.settings import Settings
from libs.topics import TASK_ACCOUNT_WAITS, TASK_COMMANDS, TASK_PROGRESS


class TaskView:
    def __init__(self, settings: Settings):
        self.commands = TopicTable(settings, TASK_COMMANDS)
        self.progress = TopicTable(settings, TASK_PROGRESS)
        self.account_waits = TopicTable(settings, TASK_ACCOUNT_WAITS)

    async def start(self) -> None:
        await self.commands.start()
        await self.progress.start()
        await self.account_waits.start()
        await self.commands.wait_caught_up()
        await self.progress.wait_caught_up()
        await self.account_waits.wait_caught_up()

    async def stop(self) -> None:
        await self.commands.stop()
        await self.progress.stop()
        await self.account_waits.stop()

    def waiting_for_accounts(self, task_id: str) -> dict | None:
        """{'message': 'waiting for accounts', 'until': earliest free time} while it waits."""
        w = self.account_waits.rows.get(task_id)
        if not isinstance(w, TaskAccountWait) or not w.waiting:
            return None
        return {"message": w.reason or "waiting for accounts", "until": w.earliest_free_at,
                "operation": w.operation}

    def task(self, task_id: str) -> OnDemandTask | None:
        t = self.commands.rows.get(task_id)
        return t if isinstance(t, OnDemandTask) else None

    def status(self, task_id: str) -> dict | None:
        task = self.task(task_id)
        prog = self.progress.rows.get(task_id)
        if task is None and prog is None:
            return None
        if isinstance(prog, TaskProgress):
            status, collected, updated = prog.status, prog.collected, prog.updated_at
            target = prog.target
        else:
            status, collected, updated = "pending", 0, task.submitted_at  # type: ignore[union-attr]
            target = task.required_count  # type: ignore[union-attr]
        if status == "completed":
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
            "updated_at": updated,
        }
        if status != "completed" and (waiting := self.waiting_for_accounts(task_id)):
            out["waiting_for_accounts"] = waiting  # no account free: when one will be
        return out
