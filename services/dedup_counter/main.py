"""dedup-counter entry point: posts + users → ClickHouse, progress → task-progress; and the
usage meter: X requests per task (account-events) → ClickHouse (usage.py)."""

from __future__ import annotations

import asyncio

from libs.kafka import ConsumerLoop
from libs.settings import Settings
from libs.storage.clickhouse import ClickHouseStore
from services.runtime import clickhouse_for, run_until, started_producer

from . import usage
from .declaration import RECORDS, USAGE
from .handler import SERVICE, DedupCounter


async def serve(
    settings: Settings, stop: asyncio.Event, store: ClickHouseStore | None = None
) -> None:
    store = store or await clickhouse_for(settings)
    producer = await started_producer(settings, SERVICE)
    try:
        counter = DedupCounter(store)
        loop = ConsumerLoop(
            settings,
            RECORDS.name,
            RECORDS.inputs,
            counter.handle,
            producer,
            on_assign=counter.forget_async,
            on_revoke=counter.forget_async,
            fill_ms=settings.counter_fill_ms,
            fill_records=settings.counter_batch_max,
            fill_bytes=settings.counter_batch_max_bytes,
        )
        # Up to a second of requests per insert: one small insert per X page would cost the
        # embedded ClickHouse more than the counting is worth; a task's cost lags by ≤ 1 s.
        meter = ConsumerLoop(
            settings,
            USAGE.name,
            USAGE.inputs,
            usage.UsageMeter(store).handle,
            producer,
            fill_ms=usage.FILL_MS,
        )
        await asyncio.gather(run_until(loop, stop), run_until(meter, stop))
    finally:
        await producer.stop()
