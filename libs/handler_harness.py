"""A service's handler driven in memory, without a broker (in the spirit of faststream's
`TestKafkaBroker`): records go in encoded exactly as a producer writes them, through the same
decoding, batch handling and dead-lettering as the real consumer loop (libs/kafka.py's
`decode_batch` and `handle_isolating`), and what the handler would publish comes back.

    h = HandlerHarness(PAGES, PageHandler(0))
    out = await h.feed(h.record(RAW_PAGES, page, key="t1"))
    out.on(POSTS)           # the records it would publish on posts
    out.dead_letters        # DeadLetter records, with their cause

`MemoryProducer` takes the place of the Producer a service also publishes with directly. What it
sends lands in a `MemoryLog`: per topic-partition offsets from 0, partitions chosen by key as
the real producer does, every record stored encoded exactly as the Producer writes it and
answered with aiokafka's RecordMetadata. Views read that log back as the broker would serve
it: `MemoryTable` (the TopicTable part a handler reads: rows, wait_for) and `MemoryLedgerLog`
(the scraper's page ledger's reads of checkpoints and raw pages), so code that both writes and
reads the broker (the scraper's slice runner) runs in memory unchanged. `MemoryLeases` hands
out a fixed list of X accounts in LeaseClient's place (no account-manager).

A dependency failure propagates out of `feed`, as it makes the real loop wait and retry.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord, RecordMetadata

from .declaration import ConsumerGroup
from .kafka import (
    Handler,
    Outgoing,
    _headers,
    decode,
    decode_batch,
    handle_isolating,
    partition_for_key,
)
from .records.accounts import LeaseWait
from .records.base import Record
from .records.dead_letter import DeadLetter
from .topics import CATALOGUE, DEAD_LETTERS, RAW_PAGES, SCRAPE_CHECKPOINTS, TopicSpec, topic_name
from .xclient import PageResult, XAccount


@dataclass
class Fed:
    """What one `feed` produced: every output in order, and the dead letters among them."""

    outputs: list[Outgoing] = field(default_factory=list)

    def on(self, spec: TopicSpec) -> list[Record]:
        return [o.record for o in self.outputs if o.spec is spec]

    @property
    def dead_letters(self) -> list[DeadLetter]:
        return [o.record for o in self.outputs if isinstance(o.record, DeadLetter)]

    @property
    def published(self) -> list[Outgoing]:
        """Outputs other than dead letters."""
        return [o for o in self.outputs if o.spec is not DEAD_LETTERS]


def consumer_record(
    topic: str,
    partition: int,
    offset: int,
    key: str | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]],
) -> ConsumerRecord:
    """A record as aiokafka's consumer hands it over."""
    k = key.encode() if key is not None else None
    return ConsumerRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=int(time.time() * 1000),
        timestamp_type=0,
        key=k,
        value=value,
        checksum=None,
        serialized_key_size=len(k) if k else -1,
        serialized_value_size=len(value) if value else -1,
        headers=list(headers),
    )


