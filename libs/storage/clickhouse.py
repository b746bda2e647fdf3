"""ClickHouse access for XGet: one class for the embedded chdb engine and for a real server.

The DSN (``Settings.clickhouse_dsn``) picks the engine, nothing else changes:

* ``chdb:///abs/path`` or ``chdb://relative/path`` — the embedded chdb engine (ClickHouse 26.9)
  with its data in that directory. A relative path is resolved against the current working
  directory (clickhouse-connect would otherwise read ``chdb://.xget/clickhouse`` as
  host ``.xget`` and database ``clickhouse``). ``chdb://:memory:`` is an in-memory engine.
  chdb allows ONE data path per process (a second path fails with "EmbeddedServer already
  initialized"), and a path locked by one process cannot be opened by another: only one
  service process may own a chdb directory. After every store on a path is ``close()``d the
  process may open a different path.
* ``http(s)://user:pass@host:port/db`` — a ClickHouse server over HTTP.

Concurrency: chdb has no async client, so every call — async or sync — runs the sync
clickhouse-connect client on ONE dedicated worker thread (a single-thread executor). That
serialises access to the engine and keeps the event loop free; against an HTTP server the
same code works unchanged. The client itself is created lazily on that worker thread.

Parameters are always bound server-side with clickhouse-connect's ``{name:Type}`` syntax:
``await store.query_rows("SELECT ... WHERE id = {id:String}", {"id": post_id})``.
Never format values into SQL.

Insert deduplication tokens — measured with chdb 4.4 / ClickHouse 26.9:

* ``insert(..., dedup=True)`` sends ``insert_deduplication_token`` (``content_token`` of the
  rows). On a plain
  (non-replicated) ``MergeTree`` or ``ReplacingMergeTree`` this is SILENTLY IGNORED unless the
  table has ``SETTINGS non_replicated_deduplication_window = N`` (the server default is 0):
  with the default, inserting the same batch twice with the same token leaves two copies.
* With ``non_replicated_deduplication_window = N`` (we use 1000 or more), a retried insert
  with the same token is dropped — exactly one copy — and a different token inserts again.
  The window counts the last N insert blocks remembered per table, so N must exceed the
  number of inserts that can happen between a first attempt and its retry.
* Caveat: with the window set, an insert WITHOUT a token is deduplicated by a hash of its
  data, so two identical untokenised batches collapse into one. Always pass a token.
* A token must name WHAT is inserted, never where it was read from: derive it from the rows
  (``content_token``). A broker restored from an older snapshot (a crash between its saves)
  gives offsets it had already given to other records, so a token made of a batch's
  topic/partition/offset range drops those other records' rows as a "retry" — silently,
  while the caller counts them as stored.
* ``ReplacingMergeTree`` collapses duplicate sorting keys only when parts merge (chdb may
  merge in the background within a second). ``SELECT ... FINAL`` and ``uniqExact(key)`` give
  exact answers before any merge — verified with merges stopped (``SYSTEM STOP MERGES``).
  ``FINAL`` is an error on a plain ``MergeTree`` ("doesn't support FINAL").
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import pickle
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlsplit

import clickhouse_connect

from libs import tracing

T = TypeVar("T")

_MEMORY = ("", ":memory:", "memory")


def normalize_dsn(dsn: str) -> str:
    """Return a DSN clickhouse-connect reads as intended (absolute chdb paths)."""
    if not dsn.startswith("chdb://"):
        return dsn
    rest = dsn[len("chdb://") :]
    path, sep, query = rest.partition("?")
    if path in _MEMORY:
        return "chdb://:memory:" if not sep else f"chdb://:memory:?{query}"
    path = os.path.realpath(os.path.abspath(path))
    return f"chdb://{path}" + (f"?{query}" if sep else "")


def chdb_path(dsn: str) -> str | None:
    """The data directory of a ``chdb://`` DSN (absolute), or None for servers / memory."""
    norm = normalize_dsn(dsn)
    if not norm.startswith("chdb:///"):
        return None
    return norm[len("chdb://") :].partition("?")[0]


# The embedded engine's allocator (jemalloc) keeps freed pages for ten seconds before it gives
# them back; while a counter inserts, that is hundreds of MiB that look like growth (RSS
# 649 -> 787 MiB over 75k posts, back to 626 after a purge). One second returns them as the
# work goes, at no measurable CPU cost (same CPU-seconds for the same inserts).
CHDB_MALLOC_CONF = "dirty_decay_ms:1000,muzzy_decay_ms:0"
log = logging.getLogger("xget.clickhouse")


