"""The raw-page archive: every raw page, in the object store under ``raw_data/`` by date.

Topics on the embedded broker keep what its memory budget allows, and raw-pages keeps 30 days
anywhere; the archive keeps every page for as long as the bucket does, so ``xget replay``
re-parses past data however old without asking X again (the design's "OSS资源管理": a
``raw_data/`` area by date beside ``images/``, ``videos/`` and ``data/``).

Layout: one object per batch of consecutive raw-pages records of one partition, as the parser
handled them:

    raw_data/YYYY/MM/DD/PPP-FFFFFFFFFFFF-LLLLLLLLLLLL-HHHHHHHHHHHH.jsonl.zst

``YYYY/MM/DD``: the UTC date of the batch's first record (its Kafka timestamp); ``PPP``: the
raw-pages partition; ``F``/``L``: the first and last offset in the object; ``H``: 12 hex
digits of the SHA-256 of the object's content. A batch handled again (a redelivery after a
crash) is written again under the same key; different records at the same offsets (a broker
restarted from an older snapshot reuses offsets) get another key, so nothing archived is ever
overwritten by something else.

Format: Zstandard-compressed JSON lines, one per record, in offset order:
``{"partition": 3, "offset": 1234, "timestamp_ms": 1764…, "key": "task/slice", "schema":
"xget.RawPage/v2", "value": {…the record's JSON value…}, "body": "…X's response, verbatim…"}``
(``value`` and ``body`` are what the record carries on the topic: its JSON value and its
``xget-body`` header).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import cramjam
import orjson

from libs.kafka import Incoming
from libs.records.base import BODY_HEADER
from libs.records.pages import RawPage
from libs.topics import RAW_PAGES

from .objects import ObjectStore

PREFIX = "raw_data"
SUFFIX = ".jsonl.zst"
CONTENT_TYPE = "application/zstd"
ZSTD_LEVEL = 3  # ~6x smaller than the JSON at a few ms per batch of pages
SCHEMA_HEADER = "xget-schema"
_KEY = re.compile(
    rf"^{PREFIX}/(\d{{4}})/(\d{{2}})/(\d{{2}})/(\d{{3}})-(\d{{12}})-(\d{{12}})-([0-9a-f]{{12}})"
    + re.escape(SUFFIX)
    + "$"
)


@dataclass(frozen=True)
class ArchiveObject:
    key: str
    day: date
    partition: int
    first_offset: int
    last_offset: int


@dataclass(frozen=True)
class ArchivedPage:
    partition: int
    offset: int
    timestamp_ms: int
    key: str | None
    page: RawPage
    headers: dict[str, bytes]


def day_prefix(day: date) -> str:
    return f"{PREFIX}/{day:%Y/%m/%d}/"


def object_key(partition: int, first: int, last: int, timestamp_ms: int, content: bytes) -> str:
    day = datetime.fromtimestamp(timestamp_ms / 1000, UTC).date()
    digest = hashlib.sha256(content).hexdigest()[:12]
    return f"{day_prefix(day)}{partition:03d}-{first:012d}-{last:012d}-{digest}{SUFFIX}"


def parse_key(key: str) -> ArchiveObject | None:
    """The object `key` names, or None for a key that is not an archive object."""
    m = _KEY.match(key)
    if m is None:
        return None
    y, mo, d, p, first, last, _ = m.groups()
    return ArchiveObject(key, date(int(y), int(mo), int(d)), int(p), int(first), int(last))


def encode(records: Iterable[Incoming]) -> bytes:
    """One archive object's content: the records as compressed JSON lines."""
    lines = []
    for inc in records:
        raw = inc.raw
        body = inc.headers.get(BODY_HEADER)
        schema = inc.headers.get(SCHEMA_HEADER)
        lines.append(
            orjson.dumps(
                {
                    "partition": inc.partition,
                    "offset": inc.offset,
                    "timestamp_ms": inc.timestamp_ms,
                    "key": inc.key,
                    "schema": schema.decode() if schema else inc.record.schema_id(),
                    # the value as the topic holds it when there is one (no re-encoding)
                    "value": orjson.Fragment(raw.value)
                    if raw is not None and raw.value is not None
                    else orjson.Fragment(inc.record.encode()),
                    "body": body.decode() if body is not None else inc.record.encode_body(),
                }
            )
        )
    data = b"\n".join(lines) + b"\n"
    return bytes(cramjam.zstd.compress(data, level=ZSTD_LEVEL))


def decode(content: bytes) -> list[ArchivedPage]:
    """The raw pages in one archive object. A line whose schema this code does not read raises
    ValueError (as a record of an unknown version on the topic is refused)."""
    out = []
    for line in bytes(cramjam.zstd.decompress(content)).splitlines():
        if not line.strip():
            continue
        row = orjson.loads(line)
        model = RAW_PAGES.schema_for(row["schema"])
        if model is None or not issubclass(model, RawPage):
            raise ValueError(f"archived record of schema {row['schema']!r}: not a raw page")
        value = row["value"]
        body = row.get("body")
        if body is not None and model.body_field is not None and isinstance(value, dict):
            value = {**value, model.body_field: body}
        headers = {SCHEMA_HEADER: row["schema"].encode()}
        if body is not None:
            headers[BODY_HEADER] = body.encode()
        out.append(
            ArchivedPage(
                row["partition"],
                row["offset"],
                row["timestamp_ms"],
                row.get("key"),
                model.model_validate(value),
                headers,
            )
        )
    return out


class RawArchive:
    """Writes raw pages to the archive and reads them back, on any ObjectStore."""

    def __init__(self, store: ObjectStore):
        self.store = store

    async def archive(self, batch: list[Incoming]) -> list[str]:
        """Write `batch`'s raw-pages records, one object per partition; their keys. A store
        that is down raises DependencyError (the consumer loop waits it out and handles the
        batch again; its offsets are not committed before this returns)."""
        by_partition: dict[int, list[Incoming]] = {}
        for inc in batch:
            if isinstance(inc.record, RawPage):
                by_partition.setdefault(inc.partition, []).append(inc)
        keys = []
        for partition, incs in sorted(by_partition.items()):
            incs.sort(key=lambda i: i.offset)
            content = encode(incs)
            key = object_key(
                partition, incs[0].offset, incs[-1].offset, incs[0].timestamp_ms, content
            )
            await self.store.put(key, content, CONTENT_TYPE)
            keys.append(key)
        return keys

    async def objects(self, since: datetime, until: datetime | None = None) -> list[ArchiveObject]:
        """Every archive object that may hold a page stamped at or after `since` (from the day
        before `since`'s: an object is filed under its first record's date), by partition and
        offset."""
        until = until or datetime.now(UTC)
        day, last = (since - timedelta(days=1)).date(), until.date()
        found = []
        while day <= last:
            for key in await self.store.list(day_prefix(day)):
                obj = parse_key(key)
                if obj is not None:
                    found.append(obj)
            day += timedelta(days=1)
        return sorted(found, key=lambda o: (o.partition, o.first_offset, o.key))

    async def pages(self, obj: ArchiveObject) -> list[ArchivedPage]:
        return decode(await self.store.get(obj.key))
