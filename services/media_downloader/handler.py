"""media-downloader: media jobs → objects in the store → one MediaStored result per job.

Per batch, each distinct URL is resolved once (index hit, or download + store + index), all
URLs concurrently within the fetcher's bound. A permanent failure (404, too large, not an
image, retries exhausted) is a `failed` result with its cause; it never blocks other jobs.
The video of a job (only set when its task asked for video) is resolved the same way with
its own cap; the cover's result does not depend on it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from libs.kafka import Incoming, Outgoing
from libs.records.media import MediaStored
from libs.records.posts import MediaJob
from libs.topics import MEDIA_STORED

from .fetch import Fetcher, Kind, MediaFailure
from .vault import MediaVault, StoredObject

log = logging.getLogger(__name__)

SERVICE = "media-downloader"


@dataclass(frozen=True)
class Failed:
    cause: str


Outcome = StoredObject | Failed


class MediaDownloader:
    def __init__(self, fetcher: Fetcher, vault: MediaVault):
        self.fetcher = fetcher
        self.vault = vault
        self.index_hits = 0

    async def resolve(self, url: str, kind: Kind) -> Outcome:
        known = await self.vault.lookup(url)
        if known is not None:
            self.index_hits += 1
            return known
        try:
            download = await self.fetcher.fetch(url, kind)
        except MediaFailure as f:
            log.info("media %s failed: %s", url, f.cause)
            return Failed(f.cause)
        try:
            return await self.vault.keep(url, download)
        finally:
            download.close()

    async def handle(self, batch: list[Incoming]) -> list[Outgoing]:
        jobs = [inc.record for inc in batch]
        wanted: dict[tuple[str, Kind], asyncio.Task[Outcome]] = {}
        for job in jobs:
            assert isinstance(job, MediaJob)
            for url, kind in ((job.original_url, "image"), (job.video_url, "video")):
                if url and (url, kind) not in wanted:
                    wanted[(url, kind)] = asyncio.create_task(self.resolve(url, kind))
        try:
            await asyncio.gather(*wanted.values())
        except BaseException:
            for t in wanted.values():
                t.cancel()
            raise
        return [Outgoing(MEDIA_STORED, job.task_id, result_for(
                    job, wanted[(job.original_url, "image")].result(),
                    wanted[(job.video_url, "video")].result() if job.video_url else None))
                for job in jobs]


def result_for(job: MediaJob, cover: Outcome, video: Outcome | None) -> MediaStored:
    rec = MediaStored(
        task_id=job.task_id, post_id=job.post_id, original_url=job.original_url, type=job.type,
        of_original=job.of_original, video_url=job.video_url,
        status="failed" if isinstance(cover, Failed) else "stored",
    )
    if isinstance(cover, Failed):
        rec.cause = cover.cause
    else:
        rec.object_key, rec.oss_url = cover.object_key, cover.oss_url
        rec.content_type, rec.bytes, rec.sha256 = cover.content_type, cover.bytes, cover.sha256
        rec.width, rec.height = cover.width, cover.height
    if isinstance(video, Failed):
        rec.video_status, rec.video_cause = "failed", video.cause
    elif video is not None:
        rec.video_status = "stored"
        rec.video_object_key, rec.video_oss_url = video.object_key, video.oss_url
        rec.video_bytes = video.bytes
    return rec
