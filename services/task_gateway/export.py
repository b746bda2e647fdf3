"""Streamed export of the posts a filter selects: CSV, JSON Lines or XLSX.

Rows come from ClickHouse in chunks (keyset pagination on the sort's columns, each chunk a
fresh exact query), and each chunk is written out before the next is read, so the gateway
holds one chunk, never the whole result. XLSX is a zip that can only be closed once every row
is in: xlsxwriter's constant_memory mode writes each row to a temporary file as it comes and
the finished file is then streamed from disk (and deleted).
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Literal

import orjson

from libs.storage.clickhouse import ClickHouseStore
from libs.storage.post_rows import POST_FIELDS

from .post_search import PostFilter, where_sql

Format = Literal["csv", "jsonl", "xlsx"]
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
# Every stored field but the raw JSON (asked for with include_raw).
EXPORT_COLUMNS = [c for c in POST_FIELDS if c != "raw_data"]
_JSON_TEXT = {"post_images", "original_post_images", "post_links"}  # stored as JSON text
# The keyset of each sort: (column expressions, direction).
_KEYS = {
    "newest": (("post_time", "post_id"), "<"),
    "oldest": (("post_time", "post_id"), ">"),
    "likes": (("like_count", "post_id"), "<"),
    "retweets": (("retweet_count", "post_id"), "<"),
}
CHUNK_ROWS = 5000


async def rows(
    store: Callable[[], Awaitable[ClickHouseStore]],
    f: PostFilter,
    columns: list[str],
    chunk: int = CHUNK_ROWS,
) -> AsyncIterator[list[tuple]]:
    """Chunks of rows (tuples in `columns` order) of every post `f` selects, in its order."""
    where, params = where_sql(f)
    (k1, k2), op = _KEYS[f.sort]
    direction = "DESC" if op == "<" else "ASC"
    cols = [*columns, f"{k1} AS __k1", f"{k2} AS __k2"]
    after: tuple | None = None
    while True:
        w, p = where, dict(params)
        if after is not None:
            w = f"({where}) AND ({k1}, {k2}) {op} ({{__a1:{_type(k1)}}}, {{__a2:String}})"
            p["__a1"], p["__a2"] = after
        ch = await store()
        got = await ch.query_rows(
            f"SELECT {', '.join(cols)} FROM posts FINAL WHERE {w} "
            f"ORDER BY {k1} {direction}, {k2} {direction} LIMIT {chunk}",
            p,
        )
        if not got:
            return
        yield [r[:-2] for r in got]
        if len(got) < chunk:
            return
        after = got[-1][-2:]


def _type(col: str) -> str:
    return "DateTime64(3, 'UTC')" if col == "post_time" else "UInt64"


def _cell(v) -> str | int | float | bool | None:
    if isinstance(v, datetime):
        return v.isoformat().replace("+00:00", "Z") if v.tzinfo else v.isoformat() + "Z"
    if isinstance(v, list):
        return orjson.dumps(v).decode()
    if isinstance(v, bytes):
        return v.decode()
    return v


async def csv_stream(chunks: AsyncIterator[list[tuple]], columns: list[str]):
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(columns)
    yield buf.getvalue().encode()
    async for chunk in chunks:
        buf.seek(0)
        buf.truncate()
        w.writerows([[_cell(v) for v in r] for r in chunk])
        yield buf.getvalue().encode()


async def jsonl_stream(chunks: AsyncIterator[list[tuple]], columns: list[str]):
    json_text = [c in _JSON_TEXT for c in columns]
    async for chunk in chunks:
        out = bytearray()
        for r in chunk:
            d = {}
            for c, is_json, v in zip(columns, json_text, r, strict=True):
                if is_json:
                    v = orjson.Fragment(v or b"[]")  # already JSON: embedded as it is
                elif isinstance(v, datetime) and v.tzinfo is None:
                    v = _cell(v)
                d[c] = v
            out += orjson.dumps(d)
            out += b"\n"
        yield bytes(out)


async def xlsx_stream(chunks: AsyncIterator[list[tuple]], columns: list[str]):
    import xlsxwriter

    fd, path = tempfile.mkstemp(prefix="xget-export-", suffix=".xlsx")
    os.close(fd)
    try:
        wb = xlsxwriter.Workbook(
            path, {"constant_memory": True, "strings_to_urls": False, "strings_to_numbers": False}
        )
        ws = wb.add_worksheet("posts")
        ws.write_row(0, 0, columns)
        n = 1
        async for chunk in chunks:
            for r in chunk:
                # Excel's cell limit is 32,767 characters; a longer value is cut there.
                ws.write_row(n, 0, [_xlsx(v) for v in r])
                n += 1
        await asyncio.to_thread(wb.close)
        fh = await asyncio.to_thread(open, path, "rb")
        try:
            while data := await asyncio.to_thread(fh.read, 1 << 16):
                yield data
        finally:
            fh.close()
    finally:
        os.unlink(path)


def _xlsx(v):
    v = _cell(v)
    return v[:32767] if isinstance(v, str) else v


WRITERS = {"csv": csv_stream, "jsonl": jsonl_stream, "xlsx": xlsx_stream}