class MemoryLog:
    """Topic partitions in memory, as the broker keeps them: an append gets the partition's
    next offset; a record is stored encoded as the Producer writes it. A topic has the
    partitions its TopicSpec declares unless `partitions` (topic name -> count) says else."""

    def __init__(self, prefix: str = "", partitions: dict[str, int] | None = None):
        self.prefix = prefix
        self._counts = dict(partitions or {})
        self._logs: dict[tuple[str, int], list[ConsumerRecord]] = defaultdict(list)
        self._appended = asyncio.Event()  # set and replaced on each append

    def name(self, spec: TopicSpec) -> str:
        return topic_name(spec, self.prefix)

    def partitions(self, spec: TopicSpec) -> list[int]:
        return list(range(self._counts.get(spec.name, spec.partitions)))

    def append(self, out: Outgoing) -> RecordMetadata:
        """Write `out` as the Producer would: by key through Kafka's default partitioner (no
        key: partition 0) unless it names its partition."""
        parts = self.partitions(out.spec)
        if out.partition is not None:
            if out.partition not in parts:
                raise ValueError(f"{out.spec.name} has no partition {out.partition}")
            partition = out.partition
        else:
            partition = partition_for_key(out.key, parts) if out.key is not None else parts[0]
        name = self.name(out.spec)
        log = self._logs[(name, partition)]
        msg = consumer_record(
            name, partition, len(log), out.key, out.record.encode(), _headers(out)
        )
        log.append(msg)
        self._appended.set()
        self._appended = asyncio.Event()
        return RecordMetadata(
            topic=name,
            partition=partition,
            topic_partition=TopicPartition(name, partition),
            offset=msg.offset,
            timestamp=msg.timestamp,
            timestamp_type=0,
            log_start_offset=0,
        )

    def records(self, spec: TopicSpec, partition: int, start: int = 0) -> list[ConsumerRecord]:
        """A partition's records from offset `start` to its end."""
        return self._logs[(self.name(spec), partition)][max(0, start) :]

    def end(self, spec: TopicSpec, partition: int) -> int:
        """The offset the partition's next record gets."""
        return len(self._logs[(self.name(spec), partition)])

    def read(self, spec: TopicSpec) -> list[Record]:
        """Every record of the topic decoded, partition by partition, each in offset order."""
        return [decode(spec, m) for p in self.partitions(spec) for m in self.records(spec, p)]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until predicate() holds (re-checked after each append); False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            left = deadline - loop.time()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(self._appended.wait(), left)
            except TimeoutError:
                return predicate()
        return True


class MemoryProducer:
    """Stands in for the Producer a service publishes with outside its handler's return value
    (the reporter's dead reports, a lease request, the scraper's raw pages): every send is
    kept, in order, and written to its MemoryLog, which answers with the RecordMetadata a
    broker acknowledgement carries."""

    def __init__(self, log: MemoryLog | None = None) -> None:
        self.log = log if log is not None else MemoryLog()
        self.sent: list[Outgoing] = []

    async def send_and_wait(self, out: Outgoing) -> RecordMetadata:
        self.sent.append(out)
        return self.log.append(out)

    async def send_all(self, outs: Sequence[Outgoing]) -> list[RecordMetadata]:
        return [await self.send_and_wait(o) for o in outs]

    async def partitions_for(self, topic: str) -> set[int]:
        spec = next((s for s in CATALOGUE if self.log.name(s) == topic), None)
        if spec is None:
            raise ValueError(f"unknown topic {topic}")
        return set(self.log.partitions(spec))

    def on(self, spec: TopicSpec) -> list[Record]:
        return [o.record for o in self.sent if o.spec is spec]


class MemoryTable:
    """A key -> latest record view of one topic of a MemoryLog: the part of TopicTable
    (libs/topic_table.py) handlers read. Like the real view it shows only what the log holds,
    decoded from the stored bytes (an undecodable record is skipped, as there)."""

    def __init__(self, log: MemoryLog, spec: TopicSpec):
        self.log = log
        self.spec = spec
        self._rows: dict[str, Record] = {}
        self._next: dict[int, int] = {}

    @property
    def rows(self) -> dict[str, Record]:
        for p in self.log.partitions(self.spec):
            for m in self.log.records(self.spec, p, self._next.get(p, 0)):
                self._next[p] = m.offset + 1
                try:
                    rec = decode(self.spec, m)
                except Exception:  # noqa: BLE001 - skipped, as TopicTable skips it
                    continue
                if m.key is not None:
                    self._rows[m.key.decode()] = rec
        return self._rows

    async def start(self) -> MemoryTable:
        return self

    async def stop(self) -> None:
        pass

    async def wait_caught_up(self, timeout: float = 30.0) -> None:
        pass

    async def verify(self, timeout: float = 60.0) -> int:
        """The log never loses records: nothing to repair (no truncations)."""
        return 0

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        return await self.log.wait_for(predicate, timeout)


