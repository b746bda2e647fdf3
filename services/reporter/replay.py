"""`xget reports replay`: hand every report the reporter dead-lettered back to it.

The dead-letter topic keeps what failed and why; replay reads it and publishes a ReportsReplay
command per (task, batch) on report-controls. The reporter that owns the task sends the batch
again with its original batch id (Idempotency-Key) if it is still dead, and ignores the
command otherwise, so running replay twice delivers nothing twice.
"""

from __future__ import annotations

from datetime import UTC, datetime

from libs.kafka import Outgoing, Producer
from libs.records.dead_letter import DeadLetter
from libs.records.reports import ReportsReplay, WebhookReport
from libs.settings import Settings
from libs.topics import REPORT_CONTROLS
from services.dead_letters import dead_letters


def is_dead_report(letter: DeadLetter) -> bool:
    """A webhook report the reporter gave up on (its batch lives in ClickHouse, not on a
    topic: the dead letter's offset is the batch number)."""
    return (
        letter.service == "reporter"
        and letter.schema_header == WebhookReport.schema_id()
        and bool(letter.key)
    )


def replay_command(task_id: str, batch_no: int) -> Outgoing:
    """What hands a dead report back to the reporter that owns its task."""
    return Outgoing(
        REPORT_CONTROLS,
        task_id,
        ReportsReplay(task_id=task_id, batch_no=batch_no, requested_at=datetime.now(UTC)),
    )


async def dead_reports(settings: Settings, task_id: str | None = None) -> list[tuple[str, int]]:
    """(task_id, batch_no) of every report on the dead-letter topic, in first-seen order."""
    seen: dict[tuple[str, int], None] = {}
    async for found in dead_letters(settings, service="reporter"):
        rec = found.letter
        if is_dead_report(rec) and rec.key is not None and task_id in (None, rec.key):
            seen.setdefault((rec.key, rec.offset), None)
    return list(seen)


async def replay_dead_reports(settings: Settings, task_id: str | None = None) -> int:
    found = await dead_reports(settings, task_id)
    if not found:
        return 0
    producer = await Producer(settings, "xget-reports-replay").start()
    try:
        await producer.send_all([replay_command(t, n) for t, n in found])
    finally:
        await producer.stop()
    return len(found)
