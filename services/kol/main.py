"""kol-worker entry point: kol-commands → followings job → kol-progress (ClickHouse rows)."""

from __future__ import annotations

import asyncio

from libs.settings import Settings
from services.runtime import run_until, started_producer

from .worker import SERVICE, KolWorker


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    producer = await started_producer(settings, SERVICE)
    try:
        await run_until(KolWorker(settings, producer), stop)
    finally:
        await producer.stop()
