"""Content-addressed media in the object store, and what this replica remembers of it.

* Objects: `media/<sha256[:2]>/<sha256>.<ext>` with the sniffed Content-Type. Identical bytes
  (from any URL) are one object. The PUT is not preceded by a HEAD: a HEAD would cost a
  request on every new URL to save an upload only when two different URLs carry the same
  bytes, which is rare. Hashes this process stored recently are not uploaded again; a rare
  repeat after a restart rewrites the same bytes under the same key (the media bucket must
  not be versioned). A new URL costs one S3 request: its object PUT.
* Recent URLs: an in-process LRU url → StoredObject (`media_recent_urls`), so media that later
  posts reuse (X and the simulator reuse media URLs across posts and tasks) is answered
  without a download or a request.
* Re-delivered jobs are answered from the batch index (batch_index.py), not from here.

A storage error (S3 down, network) fails the batch as the object store's: the consumer loop
pauses its partitions and retries it after a backoff, so an outage delays media; it never
turns a job into a failure or a dead letter.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pydantic import BaseModel

from libs.failures import until_available
from libs.metrics import MEDIA_BYTES_STORED
from libs.storage.objects import ObjectStore

from .fetch import Download
from .sniff import dimensions, extension

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_STORAGE_BACKOFF_S = 30.0
RECENT_HASHES = 100_000  # ~10 MB of hashes


class StoredObject(BaseModel):
    """One URL's stored bytes: what its result record and the batch index carry."""

    url: str
    object_key: str
    oss_url: str
    content_type: str
    bytes: int
    sha256: str
    width: int | None = None
    height: int | None = None


def object_key(sha256: str, content_type: str) -> str:
    return f"media/{sha256[:2]}/{sha256}.{extension(content_type)}"


async def until_stored(what: str, op: Callable[[], Awaitable[T]]) -> T:
    """Run a storage call until the store answers (start-up and recovery, where no batch is
    in hand to hand back). Inside a batch, storage calls are made directly: their failure
    makes the consumer loop pause and retry the batch (libs/kafka.py)."""
    return await until_available(
        f"object store {what}",
        op,
        service="media-downloader",
        base_s=0.2,
        cap_s=MAX_STORAGE_BACKOFF_S,
    )


class MediaVault:
    def __init__(self, store: ObjectStore, recent_urls: int = 50_000):
        self.store = store
        # One upload at a time per content hash (two URLs with the same bytes in one batch).
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._stored: OrderedDict[str, None] = OrderedDict()  # hashes stored lately, LRU
        self._recent: OrderedDict[str, StoredObject] = OrderedDict()  # url → object, LRU
        self._recent_max = recent_urls
        self.uploads = 0  # objects written (for stats and tests)

    def recent(self, url: str) -> StoredObject | None:
        """The stored object of a URL this replica stored or answered lately."""
        hit = self._recent.get(url)
        if hit is not None:
            self._recent.move_to_end(url)
        return hit

    def remember(self, entry: StoredObject) -> None:
        if self._recent_max <= 0:
            return
        self._recent[entry.url] = entry
        self._recent.move_to_end(entry.url)
        if len(self._recent) > self._recent_max:
            self._recent.popitem(last=False)

    async def keep(self, url: str, download: Download) -> StoredObject:
        """Store the download's bytes (once per content hash); remember them under `url`."""
        key = object_key(download.sha256, download.content_type)
        width, height = (
            dimensions(download.body)
            if download.content_type.startswith("image/")
            else (None, None)
        )
        lock = self._locks.get(download.sha256)
        if lock is None:
            lock = self._locks[download.sha256] = asyncio.Lock()
        async with lock:
            if download.sha256 in self._stored:
                self._stored.move_to_end(download.sha256)
            else:

                async def put():
                    download.body.seek(0)
                    return await self.store.put_stream(
                        key,
                        download.body,
                        download.size,
                        download.content_type,
                        {"sha256": download.sha256},
                    )

                await put()  # the store down: the loop pauses and retries the batch
                MEDIA_BYTES_STORED.inc(download.size)
                self.uploads += 1
                self._stored[download.sha256] = None
                if len(self._stored) > RECENT_HASHES:
                    self._stored.popitem(last=False)
        entry = StoredObject(
            url=url,
            object_key=key,
            oss_url=self.store.url(key),
            content_type=download.content_type,
            bytes=download.size,
            sha256=download.sha256,
            width=width,
            height=height,
        )
        self.remember(entry)
        return entry
