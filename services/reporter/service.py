"""reporter: follows task commands, task progress and report controls (all keyed by task id and
co-partitioned), keeps each owned task's state in ClickHouse, and runs one TaskReporter per
task that still has something to report.

A replica owns the tasks of the task-progress partitions assigned to it. On assignment it
loads their unfinished reporting from ClickHouse, so a restart or a rebalance resumes exactly
where the previous owner stopped.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from aiokafka import TopicPartition

from libs import tracing
from libs.failures import Backoff, DependencyWatch
from libs.kafka import Incoming, Outgoing, Producer, partition_for_key
from libs.records.reports import ReportsReplay, ReportsResume
from libs.records.tasks import OnDemandTask, TaskProgress
from libs.settings import Settings
from libs.storage.objects import ObjectStore
from libs.topics import TASK_PROGRESS, partition_count, topic_name
from libs.webhooks import WebhookSender

from .declaration import TASKS
from .store import ReportStore, TaskState
from .task_reporter import TaskReporter

log = logging.getLogger(__name__)

SERVICE = TASKS.name


class Reporter:
    def __init__(
        self,
        settings: Settings,
        store: ReportStore,
        objects: ObjectStore,
        sender: WebhookSender,
        producer: Producer,
    ):
        self.settings = settings
        self.store = store
        self.objects = objects
        self.sender = sender
        self.producer = producer
        self.stop = asyncio.Event()
        self.states: dict[str, TaskState] = {}
        self.workers: dict[str, TaskReporter] = {}
        self._runs: dict[str, asyncio.Task] = {}
        self.owned: set[int] = set()
        self._progress_topic = topic_name(TASK_PROGRESS, settings.topic_prefix)
        self._progress_partitions = partition_count(TASK_PROGRESS, settings)
        # The batches' store and bucket, as the task workers meet them (the consumer loop
        # watches its own handler separately).
        self.outages = DependencyWatch(
            "reporter-batches",
            f"{settings.topic_prefix}reporter-batches",
            Backoff(settings.dependency_retry_base_s, settings.dependency_retry_max_s),
        )

    # --- ownership -----------------------------------------------------------------------------
    def owns(self, task_id: str) -> bool:
        return partition_for_key(task_id, range(self._progress_partitions)) in self.owned

    async def on_assign(self, tps: set[TopicPartition]) -> None:
        new = {tp.partition for tp in tps if tp.topic == self._progress_topic} - self.owned
        self.owned |= new
        ids = [
            t
            for t in await self.store.unfinished_task_ids()
            if partition_for_key(t, range(self._progress_partitions)) in new
        ]
        for st in await self.store.load_tasks(ids) if ids else []:
            self.states[st.task_id] = st
            self._ensure_worker(st.task_id)
        log.info(
            "reporter owns partitions %s; resumed %d unfinished tasks", sorted(self.owned), len(ids)
        )

    async def on_revoke(self, tps: set[TopicPartition]) -> None:
        gone = {tp.partition for tp in tps if tp.topic == self._progress_topic}
        self.owned -= gone
        for task_id in [t for t in self._runs if not self.owns(t)]:
            self._runs.pop(task_id).cancel()
            self.workers.pop(task_id, None)
            self.states.pop(task_id, None)

    # --- records -------------------------------------------------------------------------------
    async def handle(self, batch: list[Incoming]) -> list[Outgoing]:
        changed: dict[str, TaskState] = {}
        controls: list = []
        # Every record on the reporter's inputs names its task.
        ids = {cast(Any, i.record).task_id for i in batch}
        missing = {t for t in ids if t not in self.states}
        if missing:
            for st in await self.store.load_tasks(sorted(missing)):
                self.states[st.task_id] = st
        for inc in batch:
            rec = inc.record
            carried = tracing.trace_headers(inc.headers)
            task_id = cast(Any, rec).task_id
            if carried and task_id in self.states:
                self.states[task_id].trace = carried
            if isinstance(rec, OnDemandTask) and inc.key != rec.task_id:
                continue  # not a task: the scheduler rejects it under its key
            if isinstance(rec, OnDemandTask):
                st = self.states.get(rec.task_id) or TaskState(
                    rec.task_id, rec.keyword, trace=carried
                )
                st.keyword, st.callback_url = rec.keyword, rec.callback_url
                st.created_at, st.target = rec.submitted_at, rec.required_count
                self.states[rec.task_id] = changed[rec.task_id] = st
            elif isinstance(rec, TaskProgress):
                st = self.states.get(rec.task_id) or TaskState(
                    rec.task_id, rec.keyword, created_at=rec.updated_at, trace=carried
                )
                if rec.collected >= st.collected or rec.status == "completed":
                    st.collected, st.status, st.target = rec.collected, rec.status, rec.target
                    st.end_reason, st.updated_at = rec.end_reason, rec.updated_at
                    if rec.status == "completed" and st.completed_at is None:
                        st.completed_at = rec.updated_at
                self.states[rec.task_id] = changed[rec.task_id] = st
            elif isinstance(rec, (ReportsResume, ReportsReplay)):
                controls.append(rec)
        await self.store.save_tasks(list(changed.values()))
        for task_id in changed:
            if self.owns(task_id):
                self._ensure_worker(task_id).poke()
        for c in controls:
            await self._control(c)
        return []

    async def _control(self, c: ReportsResume | ReportsReplay) -> None:
        if not self.owns(c.task_id):
            return
        if c.task_id not in self.states:
            log.warning("report control for unknown task %s ignored", c.task_id)
            return
        w = self._ensure_worker(c.task_id)
        if isinstance(c, ReportsResume):
            w.resume()
            return
        await w.load()
        if not await w.replay(c.batch_no):
            log.info("replay of %s batch %d: nothing dead to send", c.task_id, c.batch_no)

    def _ensure_worker(self, task_id: str) -> TaskReporter:
        w = self.workers.get(task_id)
        run = self._runs.get(task_id)
        if w is None or run is None or run.done():
            w = TaskReporter(
                self.states[task_id],
                self.store,
                self.objects,
                self.sender,
                self.producer,
                self.settings,
                self.stop,
                self.outages,
            )
            self.workers[task_id] = w
            self._runs[task_id] = asyncio.create_task(
                self._run(task_id, w), name=f"report-{task_id}"
            )
        else:
            w.state = self.states[task_id]
        return w

    async def _run(self, task_id: str, w: TaskReporter) -> None:
        try:
            await w.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("reporter worker for %s crashed; it restarts on the next event", task_id)
        if w.finished():
            log.info("task %s fully reported (%d batches)", task_id, len(w.batches))

    async def close(self) -> None:
        """Stop: workers end between steps; a webhook call still hanging after a few seconds
        is abandoned (its batch stays pending and is re-sent under the same id next start)."""
        self.stop.set()
        runs = list(self._runs.values())
        if runs:
            await asyncio.wait(runs, timeout=5)
        for r in runs:
            r.cancel()
