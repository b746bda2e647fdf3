"""Key → latest record views of small topics (task commands, progress, controls, account
state), every one of a process read through one shared consumer.

A service process holds a dozen or more of these views (the embedded mode: twenty), almost all
idle. With one consumer each, every view polled the broker on its own: measured on the pipeline
benchmark, ~4,000 fetch requests from the gateway+scraper process in one run, an eighth of its
CPU. One `_TableFeed` per event loop and broker reads every view's partitions with one fetch.

Each view reads its topic from the beginning, whenever it starts. When a view joins a topic the
feed already follows (the gateway and the account-manager both read account-state), the feed
goes back to the start of that topic and every view skips the offsets it already applied, so a
view never sees a record twice or out of order, and none ever steps back to an older value.
Views join and leave only between two polls, applied by the feed's own loop (a join or leave
cuts the poll under way short: records it had not handed over yet are fetched again).

A broker restarted from a snapshot may have lost its last records and then gives their
offsets to new records, so "the next offset to apply" no longer says what a view has seen.
Each view remembers the last record it applied per partition (offset, timestamp, value hash);
when the feed's connection to the broker was re-established (seen before each poll and in
`verify()`), it reads that record back, and where the broker holds another record or
none there, the view reads the partition again from its start into a shadow and swaps it in
once it reached the broker's end: rows from lost records disappear (back to the key's older
value, when there is one), new records at reused offsets are applied (a position past the
log's end, OffsetOutOfRange, is repaired the same way). Until then the view
keeps its previous rows (`wait_repaired()` waits for the swap). A hook (`on_record`) may see
a repaired partition's records again: hooks keep latest-value maps, so that is harmless.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError, OffsetOutOfRangeError

from .kafka import ReconnectWatch, consumer_for, decode, partitions_of
from .records.base import Record
from .settings import Settings
from .topics import TopicSpec, topic_name

log = logging.getLogger(__name__)

POLL_MS = 200  # one poll's wait; a view joining or leaving cuts it short

# event loop -> broker address -> its feed (a loop that is gone takes its feeds with it)
_feeds: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _TableFeed]] = (
    weakref.WeakKeyDictionary()
)


class TopicTable:
    """A live key → latest record view of a (compacted) topic, read from its beginning.

    Used for small state that lives in Kafka (task progress, task commands): every replica
    rebuilds it at start and then follows the topic, so no local state is ever authoritative.
    """

    def __init__(
        self,
        settings: Settings,
        spec: TopicSpec,
        on_record: Callable[[str | None, Record], None] | None = None,
    ):
        self.settings = settings
        self.spec = spec
        self.topic = topic_name(spec, settings.topic_prefix)
        self.rows: dict[str, Record] = {}
        self._on_record = on_record
        self._feed: _TableFeed | None = None
        self._next: dict[TopicPartition, int] = {}  # per partition: the next offset to apply
        self._end_at_start: dict[TopicPartition, int] = {}
        self._caught_up = asyncio.Event()
        self._changed = asyncio.Condition()
        # key -> (partition, offset) of the record its row came from
        self._origin: dict[str, tuple[TopicPartition, int]] = {}
        # per partition: (offset, timestamp, hash of the value) of the last record applied
        self._last: dict[TopicPartition, tuple[int, int, int]] = {}
        # partition -> (the broker's end when the repair began, the rows read again so far)
        self._repair: dict[TopicPartition, tuple[int, dict[str, tuple[Record, int]]]] = {}
        self._repaired = asyncio.Event()
        self._repaired.set()
        self.truncations = 0
        self._sync_to: dict[TopicPartition, int] = {}  # the broker's ends at verify()

    async def start(self) -> TopicTable:
        loop = asyncio.get_running_loop()
        feeds = _feeds.setdefault(loop, {})
        feed = feeds.get(self.settings.kafka_bootstrap)
        if feed is None or feed.closed:
            feed = feeds[self.settings.kafka_bootstrap] = _TableFeed(self.settings)
        await feed.join(self)
        self._feed = feed
        return self

    def _attach(self, ends: dict[TopicPartition, int]) -> None:
        """Joined the feed: read every partition from its start; caught up at `ends`."""
        self._next = {tp: 0 for tp in ends}
        self._end_at_start = ends

    def _truncated(self, tp: TopicPartition, end: int) -> None:
        """The broker no longer holds what this view read of `tp`: read it again from the
        start into a shadow, swapped in at `end` (the broker's end now)."""
        self._repair[tp] = (end, {})
        self._next[tp] = 0
        self._last.pop(tp, None)
        self._repaired.clear()
        self.truncations += 1
        log.warning(
            "table %s: the broker's %s differs from what this view read (a broker "
            "restart lost records); reading it again up to offset %d",
            self.spec.name,
            tp,
            end,
        )
        if end == 0:
            self._swap(tp)

    def _swap(self, tp: TopicPartition) -> None:
        """The partition is read again up to the end the broker had: its rows become what
        was read (those from lost records go, or back to an older value)."""
        _end, shadow = self._repair.pop(tp)
        for key in [k for k, (t, _o) in self._origin.items() if t == tp and k not in shadow]:
            del self.rows[key], self._origin[key]
        for key, (rec, offset) in shadow.items():
            self.rows[key] = rec
            self._origin[key] = (tp, offset)
        if not self._repair:
            self._repaired.set()

    async def wait_repaired(self, timeout: float = 60.0) -> None:
        """Until every partition found to differ from the broker is read again."""
        await asyncio.wait_for(self._repaired.wait(), timeout)

    def _apply(self, tp: TopicPartition, msgs) -> bool:
        """Records of one partition, in order; those before this view's next offset were
        applied already (the feed went back for another view). True if the view moved."""
        start = self._next[tp]
        changed = False
        for m in msgs:
            if m.offset < start:
                continue
            self._next[tp] = m.offset + 1
            self._last[tp] = (m.offset, m.timestamp, hash(m.value))
            repair = self._repair.get(tp)
            try:
                rec = decode(self.spec, m)
            except Exception as e:  # noqa: BLE001 - an undecodable record is skipped by a view, never fatal
                log.warning("table %s skips %s@%d: %s", self.spec.name, m.partition, m.offset, e)
                rec = None
            key = m.key.decode() if m.key is not None else None
            if repair is not None:
                if key is not None and rec is not None:
                    repair[1][key] = (rec, m.offset)
                if m.offset + 1 >= repair[0]:
                    self._swap(tp)
            elif key is not None and rec is not None:
                self.rows[key] = rec
                self._origin[key] = (tp, m.offset)
            changed = True  # the position moved: verify() may be waiting for it
            if rec is None:
                continue
            if self._on_record:
                try:
                    self._on_record(key, rec)
                except Exception:
                    log.exception(
                        "table %s: on_record failed at %s@%d", self.spec.name, m.partition, m.offset
                    )
        return changed

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_caught_up(self, timeout: float = 30.0) -> None:
        await asyncio.wait_for(self._caught_up.wait(), timeout)

    def reached(self, ends: dict[TopicPartition, int]) -> bool:
        """True once this view applied every record below `ends` (partition -> offset)."""
        return all(self._next.get(tp, 0) >= end for tp, end in ends.items())

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until predicate() holds (re-checked on each change); False on timeout."""

        async def _wait():
            async with self._changed:
                await self._changed.wait_for(predicate)

        try:
            await asyncio.wait_for(_wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def verify(self, timeout: float = 60.0) -> int:
        """Make the view what the broker holds now: check that the broker still holds what
        it read (see the module doc), repair where it does not, and wait until it read
        everything the broker had when asked (a record acknowledged before this call shows).
        Returns the truncations found so far."""
        assert self._feed is not None, "start() first"
        self._sync_to = {}
        await self._feed._change("verify", self)
        ends = self._sync_to
        if not await self.wait_for(
            lambda: all(self._next.get(tp, 0) >= end for tp, end in ends.items()), timeout
        ):
            raise TimeoutError(f"table {self.spec.name} did not read up to {ends}")
        await self.wait_repaired(timeout)
        return self.truncations

    async def stop(self) -> None:
        feed, self._feed = self._feed, None
        if feed is not None:
            await feed.leave(self)


class _TableFeed:
    """One consumer for every TopicTable of an event loop on one broker."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.closed = False
        self._tables: list[TopicTable] = []
        self._pending: list[tuple[str, TopicTable, asyncio.Future]] = []
        self._wakeup = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task | None = None
        self._reconnects: ReconnectWatch | None = None

    async def join(self, table: TopicTable) -> None:
        await self._change("join", table)

    async def leave(self, table: TopicTable) -> None:
        if self.closed:
            return
        await self._change("leave", table)
        if not self._tables and not self._pending and self._task is not None:
            # The last view: the consumer is closed when this returns (shielded: a caller
            # giving up on the wait must not cancel the feed's own clean-up).
            await asyncio.shield(self._task)

    async def _change(self, what: str, table: TopicTable) -> None:
        fut = asyncio.get_running_loop().create_future()
        self._pending.append((what, table, fut))
        self._wakeup.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="topic-tables")
        await fut

    async def _run(self) -> None:
        try:
            while self._pending or self._tables:
                try:
                    if self._pending:
                        await self._apply_pending()
                    if self._tables:
                        await self._poll()
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # noqa: BLE001 - the views must keep following
                    log.warning("topic tables: %s: %s", type(e).__name__, e)
                    await asyncio.sleep(0.5)
        finally:
            self.closed = True
            for _, _, fut in self._pending:
                if not fut.done():
                    fut.set_exception(RuntimeError("the topic table feed stopped"))
            if self._consumer is not None:
                await self._consumer.stop()
                self._consumer = None

    async def _apply_pending(self) -> None:
        pending, self._pending = self._pending, []
        self._wakeup.clear()
        try:
            if self._consumer is None:
                c = consumer_for(self.settings, None, "topic-tables", offset_reset="none")
                await c.start()
                self._consumer = c
        except BaseException as e:
            for _, _, fut in pending:
                if not fut.done():
                    fut.set_exception(e)
            raise
        c = self._consumer
        joined = []
        for what, table, fut in pending:
            try:
                if what == "verify":
                    # Asking for the ends connects to the broker if the feed had not yet:
                    # a reconnect is visible after it.
                    ends = await c.end_offsets(list(table._next))
                    await self._check_after_reconnect()
                    table._sync_to = ends
                    fut.set_result(None)
                    continue
                if what == "leave":
                    if table in self._tables:
                        self._tables.remove(table)
                    fut.set_result(None)
                    continue
                tps = await partitions_of(c, table.topic)
                table._attach(await c.end_offsets(tps))
                self._tables.append(table)
                joined.append(fut)
            except BaseException as e:  # noqa: BLE001 - the joiner gets the failure
                fut.set_exception(e)
        tps = sorted(
            {tp for t in self._tables for tp in t._next},
            key=lambda tp: (tp.topic, tp.partition),
        )
        if tps:
            c.assign(tps)
            # Each partition from the earliest offset any of its views still needs.
            for tp in tps:
                c.seek(tp, min(t._next[tp] for t in self._tables if tp in t._next))
        for fut in joined:
            if not fut.done():
                fut.set_result(None)

    async def _check_after_reconnect(self) -> None:
        """After the feed's consumer reconnected, check every view against the broker."""
        if self._reconnects is None:
            assert self._consumer is not None
            self._reconnects = ReconnectWatch(self._consumer)
        if self._reconnects.replaced():
            log.info("topic tables: reconnected to the broker; checking the views against it")
            await self._verify(self._tables)
            self._reconnects.checked()

    async def _verify(self, tables: list[TopicTable]) -> None:
        """Read back the last record each view applied per partition; a view whose record
        the broker no longer holds at that offset reads the partition again."""
        wanted: dict[TopicPartition, set[int]] = {}
        for t in tables:
            for tp, (offset, _ts, _h) in t._last.items():
                if tp not in t._repair:
                    wanted.setdefault(tp, set()).add(offset)
        if not wanted:
            return
        held = await _records_at(self.settings, wanted)
        assert self._consumer is not None  # verified only while the feed runs
        ends = await self._consumer.end_offsets(list(wanted))
        for t in tables:
            for tp, ident in list(t._last.items()):
                if tp in wanted and held.get((tp, ident[0])) != ident:
                    t._truncated(tp, ends[tp])
                    assert self._consumer is not None
                    self._consumer.seek(
                        tp,
                        min(v._next[tp] for v in self._tables if tp in v._next),
                    )

    async def _poll(self) -> None:
        c = self._consumer
        assert c is not None
        await self._check_after_reconnect()
        get = asyncio.ensure_future(c.getmany(timeout_ms=POLL_MS))
        wake = asyncio.ensure_future(self._wakeup.wait())
        try:
            await asyncio.wait({get, wake}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            wake.cancel()
            if not get.done():
                # A join or leave: records not handed over yet stay unconsumed (the position
                # moves only when getmany returns them) and are fetched again after it.
                get.cancel()
        try:
            batch = await get
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if me is not None and me.cancelling():
                raise
            return
        except OffsetOutOfRangeError as e:
            # The log is shorter than what the feed read: a broker restarted from an older
            # snapshot. The views that read past its end read those partitions again.
            positions = e.args[0] if e.args and isinstance(e.args[0], dict) else {}
            ends = await c.end_offsets(list(positions))
            for tp, end in ends.items():
                for t in self._tables:
                    if t._next.get(tp, 0) > end:
                        t._truncated(tp, end)
                c.seek(
                    tp,
                    min(
                        (t._next[tp] for t in self._tables if tp in t._next),
                        default=0,
                    ),
                )
            return
        except KafkaError as e:
            log.warning("topic tables: fetch failed: %s", e)
            await asyncio.sleep(0.5)
            return
        by_topic: dict[str, list[TopicTable]] = {}
        for t in self._tables:
            by_topic.setdefault(t.topic, []).append(t)
        changed: set[int] = set()
        for tp, msgs in batch.items():
            for t in by_topic.get(tp.topic, ()):
                if t._apply(tp, msgs):
                    changed.add(id(t))
        for t in self._tables:
            if not t._caught_up.is_set():
                await self._check_caught_up(t)
            for tp, (end, _shadow) in list(t._repair.items()):
                if await c.position(tp) >= end:  # read again up to the end it had
                    t._swap(tp)
                    changed.add(id(t))
            if id(t) in changed:
                await t._notify()

    async def _check_caught_up(self, t: TopicTable) -> None:
        c = self._consumer
        assert c is not None
        for tp in t._next:
            hw = c.highwater(tp)
            if hw is None:
                return  # no fetch answered for this partition yet; an empty one answers 0
            # The feed read every record this view needs below its position, in order.
            if await c.position(tp) < max(hw, t._end_at_start[tp]):
                return
        t._caught_up.set()


async def _records_at(
    settings: Settings, wanted: dict[TopicPartition, set[int]], timeout_s: float = 10.0
) -> dict[tuple[TopicPartition, int], tuple[int, int, int]]:
    """(offset, timestamp, value hash) of the record at each wanted offset the broker holds
    (absent: no record there any more)."""
    c = consumer_for(settings, None, "topic-tables-verify", offset_reset="none")
    await c.start()
    out: dict[tuple[TopicPartition, int], tuple[int, int, int]] = {}
    try:
        for tp, offsets in wanted.items():
            c.assign([tp])
            for offset in sorted(offsets):
                end = (await c.end_offsets([tp]))[tp]
                if offset >= end:
                    continue
                c.seek(tp, offset)
                deadline = asyncio.get_running_loop().time() + timeout_s
                while asyncio.get_running_loop().time() < deadline:
                    try:
                        batch = await c.getmany(tp, timeout_ms=200, max_records=1)
                    except OffsetOutOfRangeError:
                        break
                    msgs = batch.get(tp)
                    if msgs:
                        m = msgs[0]
                        if m.offset == offset:
                            out[(tp, offset)] = (m.offset, m.timestamp, hash(m.value))
                        break
    finally:
        await c.stop()
    return out
