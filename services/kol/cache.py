"""The KOL cache: the kol-pages topic, indexed at start, appended before anything else.

`load()` reads every partition once and keeps only metadata (where each page is, its cursor
chain, whether it is final); a KOL's bodies are read back by offset when it is processed, so
memory stays at one KOL's pages however large the cache is. `append()` returns only after the
broker acknowledged the page, so a page is either in the cache or was never answered to us.
`clear()` writes a KolCacheCleared marker to every partition: the index forgets everything
before it (and the broker is asked to delete those records where it supports it).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import TopicPartition

from libs.kafka import Outgoing, Producer, scan_partition
from libs.records.kol import KolCacheCleared, KolPage
from libs.settings import Settings
from libs.topics import KOL_PAGES, topic_name

log = logging.getLogger(__name__)


@dataclass
class CachedPage:
    partition: int
    offset: int
    operation: str
    page_no: int
    cursor_in: str | None
    cursor_out: str | None
    final: bool
    outcome: str
    users: int
    requested: bool  # a call was made (a final marker without a call would not be)
    source: str
    size: int


@dataclass
class CacheStats:
    kols: int = 0
    pages: int = 0
    bytes: int = 0
    calls: int = 0
    ok_calls_by_source: dict[str, int] = field(default_factory=dict)


def _meta(partition: int, offset: int, size: int, p: KolPage) -> CachedPage:
    return CachedPage(
        partition,
        offset,
        p.operation,
        p.page_no,
        p.cursor_in,
        p.cursor_out,
        p.final,
        p.outcome,
        p.users,
        p.http_status is not None or p.outcome != "ok",
        p.source,
        size,
    )


class KolCache:
    def __init__(self, settings: Settings, producer: Producer):
        self.settings = settings
        self.producer = producer
        self.topic = topic_name(KOL_PAGES, settings.topic_prefix)
        self.entries: dict[str, list[CachedPage]] = defaultdict(list)

    # --- reading ------------------------------------------------------------------------------
    async def _partitions(self) -> list[int]:
        return sorted(await self.producer.partitions_for(self.topic))

    async def load(self) -> None:
        """Index every page in the cache (metadata only)."""
        self.entries = defaultdict(list)
        parts = await self._partitions()
        results = await asyncio.gather(*(self._index_partition(p) for p in parts))
        for part in results:
            for kol, metas in part.items():
                self.entries[kol].extend(metas)

    async def _index_partition(self, partition: int) -> dict[str, list[CachedPage]]:
        found: dict[str, list[CachedPage]] = defaultdict(list)
        async for msg, rec in scan_partition(
            self.settings, KOL_PAGES, partition, 0, deadline_s=600
        ):
            if isinstance(rec, KolCacheCleared):
                found.clear()
            elif isinstance(rec, KolPage):
                found[rec.kol].append(_meta(partition, msg.offset, len(msg.value or b""), rec))
        return found

    def chain(self, kol: str, source: str) -> list[CachedPage]:
        """The usable followings pages of a KOL from one source (cursors are per source), in
        order: page 0, 1, … while they connect."""
        by_no: dict[int, CachedPage] = {}
        for m in self.entries.get(kol, ()):
            if (
                m.operation == "followings"
                and m.outcome == "ok"
                and m.source == source
                and m.page_no not in by_no
            ):
                by_no[m.page_no] = m
        out: list[CachedPage] = []
        while len(out) in by_no:
            out.append(by_no[len(out)])
            if out[-1].final:
                break
        return out

    def lookup(self, kol: str) -> CachedPage | None:
        return next(
            (m for m in self.entries.get(kol, ()) if m.operation == "lookup" and m.outcome == "ok"),
            None,
        )

    def has_pages(self, kol: str, source: str) -> bool:
        return bool(self.chain(kol, source)) or self.lookup(kol) is not None

    async def read(self, metas: list[CachedPage]) -> list[KolPage]:
        """The records at these positions (one KOL's pages live in one partition)."""
        if not metas:
            return []
        want: dict[int, set[int]] = defaultdict(set)
        for m in metas:
            want[m.partition].add(m.offset)
        got: dict[tuple[int, int], KolPage] = {}
        for partition, offsets in want.items():
            async for msg, rec in scan_partition(
                self.settings, KOL_PAGES, partition, min(offsets), end_offset=max(offsets) + 1
            ):
                if msg.offset in offsets and isinstance(rec, KolPage):
                    got[(partition, msg.offset)] = rec
        missing = [m for m in metas if (m.partition, m.offset) not in got]
        if missing:
            raise RuntimeError(
                f"{len(missing)} cached page(s) vanished from {self.topic} "
                "(retention or a concurrent --clear-cache)"
            )
        return [got[(m.partition, m.offset)] for m in metas]

    def stats(self) -> CacheStats:
        st = CacheStats()
        ok: dict[str, int] = defaultdict(int)
        for metas in self.entries.values():
            if any(m.outcome == "ok" for m in metas):
                st.kols += 1
            for m in metas:
                st.pages += 1
                st.bytes += m.size
                st.calls += m.requested
                if m.requested and m.outcome == "ok":
                    ok[m.source] += 1
        st.ok_calls_by_source = dict(ok)
        return st

    # --- writing ------------------------------------------------------------------------------
    async def append(self, page: KolPage) -> CachedPage:
        md = await self.producer.send_and_wait(Outgoing(KOL_PAGES, page.kol, page))
        size = len(page.response or "") + 512  # the body dominates; the rest is ~0.5 kB
        meta = _meta(md.partition, md.offset, size, page)
        self.entries[page.kol].append(meta)
        return meta

    async def clear(self) -> bool:
        """Forget every cached page; True when the broker also deleted the records."""
        marker = KolCacheCleared(cleared_at=datetime.now(UTC))
        ends = {}
        for p in await self._partitions():
            md = await self.producer.send_and_wait(Outgoing(KOL_PAGES, None, marker, partition=p))
            ends[p] = md.offset
        self.entries = defaultdict(list)
        try:
            from aiokafka.admin import AIOKafkaAdminClient

            admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap)
            await admin.start()
            try:
                await admin.delete_records(
                    {TopicPartition(self.topic, p): off for p, off in ends.items()},
                    timeout_ms=10_000,
                )
            finally:
                await admin.close()
            return True
        except Exception as e:  # noqa: BLE001 - the markers already did the clearing
            log.info("broker kept the cleared records (%s); they are ignored", type(e).__name__)
            return False