class MemoryLedgerLog:
    """The scraper's page ledger's reads (services/scraper/ledger.py LedgerLog) answered from
    a MemoryLog: its checkpoint view, the raw-pages partitions, their ends and records."""

    def __init__(self, log: MemoryLog):
        self.log = log
        self._checkpoints = MemoryTable(log, SCRAPE_CHECKPOINTS)

    @property
    def checkpoints(self) -> MemoryTable:
        return self._checkpoints

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def raw_partitions(self) -> list[int]:
        return self.log.partitions(RAW_PAGES)

    async def raw_end(self, partition: int) -> int:
        return self.log.end(RAW_PAGES, partition)

    async def raw_pages(
        self, partition: int, start: int
    ) -> AsyncIterator[tuple[ConsumerRecord, Record | None]]:
        for m in self.log.records(RAW_PAGES, partition, start):
            try:
                rec: Record | None = decode(RAW_PAGES, m)
            except Exception:  # noqa: BLE001 - skipped, as scan_partition skips it
                rec = None
            yield m, rec


class HandlerHarness:
    """Feeds records to `handler` as the consumer group `group` would receive them."""

    def __init__(self, group: ConsumerGroup, handler: Handler, service: str | None = None):
        self.group = group
        self.handler = handler
        self.service = service or group.name
        self.specs = {s.name: s for s in group.inputs}
        self._next: dict[tuple[str, int], int] = defaultdict(int)

    def record(
        self,
        spec: TopicSpec,
        record: Record,
        *,
        key: str | None = None,
        partition: int = 0,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> ConsumerRecord:
        """`record` as the broker would hand it over: value, schema and body headers exactly as
        the Producer writes them, the next offset of its partition."""
        out = Outgoing(spec, key, record, tuple(headers))
        return self.raw(spec, out.record.encode(), _headers(out), key=key, partition=partition)

    def raw(
        self,
        spec: TopicSpec,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]] = (),
        *,
        key: str | None = None,
        partition: int = 0,
    ) -> ConsumerRecord:
        """Any bytes on the topic: what a third-party or broken producer might write."""
        if spec.name not in self.specs:
            raise ValueError(f"{self.group.name} does not consume {spec.name}")
        offset = self._next[(spec.name, partition)]
        self._next[(spec.name, partition)] += 1
        return consumer_record(spec.name, partition, offset, key, value, headers)

    async def feed(self, *msgs: ConsumerRecord) -> Fed:
        """One batch through decoding and the handler, as the consumer loop runs it."""
        incoming, dead = decode_batch(self.service, self.specs, list(msgs))
        outs = list(dead)
        if incoming:
            outs.extend(await handle_isolating(self.service, self.handler, incoming, list(msgs)))
        return Fed(outs)


@dataclass
class Released:
    """One request's outcome as the caller reported it to its account source."""

    account: str
    operation: str
    outcome: str | None  # None: the request raised before X answered
    task_id: str | None


class MemoryLeases:
    """An account source with LeaseClient's interface (libs/leases.py: acquire, release,
    unused) over a fixed list of accounts, handed out in turn, without the account-manager:
    every grant, outcome and unused hand-back is kept for the test to read."""

    def __init__(self, accounts: Sequence[XAccount]):
        if not accounts:
            raise ValueError("MemoryLeases needs at least one account")
        self.accounts = list(accounts)
        self._turn = 0
        self.granted: list[tuple[str, str]] = []  # (account, operation)
        self.released: list[Released] = []
        self.unused_back: list[tuple[str, str]] = []

    async def acquire(
        self,
        operation: str,
        task_id: str | None = None,
        priority: int = 5,
        tag: str | None = None,
        on_wait: Callable[[LeaseWait], None] | None = None,
    ) -> XAccount:
        account = self.accounts[self._turn % len(self.accounts)]
        self._turn += 1
        self.granted.append((account.name, operation))
        return account

    async def release(
        self,
        account: XAccount,
        operation: str,
        result: PageResult | None,
        task_id: str | None = None,
    ) -> None:
        outcome = result.outcome if result is not None else None
        self.released.append(Released(account.name, operation, outcome, task_id))

    async def unused(self, account: XAccount, operation: str) -> None:
        self.unused_back.append((account.name, operation))
