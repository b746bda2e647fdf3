"""Kafka plumbing shared by every service: typed producer, at-least-once consumer loop,
partition scans and compacted-topic tables.

Delivery contract (the same for every service):
  1. fetch a batch, decode each record by its `xget-schema` header;
  2. hand the decoded batch to the service's handler, which returns the records to emit;
  3. produce them and wait until the broker acknowledged every one;
  4. only then commit the input offsets.
A crash anywhere before 4 re-delivers the batch, so every sink downstream is idempotent.
A record that cannot be decoded or handled goes to the dead-letter topic with the cause and
the loop moves on: one bad record never blocks or loses the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    InvalidTxnState,
    KafkaError,
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
    OutOfOrderSequenceNumber,
    ProducerClosed,
    ProducerFenced,
    UnknownProducerId,
)
from aiokafka.partitioner import DefaultPartitioner, murmur2

from . import metrics, tracing
from .consumer_watch import observe_lag
from .failures import Backoff, DependencyWatch, dependency_of
from .ops_server import HEALTH
from .records.base import BODY_HEADER, SCHEMA_HEADER, Record
from .records.dead_letter import DeadLetter
from .settings import Settings
from .topics import CATALOGUE, DEAD_LETTERS, TopicSpec, topic_name

if TYPE_CHECKING:
    from opentelemetry.trace import Span

log = logging.getLogger(__name__)

MAX_RECORD_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Outgoing:
    """A record a handler wants published."""

    spec: TopicSpec
    key: str | None
    record: Record
    headers: tuple[tuple[str, bytes], ...] = ()
    partition: int | None = None  # None: by key (the default partitioner)


@dataclass(frozen=True)
class Incoming:
    """A consumed, decoded record."""

    topic: str
    partition: int
    offset: int
    key: str | None
    record: Record
    headers: dict[str, bytes] = field(default_factory=dict)
    timestamp_ms: int = 0
    raw: ConsumerRecord | None = field(default=None, repr=False)

    def dead_letter(self, service: str, error: str) -> Outgoing:
        assert self.raw is not None
        return dead_letter_for(service, self.raw, error)


class KeyPartitioner:
    """aiokafka's DefaultPartitioner (murmur2 of the key, as the Java client; random for no
    key), with each key's index remembered. aiokafka's murmur2 is pure Python and was 4% of
    the parser's CPU, which sends ~20 posts a page under one task key."""

    MAX_KEYS = 100_000

    def __init__(self) -> None:
        self._default = DefaultPartitioner()
        self._index: dict[tuple[bytes, int], int] = {}

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return self._default(key, all_partitions, available)
        slot = (key, len(all_partitions))
        idx = self._index.get(slot)
        if idx is None:
            if len(self._index) >= self.MAX_KEYS:
                self._index.clear()
            idx = self._index[slot] = key_index(key, len(all_partitions))
        return all_partitions[idx]


def key_index(key: bytes, n: int) -> int:
    """Which of `n` sorted partitions Kafka's default partitioner gives a key (murmur2)."""
    return (murmur2(key) & 0x7FFFFFFF) % n


# Producer states no retry gets out of: the broker no longer knows this producer's id, epoch
# or sequence numbers (a broker restarted from a snapshot that predates them, a fenced or
# expired producer), or the producer itself can no longer send. aiokafka keeps failing every
# later send of such a producer, so it is replaced (see Producer).
FATAL_PRODUCER_ERRORS: tuple[type[Exception], ...] = (
    OutOfOrderSequenceNumber,
    ProducerFenced,
    UnknownProducerId,
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    InvalidTxnState,
    ProducerClosed,
)


class ProducerReplaced(KafkaError):
    """A send failed because the producer was in a fatal state; a new producer has been built.
    What the failed send carried may or may not be on the broker: the caller goes back to its
    last durable point (committed offsets, the page ledger) and produces again."""

    retriable = True


def is_fatal_producer_error(exc: BaseException) -> bool:
    return isinstance(exc, FATAL_PRODUCER_ERRORS)


