"""scraper: consumes search jobs (task slices) and pages through X for each.

A job's offset is committed only when its slice has ended, and only in order per partition
(the lowest unfinished job holds the commit back), so a crash re-delivers unfinished jobs,
which then resume from the page ledger instead of starting over.

Broker faults never end the process. A failed poll or commit is retried with backoff; a slice
that fails (its writes, a broker restart that lost records) is retried with capped backoff
and jitter from what the broker holds (the ledger's recovery); and after any broker fault
the job consumer goes back to the group's committed offsets, so a job at an offset a
restarted broker reused is not skipped (jobs already running are not started twice).
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from libs.consumer_watch import ConsumerWatch
from libs.failures import Backoff, DependencyWatch
from libs.kafka import (
    Producer,
    ReconnectWatch,
    consumer_for,
    dead_letter_for,
    decode,
    join,
    seek_to_committed,
)
from libs.leases import LeaseClient
from libs.records.tasks import SearchJob
from libs.retry import backoff_delay
from libs.settings import Settings
from libs.topic_table import TopicTable
from libs.topics import SEARCH_JOBS, TASK_CONTROLS, TASK_PROGRESS, topic_name
from libs.tracing import record_span
from libs.xclient import XClient

from .backpressure import ParserLagGate
from .declaration import JOBS
from .ledger import PageLedger
from .parking import Parking
from .slice_runner import RecentPages, SliceDeps, run_slice

log = logging.getLogger(__name__)

SERVICE = JOBS.name
RETRY_BASE_S = 1.0  # a failed slice's retries: capped exponential backoff with jitter
RETRY_MAX_S = 30.0
DROP_TIMEOUT_S = 10.0  # how long stopping waits for cancelled slices


class _Partition:
    """Jobs of one partition in flight; the commit point is the lowest unfinished offset."""

    def __init__(self) -> None:
        self.pending: dict[int, bool] = {}  # offset -> finished
        self.committable: int | None = None

    def add(self, offset: int) -> None:
        self.pending[offset] = False

    def finish(self, offset: int) -> None:
        if offset in self.pending:
            self.pending[offset] = True
        while self.pending:
            first = min(self.pending)
            if not self.pending[first]:
                break
            del self.pending[first]
            self.committable = first + 1


class ScraperService:
    def __init__(
        self,
        settings: Settings,
        producer: Producer,
        *,
        pool: LeaseClient | None = None,
        xclient: XClient | None = None,
    ):
        self.settings = settings
        self.producer = producer
        # Accounts come as leases from the account-manager, shared by every replica.
        self.pool = pool or LeaseClient(settings, producer)
        self.xclient = xclient or XClient(settings)
        self.ledger = PageLedger(settings, producer)
        self.progress = TopicTable(settings, TASK_PROGRESS)
        self.controls = TopicTable(settings, TASK_CONTROLS)
        self._stop = asyncio.Event()
        self._running: dict[TopicPartition, dict[int, asyncio.Task]] = {}
        self._parts: dict[TopicPartition, _Partition] = {}
        # One runner per slice at a time: a slice's job delivered twice (a re-sent command, a
        # re-delivery after a crash) must not page the same cursor concurrently — both copies
        # would recover the same state and ask X for the same page.
        self._slice_locks: dict[str, asyncio.Lock] = {}
        self.slices_done = 0
        self.slice_retries = 0
        self.recent = RecentPages()
        self.parking = Parking()  # slices waiting for an account or paused hold no slot
        self._rewind_needed = False  # a broker fault: re-read jobs from the committed offsets
        self.group_id = f"{settings.topic_prefix}{SERVICE}"
        self.watch = ConsumerWatch(SERVICE, self.group_id)  # records in, lag, readiness
        # The job consumer's broker faults: not ready with the cause meanwhile, and the
        # shared backoff (the consumer loop's, libs/failures.py).
        self.broker = DependencyWatch(SERVICE, self.group_id, Backoff(0.5, 10.0))

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        await self.pool.start()
        await self.ledger.start()
        await self.progress.start()
        await self.controls.start()
        await self.progress.wait_caught_up()
        await self.controls.wait_caught_up()
        gate = await ParserLagGate(
            self.settings,
            self.settings.scraper_max_parser_lag_pages,
            max_bytes=self.settings.scraper_max_parser_lag_bytes,
        ).start()
        deps = SliceDeps(
            self.producer,
            self.ledger,
            self.progress,
            self.pool,
            self.xclient,
            self.settings.x_page_size,
            controls=self.controls,
            split_pages=self.settings.scraper_split_pages,
            recent=self.recent,
            gate=gate,
            parking=self.parking,
        )
        consumer = consumer_for(self.settings, self.group_id, SERVICE, offset_reset="none")
        # Slices run for minutes; the loop keeps polling (paused when full) so the group
        # never thinks this member is stuck.
        consumer._max_poll_interval_ms = 600_000  # noqa: SLF001 - aiokafka's setting, without its start-time check
        await consumer.start()
        service = self

        class Listener(ConsumerRebalanceListener):
            async def on_partitions_revoked(self, revoked):
                await service._drop(consumer, revoked)

            async def on_partitions_assigned(self, assigned):
                pass

        await join(
            consumer,
            self.settings,
            [topic_name(t, self.settings.topic_prefix) for t in JOBS.inputs],
            listener=Listener(),
        )
        reconnects = ReconnectWatch(consumer)
        try:
            while not self._stop.is_set():
                try:
                    if reconnects.replaced() or self._rewind_needed:
                        await self._rewind(consumer)
                        reconnects.checked()
                    await self._poll(consumer, deps)
                    self.broker.recovered()
                except KafkaError as e:
                    # The broker is away, stalled or restarting: the slices wait on their own
                    # writes; this loop backs off, then re-reads uncommitted jobs.
                    self._rewind_needed = True
                    delay = self.broker.failed("kafka", e)
                    try:
                        await asyncio.wait_for(self._stop.wait(), delay)
                    except TimeoutError:
                        pass
        finally:
            self.watch.stopped()
            await self._drop(consumer, list(self._running))
            await consumer.stop()
            await gate.stop()
            await self.progress.stop()
            await self.controls.stop()
            await self.ledger.stop()
            await self.pool.stop()
            await self.xclient.aclose()

    async def _poll(self, consumer, deps: SliceDeps) -> None:
        # A parked slice (waiting for an account of its operation, or paused) holds no slot:
        # jobs of operations with budget are taken and run meanwhile.
        parked = len(self.parking)
        busy = sum(len(t) for t in self._running.values()) - parked
        free = self.settings.scraper_concurrency - busy
        if parked >= self.settings.scraper_max_parked:
            free = 0
        assigned = consumer.assignment()
        if free <= 0:
            consumer.pause(*assigned)
        else:
            consumer.resume(*assigned)
        batch = await consumer.getmany(timeout_ms=200, max_records=max(1, free))
        await self.watch.polled(consumer, [m for ms in batch.values() for m in ms])
        for tp, msgs in batch.items():
            for m in msgs:
                self._start_job(tp, m, deps)
        await self._commit(consumer)

    async def _rewind(self, consumer) -> None:
        """Back to the group's committed offsets (what the broker holds, whatever this process
        read): every job not ended is delivered again; those still running are skipped."""
        await seek_to_committed(consumer)
        self._rewind_needed = False
        log.info("scraper: jobs re-read from the committed offsets after a broker fault")

    def _start_job(self, tp: TopicPartition, m, deps: SliceDeps) -> None:
        if m.offset in self._running.get(tp, {}):
            return  # delivered again after a rewind: its slice runs already
        part = self._parts.setdefault(tp, _Partition())
        part.add(m.offset)
        try:
            job = decode(SEARCH_JOBS, m)
        except Exception as e:  # noqa: BLE001 - any decode failure is a dead letter
            asyncio.get_running_loop().create_task(self._dead_letter(tp, m, str(e)))
            return
        assert isinstance(job, SearchJob)
        with record_span(SERVICE, m, job):  # the slice's task inherits the job's trace
            self._spawn(tp, m.offset, job, deps)

    def _spawn(
        self, tp: TopicPartition, offset: int, job: SearchJob, deps: SliceDeps, attempt_no: int = 0
    ) -> None:
        """Run a slice; a crashed slice is retried with backoff from its ledger state (what the
        broker holds), and its offset stays uncommitted until it ends, so a dead process
        re-delivers it."""

        async def attempt() -> str:
            if attempt_no:  # recovery reads where the slice stands from the broker
                await asyncio.sleep(backoff_delay(attempt_no - 1, RETRY_BASE_S, RETRY_MAX_S))
            key = f"{job.task_id}/{job.slice_id}"
            lock = self._slice_locks.setdefault(key, asyncio.Lock())
            async with lock:  # a second copy then finds the slice ended and returns
                return await run_slice(job, deps)

        task = asyncio.create_task(attempt(), name=f"slice-{job.task_id}/{job.slice_id}")
        self._running.setdefault(tp, {})[offset] = task

        def done(t: asyncio.Task) -> None:
            self._running.get(tp, {}).pop(offset, None)
            part = self._parts.get(tp)
            if t.cancelled() or part is None:  # revoked or stopping: the next owner resumes
                return
            exc = t.exception()
            if exc is not None:
                log.error(
                    "slice %s/%s failed (attempt %d, retrying): %r",
                    job.task_id,
                    job.slice_id,
                    attempt_no + 1,
                    exc,
                )
                self.slice_retries += 1
                if isinstance(exc, KafkaError):
                    self._rewind_needed = True
                if not self._stop.is_set():
                    self._spawn(tp, offset, job, deps, attempt_no + 1)
                return
            self.recent.forget(job)
            self.slices_done += 1
            log.info("slice %s/%s ended: %s", job.task_id, job.slice_id, t.result())
            part.finish(offset)

        task.add_done_callback(done)

    async def _dead_letter(self, tp, m, error: str) -> None:
        attempt = 0
        while True:  # the job's offset waits for its dead letter: a broker fault retries it
            try:
                await self.producer.send_and_wait(dead_letter_for(SERVICE, m, error))
                break
            except KafkaError as e:
                log.warning("scraper: dead letter not written yet (%s)", e)
                await asyncio.sleep(backoff_delay(attempt, RETRY_BASE_S, RETRY_MAX_S))
                attempt += 1
        self.watch.failed(m.topic)
        part = self._parts.get(tp)  # the partition may have been revoked meanwhile
        if part is not None:
            part.finish(m.offset)

    async def _commit(self, consumer) -> None:
        offsets = {}
        for tp, part in self._parts.items():
            if part.committable is not None:
                offsets[tp] = part.committable
                part.committable = None
        if offsets:
            try:
                await consumer.commit(offsets)
            except (CommitFailedError, IllegalStateError) as e:
                log.warning("scraper commit failed after rebalance: %s", e)

    async def _drop(self, consumer, tps) -> None:
        """Stop slices of partitions this member no longer owns; their new owner resumes them."""
        tasks: list[asyncio.Task] = []
        for tp in list(tps):
            tasks.extend(self._running.pop(tp, {}).values())
        for t in tasks:
            t.cancel()
        if tasks:
            # Bounded: a slice stuck past its cancel must not keep the replica from stopping
            # (its job stays uncommitted, so its next owner resumes it); where it hangs is
            # logged.
            _, stuck = await asyncio.wait(tasks, timeout=DROP_TIMEOUT_S)
            for t in stuck:
                frames = "".join(f"\n  {f.f_code.co_filename}:{f.f_lineno}" for f in t.get_stack())
                log.error(
                    "slice %s did not end within %ss of its cancel:%s",
                    t.get_name(),
                    DROP_TIMEOUT_S,
                    frames,
                )
        try:
            await self._commit(consumer)
        except Exception:  # noqa: BLE001 - the new owner re-reads from the last commit
            pass
        for tp in list(tps):
            self._parts.pop(tp, None)
