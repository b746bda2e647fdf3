"""Scheduled tasks: when each run fires, what window it searches, and the timer that fires them.

Run n of a task fires at `anchor + n × interval` (interval = period / frequency_count, so runs
are spread evenly; a PATCH of frequency/frequency_count re-plans the runs not yet fired, see
Plan) and searches [previous run's fire time, its own fire time): each run asks X
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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from libs.kafka import Outgoing, Producer
from libs.records.tasks import OnDemandTask, ScheduledTask, ScheduleState, TaskControl
from libs.settings import Settings
from libs.topic_table import TopicTable
from libs.topics import SCHEDULE_STATE, TASK_COMMANDS

from .schedule_owner import ScheduleOwnership

log = logging.getLogger(__name__)

PERIOD_S = {"hourly": 3600, "daily": 86400, "weekly": 7 * 86400}
MAX_CATCH_UP = 1000  # runs fired per task per tick at most (a long outage catches up gradually)


@dataclass(frozen=True)
class Plan:
    """When runs fire: run n fires at base_time + (n - base_run) × period / frequency_count.
    A task starts on (its frequency, run 0 at submitted_at); a frequency change re-anchors on
    the last run fired, so runs already fired keep their times and windows and the next run's
    window starts exactly where the last one ended."""

    frequency: str
    frequency_count: int
    base_run: int
    base_time: datetime

    @classmethod
    def of(cls, task: ScheduledTask, state: ScheduleState | None = None) -> Plan:
        if state is None or state.frequency is None or state.frequency_count is None:
            return cls(task.frequency, task.frequency_count, 0, task.submitted_at)
        return cls(
            state.frequency,
            state.frequency_count,
            state.base_run,
            state.base_time or task.submitted_at,
        )

    def interval(self, scale: float = 1.0) -> timedelta:
        return timedelta(seconds=PERIOD_S[self.frequency] * scale / self.frequency_count)

    def fire_time(self, n: int, scale: float = 1.0) -> datetime:
        return self.base_time + (n - self.base_run) * self.interval(scale)

    def due_runs(self, now: datetime, scale: float = 1.0) -> int:
        """How many runs should have fired by `now` (run n fires at fire_time(n))."""
        if now < self.base_time:
            return self.base_run
        return self.base_run + math.floor((now - self.base_time) / self.interval(scale)) + 1

    def replanned(
        self, frequency: str, frequency_count: int, last_run: int, scale: float = 1.0
    ) -> Plan:
        """The plan after a change made when `last_run` was the last run fired."""
        if last_run < 0:  # nothing fired yet: the new frequency from the submission on
            return Plan(frequency, frequency_count, self.base_run, self.base_time)
        return Plan(frequency, frequency_count, last_run, self.fire_time(last_run, scale))


def interval(task: ScheduledTask, scale: float = 1.0) -> timedelta:
    return Plan.of(task).interval(scale)


def fire_time(task: ScheduledTask, n: int, scale: float = 1.0) -> datetime:
    return Plan.of(task).fire_time(n, scale)


def due_runs(task: ScheduledTask, now: datetime, scale: float = 1.0) -> int:
    return Plan.of(task).due_runs(now, scale)


def run_id(task_id: str, n: int) -> str:
    return f"{task_id}-r{n + 1:04d}"


def run_task(
    task: ScheduledTask, n: int, scale: float = 1.0, plan: Plan | None = None
) -> OnDemandTask:
    """Run n: the window since the previous run's fire time up to its own."""
    plan = plan or Plan.of(task)
    end = plan.fire_time(n, scale)
    start = plan.fire_time(n - 1, scale) if n > plan.base_run else end - plan.interval(scale)
    return OnDemandTask(
        task_id=run_id(task.task_id, n),
        keyword=task.keyword,
        priority=task.priority,
        required_count=0,
        start_time=start,
        end_time=end,
        callback_url=task.callback_url,
        filters=task.filters,
        download_video=task.download_video,
        submitted_at=end,
        account_tag=task.account_tag,
    )


