"""Content-addressed media in the object store, and the per-URL index that makes a
re-delivered job free.

* Objects: `media/<sha256[:2]>/<sha256>.<ext>` with the sniffed Content-Type. Identical bytes
  (from any URL) are one object. The PUT is not preceded by a HEAD: a HEAD would cost a
  request on every new URL to save an upload only when two different URLs carry the same
  bytes, which is rare (the same URL is caught by the index). Hashes this process stored
  recently are not uploaded again; a rare repeat after a restart rewrites the same bytes
  under the same key (the media bucket must not be versioned).
* Index: `media-index/<sha256(url)>.json` holds what was stored for a URL. It is written after
  its object, so an index entry always names an object that is there; a job whose URL has an
  entry is answered from it without downloading or uploading anything.

Storage errors (S3 down, network) are retried with backoff until the store answers: an outage
delays media, it never turns a job into a failure or a dead letter.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TypeVar

import orjson
from pydantic import BaseModel

from libs.metrics import MEDIA_BYTES_STORED
from libs.storage.objects import ObjectStore

from .fetch import Download
from .sniff import dimensions, extension

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_STORAGE_BACKOFF_S = 30.0
RECENT_HASHES = 100_000  # ~10 MB of hashes


class StoredObject(BaseModel):
    """What the index says about one URL's stored bytes."""

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


def index_key(url: str) -> str:
    return f"media-index/{hashlib.sha256(url.encode()).hexdigest()}.json"


async def until_stored(what: str, op: Callable[[], Awaitable[T]]) -> T:
    """Run a storage call until it succeeds (backoff doubling to 30 s); cancellable."""
    delay = 0.2
    while True:
        try:
            return await op()
        except (KeyError, ValueError):
            raise  # answers, not outages
        except Exception as e:  # noqa: BLE001 - any storage failure is retried
            log.warning("object store: %s failed (%s: %s); retrying in %.1fs", what,
                        type(e).__name__, e, delay)
            await asyncio.sleep(delay)
            delay = min(MAX_STORAGE_BACKOFF_S, delay * 2)


class MediaVault:
    def __init__(self, store: ObjectStore):
        self.store = store
        # One upload at a time per content hash (two URLs with the same bytes in one batch).
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._stored: OrderedDict[str, None] = OrderedDict()  # hashes stored lately, LRU
        self.uploads = 0  # objects written (for stats and tests)

    async def lookup(self, url: str) -> StoredObject | None:
        key = index_key(url)
        try:
            raw = await until_stored(f"read {key}", lambda: self.store.get(key))
        except KeyError:
            return None
        try:
            return StoredObject.model_validate_json(raw)
        except ValueError:
            log.warning("index %s unreadable; the URL is downloaded again", key)
            return None

    async def keep(self, url: str, download: Download) -> StoredObject:
        """Store the download's bytes (once per content hash) and index them under `url`."""
        key = object_key(download.sha256, download.content_type)
        width, height = (dimensions(download.body) if download.content_type.startswith("image/")
                         else (None, None))
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
                        key, download.body, download.size, download.content_type,
                        {"sha256": download.sha256})
                await until_stored(f"put {key}", put)
                MEDIA_BYTES_STORED.inc(download.size)
                self.uploads += 1
                self._stored[download.sha256] = None
                if len(self._stored) > RECENT_HASHES:
                    self._stored.popitem(last=False)
        entry = StoredObject(url=url, object_key=key, oss_url=self.store.url(key),
                             content_type=download.content_type, bytes=download.size,
                             sha256=download.sha256, width=width, height=height)
        ikey = index_key(url)
        await until_stored(f"put {ikey}", lambda: self.store.put(
            ikey, orjson.dumps(entry.model_dump()), "application/json"))
        return entry