class Producer:
    """Typed producer: values are Records, keys strings, the schema header is always set.

    Never fatal: when the underlying AIOKafkaProducer reaches a state no retry gets out of
    (FATAL_PRODUCER_ERRORS, or its sender task died), the send that met it raises
    ProducerReplaced and a new AIOKafkaProducer (a new producer id from the broker) takes its
    place for the next sends. `replacements` counts them."""

    STOP_OLD_S = 10.0  # a replaced producer gets this long to close

    def __init__(
        self,
        settings: Settings,
        client_id: str = "xget",
        *,
        linger_ms: int | None = None,
        redo_replaced: bool = False,
    ):
        """`linger_ms` overrides the setting: 0 for a producer whose every send is awaited
        one at a time (scraper, gateway), where lingering only adds latency to each step.
        `redo_replaced`: send_and_wait sends a record again, once, on the new producer when
        the first attempt met a broken one — for callers whose last durable point is the
        record itself (the gateway's HTTP requests), not consumed offsets."""
        self.redo_replaced = redo_replaced
        self.settings = settings
        self.prefix = settings.topic_prefix
        self.client_id = client_id
        self._linger_ms = settings.kafka_linger_ms if linger_ms is None else linger_ms
        self._p = self._build()
        self._started = False
        self._replace_lock = asyncio.Lock()
        self._retired: set[asyncio.Task] = set()
        self.replacements = 0

    def _build(self) -> AIOKafkaProducer:
        settings = self.settings
        return AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            client_id=self.client_id,
            acks="all",
            enable_idempotence=settings.kafka_idempotent_producer,
            linger_ms=self._linger_ms,
            compression_type=(
                None if settings.kafka_compression == "none" else settings.kafka_compression
            ),
            max_request_size=MAX_RECORD_BYTES,
            max_batch_size=1024 * 1024,
            partitioner=KeyPartitioner(),
        )

    async def start(self) -> Producer:
        if not self._started:
            await self._p.start()
            self._started = True
        return self

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self._p.stop()
        if self._retired:
            await asyncio.gather(*self._retired, return_exceptions=True)

    def _can_send(self, p: AIOKafkaProducer) -> bool:
        task = p._sender.sender_task  # noqa: SLF001 - aiokafka has no public "alive"
        return task is None or not task.done()

    async def _usable(self) -> AIOKafkaProducer:
        """The current producer, replaced first if it can no longer send."""
        p = self._p
        if self._started and not self._can_send(p):
            await self._replace(p, "its sender task ended")
        return self._p

    async def _replace(self, failed: AIOKafkaProducer, cause: object) -> None:
        """Build and start a new producer in place of `failed` (once, however many sends met
        the failure together); the old one is closed in the background."""
        async with self._replace_lock:
            if self._p is not failed or not self._started:
                return
            log.warning(
                "%s: producer replaced (%s): its in-flight sends fail and are "
                "produced again by their callers",
                self.client_id,
                cause,
            )
            new = self._build()
            while True:
                try:
                    await new.start()
                    break
                except KafkaError as e:  # the broker may still be coming back
                    log.warning("%s: new producer cannot start yet: %s", self.client_id, e)
                    await new.stop()
                    await asyncio.sleep(1.0)
                    new = self._build()
            self._p = new
            self.replacements += 1
            metrics.PRODUCER_REPLACEMENTS.labels(self.client_id).inc()
            task = asyncio.get_running_loop().create_task(self._retire(failed))
            self._retired.add(task)
            task.add_done_callback(self._retired.discard)

    async def _retire(self, old: AIOKafkaProducer) -> None:
        try:
            await asyncio.wait_for(old.stop(), self.STOP_OLD_S)
        except BaseException as e:  # noqa: BLE001 - whatever it held fails its callers
            log.info("%s: replaced producer closed with %s", self.client_id, type(e).__name__)

    async def _failed(self, p: AIOKafkaProducer, e: BaseException) -> None:
        """A send of producer `p` raised `e`: when fatal, replace `p` and raise
        ProducerReplaced; else re-raise `e`."""
        if is_fatal_producer_error(e) or (self._started and not self._can_send(p)):
            await self._replace(p, f"{type(e).__name__}: {e}")
            raise ProducerReplaced(f"{type(e).__name__}: {e}") from e
        raise e

    async def partitions_for(self, topic: str) -> set[int]:
        return await (await self._usable()).partitions_for(topic)

    async def send(self, out: Outgoing) -> asyncio.Future:
        """Queue a record; returns the future of its broker acknowledgement. (Counted in
        xget_records_out_total by send_all/send_and_wait, once acknowledged.)"""
        topic = topic_name(out.spec, self.prefix)
        p = await self._usable()
        try:
            fut = await p.send(
                topic,
                out.record.encode(),
                key=out.key.encode() if out.key is not None else None,
                headers=_headers(out),
                partition=out.partition,
            )
        except Exception as e:  # noqa: BLE001 - sorted by _failed
            await self._failed(p, e)
        fut.add_done_callback(_on_ack_wake(topic))
        return self._watched(p, fut)

    def _watched(self, p: AIOKafkaProducer, fut: asyncio.Future) -> asyncio.Future:
        """The acknowledgement of a send of `p`, whose fatal failure replaces `p` and fails
        as ProducerReplaced."""

        async def ack():
            try:
                return await fut
            except Exception as e:  # noqa: BLE001 - sorted by _failed
                await self._failed(p, e)

        return asyncio.ensure_future(ack())

    async def send_all(self, outs: Sequence[Outgoing]) -> list:
        """Publish records in order and wait until the broker acknowledged all of them.

        Records are grouped by partition, in order, into record batches built here and handed
        over whole (aiokafka's create_batch/send_batch): one append per record instead of one
        send(), whose metadata checks, partitioning and future cost ~17 µs a record (the parser
        publishes ~60 records a page). Order within a partition is kept, which is all Kafka
        orders. Returns one acknowledgement per batch."""
        if len(outs) < 4:
            futures = [await self.send(o) for o in outs]
        else:
            futures = await self._send_batched(outs)
        results = await asyncio.gather(*futures, return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        self._count(outs)
        return results

    async def _send_batched(self, outs: Sequence[Outgoing]) -> list[asyncio.Future]:
        p = await self._usable()
        try:
            futures = await self._send_batched_on(p, outs)
        except Exception as e:  # noqa: BLE001 - sorted by _failed
            await self._failed(p, e)
        return [self._watched(p, f) for f in futures]

    async def _send_batched_on(
        self, p: AIOKafkaProducer, outs: Sequence[Outgoing]
    ) -> list[asyncio.Future]:
        parts: dict[str, list[int]] = {}
        groups: dict[tuple[str, int], list[tuple[bytes | None, bytes, list]]] = {}
        for o in outs:
            topic = topic_name(o.spec, self.prefix)
            key = o.key.encode() if o.key is not None else None
            partition = o.partition
            if partition is None:
                if topic not in parts:
                    parts[topic] = sorted(await p.partitions_for(topic))
                partition = p._partitioner(key, parts[topic], parts[topic])  # noqa: SLF001 - aiokafka's own partitioner, so batches land where send() would
            groups.setdefault((topic, partition), []).append((key, o.record.encode(), _headers(o)))
        futures = []
        for (topic, partition), records in groups.items():
            batch = p.create_batch()
            for key, value, headers in records:
                if batch.append(timestamp=None, key=key, value=value, headers=headers) is not None:
                    continue
                if batch.record_count():
                    futures.append(await p.send_batch(batch, topic, partition=partition))
                    batch = p.create_batch()
                    if (
                        batch.append(timestamp=None, key=key, value=value, headers=headers)
                        is not None
                    ):
                        continue
                # Larger than a batch on its own: the producer's own path (max_request_size).
                futures.append(
                    await p.send(topic, value, key=key, headers=headers, partition=partition)
                )
                batch = p.create_batch()
            if batch.record_count():
                futures.append(await p.send_batch(batch, topic, partition=partition))
            futures[-1].add_done_callback(_on_ack_wake(topic))
        return futures

    async def send_and_wait(self, out: Outgoing):
        try:
            ack = await (await self.send(out))
        except ProducerReplaced:
            if not self.redo_replaced:
                raise
            ack = await (await self.send(out))
        self._count((out,))
        return ack

    def _count(self, outs: Sequence[Outgoing]) -> None:
        """records_out per topic, once acknowledged (one counter update per topic per call)."""
        per_topic: dict[str, int] = {}
        for o in outs:
            per_topic[o.spec.name] = per_topic.get(o.spec.name, 0) + 1
        for name, n in per_topic.items():
            metrics.RECORDS_OUT.labels(self.client_id, self.prefix + name).inc(n)


def _headers(out: Outgoing) -> list[tuple[str, bytes]]:
    """The schema header, the record's own headers, the current span's W3C context unless
    the record carries one, and the record's body (see libs.records.base)."""
    headers = [(SCHEMA_HEADER, out.record.schema_id().encode()), *out.headers]
    tracing.inject(headers)
    body = out.record.encode_body()
    if body is not None:
        headers.append((BODY_HEADER, body))
    return headers


def partition_for_key(key: str, partitions: Sequence[int]) -> int:
    """The partition Kafka's default partitioner (murmur2, as the Java client) gives a key."""
    parts = sorted(partitions)
    return parts[key_index(key.encode(), len(parts))]


def decode(spec: TopicSpec, msg: ConsumerRecord) -> Record:
    """Decode a consumed record by its schema header; raises ValueError with the cause."""
    headers = dict(msg.headers or ())
    schema = headers.get(SCHEMA_HEADER)
    model = spec.schema_for(schema.decode() if schema else None)
    if model is None:
        known = ", ".join(i for s in spec.schemas for i in s.schema_ids())
        raise ValueError(f"unknown schema {schema!r} on {spec.name} (this service reads {known})")
    if msg.value is None:
        raise ValueError("empty record value")
    return model.decode(
        msg.value, headers.get(BODY_HEADER), key=msg.key, timestamp_ms=msg.timestamp
    )


def dead_letter_for(service: str, msg: ConsumerRecord, error: str) -> Outgoing:
    headers = dict(msg.headers or ())
    schema = headers.get(SCHEMA_HEADER)
    key = msg.key.decode(errors="replace") if msg.key is not None else None
    dl = DeadLetter(
        service=service,
        source_topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        key=key,
        value=(msg.value or b"").decode(errors="replace"),
        schema_header=schema.decode(errors="replace") if schema else None,
        body=body.decode(errors="replace")
        if (body := headers.get(BODY_HEADER)) is not None
        else None,
        error=error[:4000],
        failed_at=datetime.now(UTC),
    )
    return Outgoing(DEAD_LETTERS, key, dl)


def spec_by_topic(prefix: str) -> dict[str, TopicSpec]:
    return {topic_name(s, prefix): s for s in CATALOGUE}


Handler = Callable[[list[Incoming]], Awaitable[list[Outgoing]]]


class HandlerError(Exception):
    """Raised by a handler for one record it rejects: that record is dead-lettered."""


# Topic -> the events of this process's fetchers now waiting out an empty-fetch backoff on it.
_backoff_waiters: dict[str, set[asyncio.Event]] = {}


def _wake_local_fetchers(topic: str) -> None:
    """A record this process published on `topic` is acknowledged: a local consumer of the
    topic that is waiting after an empty fetch fetches now. In the embedded mode every service
    shares a process, so each hop (task -> scheduler -> scraper -> lease -> account-manager)
    costs a fetch round trip instead of up to the backoff cap."""
    for ev in _backoff_waiters.get(topic, ()):
        ev.set()


def _on_ack_wake(topic: str):
    def done(fut: asyncio.Future) -> None:
        if not fut.cancelled() and fut.exception() is None:
            _wake_local_fetchers(topic)

    return done


def install_empty_fetch_backoff(ms: int, max_ms: int | None = None) -> None:
    """Make aiokafka's fetcher wait after a fetch that returned no records.

    A broker normally holds an empty fetch for fetch.max.wait.ms; one that answers at once
    (noida-db) turns aiokafka's fetch loop into a busy loop (measured: ~86% of a core per
    idle consumer). The wait is `ms` after the first empty fetch and doubles with each further
    one up to `max_ms`; a fetch with records resets it. A process has a dozen consumers on
    quiet tables (task commands, controls, account state): at a flat 50 ms their polling was
    ~7% of a core in the scraper's process. This wraps the fetcher's per-request coroutine
    once per process.
    """
    from aiokafka.consumer import fetcher

    current = fetcher.Fetcher._proc_fetch_request  # noqa: SLF001 - aiokafka has no hook for its empty-fetch backoff (see above)
    original = getattr(current, "__xget_original__", current)
    if ms <= 0:
        fetcher.Fetcher._proc_fetch_request = original  # noqa: SLF001 - restoring aiokafka's own method
        return
    cap = max(ms, max_ms if max_ms is not None else ms)

    async def proc_fetch_request(self, assignment, node_id, request):
        got_records = await original(self, assignment, node_id, request)
        if got_records:
            self._xget_empty_fetches = 0
            return got_records
        streak = getattr(self, "_xget_empty_fetches", 0)
        self._xget_empty_fetches = streak + 1
        topics = {tp.topic for tp in assignment.tps}
        woken = asyncio.Event()
        for t in topics:
            _backoff_waiters.setdefault(t, set()).add(woken)
        try:
            await asyncio.wait_for(woken.wait(), min(ms * (1 << min(streak, 16)), cap) / 1000)
        except TimeoutError:
            pass
        except asyncio.CancelledError:
            # Fetcher.close() cancels pending fetch tasks and awaits them unguarded:
            # this wait is pure idling, so end quietly as a finished fetch would.
            pass
        finally:
            for t in topics:
                waiters = _backoff_waiters.get(t)
                if waiters is not None:
                    waiters.discard(woken)
                    if not waiters:
                        del _backoff_waiters[t]
        if woken.is_set():
            self._xget_empty_fetches = 0  # records are there: poll at the short wait again
        return got_records

    # Marks our wrapper, so installing again wraps aiokafka's own method, not ours.
    proc_fetch_request.__xget_original__ = original  # type: ignore[attr-defined]
    fetcher.Fetcher._proc_fetch_request = proc_fetch_request  # noqa: SLF001 - aiokafka has no hook for its empty-fetch backoff (see above)


def install_fetcher_close_fix() -> None:
    """Make aiokafka's Fetcher.close() end even when its fetch routine swallowed the cancel.

    After an assignment change the routine cancels its pending fetches and awaits each inside
    `contextlib.suppress(CancelledError)`: a close() landing in that moment has its cancel
    suppressed, the routine loops on, and close() (so consumer.stop()) waits forever. Topic
    tables re-assign their shared consumer when a view joins or leaves and may stop right
    after. The fix repeats the cancel until the routine has ended, then closes as before."""
    from aiokafka.consumer import fetcher

    current = fetcher.Fetcher.close
    if getattr(current, "__xget_original__", None) is not None:
        return
    original = current

    async def close(self):
        task = self._fetch_task
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.05)
        await original(self)

    # Marks our wrapper, so installing again wraps aiokafka's own method, not ours.
    close.__xget_original__ = original  # type: ignore[attr-defined]
    fetcher.Fetcher.close = close


