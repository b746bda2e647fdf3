"""scraper entry point: search-jobs → X → raw-pages."""

from __future__ import annotations

import asyncio

from libs.settings import Settings
from services.runtime import run_until, started_producer

from .service import SERVICE, ScraperService


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    # Every raw page and checkpoint is awaited before the next step: no lingering.
    producer = await started_producer(settings, SERVICE, linger_ms=0)
    try:
        await run_until(ScraperService(settings, producer), stop)
    finally:
        await producer.stop()
