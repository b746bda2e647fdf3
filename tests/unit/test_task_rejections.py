"""The gateway's task-rejections consumer: which scheduler dead letters become a task's
`rejected` status (services/task_gateway/rejections.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from libs.kafka import Incoming
from libs.records.dead_letter import DeadLetter
from libs.records.tasks import TaskControl
from libs.settings import Settings
from services.task_gateway import rejections

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def letter(
    key: str, at: datetime, service: str = "scheduler", topic: str = "p-task-commands"
) -> Incoming:
    dl = DeadLetter(
        service=service,
        source_topic=topic,
        partition=0,
        offset=0,
        key=key,
        value="{}",
        error=f"refused {key}",
        failed_at=at,
    )
    return Incoming("p-dead-letters", 0, 0, key, dl)


def handle(batch, rows):
    settings = Settings(_env_file=None, topic_prefix="p-")
    controls = SimpleNamespace(rows=rows)  # the task-controls view: key -> latest control
    return asyncio.run(rejections.make_handler(settings, controls)(batch))


def test_scheduler_dead_letters_of_task_commands_reject_their_key():
    rows: dict = {}
    outs = handle(
        [letter("a", T0), letter("b", T0, service="parser"), letter("c", T0, topic="p-posts")], rows
    )
    assert [(o.key, o.record.state, o.record.reason) for o in outs] == [
        ("a", "rejected", "refused a")
    ]
    assert outs[0].spec.name == "task-controls" and outs[0].record.updated_at == T0


def test_a_task_decided_since_is_not_rejected_again():
    """Read from the topic's start: a command redriven and accepted after its dead letter
    (the scheduler made it active) stays active; an older duplicate changes nothing."""
    accepted = TaskControl(task_id="a", state="active", updated_at=T0 + timedelta(hours=1))
    assert handle([letter("a", T0)], {"a": accepted}) == []
    rows: dict = {}
    outs = handle([letter("a", T0), letter("a", T0)], rows)
    assert len(outs) == 1 and rows["a"].state == "rejected"
    # a newer refusal of the same key replaces the reason
    later = handle([letter("a", T0 + timedelta(minutes=5))], rows)
    assert len(later) == 1 and later[0].record.updated_at == T0 + timedelta(minutes=5)