class ReconnectWatch:
    """Tells when a consumer's connection to a broker was replaced since the last look: the
    broker went away and came back, maybe restarted from an older snapshot (aiokafka
    reconnects silently and has no hook for it)."""

    def __init__(self, consumer: AIOKafkaConsumer):
        self.consumer = consumer
        self._seen: dict = {}

    def replaced(self) -> bool:
        """True after a connection was lost or replaced, until `checked()` marks it handled.
        A lost connection counts at once, before anything reconnects: aiokafka keeps a
        closed connection in its table until its next request to that node."""
        conns = self.consumer._client._conns  # noqa: SLF001 - aiokafka exposes no connection events; its table is the truth
        for k, conn in conns.items():
            if conn.connected():
                self._seen.setdefault(k, conn)  # a connection to a node not seen before
        return any(
            conns.get(k) is not conn or not conn.connected() for k, conn in self._seen.items()
        )

    def checked(self) -> None:
        """What a reconnect may have changed was dealt with: the current (live) connections
        are the ones to compare with from now on."""
        self._seen = {
            k: c
            for k, c in self.consumer._client._conns.items()  # noqa: SLF001 - aiokafka exposes no connection events; its table is the truth
            if c.connected()
        }


async def seek_to_committed(consumer: AIOKafkaConsumer) -> None:
    """Every assigned partition back to its group's committed offset on the broker (the start
    when none), never past the log's end: a commit past it was made after a restarted broker
    lost records, and what is at those offsets now is new. What a consumer does after a
    broker fault, instead of trusting its in-memory positions."""
    tps = list(consumer.assignment())
    ends = await consumer.end_offsets(tps)
    for tp in tps:
        committed = await consumer.committed(tp)
        if committed is None:
            await consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, min(committed, ends[tp]))


