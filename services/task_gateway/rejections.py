"""A task command refused at any stage becomes a durable `rejected` status.

The scheduler dead-letters every task command it does not schedule: one it cannot decode or
validate (dead-lettered by the consumer loop before the handler sees it), one whose key is not
its task_id, one the gateway's checks refuse (a private callback_url). This consumer of the
dead-letter topic turns each such dead letter into a `rejected` TaskControl under the
record's key, with the dead letter's error as the reason. task-controls is compacted, so the
task's status says `rejected` for its life, and the gateway never reads the dead-letter topic
(30 days of every service's failures) to answer for a task.

A rejection older than the task's control in force is not applied: the dead letters of a
command that was later redriven and accepted (the scheduler then made the task active again)
must not reject it again when this group reads the topic from its start.
"""

from __future__ import annotations

from libs.kafka import Incoming, Outgoing
from libs.records.dead_letter import DeadLetter
from libs.records.tasks import TaskControl
from libs.settings import Settings
from libs.topic_table import TopicTable
from libs.topics import TASK_COMMANDS, TASK_CONTROLS, topic_name

from .declaration import REJECTIONS
from .scheduler import SERVICE as SCHEDULER

SERVICE = REJECTIONS.name


def make_handler(settings: Settings, controls: TopicTable):
    commands = topic_name(TASK_COMMANDS, settings.topic_prefix)

    async def handle(batch: list[Incoming]) -> list[Outgoing]:
        outs = []
        for inc in batch:
            d = inc.record
            if not (
                isinstance(d, DeadLetter)
                and d.service == SCHEDULER
                and d.source_topic == commands
                and d.key
            ):
                continue
            ctl = controls.rows.get(d.key)
            if isinstance(ctl, TaskControl) and ctl.updated_at >= d.failed_at:
                continue  # decided since (accepted after a redrive, or rejected already)
            rejected = TaskControl(
                task_id=d.key, state="rejected", reason=d.error, updated_at=d.failed_at
            )
            controls.rows[d.key] = rejected  # the next record of this batch sees it
            outs.append(Outgoing(TASK_CONTROLS, d.key, rejected))
        return outs

    return handle
