"""`xget replay --since TIME [--task ID]`: re-run the parser over raw pages kept on raw-pages.

After a parser fix, past data is re-derived from the never-ask-twice cache without a single X
request: every raw page stored since TIME (by its Kafka timestamp), optionally of one task,
goes through the same `handle` as the parser service, and its posts, users and media jobs go
to the same topics. Every sink downstream is idempotent (ReplacingMergeTree rows by post id,
exact uniqExact counts, media by content hash, batch ids), so rows are replaced with the new
derivation and counts stay exactly what they were. Retention of raw-pages is its topic's
`retention_ms` in libs/topics.py: what is older is gone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from libs.kafka import Incoming, consumer_for, partitions_of, scan_partition
from libs.records.pages import RawPage
from libs.settings import Settings
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


async def replay(settings: Settings, since: datetime, task_id: str | None = None) -> ReplayResult:
    since_ms = int(since.timestamp() * 1000)
    ranges = await start_offsets(settings, since_ms)
    producer = await started_producer(settings, "parser-replay")
    result, tasks = ReplayResult(), set()
    try:
        for partition, (start, end) in sorted(ranges.items()):
            if start >= end:
                continue
            batch: list[Incoming] = []
            async for msg, rec in scan_partition(
                settings, RAW_PAGES, partition, start, end_offset=end, deadline_s=600
            ):
                if not isinstance(rec, RawPage) or msg.timestamp < since_ms:
                    continue
                if task_id is not None and rec.task_id != task_id:
                    continue
                key = msg.key.decode() if msg.key is not None else None
                batch.append(
                    Incoming(
                        msg.topic,
                        msg.partition,
                        msg.offset,
                        key,
                        rec,
                        dict(msg.headers or ()),
                        msg.timestamp,
                        msg,
                    )
                )
                tasks.add(rec.task_id)
                if len(batch) >= BATCH:
                    result.records_out += await _emit(producer, batch)
                    result.pages += len(batch)
                    batch = []
            if batch:
                result.records_out += await _emit(producer, batch)
                result.pages += len(batch)
    finally:
        await producer.stop()
    result.tasks = len(tasks)
    return result


async def _emit(producer, batch: list[Incoming]) -> int:
    outs = await handle(batch)
    await producer.send_all(outs)
    return len(outs)
