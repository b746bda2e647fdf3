"""The raw_data/ archive's layout and format (libs/storage/raw_archive.py)."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime

import cramjam
import orjson

from libs.kafka import Incoming
from libs.records.base import BODY_HEADER
from libs.records.pages import RawPage
from libs.storage.objects import FileObjectStore
from libs.storage.raw_archive import RawArchive, decode, encode, parse_key
from libs.topics import RAW_PAGES

T0 = datetime(2026, 11, 23, 23, 59, 58, tzinfo=UTC)


def page(n: int, task: str = "t1") -> Incoming:
    rec = RawPage(
        task_id=task,
        slice_id="s0",
        page_no=n,
        keyword="tesla",
        operation="SearchTimeline",
        query="tesla",
        requested_at=T0,
        response='{"data": {"n": ' + str(n) + ', "text": "\\u4eba\\u5de5"}}',
        entries=20,
    )
    headers = {"xget-schema": rec.schema_id().encode(), BODY_HEADER: rec.encode_body()}
    return Incoming(
        RAW_PAGES.name,
        3,
        100 + n,
        f"{task}/s0",
        rec,
        headers,
        int(T0.timestamp() * 1000) + n * 1000,
    )


def test_pages_round_trip_through_the_compressed_json_lines():
    batch = [page(n) for n in range(3)]
    content = encode(batch)
    lines = bytes(cramjam.zstd.decompress(content)).splitlines()
    assert len(lines) == 3
    first = orjson.loads(lines[0])
    assert first["partition"] == 3 and first["offset"] == 100 and first["key"] == "t1/s0"
    assert first["schema"] == "xget.RawPage/v2" and first["body"] == batch[0].record.response
    assert "response" not in first["value"]  # the value as on the topic, the body beside it
    back = decode(content)
    assert [a.page for a in back] == [i.record for i in batch]
    assert [a.offset for a in back] == [100, 101, 102]
    assert back[2].timestamp_ms == batch[2].timestamp_ms


def test_one_object_per_partition_under_raw_data_by_the_first_records_date(tmp_path):
    archive = RawArchive(FileObjectStore(tmp_path))
    batch = [page(0), page(1), page(2, task="t2")]
    other = dataclasses.replace(page(5), partition=7, offset=40)
    keys = asyncio.run(archive.archive([*batch, other]))
    assert len(keys) == 2
    assert keys[0].startswith("raw_data/2026/11/23/003-000000000100-000000000102-")
    assert keys[0].endswith(".jsonl.zst")
    obj = parse_key(keys[0])
    assert (obj.partition, obj.first_offset, obj.last_offset) == (3, 100, 102)
    # the same batch again (a redelivery) is the same object; other records get their own
    assert asyncio.run(archive.archive(batch)) == keys[:1]
    assert keys[1].startswith("raw_data/2026/11/24/007-000000000040-")  # its own first record
    found = asyncio.run(
        archive.objects(datetime(2026, 11, 24, tzinfo=UTC), datetime(2026, 11, 25, tzinfo=UTC))
    )
    assert [o.key for o in found] == keys  # filed the day before `since`: still listed
    assert [a.page.task_id for a in asyncio.run(archive.pages(found[0]))] == ["t1", "t1", "t2"]


def test_keys_that_are_not_archive_objects_are_ignored():
    assert parse_key("raw_data/2026/11/23/readme.txt") is None
    assert parse_key("data/2026/11/23/t_batch_001.json") is None