def consumer_for(
    settings: Settings, group_id: str | None, client_id: str, *, offset_reset: str = "earliest"
) -> AIOKafkaConsumer:
    """`offset_reset`: where a position the log does not hold any more moves to ("earliest",
    "latest"), or "none": getmany raises OffsetOutOfRangeError({tp: position}) and the caller
    decides — a broker restarted from a snapshot can have a shorter log than the consumer
    read, and the offsets it lost are reused by new records."""
    install_fetcher_close_fix()
    install_empty_fetch_backoff(
        settings.kafka_empty_fetch_backoff_ms, settings.kafka_empty_fetch_backoff_max_ms
    )
    return AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group_id,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset=offset_reset,
        max_poll_records=settings.kafka_max_poll_records,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
        rebalance_timeout_ms=max(settings.kafka_session_timeout_ms, 10_000),
        max_partition_fetch_bytes=MAX_RECORD_BYTES,
        fetch_max_bytes=4 * MAX_RECORD_BYTES,
        # Range assignment gives one member the same partition numbers of every input topic:
        # topics keyed alike (task id) and equally partitioned are co-partitioned, so a task's
        # commands, progress and controls all reach the member that owns the task.
        partition_assignment_strategy=(RangePartitionAssignor,),
    )


async def partitions_of(consumer: AIOKafkaConsumer, name: str) -> list[TopicPartition]:
    """Every partition of a topic, fetching metadata once if the client has none yet."""
    parts = consumer.partitions_for_topic(name)
    if not parts:
        # Ask about every topic: a client that already follows topics asks about those only,
        # and naming a missing topic in a metadata request makes some brokers create it (with
        # the broker's default partition count, not the catalogue's).
        md = await consumer._client.fetch_all_metadata()  # noqa: SLF001 - the one metadata request that names no topic (see above)
        parts = md.partitions_for_topic(name) or set()
    if not parts:
        raise RuntimeError(f"topic {name} does not exist: run `xget topics create`")
    return [TopicPartition(name, p) for p in sorted(parts)]


