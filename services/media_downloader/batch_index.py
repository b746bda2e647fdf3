"""The batch index: what each handled batch stored, so a re-delivered job costs nothing.

One object per handled batch and input partition,
`media-index/<topic>/<partition:04d>/<first offset:020d>-<last offset:020d>.json`, maps every
URL of the batch's jobs that ended stored to its StoredObject. It is written after the batch's
objects and before the batch's results are produced and its offsets committed, so every job
whose result is out is in an index object, and every index entry names an object that is there.

Why per batch and not per URL: a per-URL index costs a lookup (a miss, for every new URL) and
a write per job, two of the three S3 requests a new job made; moto (and any S3) is the
bottleneck at a few hundred requests/s. A batch index costs one write per partition per batch.

Only records at or above a partition's committed offset are ever delivered again, and only
those a predecessor (or this process before a restart) handled are in index objects. So on
assignment the replica lists the partition's index objects (one LIST), loads those that reach
the committed offset, and answers re-delivered jobs from them in memory — no per-job request —
until it has handled past the last indexed offset; then the replay map is dropped. Objects
wholly below the committed offset are garbage: deleted on assignment, and every
`media_index_gc_s` for the partitions this replica wrote (it tracks its keys; no listing), so
a partition's listing stays as short as its uncommitted tail.

A crash between a batch's uploads and its index write re-downloads that batch's URLs (their
results were never published) and rewrites the same bytes under the same content-addressed
keys: harmless, and bounded by one batch per partition.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import orjson
from aiokafka import TopicPartition

from libs.storage.objects import ObjectStore

from .vault import StoredObject, until_stored

log = logging.getLogger(__name__)

ROOT = "media-index"
_NAME = re.compile(r"(\d{20})-(\d{20})\.json")

CommittedOffsets = Callable[[Iterable[TopicPartition]], Awaitable[dict[TopicPartition, int]]]


def partition_prefix(tp: TopicPartition) -> str:
    return f"{ROOT}/{tp.topic}/{tp.partition:04d}/"


def batch_key(tp: TopicPartition, first: int, last: int) -> str:
    return f"{partition_prefix(tp)}{first:020d}-{last:020d}.json"


def offsets_of(key: str) -> tuple[int, int] | None:
    """(first, last) offsets of a batch index key; None for anything else under the prefix."""
    m = _NAME.fullmatch(key.rsplit("/", 1)[-1])
    return (int(m.group(1)), int(m.group(2))) if m else None


@dataclass
class _Replay:
    until: int  # last offset any loaded index covers: later records were never handled
    entries: dict[str, StoredObject]
    ranges: list[tuple[int, int, frozenset[str]]]  # each loaded object: first, last, URLs


class BatchIndex:
    def __init__(self, store: ObjectStore, gc_every_s: float):
        self.store = store
        self.gc_every_s = gc_every_s
        self._keys: dict[TopicPartition, dict[str, int]] = {}  # live index keys → last offset
        self._replay: dict[TopicPartition, _Replay] = {}
        self._next_gc = time.monotonic() + gc_every_s
        self.writes = 0  # index objects written (stats and tests)
        self.deleted = 0  # index objects deleted as garbage

    # --- re-delivery -----------------------------------------------------------------------------
    def lookup(self, url: str) -> StoredObject | None:
        for replay in self._replay.values():
            hit = replay.entries.get(url)
            if hit is not None:
                return hit
        return None

    async def recover(self, tp: TopicPartition, committed: int) -> int:
        """Load the partition's index objects that reach `committed`; delete those below it.
        Returns how many URLs re-delivered jobs of this partition can be answered for."""
        prefix = partition_prefix(tp)
        keys = await until_stored(f"list {prefix}", lambda: self.store.list(prefix))
        live: dict[str, int] = {}
        dead: list[str] = []
        for key in keys:
            offsets = offsets_of(key)
            if offsets is not None:
                if offsets[1] >= committed:
                    live[key] = offsets[1]
                else:
                    dead.append(key)
        entries: dict[str, StoredObject] = {}
        ranges: list[tuple[int, int, frozenset[str]]] = []
        ordered = sorted(live)
        for key, part in zip(
            ordered, await asyncio.gather(*(self._load(k) for k in ordered)), strict=False
        ):
            entries.update(part)
            first, last = offsets_of(key)  # type: ignore[misc]  # an index key (checked above)
            ranges.append((first, last, frozenset(part)))
        self._keys[tp] = live
        if entries:
            self._replay[tp] = _Replay(max(live.values()), entries, ranges)
        else:
            self._replay.pop(tp, None)
        try:
            await self._delete(dead)
        except Exception as e:  # noqa: BLE001 - garbage can wait for the next owner
            log.warning("batch index cleanup of %s failed (%s: %s)", prefix, type(e).__name__, e)
        return len(entries)

    async def _load(self, key: str) -> dict[str, StoredObject]:
        try:
            raw = await until_stored(f"read {key}", lambda: self.store.get(key))
        except KeyError:
            return {}  # collected meanwhile: it was below a committed offset, so not needed
        try:
            return {
                url: StoredObject.model_validate(v)
                for url, v in orjson.loads(raw)["entries"].items()
            }
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            log.warning("batch index %s unreadable (%s); its URLs are downloaded again", key, e)
            return {}

    def covers(self, tp: TopicPartition, offset: int, url: str) -> bool:
        """Whether a live index object of the record's own range already names `url`: such
        an object outlives the record's commit, so a re-delivered batch made only of covered
        records needs no index write of its own."""
        replay = self._replay.get(tp)
        return replay is not None and any(
            first <= offset <= last and url in urls for first, last, urls in replay.ranges
        )

    def handled(self, tp: TopicPartition, last: int) -> None:
        """The partition's records up to `last` are handled: past the replay window, drop it."""
        replay = self._replay.get(tp)
        if replay is not None and last >= replay.until:
            del self._replay[tp]

    def forget(self, tp: TopicPartition) -> None:
        """The partition moved to another replica: its new owner recovers and collects it."""
        self._keys.pop(tp, None)
        self._replay.pop(tp, None)

    # --- writing ---------------------------------------------------------------------------------
    async def write(
        self, tp: TopicPartition, first: int, last: int, entries: dict[str, StoredObject]
    ) -> None:
        key = batch_key(tp, first, last)
        body = orjson.dumps(
            {
                "topic": tp.topic,
                "partition": tp.partition,
                "first": first,
                "last": last,
                "entries": {u: e.model_dump() for u, e in entries.items()},
            }
        )
        await self.store.put(key, body, "application/json")  # down: the batch is retried
        self.writes += 1
        self._keys.setdefault(tp, {})[key] = last

    # --- garbage ---------------------------------------------------------------------------------
    async def collect_if_due(self, committed: CommittedOffsets) -> None:
        """Every gc_every_s: delete this replica's index objects wholly below the committed
        offsets. Best effort: a failure leaves them for the next round or the next owner."""
        if time.monotonic() < self._next_gc or not self._keys:
            return
        self._next_gc = time.monotonic() + self.gc_every_s
        try:
            offsets = await committed(list(self._keys))
            dead = {
                tp: [k for k, last in self._keys.get(tp, {}).items() if last < c]
                for tp, c in offsets.items()
            }
            await self._delete([k for keys in dead.values() for k in keys])
        except Exception as e:  # noqa: BLE001 - garbage can wait
            log.warning("batch index cleanup failed (%s: %s); retried later", type(e).__name__, e)
            return
        for tp, keys in dead.items():
            for k in keys:
                self._keys.get(tp, {}).pop(k, None)

    async def _delete(self, keys: list[str]) -> None:
        if keys:
            await self.store.delete(keys)
            self.deleted += len(keys)
