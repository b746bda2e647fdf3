"""Scheduled tasks: when each run fires, what window it searches, and the timer that fires them.

Run n of a task fires at `anchor + n × interval` (interval = period / frequency_count, so runs
are spread evenly) and searches [previous run's fire time, its own fire time): each run asks X
only for what is newer than everything the previous run covered. A run is the on-demand task
`{task_id}-r{n+1:04d}` published on task-commands, with a deterministic body, then the
schedule-state record says it fired. A crash between the two re-publishes the same run (same id,
same slices: the scraper's page ledger makes it free), and runs missed while the gateway was
down fire when it returns, with their own windows: nothing lost, nothing fired twice.
"""

from __future__ import annotations

import asyncio
import logging
import math
from datetime import datetime, timedelta, timezone

from libs.kafka import Outgoing, Producer, TopicTable
from libs.records.tasks import OnDemandTask, ScheduledTask, ScheduleState, TaskControl
from libs.settings import Settings
from libs.topics import SCHEDULE_STATE, TASK_COMMANDS

log = logging.getLogger(__name__)

PERIOD_S = {"hourly": 3600, "daily": 86400, "weekly": 7 * 86400}
MAX_CATCH_UP = 1000  # runs fired per task per tick at most (a long outage catches up gradually)


def interval(task: ScheduledTask, scale: float = 1.0) -> timedelta:
    return timedelta(seconds=PERIOD_S[task.frequency] * scale / task.frequency_count)


def fire_time(task: ScheduledTask, n: int, scale: float = 1.0) -> datetime:
    return task.submitted_at + n * interval(task, scale)


def due_runs(task: ScheduledTask, now: datetime, scale: float = 1.0) -> int:
    """How many runs should have fired by `now` (run n fires at fire_time(n))."""
    if now < task.submitted_at:
        return 0
    return math.floor((now - task.submitted_at) / interval(task, scale)) + 1


def run_id(task_id: str, n: int) -> str:
    return f"{task_id}-r{n + 1:04d}"


def run_task(task: ScheduledTask, n: int, scale: float = 1.0) -> OnDemandTask:
    end = fire_time(task, n, scale)
    return OnDemandTask(
        task_id=run_id(task.task_id, n), keyword=task.keyword, priority=task.priority,
        required_count=0, start_time=end - interval(task, scale), end_time=end,
        callback_url=task.callback_url, filters=task.filters,
        download_video=task.download_video, submitted_at=end)


class ScheduleRunner:
    """Fires due runs of every active scheduled task (one gateway replica's timer)."""

    def __init__(self, settings: Settings, producer: Producer, commands: TopicTable,
                 controls: TopicTable):
        self.settings = settings
        self.producer = producer
        self.commands = commands
        self.controls = controls
        self.state = TopicTable(settings, SCHEDULE_STATE)
        self._stop = asyncio.Event()
        self.fired = 0

    def stop(self) -> None:
        self._stop.set()

    def last_run(self, task_id: str) -> int:
        s = self.state.rows.get(task_id)
        return s.last_run if isinstance(s, ScheduleState) else -1

    def next_execution(self, task: ScheduledTask) -> datetime:
        return fire_time(task, self.last_run(task.task_id) + 1, self.settings.schedule_time_scale)

    async def run(self) -> None:
        await self.state.start()
        await self.state.wait_caught_up()
        try:
            while not self._stop.is_set():
                try:
                    await self.tick(datetime.now(timezone.utc))
                except Exception:  # noqa: BLE001 - broker hiccup: the next tick retries
                    log.exception("schedule tick failed; retrying")
                try:
                    await asyncio.wait_for(self._stop.wait(), self.settings.schedule_tick_s)
                except asyncio.TimeoutError:
                    pass
        finally:
            await self.state.stop()

    async def tick(self, now: datetime) -> None:
        scale = self.settings.schedule_time_scale
        for task in [t for t in self.commands.rows.values() if isinstance(t, ScheduledTask)]:
            ctl = self.controls.rows.get(task.task_id)
            if isinstance(ctl, TaskControl) and ctl.state != "active":
                continue
            last = self.last_run(task.task_id)
            due = min(due_runs(task, now, scale), last + 1 + MAX_CATCH_UP)
            for n in range(last + 1, due):
                run = run_task(task, n, scale)
                await self.producer.send_and_wait(Outgoing(TASK_COMMANDS, run.task_id, run))
                st = ScheduleState(task_id=task.task_id, last_run=n, updated_at=now)
                await self.producer.send_and_wait(Outgoing(SCHEDULE_STATE, task.task_id, st))
                self.state.rows[task.task_id] = st
                self.fired += 1
                log.info("scheduled task %s: run %d fired (%s .. %s)", task.task_id, n + 1,
                         run.start_time.isoformat(), run.end_time.isoformat())