async def follow_from_end(
    settings: Settings, spec: TopicSpec, client_id: str
) -> tuple[AIOKafkaConsumer, list[TopicPartition]]:
    """A started consumer, outside any group, on every partition of a topic, positioned at
    its current end: it reads exactly what is published from now on (the end is resolved
    here, not at the first fetch, so nothing sent after this returns is missed). A position
    a restarted broker no longer has moves to the new end, never back to the start."""
    c = consumer_for(settings, None, client_id, offset_reset="latest")
    await c.start()
    try:
        tps = await partitions_of(c, topic_name(spec, settings.topic_prefix))
        c.assign(tps)
        await c.seek_to_end(*tps)
        for tp in tps:
            await c.position(tp)
    except BaseException:
        await c.stop()
        raise
    return c, tps


async def join(
    consumer: AIOKafkaConsumer, settings: Settings, topics: list[str], listener=None
) -> None:
    """Subscribe as a group member, or (group mode "assign") take every partition and
    resume from the group's committed offsets without membership."""
    if settings.kafka_group_mode == "members":
        if listener is not None:
            consumer.subscribe(topics, listener=listener)
        else:
            consumer.subscribe(topics)
        return
    tps = [tp for name in topics for tp in await partitions_of(consumer, name)]
    consumer.assign(tps)
    for tp in tps:
        committed = await consumer.committed(tp)
        if committed is None:
            await consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, committed)


