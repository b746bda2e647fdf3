"""reporter entry point: batch files to the bucket and signed reports to client webhooks."""

from __future__ import annotations

import asyncio

import httpx

from libs.failures import until_available
from libs.kafka import ConsumerLoop
from libs.settings import Settings
from libs.storage.objects import open_object_store
from libs.webhooks import WebhookSender
from services.runtime import clickhouse_for, run_until, started_producer

from . import media_sink
from .declaration import MEDIA, TASKS
from .service import SERVICE, Reporter
from .store import ReportStore


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    ch = await clickhouse_for(settings)
    store = ReportStore(ch)
    # Opening an S3 store makes sure its bucket exists: wait for the store if it is down.
    objects = await until_available(
        "object store", lambda: asyncio.to_thread(open_object_store, settings), service=SERVICE
    )
    producer = await started_producer(settings, SERVICE)
    async with httpx.AsyncClient(
        follow_redirects=False, limits=httpx.Limits(max_connections=100)
    ) as http:
        sender = WebhookSender(
            http,
            settings.webhook_secret.get_secret_value(),
            allow_hosts=settings.webhook_allow_hosts,
            max_attempts=settings.webhook_max_attempts,
            give_up_after_s=settings.webhook_give_up_after_s,
            backoff_base_s=settings.webhook_backoff_base_s,
            backoff_max_s=settings.webhook_backoff_max_s,
            timeout_s=settings.webhook_timeout_s,
        )
        reporter = Reporter(settings, store, objects, sender, producer)
        loop = ConsumerLoop(
            settings,
            TASKS.name,
            TASKS.inputs,
            reporter.handle,
            producer,
            on_assign=reporter.on_assign,
            on_revoke=reporter.on_revoke,
        )
        media = ConsumerLoop(
            settings,
            MEDIA.name,
            MEDIA.inputs,
            media_sink.MediaSink(ch).handle,
            producer,
            fill_ms=100,
        )
        try:
            await asyncio.gather(run_until(loop, stop), run_until(media, stop))
        finally:
            await reporter.close()
            await producer.stop()
