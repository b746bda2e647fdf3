"""parser entry point: raw-pages → posts, users, media-jobs."""

from __future__ import annotations

import asyncio

from libs.kafka import ConsumerLoop
from libs.settings import Settings
from services.runtime import run_until, started_producer

from .declaration import PAGES
from .handler import SERVICE, PageHandler


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    producer = await started_producer(settings, SERVICE)
    try:
        await run_until(
            ConsumerLoop(
                settings,
                PAGES.name,
                PAGES.inputs,
                PageHandler(settings.parser_user_resend_s),
                producer,
                max_records=settings.parser_batch_pages,
            ),
            stop,
        )
    finally:
        await producer.stop()