def content_token(table: str, column_names: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """The deduplication token of inserting `rows` into `table`: the same rows give the same
    token, so a retried insert is dropped, and any other rows give another, so they are
    stored. The rows are hashed as pickled: a faithful encoding of every value type a row
    holds (None and "None", 1 and 1.0 differ), and at C speed — SHA-256 (hardware-accelerated)
    of a 2,000-post batch with its raw JSON takes ~40 ms, where hashing value by value in
    Python took 130 ms. Equal rows that pickle differently (objects shared differently) only
    make an insert the table's ReplacingMergeTree collapses anyway. The pickle streams into
    the hash in frames of ~64 KiB, the same bytes pickle.dumps would give (so the same
    token) without a second copy of the batch in memory: 45 MB for 5,000 posts."""
    h = hashlib.sha256(pickle.dumps((table, tuple(column_names)), protocol=5))
    pickle.Pickler(_HashSink(h), protocol=5).dump(rows)
    return f"{table}:{h.hexdigest()[:32]}"


class _HashSink:
    """A file-like object that feeds what is written to it into a hash."""

    def __init__(self, h: Any):
        self.write_to = h.update

    def write(self, b: bytes) -> int:
        self.write_to(b)
        return len(b)


class ClickHouseStore:
    """Async (and sync) facade over one clickhouse-connect client on one worker thread."""

    def __init__(
        self, dsn: str, *, slow_query_ms: float | None = None, **client_kwargs: Any
    ) -> None:
        self.dsn = normalize_dsn(dsn)
        # A call that takes longer (waiting for the worker thread included) is logged with
        # its SQL's head, never its parameters; None logs none.
        self.slow_query_ms = slow_query_ms
        self.is_embedded = self.dsn.startswith("chdb://")
        self._client_kwargs = client_kwargs
        self._executor: ThreadPoolExecutor | None = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="clickhouse"
        )
        self._client: Any = None
        # (database, table, columns) -> ClickHouse types; only touched on the worker thread
        self._column_types: dict[tuple[str | None, str, tuple[str, ...]], list[Any]] = {}

    def __repr__(self) -> str:
        scheme = urlsplit(self.dsn).scheme
        return f"ClickHouseStore({scheme}://…)"

    # --- thread plumbing ---------------------------------------------------------------------
    def _get_client(self) -> Any:  # runs on the worker thread
        if self._client is None:
            path = chdb_path(self.dsn)
            if path:
                os.makedirs(path, exist_ok=True)
            if self.is_embedded:
                # before chdb loads: its jemalloc reads this once (an operator's value wins)
                os.environ.setdefault("JE_MALLOC_CONF", CHDB_MALLOC_CONF)
            self._client = clickhouse_connect.get_client(dsn=self.dsn, **self._client_kwargs)
        return self._client

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Any:
        queued = time.perf_counter()

        def job() -> T:
            started = time.perf_counter()
            try:
                return fn(self._get_client(), *args, **kwargs)
            finally:
                self._log_if_slow(queued, started, fn, args)

        return job

    def _log_if_slow(self, queued: float, started: float, fn: Callable, args: tuple) -> None:
        """One WARNING for a call over slow_query_ms: how long it ran, and how long it waited
        behind the calls before it (one worker thread serialises them)."""
        if self.slow_query_ms is None:
            return
        now = time.perf_counter()
        if (now - queued) * 1000 < self.slow_query_ms:
            return
        # an insert's first argument is its table; every other call's is its SQL
        what = f"INSERT INTO {args[0]}" if fn == self._insert else str(args[0]) if args else "?"
        log.warning(
            "clickhouse call took %.0f ms (ran %.0f ms, queued %.0f ms): %s",
            (now - queued) * 1000,
            (now - started) * 1000,
            (started - queued) * 1000,
            " ".join(what.split())[:300],
        )

    def _executor_or_raise(self) -> ThreadPoolExecutor:
        if self._executor is None:
            raise RuntimeError("ClickHouseStore is closed")
        return self._executor

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor_or_raise(), self._call(fn, *args, **kwargs)
        )

    def _run_sync(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return self._executor_or_raise().submit(self._call(fn, *args, **kwargs)).result()

    # --- operations (run on the worker thread) -------------------------------------------------
    @staticmethod
    def _command(client: Any, sql: str, parameters: dict | None, settings: dict | None) -> Any:
        return client.command(sql, parameters=parameters, settings=settings)

    @staticmethod
    def _query_rows(client: Any, sql: str, parameters: dict | None, settings: dict | None):
        return [
            tuple(r)
            for r in client.query(sql, parameters=parameters, settings=settings).result_rows
        ]

    @staticmethod
    def _query_dicts(client: Any, sql: str, parameters: dict | None, settings: dict | None):
        res = client.query(sql, parameters=parameters, settings=settings)
        names = res.column_names
        return [dict(zip(names, r, strict=False)) for r in res.result_rows]

    @staticmethod
    def _raw_query(
        client: Any, sql: str, parameters: dict | None, fmt: str, settings: dict | None
    ) -> bytes:
        return client.raw_query(sql, parameters=parameters, fmt=fmt, settings=settings)

    def _insert(
        self,
        client: Any,
        table: str,
        rows: Sequence[Sequence[Any]],
        column_names: Sequence[str],
        dedup: bool,
        settings: dict | None,
    ) -> int:
        if not rows:
            return 0
        names = list(column_names)
        data = rows if isinstance(rows, list) else list(rows)
        s = dict(settings or {})
        if dedup:
            s["insert_deduplication_token"] = content_token(table, names, data)
            s.setdefault("insert_deduplicate", 1)
        database = None
        if "." in table and not table.startswith("`"):
            database, table = table.split(".", 1)
        key = (database, table, tuple(names))

        def describe() -> list[Any]:
            ctx = client.create_insert_context(table, names, database=database)
            types = self._column_types[key] = list(ctx.column_types)
            return types

        def send(types: list[Any]) -> None:
            client.insert(
                table,
                data,
                column_names=names,
                database=database,
                column_types=types,
                settings=s or None,
            )

        # clickhouse-connect runs DESCRIBE TABLE before every insert that does not name the
        # column types: one extra query per insert (about a fifth of a small chdb insert).
        # The types are read once per table and column list instead.
        cached = self._column_types.get(key)
        if cached is None:
            send(describe())
            return len(rows)
        try:
            send(cached)
        except Exception:
            # A migration may have changed a column since the types were read: read them
            # again, and only if they did change send once more with the new ones.
            if describe() == cached:
                raise
            send(self._column_types[key])
        return len(rows)

    # --- async API ---------------------------------------------------------------------------
    async def command(
        self, sql: str, parameters: dict | None = None, *, settings: dict | None = None
    ) -> Any:
        return await self._run(self._command, sql, parameters, settings)

    async def query_rows(
        self, sql: str, parameters: dict | None = None, *, settings: dict | None = None
    ) -> list[tuple]:
        return await self._run(self._query_rows, sql, parameters, settings)

    async def query_dicts(
        self, sql: str, parameters: dict | None = None, *, settings: dict | None = None
    ) -> list[dict[str, Any]]:
        return await self._run(self._query_dicts, sql, parameters, settings)

    async def raw_query(
        self,
        sql: str,
        parameters: dict | None = None,
        *,
        fmt: str = "CSV",
        settings: dict | None = None,
    ) -> bytes:
        """The answer in one of ClickHouse's own output formats (CSV, JSONEachRow, …), as the
        engine wrote it: no per-value work in Python."""
        return await self._run(self._raw_query, sql, parameters, fmt, settings)

    async def insert(
        self,
        table: str,
        rows: Sequence[Sequence[Any]],
        column_names: Sequence[str],
        *,
        dedup: bool = False,
        settings: dict | None = None,
    ) -> int:
        """Insert rows (a batch). ``dedup=True``: a retried insert of the same rows is stored
        once (token: ``content_token``; the table needs ``non_replicated_deduplication_window``
        when not replicated), while any other rows are always stored."""
        with tracing.span(
            "clickhouse insert",
            **{"db.collection.name": table, "db.operation.batch.size": len(rows)},
        ):
            return await self._run(self._insert, table, rows, column_names, dedup, settings)

    # --- sync twins (CLI, migrations) --------------------------------------------------------------
    def command_sync(
        self, sql: str, parameters: dict | None = None, *, settings: dict | None = None
    ) -> Any:
        return self._run_sync(self._command, sql, parameters, settings)

    def query_rows_sync(
        self, sql: str, parameters: dict | None = None, *, settings: dict | None = None
    ) -> list[tuple]:
        return self._run_sync(self._query_rows, sql, parameters, settings)

    def query_dicts_sync(
        self, sql: str, parameters: dict | None = None, *, settings: dict | None = None
    ) -> list[dict[str, Any]]:
        return self._run_sync(self._query_dicts, sql, parameters, settings)

    def insert_sync(
        self,
        table: str,
        rows: Sequence[Sequence[Any]],
        column_names: Sequence[str],
        *,
        dedup: bool = False,
        settings: dict | None = None,
    ) -> int:
        return self._run_sync(self._insert, table, rows, column_names, dedup, settings)

    # --- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        """Close the client (releasing the chdb path for this process) and the worker thread."""
        ex = self._executor
        if ex is None:
            return

        def _close() -> None:
            if self._client is not None:
                try:
                    self._client.close()
                finally:
                    self._client = None

        try:
            ex.submit(_close).result()
        finally:
            self._executor = None
            ex.shutdown(wait=True)

    async def aclose(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.close)

    def __enter__(self) -> ClickHouseStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> ClickHouseStore:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()
