"""parser entry point: raw-pages → the raw_data/ archive, posts, users, media-jobs."""

from __future__ import annotations

import asyncio

from libs.failures import until_available
from libs.kafka import ConsumerLoop
from libs.settings import Settings
from libs.storage.objects import open_object_store
from libs.storage.raw_archive import RawArchive
from services.runtime import run_until, started_producer

from .declaration import PAGES
from .handler import SERVICE, PageHandler


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    # Opening an S3 store makes sure its bucket exists: wait for the store if it is down.
    objects = await until_available(
        "object store", lambda: asyncio.to_thread(open_object_store, settings), service=SERVICE
    )
    producer = await started_producer(settings, SERVICE)
    try:
        await run_until(
            ConsumerLoop(
                settings,
                PAGES.name,
                PAGES.inputs,
                PageHandler(settings.parser_user_resend_s, RawArchive(objects)),
                producer,
                max_records=settings.parser_batch_pages,
            ),
            stop,
        )
    finally:
        await producer.stop()
