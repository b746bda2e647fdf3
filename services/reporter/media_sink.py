"""media-stored → ClickHouse `media_objects`: where each media URL landed (or why it failed),
which the reporter reads to fill `oss_url` into batch files and the data API into posts; the
posts rows of those media get it too, once stored (libs.storage.post_oss)."""

from __future__ import annotations

from datetime import UTC, datetime

from libs.kafka import Incoming, Outgoing
from libs.records.media import MediaStored
from libs.storage import post_oss
from libs.storage.clickhouse import ClickHouseStore

from .declaration import MEDIA

SERVICE = MEDIA.name
COLUMNS = [
    "original_url",
    "status",
    "cause",
    "object_key",
    "oss_url",
    "content_type",
    "bytes",
    "width",
    "height",
    "sha256",
    "video_url",
    "video_oss_url",
    "video_status",
    "video_cause",
    "stored_at",
    "version",
]


class MediaSink:
    def __init__(self, store: ClickHouseStore):
        self.store = store

    async def handle(self, batch: list[Incoming]) -> list[Outgoing]:
        now = datetime.now(UTC)
        rows: dict[str, list] = {}
        post_ids: set[str] = set()
        for inc in batch:
            m = inc.record
            if not isinstance(m, MediaStored):
                continue
            post_ids.add(m.post_id)
            prev = rows.get(m.original_url)
            # A stored result beats a failure of the same URL (another job's transient cause).
            if prev is not None and prev[1] == "stored" and m.status != "stored":
                continue
            version = int(now.timestamp() * 1_000_000) + (1 if m.status == "stored" else 0)
            rows[m.original_url] = [
                m.original_url,
                m.status,
                m.cause,
                m.object_key,
                m.oss_url,
                m.content_type,
                m.bytes,
                m.width,
                m.height,
                m.sha256,
                m.video_url,
                m.video_oss_url,
                m.video_status,
                m.video_cause,
                now,
                version,
            ]
        if rows:
            await self.store.insert(
                "media_objects",
                list(rows.values()),
                COLUMNS,
                dedup=True,
            )
            # After the results are in media_objects: a row written now holds them, and a
            # post stored later carries them (or its batch fills them in).
            await post_oss.refresh(self.store, sorted(post_ids))
        return []
