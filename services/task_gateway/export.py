"""Streamed export of the posts a filter selects: CSV, JSON Lines or XLSX.

Rows come from ClickHouse in chunks and each chunk is written out before the next is read, so
the gateway holds one chunk, never the whole result. A chunk is two exact (FINAL) queries: the
sort key of its last row (`LIMIT 1 OFFSET chunk-1`), then the rows between the previous
chunk's last key and that one. Newest-first reads X's time-ordered 19-digit ids backwards on
the table's sort key (see data_routes.page), so each chunk reads about its own rows; the
shorter, older ids follow in (post_time, post_id) order.

CSV and JSON Lines are written by ClickHouse itself (CSV as it comes; JSON Lines with the
JSON-text columns embedded as JSON), so no Python work per value. XLSX is a zip that can only
be closed once every row is in: xlsxwriter's constant_memory mode writes each row to a
temporary file as it comes and the finished file is then streamed from disk (and deleted).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
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
_JSON_TEXT = ("post_images", "original_post_images", "post_links")  # stored as JSON text
_ARRAYS = ("hashtags", "mentions")
# Times as ISO 8601 in UTC, NULL as an empty CSV field.
_FORMAT_SETTINGS = {"date_time_output_format": "iso", "format_csv_null_representation": ""}
# Blocks no larger than a chunk: the engine runs in the gateway's process (chdb), and its
# default 65,536-row blocks of every column would be the export's largest allocation.
_READ_SETTINGS = {"max_block_size": 4096}
CHUNK_ROWS = 5000
StoreOf = Callable[[], Awaitable[ClickHouseStore]]


@dataclass(frozen=True)
class _Phase:
    where: str  # extra condition of this phase
    keys: tuple[str, ...]  # sort key columns (unique together)
    desc: bool

    @property
    def order(self) -> str:
        d = " DESC" if self.desc else ""
        return ", ".join(k + d for k in self.keys)

    def key_type(self, k: str) -> str:
        return {"post_time": "DateTime64(3, 'UTC')", "post_id": "String"}.get(k, "UInt64")


def _phases(f: PostFilter) -> list[_Phase]:
    if f.sort == "newest":
        return [
            _Phase("length(post_id) = 19", ("post_id",), True),
            _Phase("length(post_id) != 19", ("post_time", "post_id"), True),
        ]
    col = {"oldest": "post_time", "likes": "like_count", "retweets": "retweet_count"}[f.sort]
    return [_Phase("1", (col, "post_id"), f.sort != "oldest")]


def _select(columns: list[str], fmt: str | None) -> str:
    out = []
    for c in columns:
        if fmt is not None and c in _ARRAYS:
            out.append(f"toJSONString({c}) AS {c}")  # ["a","b"], as the JSON-text columns
        else:
            out.append(c)
    return ", ".join(out)


async def chunks(
    store: StoreOf, f: PostFilter, columns: list[str], fmt: str | None, chunk: int = 0
) -> AsyncIterator:
    """Every post `f` selects, in its order, a chunk at a time: ClickHouse's own `fmt` output
    (bytes) or, with fmt None, lists of row tuples in `columns` order."""
    chunk = chunk or CHUNK_ROWS
    base, params = where_sql(f)
    for ph in _phases(f):
        names = [f"__b{i}" for i in range(len(ph.keys))]
        tup = f"({', '.join(ph.keys)})"
        bound = f"({', '.join(f'{{{n}:{ph.key_type(k)}}}' for n, k in zip(names, ph.keys, strict=True))})"
        prev: tuple | None = None
        while True:
            w, p = f"({base}) AND {ph.where}", dict(params)
            if prev is not None:
                w += f" AND {tup} {'<' if ph.desc else '>'} {bound.replace('__b', '__p')}"
                p.update({n.replace("__b", "__p"): v for n, v in zip(names, prev, strict=True)})
            ch = await store()
            last = await ch.query_rows(
                f"SELECT {', '.join(ph.keys)} FROM posts FINAL WHERE {w} ORDER BY {ph.order} "
                f"LIMIT 1 OFFSET {chunk - 1}",
                p,
            )
            if last:
                w += f" AND {tup} {'>=' if ph.desc else '<='} {bound}"
                p.update(dict(zip(names, last[0], strict=True)))
            sql = f"SELECT {_select(columns, fmt)} FROM posts FINAL WHERE {w} ORDER BY {ph.order}"
            ch = await store()
            got: list[tuple] | bytes
            if fmt is None:
                got = await ch.query_rows(sql, p, settings=_READ_SETTINGS)
            else:
                got = await ch.raw_query(
                    sql, p, fmt=fmt, settings={**_READ_SETTINGS, **_FORMAT_SETTINGS}
                )
            if got:
                yield got
            if not last:
                break
            prev = last[0]


async def csv_stream(store: StoreOf, f: PostFilter, columns: list[str]):
    it = chunks(store, f, columns, "CSV")
    # The header goes out with the first chunk: an unreachable ClickHouse is then met before
    # the first byte (data_routes answers 503, not a truncated file).
    yield (",".join(columns) + "\n").encode() + await anext(it, b"")
    async for data in it:
        yield data


async def jsonl_stream(store: StoreOf, f: PostFilter, columns: list[str]):
    embed = [c for c in columns if c in _JSON_TEXT or c in _ARRAYS]
    async for data in chunks(store, f, columns, "JSONEachRow"):
        out = bytearray()
        for line in data.splitlines():
            d = orjson.loads(line)
            for c in embed:  # JSON text: embedded as JSON, not as a string of it
                d[c] = orjson.Fragment(d[c] or "[]")
            out += orjson.dumps(d)
            out += b"\n"
        yield bytes(out)


def _cell(v) -> str | int | float | bool | None:
    if isinstance(v, datetime):
        return v.isoformat().replace("+00:00", "Z") if v.tzinfo else v.isoformat() + "Z"
    if isinstance(v, list):
        return orjson.dumps(v).decode()
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, str):
        return v[:32767]  # Excel's cell limit: a longer value is cut there
    return v


async def xlsx_stream(store: StoreOf, f: PostFilter, columns: list[str]):
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
        async for rows in chunks(store, f, columns, None):
            for r in rows:
                ws.write_row(n, 0, [_cell(v) for v in r])
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


async def started(body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """`body` with its first piece already produced (so its first queries have run)."""
    first = await anext(body, b"")

    async def rest() -> AsyncIterator[bytes]:
        yield first
        async for data in body:
            yield data

    return rest()


WRITERS = {"csv": csv_stream, "jsonl": jsonl_stream, "xlsx": xlsx_stream}
