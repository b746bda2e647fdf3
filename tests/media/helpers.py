"""Helpers for the media-downloader tests: the service in-process on the real broker, its
results followed off the media-stored topic, and a store that counts its writes."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

import httpx
import orjson

from libs.kafka import Outgoing, Producer, consumer_for, partitions_of
from libs.records.media import MediaStored
from libs.records.posts import MediaJob
from libs.settings import Settings
from libs.storage.objects import open_object_store
from libs.topic_table import TopicTable
from libs.topics import MEDIA_JOBS, MEDIA_STORED, topic_name
from services.media_downloader.handler import SERVICE
from services.media_downloader.main import serve
from tests.e2e.harness import fresh_prefix


def media_settings(kafka, s3, xsim: str, **overrides) -> Settings:
    """A fresh topic namespace and bucket, media fetched from the simulator."""
    s3_part = s3.settings()
    base = {
        name: getattr(s3_part, name)
        for name in (
            "object_store_url",
            "s3_endpoint",
            "s3_secure",
            "s3_access_key",
            "s3_secret_key",
            "s3_region",
        )
    }
    base.update(
        topic_prefix=fresh_prefix(kafka.bootstrap),
        x_media_base=xsim,
        x_video_base=xsim,
        media_backoff_s=0.05,
    )
    base.update(overrides)
    return kafka.settings(**base)


class CountingStore:
    """The real object store, counting every write made through it."""

    def __init__(self, inner):
        self.inner = inner
        self.writes: list[str] = []

    async def put(self, key, *args, **kwargs):
        self.writes.append(key)
        return await self.inner.put(key, *args, **kwargs)

    async def put_stream(self, key, *args, **kwargs):
        self.writes.append(key)
        return await self.inner.put_stream(key, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


class MediaRun:
    """The media-downloader service running in this process, plus its results."""

    def __init__(self, settings: Settings, store: CountingStore | None = None):
        self.settings = settings
        self.store = store or CountingStore(open_object_store(settings))
        self.results: list[MediaStored] = []
        self._table = TopicTable(settings, MEDIA_STORED, on_record=self._on_result)
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None

    def _on_result(self, _key, rec) -> None:
        if isinstance(rec, MediaStored):
            self.results.append(rec)

    async def __aenter__(self) -> MediaRun:
        await self._table.start()
        self.start()
        return self

    def start(self) -> None:
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(serve(self.settings, self._stop, store=self.store))

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, 30)

    async def __aexit__(self, *exc) -> None:
        try:
            await self.stop()
        finally:
            await self._table.stop()

    async def wait_results(self, n: int, timeout: float = 60) -> list[MediaStored]:
        ok = await self._table.wait_for(lambda: len(self.results) >= n, timeout)
        if self._task is not None and self._task.done():
            self._task.result()  # surface a crash of the service
        assert ok, f"{len(self.results)} of {n} media results after {timeout}s"
        return self.results


async def indexed(store) -> dict[str, str]:
    """url → object key, as every batch index object in the store names them."""
    out: dict[str, str] = {}
    for key in await store.list("media-index/"):
        for url, entry in orjson.loads(await store.get(key))["entries"].items():
            out[url] = entry["object_key"]
    return out


@contextlib.asynccontextmanager
async def group_consumer(settings: Settings, client_id: str):
    """A consumer in the service's group, assigned every media-jobs partition: (it, them)."""
    consumer = consumer_for(settings, f"{settings.topic_prefix}{SERVICE}", client_id)
    await consumer.start()
    try:
        tps = await partitions_of(consumer, topic_name(MEDIA_JOBS, settings.topic_prefix))
        consumer.assign(tps)
        yield consumer, tps
    finally:
        await consumer.stop()


async def committed_offsets(settings: Settings) -> dict[int, int]:
    """partition → the service group's committed offset on media-jobs (0 when none)."""
    async with group_consumer(settings, "peek") as (consumer, tps):
        return {tp.partition: (await consumer.committed(tp)) or 0 for tp in tps}


async def publish_jobs(settings: Settings, jobs: list[MediaJob]) -> None:
    producer = await Producer(settings).start()
    try:
        await producer.send_all([Outgoing(MEDIA_JOBS, j.original_url, j) for j in jobs])
    finally:
        await producer.stop()


async def rewind_group(settings: Settings) -> None:
    """Commit offset 0 on every media-jobs partition for the service's group: everything it
    consumed is delivered again, exactly as after a crash before its commit."""
    async with group_consumer(settings, "rewind") as (consumer, tps):
        await consumer.commit({tp: 0 for tp in tps})


class SimMedia:
    """The simulator's side: what it serves for a URL, and its media request log."""

    def __init__(self, base: str):
        self.client = httpx.AsyncClient(base_url=base, timeout=30)

    @staticmethod
    def path_of(url: str) -> str:
        parts = urlsplit(url)
        return parts.path + ("?" + parts.query if parts.query else "")

    async def served(self, url: str) -> httpx.Response:
        return await self.client.get(self.path_of(url))

    async def fault(self, **spec) -> None:
        (await self.client.post("/_sim/media-faults", json=spec)).raise_for_status()

    async def last_seq(self) -> int:
        log = (await self.client.get("/_sim/log")).json()
        return log[-1]["seq"] if log else 0

    async def media_gets(self, since_seq: int, path_contains: str = "") -> list[dict]:
        log = (await self.client.get("/_sim/log", params={"since_seq": since_seq})).json()
        return [e for e in log if e["operation"] == "media" and path_contains in e["path"]]

    async def aclose(self) -> None:
        await self.client.aclose()
