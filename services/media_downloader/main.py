"""media-downloader entry point: media-jobs → object store → media-stored."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from aiokafka import TopicPartition

from libs.kafka import ConsumerLoop
from libs.settings import Settings
from libs.storage.objects import ObjectStore, open_object_store
from services.runtime import run_until, started_producer

from .batch_index import BatchIndex
from .declaration import JOBS
from .fetch import Fetcher
from .handler import SERVICE, MediaDownloader
from .vault import MediaVault, until_stored

log = logging.getLogger(__name__)

# On stop, a batch in flight gets this long to finish and commit; after that it is abandoned
# uncommitted (re-delivered later; what its earlier batches stored is in the batch index).
STOP_GRACE_S = 5.0


class MediaDownloaderService:
    def __init__(self, loop: ConsumerLoop):
        self.loop = loop
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self.loop.stop()
        self._stopping.set()

    async def run(self) -> None:
        runner = asyncio.create_task(self.loop.run(), name=SERVICE)
        stopping = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait({runner, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not runner.done():
                done, _ = await asyncio.wait({runner}, timeout=STOP_GRACE_S)
                if not done:
                    log.info("%s: abandoning the batch in flight (not committed)", SERVICE)
                    runner.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await runner
            else:
                await runner  # surfaces a crash
        finally:
            stopping.cancel()


async def serve(settings: Settings, stop: asyncio.Event, store: ObjectStore | None = None) -> None:
    # Store calls run in worker threads (minio is blocking): one per download in flight, not
    # asyncio's default of cpu+4, so storage keeps up with the downloads; and as many pooled
    # S3 connections, so no call opens a connection of its own.
    threads = settings.media_concurrency + 4
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(threads, thread_name_prefix="media-store")
    )

    # The store may be down at start: wait for it rather than take `xget run all` down.
    async def opened() -> ObjectStore:
        return await asyncio.to_thread(open_object_store, settings, pool_size=threads)

    objects = store if store is not None else await until_stored("open", opened)
    fetcher = Fetcher(settings)
    producer = await started_producer(settings, SERVICE)
    try:

        async def committed(tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
            consumer = loop.consumer
            assert consumer is not None
            return {tp: (await consumer.committed(tp)) or 0 for tp in tps}

        downloader = MediaDownloader(
            fetcher,
            MediaVault(objects, settings.media_recent_urls),
            BatchIndex(objects, settings.media_index_gc_s),
            committed,
        )
        loop = ConsumerLoop(
            settings,
            JOBS.name,
            JOBS.inputs,
            downloader.handle,
            producer,
            on_assign=downloader.on_assign,
            on_revoke=downloader.on_revoke,
        )
        await run_until(MediaDownloaderService(loop), stop)
    finally:
        await producer.stop()
        await fetcher.aclose()
