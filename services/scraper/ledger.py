"""The page ledger: where each slice stands, rebuilt from Kafka, so X is never asked twice.

Truth is the raw-pages topic itself. The compacted scrape-checkpoints topic only says from
which offset of the slice's raw-pages partition recovery must read; recovery then reads that
short tail and takes the newest successful page of the slice it finds, which covers a page
that was written just before a crash whose checkpoint was not.

Truth is the broker's, not this process's memory: a broker restarted from its last snapshot
may have lost the newest pages and checkpoints it had acknowledged. Recovery first makes the
checkpoint view what the broker holds (`resync()`, libs/topic_table.py), then resumes at the
first page after the checkpoint that the broker does not have (only an unbroken run of pages
counts). A raw page is written at a higher offset than the slice's previous one, unless the
broker lost records: `written()` then raises BrokerLostRecords (a KafkaError).

Every read of the broker goes through one `LedgerLog` (the checkpoint view, the raw-pages
partitions, their ends and their records): `BrokerLog` in production; the handler harness
(libs/handler_harness.py) gives the ledger an in-memory log instead, so the slice runner is
tested without a broker by the same ledger code.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from libs.kafka import Outgoing, Producer, consumer_for, partition_for_key, scan_partition
from libs.records.base import Record
from libs.records.pages import RawPage, SliceCheckpoint
from libs.records.tasks import SearchJob
from libs.settings import Settings
from libs.topic_table import TopicTable
from libs.topics import RAW_PAGES, SCRAPE_CHECKPOINTS, topic_name


@dataclass
class SliceState:
    partition: int
    next_page_no: int
    cursor: str | None
    entries_total: int
    final: bool
    end_reason: str | None = None
    oldest_post_time: datetime | None = None  # of page 0, for the dense-slice decision
    raw_offset: int = -1  # the slice's newest raw page's offset known (or below it)


class BrokerLostRecords(KafkaError):
    """The broker's log went back: records it acknowledged are gone (a restart from an older
    snapshot). The slice resumes from what the broker holds."""

    retriable = True


def checkpoint_key(task_id: str, slice_id: str) -> str:
    return f"{task_id}/{slice_id}"


def raw_page_key(job: SearchJob) -> str:
    """Raw pages are keyed by slice, not by task: a slice's pages stay in order in one
    partition (all the parser's ordering needs: a slice's SliceEnd follows its posts), and
    the slices of one large task spread over the partitions, so parser replicas share it."""
    return checkpoint_key(job.task_id, job.slice_id)


class CheckpointView(Protocol):
    """The scrape-checkpoints view the ledger reads (TopicTable's part of it)."""

    @property
    def rows(self) -> dict[str, Record]: ...

    async def verify(self) -> int: ...


class LedgerLog(Protocol):
    """Everything the ledger reads from the broker: the seam an in-memory log fills in."""

    @property
    def checkpoints(self) -> CheckpointView: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def raw_partitions(self) -> list[int]:
        """The raw-pages partitions."""
        ...

    async def raw_end(self, partition: int) -> int:
        """The offset the next raw page written to `partition` gets (at least)."""
        ...

    def raw_pages(
        self, partition: int, start: int
    ) -> AsyncIterator[tuple[ConsumerRecord, Record | None]]:
        """The records of a raw-pages partition from `start` to its end, decoded (None for
        one that cannot be)."""
        ...


class BrokerLog:
    """The ledger's reads of the real broker: the checkpoint topic's view, ListOffsets ends
    through one consumer, raw-pages partitions read with scan_partition."""

    def __init__(self, settings: Settings, producer: Producer):
        self.settings = settings
        self.producer = producer
        self.checkpoints = TopicTable(settings, SCRAPE_CHECKPOINTS)
        self._offsets: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        await self.checkpoints.start()
        await self.checkpoints.wait_caught_up()
        offsets = self._offsets = consumer_for(self.settings, None, "scraper-offsets")
        await offsets.start()

    async def stop(self) -> None:
        await self.checkpoints.stop()
        if self._offsets is not None:
            await self._offsets.stop()

    async def raw_partitions(self) -> list[int]:
        name = topic_name(RAW_PAGES, self.settings.topic_prefix)
        return sorted(await self.producer.partitions_for(name))

    async def raw_end(self, partition: int) -> int:
        tp = TopicPartition(topic_name(RAW_PAGES, self.settings.topic_prefix), partition)
        # Brokers that under-report the end (Tansu) only make recovery read a little more.
        assert self._offsets is not None, "started"
        return (await self._offsets.end_offsets([tp]))[tp]

    def raw_pages(
        self, partition: int, start: int
    ) -> AsyncIterator[tuple[ConsumerRecord, Record | None]]:
        return scan_partition(self.settings, RAW_PAGES, partition, start)


class PageLedger:
    WRITTEN_TASKS = 1_000  # tasks whose own entries are remembered (least recent dropped)

    def __init__(self, settings: Settings, producer: Producer, log: LedgerLog | None = None):
        self.settings = settings
        self.producer = producer
        self.log: LedgerLog = log if log is not None else BrokerLog(settings, producer)
        self.table = self.log.checkpoints
        # task -> checkpoint key -> entries this replica wrote (task_entries; newest tasks)
        self._written_entries: OrderedDict[str, dict[str, int]] = OrderedDict()

    async def start(self) -> None:
        await self.log.start()

    async def stop(self) -> None:
        await self.log.stop()

    async def raw_partition(self, job: SearchJob) -> int:
        """The raw-pages partition of a slice: fixed by its key (see raw_page_key)."""
        return partition_for_key(raw_page_key(job), await self.log.raw_partitions())

    async def resync(self) -> None:
        """Make the checkpoint view what the broker holds now (after a broker fault: the
        view may show checkpoints a restarted broker lost)."""
        await self.table.verify()

    async def recover(self, job: SearchJob) -> SliceState | None:
        """The slice's state from Kafka; None when it never started."""
        await self.resync()  # every checkpoint the broker holds now, and only those
        cp = self.table.rows.get(checkpoint_key(job.task_id, job.slice_id))
        if cp is None:
            return None
        assert isinstance(cp, SliceCheckpoint)
        state = SliceState(
            cp.raw_partition,
            cp.last_page_no + 1,
            cp.cursor_out,
            cp.entries_total,
            cp.final,
            oldest_post_time=cp.oldest_post_time,
            raw_offset=cp.raw_offset_floor - 1,
        )
        if cp.final:
            return state
        # page_no -> what the newest copy of that page says (not its body)
        found: dict[int, tuple[int, str | None, bool, str | None, datetime | None]] = {}
        async for msg, rec in self.log.raw_pages(cp.raw_partition, cp.raw_offset_floor):
            state.raw_offset = max(state.raw_offset, msg.offset)
            if (
                isinstance(rec, RawPage)
                and rec.task_id == job.task_id
                and rec.slice_id == job.slice_id
                and rec.outcome == "ok"
                and rec.page_no > cp.last_page_no
            ):
                found[rec.page_no] = (
                    rec.entries,
                    rec.cursor_out,
                    rec.final,
                    rec.end_reason,
                    rec.oldest_post_time,
                )
        # Only an unbroken run of pages counts: a broker restart can lose page n while page
        # n+1, written just after it came back, stays; the slice then resumes at page n.
        while state.next_page_no in found:
            entries, cursor, final, end_reason, oldest = found[state.next_page_no]
            if state.next_page_no == 0 and oldest is not None:
                state.oldest_post_time = oldest
            state.entries_total += entries
            state.cursor, state.final, state.end_reason = cursor, final, end_reason
            state.next_page_no += 1
            if final:
                break
        return state

    def task_entries(self, task_id: str) -> int:
        """Entries fetched so far by every slice of a task, on any replica (from the
        checkpoints: a replica's newest pages may be a moment late)."""
        prefix = f"{task_id}/"
        entries = {
            key: cp.entries_total
            for key, cp in list(self.table.rows.items())
            if key.startswith(prefix) and isinstance(cp, SliceCheckpoint)
        }
        # This replica's own slices count at once, not a fetch round trip later when the
        # view reads their checkpoints back: the sum only throttles requests near a target
        # (recovery reads the broker's truth, never this).
        for key, n in self._written_entries.get(task_id, {}).items():
            entries[key] = max(entries.get(key, 0), n)
        return sum(entries.values())

    async def begin(self, job: SearchJob) -> SliceState:
        """Record that a slice starts, before its first request to X."""
        partition = await self.raw_partition(job)
        # Nothing of this slice can be older than the partition's current end.
        end = await self.log.raw_end(partition)
        await self._write(
            job,
            partition,
            floor=end,
            last_page_no=-1,
            cursor=None,
            entries_total=0,
            final=False,
            oldest_post_time=None,
        )
        return SliceState(partition, 0, None, 0, False, raw_offset=end - 1)

    @staticmethod
    def written(job: SearchJob, state: SliceState, raw_offset: int) -> None:
        """A raw page of the slice was acknowledged at `raw_offset`: later than any before it,
        or the broker lost records since (BrokerLostRecords)."""
        if raw_offset <= state.raw_offset:
            raise BrokerLostRecords(
                f"raw page of {job.task_id}/{job.slice_id} acknowledged at offset {raw_offset},"
                f" not after {state.raw_offset}: the broker lost records"
            )
        state.raw_offset = raw_offset

    async def advance(
        self, job: SearchJob, state: SliceState, page: RawPage, raw_offset: int
    ) -> None:
        await self._write(
            job,
            state.partition,
            floor=raw_offset + 1,
            last_page_no=page.page_no,
            cursor=page.cursor_out,
            entries_total=state.entries_total,
            final=page.final,
            oldest_post_time=state.oldest_post_time,
        )

    async def _write(
        self,
        job: SearchJob,
        partition: int,
        *,
        floor: int,
        last_page_no: int,
        cursor: str | None,
        entries_total: int,
        final: bool,
        oldest_post_time: datetime | None,
    ) -> None:
        cp = SliceCheckpoint(
            task_id=job.task_id,
            slice_id=job.slice_id,
            raw_partition=partition,
            raw_offset_floor=max(0, floor),
            last_page_no=last_page_no,
            cursor_out=cursor,
            entries_total=entries_total,
            final=final,
            updated_at=datetime.now(UTC),
            oldest_post_time=oldest_post_time,
        )
        key = checkpoint_key(job.task_id, job.slice_id)
        # The view shows it once the feed reads it back from the broker (recover() waits for
        # that): a row only ever shows what the broker holds.
        await self.producer.send_and_wait(Outgoing(SCRAPE_CHECKPOINTS, key, cp))
        self._written_entries.setdefault(job.task_id, {})[key] = entries_total
        self._written_entries.move_to_end(job.task_id)
        while len(self._written_entries) > self.WRITTEN_TASKS:
            self._written_entries.popitem(last=False)
