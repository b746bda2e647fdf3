"""dedup-counter entry point: posts + users → ClickHouse, progress → task-progress."""

from __future__ import annotations

import asyncio

from libs.kafka import ConsumerLoop
from libs.settings import Settings
from libs.storage.clickhouse import ClickHouseStore
from libs.topics import POSTS, USERS
from services.runtime import clickhouse_for, run_until, started_producer

from .handler import SERVICE, DedupCounter


async def serve(settings: Settings, stop: asyncio.Event,
                store: ClickHouseStore | None = None) -> None:
    store = store or await clickhouse_for(settings)
    producer = await started_producer(settings, SERVICE)
    try:
        loop = ConsumerLoop(settings, SERVICE, [POSTS, USERS], DedupCounter(store).handle,
                            producer)
        await run_until(loop, stop)
    finally:
        await producer.stop()
