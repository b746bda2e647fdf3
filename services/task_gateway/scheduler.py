"""Scheduler: turns task commands into search jobs (slices) for the scraper."""

from __future__ import annotations

from datetime import datetime, timezone

from libs.kafka import HandlerError, Incoming, Outgoing
from libs.records.tasks import OnDemandTask, SearchJob
from libs.topics import SEARCH_JOBS

SERVICE = "scheduler"


def x_time(t: datetime) -> str:
    """X's advanced-search time operand: since:2026-11-01_00:00:00_UTC."""
    return t.astimezone(timezone.utc).strftime("%Y-%m-%d_%H:%M:%S_UTC")


def search_query(keyword: str, start: datetime, end: datetime) -> str:
    return f"{keyword} since:{x_time(start)} until:{x_time(end)}"


def jobs_for(task: OnDemandTask) -> list[SearchJob]:
    return [SearchJob(
        task_id=task.task_id, slice_id="s0", slice_count=1, keyword=task.keyword,
        query=search_query(task.keyword, task.start_time, task.end_time),
        priority=task.priority, required_count=task.required_count,
        start_time=task.start_time, end_time=task.end_time, download_video=task.download_video,
    )]


async def handle(batch: list[Incoming]) -> list[Outgoing]:
    outs: list[Outgoing] = []
    for inc in batch:
        task = inc.record
        if not isinstance(task, OnDemandTask):
            raise HandlerError(f"unexpected record {type(task).__name__}")
        outs.extend(Outgoing(SEARCH_JOBS, j.task_id, j) for j in jobs_for(task))
    return outs
