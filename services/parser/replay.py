"""`xget replay --since TIME [--task ID]`: re-run the parser over every raw page since TIME.

After a parser fix, past data is re-derived from the never-ask-twice cache without a single X
request: every raw page stored since TIME (by its Kafka timestamp), optionally of one task,
goes through the same `handle` as the parser service, and its posts, users and media jobs go
to the same topics. Every sink downstream is idempotent (ReplacingMergeTree rows by post id,
exact uniqExact counts, media by content hash, batch ids), so rows are replaced with the new
derivation and counts stay exactly what they were. Per raw-pages partition, what the topic no
longer holds (its retention: `retention_ms` in libs/topics.py, and on the embedded broker its
memory budget) is read from the raw_data/ archive (libs/storage/raw_archive.py) the parser
writes before it commits a page, and the rest from the topic: however old, a page is there.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime

from libs.kafka import Incoming, Producer, consumer_for, partitions_of, scan_partition
from libs.records.pages import RawPage
from libs.settings import Settings
from libs.storage.objects import open_object_store
from libs.storage.raw_archive import RawArchive
from libs.topics import RAW_PAGES, TopicSpec, topic_name
from services.runtime import started_producer

from .handler import handle

log = logging.getLogger(__name__)
BATCH = 200


@dataclass
class ReplayResult:
    pages: int = 0
    records_out: int = 0
    tasks: int = 0
    archived_pages: int = 0  # of `pages`, read from the raw_data/ archive


async def start_offsets(
    settings: Settings, since_ms: int, spec: TopicSpec = RAW_PAGES
) -> dict[int, tuple[int, int]]:
    """Per partition of `spec`'s topic: (first offset at or after `since_ms`, end offset)."""
    c = consumer_for(settings, None, "xget-replay")
    await c.start()
    try:
        tps = await partitions_of(c, topic_name(spec, settings.topic_prefix))
        end = await c.end_offsets(tps)
        try:
            found = await c.offsets_for_times({tp: since_ms for tp in tps})
        except Exception:  # noqa: BLE001 - no ListOffsets by time: scan all, filter by time
            begin = await c.beginning_offsets(tps)
            return {tp.partition: (begin[tp], end[tp]) for tp in tps}
        return {
            tp.partition: (found[tp].offset if found.get(tp) else end[tp], end[tp]) for tp in tps
        }
    finally:
        await c.stop()


async def first_offsets(settings: Settings, spec: TopicSpec = RAW_PAGES) -> dict[int, int]:
    """Per partition of `spec`'s topic: the first offset it still holds (retention deleted
    what is below)."""
    c = consumer_for(settings, None, "xget-replay")
    await c.start()
    try:
        tps = await partitions_of(c, topic_name(spec, settings.topic_prefix))
        return {tp.partition: off for tp, off in (await c.beginning_offsets(tps)).items()}
    finally:
        await c.stop()


class _Emitter:
    """Hands pages to the parser's `handle` in batches and their output to the producer."""

    def __init__(self, producer: Producer, task_id: str | None, since_ms: int):
        self.producer, self.task_id, self.since_ms = producer, task_id, since_ms
        self.batch: list[Incoming] = []
        self.result = ReplayResult()
        self.tasks: set[str] = set()

    async def add(self, inc: Incoming, *, archived: bool) -> None:
        page = inc.record
        if not isinstance(page, RawPage) or inc.timestamp_ms < self.since_ms:
            return
        if self.task_id is not None and page.task_id != self.task_id:
            return
        self.tasks.add(page.task_id)
        self.result.archived_pages += archived
        self.batch.append(inc)
        if len(self.batch) >= BATCH:
            await self.flush()

    async def flush(self) -> None:
        if self.batch:
            outs = await handle(self.batch)
            await self.producer.send_all(outs)
            self.result.records_out += len(outs)
            self.result.pages += len(self.batch)
            self.batch = []


async def replay(settings: Settings, since: datetime, task_id: str | None = None) -> ReplayResult:
    since_ms = int(since.timestamp() * 1000)
    ranges = await start_offsets(settings, since_ms)
    begins = await first_offsets(settings)
    topic = topic_name(RAW_PAGES, settings.topic_prefix)
    archive = RawArchive(await asyncio.to_thread(open_object_store, settings))
    archived = await archive.objects(since)
    producer = await started_producer(settings, "parser-replay")
    out = _Emitter(producer, task_id, since_ms)
    try:
        for partition, (start, end) in sorted(ranges.items()):
            begin = begins.get(partition, 0)
            # What the topic no longer holds (offsets below its start) comes from the archive.
            seen: set[tuple] = set()
            for obj in archived:
                if obj.partition != partition or obj.first_offset >= begin:
                    continue
                for a in await archive.pages(obj):
                    identity = (a.offset, a.page.task_id, a.page.slice_id, a.page.page_no)
                    if a.offset >= begin or identity in seen:
                        continue  # the topic's copy is read below; an overlap read once
                    seen.add(identity)
                    inc = Incoming(
                        topic, partition, a.offset, a.key, a.page, a.headers, a.timestamp_ms
                    )
                    await out.add(inc, archived=True)
            await out.flush()
            start = max(start, begin)
            if start >= end:
                continue
            async for msg, rec in scan_partition(
                settings, RAW_PAGES, partition, start, end_offset=end, deadline_s=600
            ):
                if rec is None:
                    continue  # undecodable: the parser dead-lettered it when it came
                key = msg.key.decode() if msg.key is not None else None
                headers = dict(msg.headers or ())
                inc = Incoming(
                    msg.topic, msg.partition, msg.offset, key, rec, headers, msg.timestamp, msg
                )
                await out.add(inc, archived=False)
            await out.flush()
    finally:
        await producer.stop()
    out.result.tasks = len(out.tasks)
    return out.result