class ConsumerLoop:
    """Runs one service's consumer group with the at-least-once contract described above."""

    def __init__(
        self,
        settings: Settings,
        service: str,
        inputs: Sequence[TopicSpec],
        handler: Handler,
        producer: Producer,
        *,
        group_id: str | None = None,
        batch_timeout_ms: int = 200,
        on_assign: Callable[[set[TopicPartition]], Awaitable[None]] | None = None,
        on_revoke: Callable[[set[TopicPartition]], Awaitable[None]] | None = None,
        fill_ms: int = 0,
        fill_records: int = 2_000,
        fill_bytes: int | None = None,
        max_records: int | None = None,
    ):
        """`fill_ms`: after a batch arrives, keep fetching up to this long (or `fill_records`)
        before handling it — fewer, larger sink writes for a service whose cost is per batch
        (dedup-counter's ClickHouse inserts); the client-side twin of fetch.min.bytes.
        `fill_bytes`: stop filling once the batch's records hold this many bytes (values and
        headers), overshooting by about one record: a service's memory follows its batch
        (the dedup-counter holds ~60 KB per post while it writes one), so a consumer that
        catches up on a backlog must not take batches many times its usual size.
        `max_records`: at most this many records a batch (default kafka_max_poll_records), for
        a service whose records are heavy: nothing of a batch goes out before all of it is
        handled, so smaller batches keep the next service busy sooner."""
        self.max_records = max_records
        self.fill_ms = fill_ms
        self.fill_records = fill_records
        self.fill_bytes = fill_bytes
        self.settings = settings
        self.on_assign = on_assign
        self.on_revoke = on_revoke
        self.service = service
        self.inputs = inputs
        self.handler = handler
        self.producer = producer
        self.group_id = group_id or f"{settings.topic_prefix}{service}"
        self.batch_timeout_ms = batch_timeout_ms
        self.specs = spec_by_topic(settings.topic_prefix)
        self._stop = asyncio.Event()
        self.processed = 0
        self.dead_lettered = 0
        # The running consumer, for hooks that need committed or end offsets (on_assign).
        self.consumer: AIOKafkaConsumer | None = None
        self._lag_at = 0.0
        self._stalls = Stalls(
            service,
            self.group_id,
            Backoff(settings.dependency_retry_base_s, settings.dependency_retry_max_s),
        )
        HEALTH.register(self.group_id)

    def stop(self) -> None:
        self._stop.set()

    def _listener(self):
        """Rebalance callbacks for services that keep per-partition work (members mode)."""
        if self.on_assign is None and self.on_revoke is None:
            return None
        loop = self

        class Listener(ConsumerRebalanceListener):
            async def on_partitions_revoked(self, revoked):
                if loop.on_revoke is not None and revoked:
                    await loop.on_revoke(set(revoked))

            async def on_partitions_assigned(self, assigned):
                if loop.on_assign is not None and assigned:
                    await loop.on_assign(set(assigned))

        return Listener()

    async def run(self) -> None:
        # "none": a position the log does not hold raises, and the loop reads again from
        # what the broker says was committed (see _resync) instead of jumping anywhere.
        consumer = self.consumer = consumer_for(
            self.settings, self.group_id, self.service, offset_reset="none"
        )
        await consumer.start()
        await join(
            consumer,
            self.settings,
            [topic_name(s, self.settings.topic_prefix) for s in self.inputs],
            self._listener(),
        )
        if self.settings.kafka_group_mode == "assign" and self.on_assign is not None:
            await self.on_assign(set(consumer.assignment()))
        log.info(
            "%s consuming %s as group %s",
            self.service,
            [s.name for s in self.inputs],
            self.group_id,
        )
        HEALTH.ready(self.group_id)
        latency = metrics.HANDLE_SECONDS.labels(self.service)
        reconnects = ReconnectWatch(consumer)
        resync = False
        try:
            while not self._stop.is_set():
                if resync:
                    resync = not await self._resync(consumer, reconnects)
                    continue
                if not await self._stalls.wait_or_resume(
                    consumer, self._stop, self.batch_timeout_ms
                ):
                    continue
                try:
                    batch = await consumer.getmany(
                        timeout_ms=self.batch_timeout_ms, max_records=self.max_records
                    )
                    if batch and self.fill_ms:
                        batch = await self._fill(consumer, batch)
                except (OffsetOutOfRangeError, NoOffsetForPartitionError):
                    resync = True  # the broker lost records we had read, or never had any
                    continue
                batch = self._stalls.drop_paused(batch)
                msgs = [
                    m
                    for tp in sorted(batch, key=lambda t: (t.topic, t.partition))
                    for m in batch[tp]
                ]
                if not msgs:
                    await self._observe_lag(consumer)
                    continue
                t0 = time.perf_counter()
                metrics.observe_consumed(self.service, msgs)
                try:
                    await self._process(msgs)
                except Exception as e:
                    dependency = dependency_of(e)
                    if dependency is None:
                        raise
                    # Nothing of the batch was committed: read it again after the wait.
                    self._stalls.stall(consumer, batch, dependency, e)
                    resync = resync or dependency == "kafka"
                    continue
                if reconnects.replaced():
                    # The broker went away while this batch was handled, and may be back from
                    # a snapshot older than what was read: commit nothing, read again from
                    # what it holds as committed (outputs are idempotent downstream).
                    resync = True
                    continue
                self._stalls.recovered()
                await self._commit(
                    consumer, {tp: ms[-1].offset + 1 for tp, ms in batch.items() if ms}
                )
                latency.observe(time.perf_counter() - t0)
                await self._observe_lag(consumer)
        finally:
            self._stalls.recovered()
            HEALTH.gone(self.group_id)
            await consumer.stop()

    async def _resync(self, consumer: AIOKafkaConsumer, reconnects: ReconnectWatch) -> bool:
        """After a broker fault: every partition back to the broker's committed offset (never
        past its log's end), so records at offsets a restarted broker gave anew are read, not
        skipped. False while the broker cannot answer (waited out with the backoff)."""
        try:
            await seek_to_committed(consumer)
        except Exception as e:
            if dependency_of(e) is None:
                raise
            delay = self._stalls.watch.failed("kafka", e)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            return False
        reconnects.checked()
        log.info("%s: positions re-read from the broker's committed offsets", self.service)
        return True

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict) -> None:
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as e:
            # Partitions moved to another member mid-batch: it re-reads from the last
            # commit, and every sink is idempotent, so nothing is lost or counted twice.
            log.warning(
                "%s commit after rebalance failed (re-delivery follows): %s", self.service, e
            )
        except Exception as e:
            if dependency_of(e) is None:
                raise
            # The outputs are acknowledged; the next commit covers these offsets too, and a
            # crash before it re-delivers the batch to idempotent sinks.
            log.warning(
                "%s commit failed (%s: %s); the next batch's commit covers it",
                self.service,
                type(e).__name__,
                e,
            )

    async def _observe_lag(self, consumer: AIOKafkaConsumer) -> None:
        """Lag gauges of the assigned partitions (libs/consumer_watch.py), at most once a
        second, so a busy loop pays nothing; `xget lag` asks the broker for committed offsets."""
        now = time.monotonic()
        if now - self._lag_at < 1.0:
            return
        self._lag_at = now
        await observe_lag(self.group_id, consumer)

    async def _fill(self, consumer: AIOKafkaConsumer, batch: dict) -> dict:
        deadline = time.monotonic() + self.fill_ms / 1000
        count = sum(len(v) for v in batch.values())
        limit = self.fill_bytes
        size = largest = 0  # counted only under a bound
        if limit is not None:
            sizes = [record_bytes(m) for v in batch.values() for m in v]
            size, largest = sum(sizes), max(sizes, default=0)
        while count < self.fill_records and not self._stop.is_set():
            if limit is not None and size >= limit:
                break
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                break
            want = self.fill_records - count
            if limit is not None:
                # as many as fit in the bytes left were each the largest seen, and at least
                # one: the batch ends at most about one record past the limit
                want = max(1, min(want, (limit - size) // max(largest, 1)))
            more = await consumer.getmany(timeout_ms=left_ms, max_records=want)
            for tp, ms in more.items():
                batch.setdefault(tp, []).extend(ms)
                count += len(ms)
                if limit is not None:
                    for m in ms:
                        n = record_bytes(m)
                        size += n
                        largest = max(largest, n)
        return batch

    async def _process(self, msgs: list[ConsumerRecord]) -> None:
        incoming, outs = decode_batch(self.service, self.specs, msgs)
        self.dead_lettered += len(outs)
        if incoming and tracing.enabled():
            await self._handle_traced(incoming, msgs, outs)
        else:
            if incoming:
                outs.extend(await self._handle(incoming, msgs))
            if outs:
                await self.producer.send_all(outs)
        self.processed += len(msgs)

    async def _handle_traced(
        self, incoming: list[Incoming], msgs: list[ConsumerRecord], outs: list[Outgoing]
    ) -> None:
        """Spans for the batch's records: one group span per (topic, parent context), i.e.
        the records that came from one upstream span (the 20 posts of one X page), with their
        count; the handler runs in the first group's context, and each output carries the
        group span of the input it came from. When a group has several records, each record
        also gets its own child span (partition, offset, key, ids; tracing.record_spans)."""
        tracer = tracing.tracer()
        groups: dict[tuple[str, bytes | None], list[Incoming]] = {}
        for inc in incoming:
            groups.setdefault((inc.topic, inc.headers.get("traceparent")), []).append(inc)
        spans, span_of = [], {}
        for incs in groups.values():
            first = incs[0]
            attrs = {
                "xget.service": self.service,
                "messaging.destination.name": first.topic,
                "messaging.kafka.partition": first.partition,
                "messaging.kafka.offset": first.offset,
                "messaging.batch.message_count": len(incs),
                **tracing.record_attributes(first.record),
            }
            sp = tracer.start_span(
                f"{self.service} handle {first.topic}",
                kind=tracing.trace.SpanKind.CONSUMER,
                context=tracing.extract(list(first.headers.items())),
                attributes=attrs,
            )
            spans.append(sp)
            for inc in incs:
                span_of[id(inc)] = sp
        try:
            with tracing.trace.use_span(spans[0], end_on_exit=False):
                outs.extend(await self._handle(incoming, msgs))
            if outs:
                await self.producer.send_all(_trace_outputs(outs, incoming, span_of))
        except BaseException as e:
            for sp in spans:
                sp.record_exception(e)
            raise
        finally:
            for sp in spans:
                sp.end()
            for sp, incs in zip(spans, groups.values(), strict=False):
                if len(incs) > 1:
                    # Task, keyword and service are on the group span; a record's own span
                    # says which record it is.
                    tracing.record_spans(
                        sp,
                        f"{self.service} record {incs[0].topic}",
                        [
                            {
                                "messaging.kafka.partition": inc.partition,
                                "messaging.kafka.offset": inc.offset,
                                "messaging.kafka.message.key": inc.key or "",
                                **tracing.record_ids(inc.record),
                            }
                            for inc in incs
                        ],
                    )

    async def _handle(self, incoming: list[Incoming], msgs: list[ConsumerRecord]) -> list[Outgoing]:
        outs = await handle_isolating(self.service, self.handler, incoming, msgs)
        self.dead_lettered += sum(1 for o in outs if o.spec is DEAD_LETTERS)
        return outs


def record_bytes(m: ConsumerRecord) -> int:
    """The bytes a consumed record holds: its value and its headers' values."""
    return max(m.serialized_value_size, 0) + sum(len(v) for _, v in m.headers or ())


def decode_batch(
    service: str, specs: dict[str, TopicSpec], msgs: list[ConsumerRecord]
) -> tuple[list[Incoming], list[Outgoing]]:
    """The batch's records decoded by their schema header, and a dead letter for each record
    that cannot be (an unknown schema, a value its model refuses)."""
    incoming: list[Incoming] = []
    dead: list[Outgoing] = []
    for m in msgs:
        try:
            rec = decode(specs[m.topic], m)
        except Exception as e:  # noqa: BLE001 - any decode failure is a dead letter
            dead.append(dead_letter_for(service, m, f"undecodable record: {e}"))
            metrics.RECORDS_FAILED.labels(service, m.topic).inc()
            continue
        incoming.append(
            Incoming(
                m.topic,
                m.partition,
                m.offset,
                m.key.decode() if m.key is not None else None,
                rec,
                dict(m.headers or ()),
                m.timestamp,
                m,
            )
        )
    return incoming, dead


async def handle_isolating(
    service: str, handler: Handler, incoming: list[Incoming], msgs: list[ConsumerRecord]
) -> list[Outgoing]:
    """The handler's outputs for the batch. A dependency's failure propagates (the loop
    retries the batch later); any other failure isolates the records at fault: each is
    handled alone, and only those that fail on their own are dead-lettered."""
    try:
        return await handler(incoming)
    except HandlerError:
        pass
    except Exception as e:
        if dependency_of(e) is not None:
            raise
        log.exception("%s: batch of %d failed; retrying record by record", service, len(incoming))
    by_pos = {(m.topic, m.partition, m.offset): m for m in msgs}
    outs: list[Outgoing] = []
    for inc in incoming:
        try:
            outs.extend(await handler([inc]))
        except Exception as e:
            if dependency_of(e) is not None:
                raise  # the whole batch waits: a record is never blamed for an outage
            log.warning(
                "%s dead-letters %s[%d]@%d: %s", service, inc.topic, inc.partition, inc.offset, e
            )
            outs.append(
                dead_letter_for(
                    service,
                    by_pos[(inc.topic, inc.partition, inc.offset)],
                    f"{type(e).__name__}: {e}",
                )
            )
            metrics.RECORDS_FAILED.labels(service, inc.topic).inc()
    return outs


class Stalls:
    """The partitions of one consumer that wait out a dependency's failure.

    A batch whose handling or publishing failed because a dependency failed is not committed:
    each of its partitions is sought back to the batch's first offset and paused until a
    backoff (capped, full jitter) has passed, then resumed and read again. Meanwhile the
    component is not ready, with the cause, and `xget_dependency_down` is 1; the first batch
    that goes through clears both and resets the backoff. Partitions that did not fail keep
    flowing."""

    def __init__(self, service: str, component: str, backoff: Backoff):
        self.watch = DependencyWatch(service, component, backoff)
        self.until: dict[TopicPartition, float] = {}  # paused partition -> resume time

    def stall(
        self, consumer: AIOKafkaConsumer, batch: dict, dependency: str, error: BaseException
    ) -> None:
        resume_at = time.monotonic() + self.watch.failed(dependency, error)
        assigned = consumer.assignment()
        for tp, ms in batch.items():
            if ms and tp in assigned:
                consumer.seek(tp, ms[0].offset)
                consumer.pause(tp)
                self.until[tp] = resume_at

    def recovered(self) -> None:
        self.watch.recovered()

    async def wait_or_resume(
        self, consumer: AIOKafkaConsumer, stop: asyncio.Event, poll_ms: int
    ) -> bool:
        """Resume the partitions whose wait is over; when every assigned partition is still
        paused, wait (at most `poll_ms`, or until stopped) and answer False: nothing to read."""
        if not self.until:
            return True
        assigned = consumer.assignment()
        now = time.monotonic()
        for tp in list(self.until):
            if tp not in assigned:
                del self.until[tp]  # moved to another member, which reads from the commit
            elif self.until[tp] <= now:
                del self.until[tp]
                consumer.resume(tp)
        if not self.until or any(tp not in self.until for tp in assigned):
            return True
        wait = min(min(self.until.values()) - now, poll_ms / 1000)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, wait))
        return False

    def drop_paused(self, batch: dict) -> dict:
        """Records of a paused partition fetched before the pause: they are read again."""
        if not self.until:
            return batch
        return {tp: ms for tp, ms in batch.items() if tp not in self.until}


