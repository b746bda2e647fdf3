"""media-downloader: media jobs → objects in the store → one MediaStored result per job.

Per batch, each distinct URL is resolved once — from the batch index (a re-delivered job),
from the replica's recent URLs, or by download + store — all URLs concurrently within the
fetcher's bound. Then one batch index object per input partition records what the batch
stored, before the results go out and the offsets are committed. A permanent failure (404, too large, not an
image, retries exhausted) is a `failed` result with its cause; it never blocks other jobs.
The video of a job (only set when its task asked for video) is resolved the same way with
its own cap; the cover's result does not depend on it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

from aiokafka import TopicPartition

from libs import tracing
from libs.kafka import Incoming, Outgoing
from libs.records.media import MediaStored
from libs.records.posts import MediaJob
from libs.topics import MEDIA_STORED

from .batch_index import BatchIndex, CommittedOffsets
from .declaration import JOBS
from .fetch import Fetcher, Kind, MediaFailure
from .vault import MediaVault, StoredObject

log = logging.getLogger(__name__)

SERVICE = JOBS.name


@dataclass(frozen=True)
class Failed:
    cause: str


Outcome = StoredObject | Failed


class MediaDownloader:
    def __init__(
        self, fetcher: Fetcher, vault: MediaVault, index: BatchIndex, committed: CommittedOffsets
    ):
        """`committed` reads the group's committed offsets (for recovery and cleanup)."""
        self.fetcher = fetcher
        self.vault = vault
        self.index = index
        self.committed = committed
        self.index_hits = 0  # re-delivered URLs answered from the batch index
        self.recent_hits = 0  # URLs answered from this replica's recent URLs

    async def on_assign(self, tps: set[TopicPartition]) -> None:
        """Before any record of these partitions is handled: load what was stored for the
        ones that may be delivered again (at or above the committed offset)."""
        offsets = await self.committed(tps)
        counts = await asyncio.gather(*(self.index.recover(tp, offsets[tp]) for tp in tps))
        log.info(
            "%s: %d URLs of possibly re-delivered jobs known on %d partitions",
            SERVICE,
            sum(counts),
            len(tps),
        )

    async def on_revoke(self, tps: set[TopicPartition]) -> None:
        for tp in tps:
            self.index.forget(tp)

    async def resolve(self, url: str, kind: Kind, job: Incoming | None = None) -> Outcome:
        """The URL's stored object or failure, in a span of the trace of `job` (the first job
        of the batch that wants it): task, post, URL host, and where the answer came from."""
        rec = job.record if job is not None else None
        with tracing.span_in(
            job.headers if job is not None else (),
            "media download",
            **{
                "xget.service": SERVICE,
                "xget.task_id": getattr(rec, "task_id", None),
                "xget.post_id": getattr(rec, "post_id", None),
                "xget.media_kind": kind,
                "server.address": urlsplit(url).hostname or "",
            },
        ) as sp:
            source, outcome = await self._resolve(url, kind)
            if isinstance(outcome, Failed):
                sp.set_attribute("xget.outcome", "failed")
                sp.set_attribute("xget.cause", outcome.cause)
            else:
                sp.set_attribute("xget.outcome", source)
                sp.set_attribute("xget.bytes", outcome.bytes)
        return outcome

    async def _resolve(self, url: str, kind: Kind) -> tuple[str, Outcome]:
        known = self.index.lookup(url)
        if known is not None:
            self.index_hits += 1
            self.vault.remember(known)
            return "batch_index", known
        known = self.vault.recent(url)
        if known is not None:
            self.recent_hits += 1
            return "recent", known
        try:
            download = await self.fetcher.fetch(url, kind)
        except MediaFailure as f:
            log.info("media %s failed: %s", url, f.cause)
            return "downloaded", Failed(f.cause)
        try:
            return "stored", await self.vault.keep(url, download)
        finally:
            download.close()

    async def handle(self, batch: list[Incoming]) -> list[Outgoing]:
        jobs = [cast(MediaJob, inc.record) for inc in batch]  # the topic's only schema
        wanted: dict[tuple[str, Kind], asyncio.Task[Outcome]] = {}
        for inc, job in zip(batch, jobs, strict=True):
            pairs: tuple[tuple[str | None, Kind], ...] = (
                (job.original_url, "image"),
                (job.video_url, "video"),
            )
            for url, kind in pairs:
                if url and (url, kind) not in wanted:
                    wanted[(url, kind)] = asyncio.create_task(self.resolve(url, kind, inc))
        try:
            await asyncio.gather(*wanted.values())
        except BaseException:
            for t in wanted.values():
                t.cancel()
            raise
        outcome = {k: t.result() for k, t in wanted.items()}
        await self._write_index(batch, outcome)
        return [
            Outgoing(
                MEDIA_STORED,
                job.task_id,
                result_for(
                    job,
                    outcome[(job.original_url, "image")],
                    outcome[(job.video_url, "video")] if job.video_url else None,
                ),
            )
            for job in jobs
        ]

    async def _write_index(
        self, batch: list[Incoming], outcome: dict[tuple[str, Kind], Outcome]
    ) -> None:
        """One index object per partition of the batch, naming every stored URL of its jobs;
        none where every record is already named by a live index object of its offset (a
        re-delivered batch: nothing is written again)."""
        parts: dict[TopicPartition, list[Incoming]] = {}
        for inc in batch:
            parts.setdefault(TopicPartition(inc.topic, inc.partition), []).append(inc)
        writes = []
        for tp, incs in parts.items():
            entries: dict[str, StoredObject] = {}
            covered = True
            for inc in incs:
                job = cast(MediaJob, inc.record)
                pairs: tuple[tuple[str | None, Kind], ...] = (
                    (job.original_url, "image"),
                    (job.video_url, "video"),
                )
                for url, kind in pairs:
                    found = outcome.get((url, kind)) if url else None
                    if url and isinstance(found, StoredObject):
                        entries[url] = found
                        covered = covered and self.index.covers(tp, inc.offset, url)
            if entries and not covered:
                writes.append(
                    self.index.write(
                        tp, min(i.offset for i in incs), max(i.offset for i in incs), entries
                    )
                )
        await asyncio.gather(*writes)
        for tp, incs in parts.items():
            self.index.handled(tp, max(i.offset for i in incs))
        await self.index.collect_if_due(self.committed)


def result_for(job: MediaJob, cover: Outcome, video: Outcome | None) -> MediaStored:
    rec = MediaStored(
        task_id=job.task_id,
        post_id=job.post_id,
        original_url=job.original_url,
        type=job.type,
        of_original=job.of_original,
        video_url=job.video_url,
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
