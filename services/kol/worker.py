"""kol-worker: runs KOL followings tasks from kol-commands, progress onto kol-progress.

A task's offset is committed only when its run ended, so a killed worker runs it again; the
cache and the done marks make that second run cost no call already made. A broker fault ends
no worker: a run that failed on one (its writes to kol-pages or kol-progress) runs again after
the shared backoff, as after a ClickHouse outage, and a failed poll or commit is retried from
the committed offset.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from libs.consumer_watch import ConsumerWatch
from libs.failures import Backoff, DependencyError, DependencyWatch, dependency_of
from libs.kafka import (
    Outgoing,
    Producer,
    consumer_for,
    dead_letter_for,
    decode,
    join,
    seek_to_committed,
)
from libs.records.kol import KolFollowingsTask, KolTaskProgress
from libs.settings import Settings
from libs.topics import KOL_COMMANDS, KOL_PROGRESS, topic_name

from .cache import KolCache
from .declaration import COMMANDS
from .job import KolJob, Mode, Stats
from .sources import SourceError, make_source
from .store import KolPlanner, KolWriter, StoreUnavailable

log = logging.getLogger(__name__)

SERVICE = COMMANDS.name
PUBLISH_EVERY_S = 1.0


def progress_record(
    task: KolFollowingsTask, status: str, st: Stats | None, error: str | None = None
) -> KolTaskProgress:
    st = st or Stats()
    return KolTaskProgress(
        task_id=task.task_id,
        status=status,
        kols_done=st.kols_done,
        kols_total=st.kols_total,
        kols_failed=st.kols_failed,
        pages=st.pages,
        rows=st.rows,
        api_calls=st.api_calls,
        cache_hits=st.cache_hits,
        estimated_cost=st.estimated_cost,
        error=error,
        created_at=task.submitted_at,
        updated_at=datetime.now(UTC),
    )


class KolWorker:
    def __init__(self, settings: Settings, producer: Producer):
        self.settings = settings
        self.producer = producer
        self._stop = asyncio.Event()
        self._job: KolJob | None = None
        self.tasks_done = 0
        self.group_id = f"{settings.topic_prefix}{SERVICE}"
        self.watch = ConsumerWatch(SERVICE, self.group_id)  # records in, lag, readiness
        self.dependency = DependencyWatch(
            SERVICE,
            self.group_id,
            Backoff(settings.dependency_retry_base_s, settings.dependency_retry_max_s),
        )

    def stop(self) -> None:
        self._stop.set()
        if self._job is not None:
            self._job.stop()

    async def _publish(self, rec: KolTaskProgress) -> None:
        await self.producer.send_and_wait(Outgoing(KOL_PROGRESS, rec.task_id, rec))

    async def run_task(self, task: KolFollowingsTask) -> KolTaskProgress:
        """Run the task once. Raises DependencyError when ClickHouse failed and nothing else
        went wrong: the task is not over, it runs again once the store answers (the cache and
        the done marks make that run cost no call already made)."""
        await self._publish(progress_record(task, "running", None))
        planner = KolPlanner(self.settings.clickhouse_dsn)
        writer = KolWriter(self.settings.clickhouse_dsn, self.settings.kol_store_retry_s)
        last = 0.0
        pending: set[asyncio.Task] = set()

        def on_progress(st: Stats) -> None:
            nonlocal last
            now = asyncio.get_running_loop().time()
            if now - last >= PUBLISH_EVERY_S:
                last = now
                t = asyncio.create_task(self._publish(progress_record(task, "running", st)))
                pending.add(t)
                t.add_done_callback(pending.discard)

        source = None
        outage: StoreUnavailable | None = None
        try:
            if task.handles:
                await planner.import_kols(task.handles)
            source = make_source(self.settings)
            self._job = KolJob(
                self.settings,
                KolCache(self.settings, self.producer),
                source,
                planner,
                writer,
                on_progress=on_progress,
            )
            st = await self._job.run(Mode(limit=task.limit, handles=task.handles or None))
            error = st.fatal_error or st.store_error or "; ".join(st.failures) or None
            if self._job.stopping and not st.fatal_error:
                status = "running"  # interrupted by shutdown: the task runs again
            elif (
                st.store_error
                and not (st.fatal_error or st.failures)
                and writer.last_cause is not None
                and dependency_of(writer.last_cause)
            ):
                outage, status = StoreUnavailable(st.store_error), "running"
                outage.__cause__ = writer.last_cause
                error = f"waiting for ClickHouse: {st.store_error}"
            else:
                status = "failed" if error or st.kols_pending else "completed"
            final = progress_record(task, status, st, error)
        except StoreUnavailable as e:
            stats = self._job.stats if self._job else None
            if dependency_of(e) is not None:
                outage = e
                final = progress_record(task, "running", stats, f"waiting for ClickHouse: {e}")
            else:
                final = progress_record(task, "failed", stats, str(e))
        except SourceError as e:
            final = progress_record(task, "failed", self._job.stats if self._job else None, str(e))
        finally:
            self._job = None
            await writer.aclose()
            if source is not None:
                await source.aclose()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        await self._publish(final)
        if outage is not None:
            raise DependencyError("clickhouse", str(outage)) from outage
        return final

    async def run(self) -> None:
        consumer = consumer_for(self.settings, self.group_id, SERVICE)
        consumer._max_poll_interval_ms = 3_600_000  # noqa: SLF001 - a task may run for hours
        await consumer.start()
        await join(
            consumer,
            self.settings,
            [topic_name(t, self.settings.topic_prefix) for t in COMMANDS.inputs],
        )
        try:
            while not self._stop.is_set():
                try:
                    batch = await consumer.getmany(timeout_ms=300, max_records=1)
                    await self.watch.polled(consumer, [m for ms in batch.values() for m in ms])
                    for tp, msgs in batch.items():
                        for m in msgs:
                            await self._handle(consumer, tp, m)
                    self.dependency.recovered()
                except KafkaError as e:  # the broker is away: again from the committed offset
                    delay = self.dependency.failed("kafka", e)
                    try:
                        await asyncio.wait_for(self._stop.wait(), delay)
                    except TimeoutError:
                        pass
                    await self._rewind(consumer)
        finally:
            self.watch.stopped()
            await consumer.stop()

    async def _rewind(self, consumer) -> None:
        try:
            await seek_to_committed(consumer)
        except KafkaError as e:  # still away: the next fault rewinds
            log.warning("kol-worker: rewind failed: %s", e)

    async def _poll_paused(self, consumer, timeout_ms: int) -> None:
        """Keep the paused consumer polling during a run; a broker fault does not stop it."""
        try:
            await consumer.getmany(timeout_ms=timeout_ms)
        except KafkaError as e:
            log.warning("kol-worker: poll during a run failed: %s", e)
            await asyncio.sleep(timeout_ms / 1000)

    async def _handle(self, consumer, tp: TopicPartition, m) -> None:
        try:
            task = decode(KOL_COMMANDS, m)
            assert isinstance(task, KolFollowingsTask)
        except Exception as e:  # noqa: BLE001 - any decode failure is a dead letter
            await self.producer.send_and_wait(dead_letter_for(SERVICE, m, f"undecodable: {e}"))
            self.watch.failed(m.topic)
            await consumer.commit({tp: m.offset + 1})
            return
        # Keep polling (paused) while the task runs, so the group sees a live member.
        consumer.pause(*consumer.assignment())
        try:
            final = await self._run_until_stored(consumer, task)
        finally:
            consumer.resume(*consumer.assignment())
        if final is None:
            self._stop.set()
            return
        if final.status != "running":
            await consumer.commit({tp: m.offset + 1})
            self.tasks_done += 1
            log.info(
                "kol task %s %s: %d/%d KOLs",
                task.task_id,
                final.status,
                final.kols_done,
                final.kols_total,
            )
        else:
            self._stop.set()

    async def _run_until_stored(self, consumer, task: KolFollowingsTask) -> KolTaskProgress | None:
        """Run the task; while ClickHouse is down, wait (the shared backoff, not ready with
        the cause) and run it again. None when stopped while waiting."""
        while True:
            runner = asyncio.create_task(self.run_task(task))
            while not runner.done():
                await self._poll_paused(consumer, 500)
                await self.watch.polled(consumer)  # lag keeps being reported during a long task
            try:
                final = runner.result()
            except (DependencyError, KafkaError) as e:
                # A store outage, or a broker fault on the run's own writes: run it again.
                delay = self.dependency.failed(dependency_of(e) or "kafka", e)
                deadline = asyncio.get_running_loop().time() + delay
                while not self._stop.is_set() and asyncio.get_running_loop().time() < deadline:
                    await self._poll_paused(consumer, min(500, max(1, int(delay * 1000))))
                if self._stop.is_set():
                    return None
                continue
            self.dependency.recovered()
            return final