def _trace_outputs(
    outs: list[Outgoing], incoming: list[Incoming], span_of: dict[int, Span]
) -> list[Outgoing]:
    """Give each output the trace context of the input it came from: same key, else same task
    id, else the batch's first record."""
    import dataclasses

    by_key = {inc.key: span_of[id(inc)] for inc in incoming if inc.key is not None}
    by_task: dict[str, Span] = {}
    for inc in incoming:
        task = getattr(inc.record, "task_id", None)
        if task:
            by_task.setdefault(task, span_of[id(inc)])
    first = span_of[id(incoming[0])]
    contexts: dict[int, list[tuple[str, bytes]]] = {}  # span → its headers, built once
    traced = []
    for out in outs:
        task_id = getattr(out.record, "task_id", None)
        sp = (out.key is not None and by_key.get(out.key)) or by_task.get(task_id or "") or first
        ctx = contexts.get(id(sp))
        if ctx is None:
            ctx = contexts[id(sp)] = []
            tracing.inject(ctx, tracing.context_with(sp))
        traced.append(dataclasses.replace(out, headers=(*out.headers, *ctx)))
    return traced


async def scan_partition(
    settings: Settings,
    spec: TopicSpec,
    partition: int,
    start_offset: int,
    *,
    deadline_s: float = 60.0,
    end_offset: int | None = None,
) -> AsyncIterator[tuple[ConsumerRecord, Record | None]]:
    """Read one partition from `start_offset` to its current end (or to `end_offset`,
    exclusive), decoding each record.

    The end is the larger of the high watermark seen after a fetch and the ListOffsets end
    taken at the start: each under-reports on one of the brokers we run (Tansu's ListOffsets,
    noida-db's fetch high watermark), the larger is right on both and on Kafka.
    """
    tp = TopicPartition(topic_name(spec, settings.topic_prefix), partition)
    consumer = consumer_for(settings, None, "xget-scan")
    await consumer.start()
    try:
        consumer.assign([tp])
        consumer.seek(tp, max(0, start_offset))
        end_at_start = (await consumer.end_offsets([tp]))[tp]
        deadline = time.monotonic() + deadline_s
        while True:
            batch = await consumer.getmany(tp, timeout_ms=300)
            for m in batch.get(tp, []):
                if end_offset is not None and m.offset >= end_offset:
                    return
                try:
                    rec = decode(spec, m)
                except Exception:  # noqa: BLE001 - undecodable records are skipped here
                    rec = None
                yield m, rec
            hw = consumer.highwater(tp)
            pos = await consumer.position(tp)
            if end_offset is not None and pos >= end_offset:
                return
            if hw is not None and pos >= max(hw, end_at_start):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"scan of {tp} did not reach its end in {deadline_s}s")
    finally:
        await consumer.stop()
