"""Scheduler: turns task commands into search jobs (slices) for the scraper."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, time, timedelta

from libs.kafka import HandlerError, Incoming, Outgoing
from libs.query import build_query
from libs.records.tasks import OnDemandTask, ScheduledTask, SearchJob, TaskControl
from libs.settings import Settings
from libs.topic_table import TopicTable
from libs.topics import SEARCH_JOBS, TASK_CONTROLS
from libs.webhooks import WebhookUrlError, check_url

from .limits import FieldError, check_body

log = logging.getLogger(__name__)

SERVICE = "scheduler"


def search_query(keyword: str, start: datetime, end: datetime) -> str:
    """The query of a plain keyword slice (no filters)."""
    return build_query(keyword, None, start, end)


def day_slices(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """The window cut at UTC midnights: one slice per calendar day it touches."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    cuts = [start]
    t = datetime.combine(start.date(), time.min, UTC) + timedelta(days=1)
    while t < end:
        cuts.append(t)
        t += timedelta(days=1)
    cuts.append(end)
    return list(zip(cuts, cuts[1:]))


def jobs_for(task: OnDemandTask) -> list[SearchJob]:
    """One search job per day of the window. Slices run in parallel (on different accounts,
    and different scraper replicas: search-jobs is keyed by task/slice); the task's target
    stops them all once reached. The slice id is the slice's start, so it is the same
    whenever the command is replayed. A user operation (a profile, a post's retweeters) has no
    window: it is one slice that pages X's list by cursor."""
    if task.operation != "SearchTimeline":
        return [
            SearchJob(
                task_id=task.task_id,
                slice_id="u0",
                slice_count=1,
                keyword=task.keyword,
                query=task.target or "",
                operation=task.operation,
                priority=task.priority,
                required_count=task.required_count,
                start_time=task.start_time,
                end_time=task.end_time,
                account_tag=task.account_tag,
            )
        ]
    slices = day_slices(task.start_time, task.end_time)
    return [
        SearchJob(
            task_id=task.task_id,
            slice_id=f"d{s:%Y%m%dT%H%M%S}",
            slice_count=len(slices),
            keyword=task.keyword,
            query=build_query(task.keyword, task.filters, s, e),
            product=task.filters.tab if task.filters else "Latest",
            priority=task.priority,
            required_count=task.required_count,
            start_time=s,
            end_time=e,
            download_video=task.download_video,
            account_tag=task.account_tag,
        )
        for s, e in slices
    ]


def make_handler(settings: Settings, controls: TopicTable | None = None):
    """The scheduler's handler. Commands published straight onto the topic get the gateway's
    checks too, and a record's key must be its task_id. A refused command is dead-lettered
    with the reason (rejections.py turns that into the task's `rejected` status). A command
    accepted after a rejection (redriven once its webhook host was allowed, or published
    again fixed) makes the task active again (`controls`: task-controls' view)."""

    def rejected_before(task_id: str) -> bool:
        c = controls.rows.get(task_id) if controls is not None else None
        return isinstance(c, TaskControl) and c.state == "rejected"

    async def refusal(inc: Incoming) -> str | None:
        task = inc.record
        if not isinstance(task, (OnDemandTask, ScheduledTask)):
            return None  # schedule() dead-letters it
        if inc.key != task.task_id:
            return (
                f"record key {inc.key!r} differs from task_id {task.task_id!r}: "
                "publish each task under its own task_id"
            )
        try:  # the gateway's bounds: no window of millions of search jobs
            check_body(settings, task)
        except FieldError as e:
            return str(e)
        if task.callback_url:
            try:
                await asyncio.to_thread(check_url, task.callback_url, settings.webhook_allow_hosts)
            except WebhookUrlError as e:
                return f"callback_url: {e}"
        return None

    async def handle(batch: list[Incoming]) -> list[Outgoing]:
        accepted, outs = [], []
        for inc in batch:
            reason = await refusal(inc)
            if reason is None:
                accepted.append(inc)
                if rejected_before(inc.key):
                    outs.append(
                        Outgoing(
                            TASK_CONTROLS,
                            inc.key,
                            TaskControl(
                                task_id=inc.key, state="active", updated_at=datetime.now(UTC)
                            ),
                        )
                    )
                continue
            log.warning(
                "scheduler rejects %s[%d]@%d: %s", inc.topic, inc.partition, inc.offset, reason
            )
            outs.append(inc.dead_letter(SERVICE, reason))
        return outs + await schedule(accepted)

    return handle


async def schedule(batch: list[Incoming]) -> list[Outgoing]:
    outs: list[Outgoing] = []
    for inc in batch:
        task = inc.record
        if isinstance(task, ScheduledTask):
            continue  # its runs come back as on-demand tasks (schedules.ScheduleRunner)
        if not isinstance(task, OnDemandTask):
            raise HandlerError(f"unexpected record {type(task).__name__}")
        outs.extend(Outgoing(SEARCH_JOBS, f"{j.task_id}/{j.slice_id}", j) for j in jobs_for(task))
    return outs
