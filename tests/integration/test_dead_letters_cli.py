"""`xget dead-letters list|show|redrive` as an operator runs it, against the real broker: a
command the scheduler refused (its webhook host was not allowed yet) is listed and shown in
full, and once the host is allowed a redrive hands it back to the scheduler, which schedules
it; a second redrive publishes nothing."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

from infra.service_process import REPO, settings_env
from libs.kafka import ConsumerLoop, Outgoing, Producer, scan_partition
from libs.records.dead_letter import DeadLetter
from libs.records.reports import ReportsReplay, WebhookReport
from libs.records.tasks import SearchJob, TaskControl
from libs.topic_table import TopicTable
from libs.topics import DEAD_LETTERS, REPORT_CONTROLS, SEARCH_JOBS, TASK_COMMANDS, TASK_CONTROLS
from services.task_gateway import rejections, scheduler
from tests.e2e.harness import fresh_prefix

from .test_task_commands import command, publish


def xget(settings, *args: str) -> str:
    """Run `xget ARGS` in a process of its own, configured by XGET_* variables; its stdout."""
    env = {**os.environ, **settings_env(settings), "PYTHONPATH": str(REPO)}
    r = subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, f"xget {' '.join(args)}: {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


async def run_scheduler(settings, until, timeout: float = 30) -> None:
    """The gateway's scheduler and its rejections consumer until `until()` holds."""
    producer = await Producer(settings).start()
    controls = await TopicTable(settings, TASK_CONTROLS).start()
    await controls.wait_caught_up()
    loops = [
        ConsumerLoop(
            settings,
            scheduler.SERVICE,
            [TASK_COMMANDS],
            scheduler.make_handler(settings, controls),
            producer,
        ),
        ConsumerLoop(
            settings,
            rejections.SERVICE,
            [DEAD_LETTERS],
            rejections.make_handler(settings, controls),
            producer,
        ),
    ]
    runners = [asyncio.create_task(loop.run()) for loop in loops]
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while not await until():
            assert asyncio.get_running_loop().time() < deadline, "scheduler never got there"
            assert not any(r.done() for r in runners), runners
            await asyncio.sleep(0.2)
    finally:
        for loop in loops:
            loop.stop()
        await asyncio.gather(*runners)
        await controls.stop()
        await producer.stop()


async def table(settings, spec) -> dict:
    t = await TopicTable(settings, spec).start()
    await t.wait_caught_up()
    await t.stop()
    return t.rows


async def commands_under(settings, key: str) -> int:
    n = 0
    for p in range(TASK_COMMANDS.partitions):
        async for msg, _ in scan_partition(settings, TASK_COMMANDS, p, 0):
            n += msg.key == key.encode()
    return n


async def test_dead_letter_listed_shown_and_redriven_once(noida):
    settings = noida.settings(topic_prefix=fresh_prefix(noida.bootstrap))
    task_id = f"hook-{uuid.uuid4().hex[:6]}"
    before = datetime.now(UTC) - timedelta(seconds=1)
    await publish(settings, task_id, command(task_id, callback_url="http://10.0.0.7/hook"))

    async def state() -> str | None:
        ctl = (await table(settings, TASK_CONTROLS)).get(task_id)
        return ctl.state if isinstance(ctl, TaskControl) else None

    async def rejected() -> bool:
        return await state() == "rejected"

    await run_scheduler(settings, rejected)

    # list: a table with the dead letter's coordinates, filtered by service and time
    out = await asyncio.to_thread(
        xget,
        settings,
        "dead-letters",
        "list",
        "--service",
        "scheduler",
        "--since",
        before.isoformat(),
    )
    header, *rows = out.strip().splitlines()
    assert header.split()[:6] == [
        "ID",
        "SERVICE",
        "SOURCE",
        "PARTITION/OFFSET",
        "KEY",
        "FAILED_AT",
    ], out
    assert len(rows) == 1, out
    dl_id, service, source, coords, key, _failed_at, *error = rows[0].split()
    assert (service, source, key) == (
        "scheduler",
        settings.topic_prefix + "task-commands",
        task_id,
    ), rows
    assert coords.endswith("/0") and "callback_url:" in error, rows
    for other in (
        ("--service", "parser"),
        ("--since", (datetime.now(UTC) + timedelta(hours=1)).isoformat()),
    ):
        out = await asyncio.to_thread(xget, settings, "dead-letters", "list", *other)
        assert len(out.strip().splitlines()) == 1, out  # the header only

    # show: the whole record, headers included
    out = await asyncio.to_thread(xget, settings, "dead-letters", "show", dl_id)
    assert f"id:            {dl_id}" in out and "10.0.0.7" in out, out
    assert "header xget-schema: xget.OnDemandTask/v" in out, out
    assert f'"task_id": "{task_id}"' in out, out  # the original value

    # The operator allows the host; a redrive hands the command back to the scheduler.
    allowed = settings.model_copy(update={"webhook_allow_hosts": "10.0.0.7"})
    out = await asyncio.to_thread(
        xget,
        allowed,
        "dead-letters",
        "redrive",
        "--service",
        "scheduler",
        "--since",
        before.isoformat(),
    )
    assert f"redriven {dl_id}" in out and "1 redriven, 0 already" in out, out

    async def scheduled() -> bool:  # and no longer rejected
        jobs = await table(settings, SEARCH_JOBS)
        return (
            any(isinstance(j, SearchJob) and j.task_id == task_id for j in jobs.values())
            and await state() == "active"
        )

    await run_scheduler(allowed, scheduled)
    assert await commands_under(settings, task_id) == 2  # the original and one redrive

    # Twice is once: nothing more is published.
    out = await asyncio.to_thread(xget, allowed, "dead-letters", "redrive", dl_id)
    assert "0 redriven, 1 already redriven before" in out, out
    assert await commands_under(settings, task_id) == 2


async def test_dead_report_redrive_is_a_replay_and_unknown_sources_are_refused(noida):
    """A webhook report's dead letter has no source topic (its batch is in ClickHouse):
    redrive asks the reporter to send the batch again, as `xget reports replay` does. A dead
    letter naming no catalogue topic is refused, never published on a topic made up."""
    settings = noida.settings(topic_prefix=fresh_prefix(noida.bootstrap))
    now = datetime.now(UTC)
    report = DeadLetter(
        service="reporter",
        source_topic="report_batches",
        partition=0,
        offset=7,
        key="od-1",
        value="{}",
        error="webhook answered 500",
        schema_header=WebhookReport.schema_id(),
        failed_at=now,
    )
    stray = DeadLetter(
        service="parser",
        source_topic="no-such-topic",
        partition=0,
        offset=0,
        key="k",
        value="{}",
        error="?",
        failed_at=now,
    )
    producer = await Producer(settings).start()
    try:
        await producer.send_all(
            [Outgoing(DEAD_LETTERS, "od-1", report), Outgoing(DEAD_LETTERS, "k", stray)]
        )
    finally:
        await producer.stop()
    out = await asyncio.to_thread(
        xget, settings, "dead-letters", "redrive", "--since", "1970-01-01"
    )
    assert "1 redriven, 0 already redriven before, 1 refused" in out, out
    assert "no-such-topic is no topic of the catalogue" in out, out
    replays = [
        r for r in (await table(settings, REPORT_CONTROLS)).values() if isinstance(r, ReportsReplay)
    ]
    assert [(r.task_id, r.batch_no) for r in replays] == [("od-1", 7)]
    assert f"{settings.topic_prefix}report-controls/" in out, out