class ScheduleRunner:
    """Fires due runs of the active scheduled tasks this replica owns (schedule_owner: one
    owner per task however many gateway replicas run)."""

    def __init__(
        self, settings: Settings, producer: Producer, commands: TopicTable, controls: TopicTable
    ):
        self.settings = settings
        self.producer = producer
        self.commands = commands
        self.controls = controls
        self.state = TopicTable(settings, SCHEDULE_STATE)
        self._stop = asyncio.Event()
        self._firing = asyncio.Lock()  # held while a tick fires; a handover waits for it
        self.ownership = ScheduleOwnership(settings, self._state_caught_up, self._firing)
        self.fired = 0

    def owns(self, task_id: str) -> bool:
        return self.ownership.owns(task_id)

    async def _state_caught_up(self, ends) -> None:
        """Until the schedule-state view has read every record below `ends` (a new owner
        continues from the last run the previous one recorded)."""
        await self.state.wait_caught_up(60)
        if not await self.state.wait_for(lambda: self.state.reached(ends), 60):
            raise TimeoutError(f"schedule-state view did not reach {ends} in 60 s")

    def stop(self) -> None:
        self._stop.set()

    def last_run(self, task_id: str) -> int:
        s = self.state.rows.get(task_id)
        return s.last_run if isinstance(s, ScheduleState) else -1

    def plan(self, task: ScheduledTask) -> Plan:
        s = self.state.rows.get(task.task_id)
        return Plan.of(task, s if isinstance(s, ScheduleState) else None)

    def pending_plan(self, task: ScheduledTask) -> Plan:
        """The plan including a frequency change the timer has not applied yet."""
        plan, last = self.plan(task), self.last_run(task.task_id)
        ctl = self.controls.rows.get(task.task_id)
        if isinstance(ctl, TaskControl) and (ctl.frequency or ctl.frequency_count):
            freq = ctl.frequency or plan.frequency
            count = ctl.frequency_count or plan.frequency_count
            if (freq, count) != (plan.frequency, plan.frequency_count):
                plan = plan.replanned(freq, count, last, self.settings.schedule_time_scale)
        return plan

    def next_execution(self, task: ScheduledTask) -> datetime:
        return self.pending_plan(task).fire_time(
            self.last_run(task.task_id) + 1, self.settings.schedule_time_scale
        )

    async def run(self) -> None:
        await self.state.start()
        await self.state.wait_caught_up()
        try:
            await self.ownership.start()
            while not self._stop.is_set():
                try:
                    async with self._firing:
                        await self.tick(datetime.now(UTC))
                except Exception:
                    log.exception("schedule tick failed; retrying")
                stopped = asyncio.ensure_future(self._stop.wait())
                polled = asyncio.ensure_future(self.ownership.poll(self.settings.schedule_tick_s))
                await asyncio.wait({stopped, polled}, return_when=asyncio.FIRST_COMPLETED)
                stopped.cancel()
                if not polled.done():
                    polled.cancel()
                await asyncio.gather(polled, return_exceptions=True)
        finally:
            await self.ownership.stop()
            await self.state.stop()

    async def tick(self, now: datetime) -> None:
        scale = self.settings.schedule_time_scale
        for task in [
            t
            for k, t in self.commands.rows.items()
            if isinstance(t, ScheduledTask) and t.task_id == k and self.owns(k)
        ]:
            ctl = self.controls.rows.get(task.task_id)
            if isinstance(ctl, TaskControl) and ctl.state != "active":
                continue
            last = self.last_run(task.task_id)
            plan = await self._apply_change(task, last, now)
            due = min(plan.due_runs(now, scale), last + 1 + MAX_CATCH_UP)
            for n in range(last + 1, due):
                run = run_task(task, n, scale, plan)
                await self.producer.send_and_wait(Outgoing(TASK_COMMANDS, run.task_id, run))
                st = self._state(task, plan, n, now)
                await self.producer.send_and_wait(Outgoing(SCHEDULE_STATE, task.task_id, st))
                self.state.rows[task.task_id] = st
                self.fired += 1
                log.info(
                    "scheduled task %s: run %d fired (%s .. %s)",
                    task.task_id,
                    n + 1,
                    run.start_time.isoformat(),
                    run.end_time.isoformat(),
                )

    @staticmethod
    def _state(task: ScheduledTask, plan: Plan, last_run: int, now: datetime) -> ScheduleState:
        changed = (plan.frequency, plan.frequency_count, plan.base_run, plan.base_time) != (
            task.frequency,
            task.frequency_count,
            0,
            task.submitted_at,
        )
        return ScheduleState(
            task_id=task.task_id,
            last_run=last_run,
            updated_at=now,
            **(
                {
                    "frequency": plan.frequency,
                    "frequency_count": plan.frequency_count,
                    "base_run": plan.base_run,
                    "base_time": plan.base_time,
                }
                if changed
                else {}
            ),
        )

    async def _apply_change(self, task: ScheduledTask, last: int, now: datetime) -> Plan:
        """Re-plan when the client changed the frequency (task-controls). This runner is the
        only writer of schedule-state, so the change is anchored on the run it last fired, and
        the new plan is stored before any run follows it (a restart keeps it)."""
        plan = self.plan(task)
        new = self.pending_plan(task)
        if new == plan:
            return plan
        plan = new
        st = self._state(task, plan, last, now)
        await self.producer.send_and_wait(Outgoing(SCHEDULE_STATE, task.task_id, st))
        self.state.rows[task.task_id] = st
        log.info(
            "scheduled task %s: re-planned to %d x %s after run %d",
            task.task_id,
            plan.frequency_count,
            plan.frequency,
            last + 1,
        )
        return plan
