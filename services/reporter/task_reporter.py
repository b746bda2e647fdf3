"""One task's reports: cut its new unique posts into batches, write each batch file, call the
webhook, in batch order.

A batch's membership (its post ids) is written to ClickHouse before anything else happens to
it, so after a crash the same batch is written and sent again under the same batch id (the
Idempotency-Key): the client never sees a post in two different batches. Each task has its own
worker, so a slow or dead webhook of one client never delays another's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

from libs.failures import DependencyWatch, dependency_of
from libs.kafka import Outgoing, Producer
from libs.records.dead_letter import DeadLetter
from libs.records.reports import WebhookReport
from libs.settings import Settings
from libs.storage import post_oss
from libs.storage.objects import ObjectStore
from libs.topics import DEAD_LETTERS
from libs.webhooks import WebhookSender

from .store import Batch, ReportStore, TaskState, batch_file, batch_path

log = logging.getLogger(__name__)


class TaskReporter:
    def __init__(
        self,
        state: TaskState,
        store: ReportStore,
        objects: ObjectStore,
        sender: WebhookSender,
        producer: Producer,
        settings: Settings,
        stop: asyncio.Event,
        outages: DependencyWatch | None = None,
    ):
        """`outages`: the reporter's one watch of its dependencies (shared by its tasks)."""
        self.state = state
        self.outages = outages
        self.store = store
        self.objects = objects
        self.sender = sender
        self.producer = producer
        self.settings = settings
        self.stop = stop
        self.wake = asyncio.Event()
        self.paused_until: float | None = None
        self.batches: list[Batch] = []
        self._waiting_since: float | None = None  # monotonic time unreported posts first seen
        self._loaded = False
        self._load_lock = asyncio.Lock()
        self._missing_warned: int | None = None  # the count _warn_missing last spoke of

    async def load(self) -> None:
        """Read the task's batches once (the run loop and a replay may both ask first)."""
        async with self._load_lock:
            if not self._loaded:
                self.batches = await self.store.batches(self.state.task_id)
                self._loaded = True

    # --- signals from the service ------------------------------------------------------------
    def poke(self) -> None:
        self.wake.set()

    def resume(self) -> None:
        self.paused_until = None
        self.wake.set()

    async def replay(self, batch_no: int) -> bool:
        """Send a dead batch again; False when there is no such dead batch."""
        for b in self.batches:
            if b.batch_no == batch_no and b.state == "dead":
                b.state = "pending"
                await self.store.save_batch(b)
                self.wake.set()
                return True
        return False

    # --- the loop ----------------------------------------------------------------------------
    @property
    def reported(self) -> int:
        return sum(len(b.post_ids) for b in self.batches)

    def finished(self) -> bool:
        return (
            self.state.completed
            and any(b.completion_status == "completed" for b in self.batches)
            and all(b.state != "pending" for b in self.batches)
        )

    async def run(self) -> None:
        while not self.stop.is_set():
            try:
                await self.load()
                progressed = await self.step()
            except Exception as e:
                dependency = dependency_of(e)
                if dependency is not None and self.outages is not None:
                    # ClickHouse or the bucket is down: wait with the shared backoff, and
                    # the reporter shows what it waits for (not ready, metric).
                    await self._sleep(self.outages.failed(dependency, e))
                else:
                    log.exception("reporting task %s failed; retrying", self.state.task_id)
                    await self._sleep(max(1.0, self.settings.report_tick_s))
                continue
            if self.outages is not None:
                self.outages.recovered()
            if self.finished():
                return
            if not progressed:
                await self._sleep(self.settings.report_tick_s)

    async def _sleep(self, seconds: float) -> None:
        self.wake.clear()
        waiters = [asyncio.ensure_future(self.wake.wait()), asyncio.ensure_future(self.stop.wait())]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

    async def step(self) -> bool:
        if self.paused_until is not None:
            if time.monotonic() < self.paused_until:
                return False
            self.paused_until = None
        pending = next((b for b in self.batches if b.state == "pending"), None)
        if pending is not None:
            return await self._deliver(pending)
        return await self._cut_batch()

    async def _cut_batch(self) -> bool:
        st, size = self.state, self.settings.report_batch_size
        reported = self.reported
        unreported = st.collected - reported
        now = time.monotonic()
        if unreported <= 0:
            self._waiting_since = None
            if not (
                st.completed and not any(b.completion_status == "completed" for b in self.batches)
            ):
                return False
            ids: list[str] = []  # a finished task with nothing new still gets its last report
        else:
            if self._waiting_since is None:
                self._waiting_since = now
            due = (
                unreported >= size
                or st.completed
                or now - self._waiting_since >= self.settings.report_max_wait_s
            )
            if not due:
                return False
            ids = await self.store.unreported_post_ids(st.task_id, min(unreported, size))
            if not ids:
                self._warn_missing(reported)
                return False
        total = reported + len(ids)
        no = max((b.batch_no for b in self.batches), default=0) + 1
        created = datetime.now(UTC)
        batch = Batch(
            task_id=st.task_id,
            batch_no=no,
            keyword=st.keyword,
            post_ids=ids,
            oss_file_path=batch_path(st.task_id, no, created),
            completion_status="completed" if st.completed and total >= st.collected else "partial",
            total_collected=total,
            created_at=created,
        )
        await self.store.save_batch(batch)
        self.batches.append(batch)
        self._waiting_since = now if st.collected > total else None
        return True

    def _warn_missing(self, reported: int) -> None:
        """Progress counts posts that are not stored (they should never differ: the counter
        counts what it wrote). Said once per count, so an operator sees why the task's
        reports wait, instead of a silent stall."""
        st = self.state
        if self._missing_warned == st.collected:
            return
        self._missing_warned = st.collected
        log.warning(
            "task %s: progress counts %d collected, %d reported, but no unreported post of it "
            "is stored; its reports wait for them",
            st.task_id,
            st.collected,
            reported,
        )

    def _named_post(self, b: Batch, post_ids: list[str]) -> str:
        """The report's single `post_id` (the design's field): the batch's first post; for a
        retweeters task, the retweeted post; for an empty closing batch, the task's last
        reported post; '' when there is none (a profile task, a task that found nothing)."""
        if post_ids:
            return post_ids[0]
        # A user task's batches hold users (keyword 'retweeters:<post id>' or 'profile:<handle>').
        kind, _, subject = self.state.keyword.partition(":")
        if kind == "retweeters" and subject.isdigit():
            return subject
        if kind == "profile":
            return ""
        earlier = [i for x in self.batches if x.batch_no < b.batch_no for i in x.post_ids]
        return earlier[-1] if earlier else ""

    async def _deliver(self, b: Batch) -> bool:
        st = self.state
        posts = await self.store.posts(b.post_ids)
        found = {p.post_id for p in posts}
        # Ids that are not posts are a user task's users (a task collects one or the other).
        users = await self.store.task_users(st.task_id, [i for i in b.post_ids if i not in found])
        user_ids = {u["user_id"]: None for u in users}  # ordered
        urls = post_oss.media_urls(posts)
        media = await self.store.media_results(urls)
        waited = (datetime.now(UTC) - b.created_at).total_seconds()
        if len(media) < len(urls) and waited < self.settings.report_media_wait_s:
            return False  # media still landing; the next tick looks again
        await self.objects.put(
            b.oss_file_path,
            batch_file(posts, media, st.task_id, st.keyword, b.oss_file_path, users),
            "application/json",
        )
        # The posts rows show what the file shows (before the client hears of the file).
        await self.store.save_posts_oss(b, media)
        post_ids = [i for i in b.post_ids if i not in user_ids]
        report = WebhookReport(
            post_id=self._named_post(b, post_ids),
            task_id=st.task_id,
            keyword=st.keyword,
            post_ids=post_ids,
            user_ids=list(user_ids),
            oss_file_path=b.oss_file_path,
            batch_id=b.batch_id,
            batch_size=len(b.post_ids),
            total_collected=b.total_collected,
            completion_status=b.completion_status,
        )
        url = st.callback_url or self.settings.webhook_url
        if not url:
            log.info(
                "task %s batch %d written to %s (no webhook configured)",
                st.task_id,
                b.batch_no,
                b.oss_file_path,
            )
            b.state, b.last_error = "delivered", "no webhook configured"
            b.delivered_at = datetime.now(UTC)
            await self.store.save_batch(b)
            return True
        body = report.model_dump_json().encode()
        result = await self.sender.deliver(
            url,
            body,
            b.batch_id,
            self.stop,
            trace=st.trace,
            attributes={
                "xget.service": "reporter",
                "xget.task_id": st.task_id,
                "xget.keyword": st.keyword,
                "xget.post_count": len(b.post_ids),
            },
        )
        if result.stopped:
            return False
        b.attempts += result.attempts
        if result.ok:
            b.state, b.last_error = "delivered", None
            b.delivered_at = datetime.now(UTC)
            if not result.next_batch_allowed:
                self.paused_until = time.monotonic() + self.settings.report_pause_s
                log.info("task %s: client paused reports after %s", st.task_id, b.batch_id)
        else:
            b.state, b.last_error = "dead", result.cause
            log.warning(
                "task %s: report %s dead-lettered: %s", st.task_id, b.batch_id, result.cause
            )
            await self.producer.send_and_wait(
                Outgoing(
                    DEAD_LETTERS,
                    st.task_id,
                    DeadLetter(
                        service="reporter",
                        source_topic="report_batches",
                        partition=0,
                        offset=b.batch_no,
                        key=st.task_id,
                        value=body.decode(),
                        schema_header=WebhookReport.schema_id(),
                        error=result.cause or "unknown",
                        failed_at=datetime.now(UTC),
                    ),
                )
            )
        await self.store.save_batch(b)
        return True
