"""task-gateway entry point: the HTTP API and the scheduler, as separate parts of one process."""

from __future__ import annotations

import asyncio
import logging

import uvicorn

from libs.kafka import ConsumerLoop
from libs.settings import Settings
from libs.topics import DEAD_LETTERS, TASK_COMMANDS
from services.runtime import clickhouse_for, run_until, started_producer

from . import rejections, scheduler
from .api import create_app
from .console_users import ConsoleUsers
from .kol_tasks import KolTaskView
from .schedules import ScheduleRunner
from .task_view import TaskView

log = logging.getLogger(__name__)


class _Api:
    def __init__(self, settings: Settings, app):
        config = uvicorn.Config(
            app,
            host=settings.gateway_host,
            port=settings.gateway_port,
            log_level="warning",
            lifespan="off",
        )
        self.server = uvicorn.Server(config)
        self.server.install_signal_handlers = lambda: None  # the process owns signals

    async def run(self) -> None:
        await self.server.serve()

    def stop(self) -> None:
        self.server.should_exit = True


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    # One send per POST, awaited: no lingering; a send that met a producer broken by a broker
    # restart goes once more on its replacement (same record, same task id).
    producer = await started_producer(settings, "task-gateway", linger_ms=0, redo_replaced=True)
    view = TaskView(settings)
    await view.start()
    kol_view = KolTaskView(settings)
    await kol_view.start()
    users = await ConsoleUsers(settings, producer).start()
    sched = ConsumerLoop(
        settings,
        scheduler.SERVICE,
        [TASK_COMMANDS],
        scheduler.make_handler(settings, view.controls),
        producer,
    )
    refusals = ConsumerLoop(
        settings,
        rejections.SERVICE,
        [DEAD_LETTERS],
        rejections.make_handler(settings, view.controls),
        producer,
    )
    timer = ScheduleRunner(settings, producer, view.commands, view.controls)
    view.schedules = timer
    # ClickHouse opens on the first statistics/data request: a gateway that only takes tasks
    # never touches it (with chdb, another process may own the data path).
    api = _Api(
        settings,
        create_app(
            settings,
            producer,
            view,
            lambda: clickhouse_for(settings, wait=False),
            kol_view,
            users,
        ),
    )
    log.info("task-gateway listening on http://%s:%d", settings.gateway_host, settings.gateway_port)
    try:
        await asyncio.gather(
            run_until(api, stop),
            run_until(sched, stop),
            run_until(refusals, stop),
            run_until(timer, stop),
        )
    finally:
        await users.stop()
        await kol_view.stop()
        await view.stop()
        await producer.stop()
