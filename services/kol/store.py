"""ClickHouse side of the KOL job: the KOL list, the rows, and which KOLs are done.

The job reads its plan through a short-lived store and writes through `KolWriter`, which
opens ClickHouse when it first has rows and re-opens it after a failure. So the job never
holds the database while it only fetches, and an outage during a run costs nothing but the
writes: the pages stay in the cache and a later run (or `--resume`) stores them without
calling the source again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from libs.parsing.followings import FollowedUser
from libs.storage.clickhouse import ClickHouseStore
from libs.storage.migrate import apply_migrations

log = logging.getLogger(__name__)

ALL_COLUMNS = [
    "id",
    "name",
    "user_name",
    "avatar",
    "description",
    "created_at",
    "created_at_time",
    "followers",
    "following",
    "statuses_count",
    "source",
    "fetched_at",
    "version",
]
EDGE_COLUMNS = ["kol_id", "following_id", "first_seen", "last_seen"]
PROGRESS_COLUMNS = [
    "kol",
    "kol_id",
    "status",
    "pages",
    "followings",
    "source",
    "finished_at",
    "version",
]
KOL_COLUMNS = ["kol", "id", "user_name", "added_at", "version"]


class StoreUnavailable(RuntimeError):
    """ClickHouse could not be reached or refused a write."""


@dataclass(frozen=True)
class Kol:
    kol: str  # key in twitter_kol
    id: str
    user_name: str

    @property
    def label(self) -> str:
        return f"@{self.user_name}" if self.user_name else self.id


def kol_key(entry: str) -> tuple[str, str, str] | None:
    """A line of an import file -> (key, id, handle); None for blanks/comments/headers."""
    v = entry.strip().strip('"').strip()
    if not v or v.startswith("#") or v.lower() in ("id", "user_name", "handle", "username"):
        return None
    v = v.removeprefix("https://x.com/").removeprefix("https://twitter.com/").split("/")[0]
    if v.startswith("@"):
        handle = v[1:]
    elif v.isdigit():
        return v, v, ""
    else:
        handle = v
    if not handle or len(handle) > 50 or not all(c.isalnum() or c == "_" for c in handle):
        raise ValueError(f"not an X handle or user id: {entry.strip()!r}")
    return "@" + handle.lower(), "", handle


def open_store(dsn: str) -> ClickHouseStore:
    return ClickHouseStore(dsn)


async def _guard(what: str, coro):
    try:
        return await coro
    except StoreUnavailable:
        raise
    except Exception as e:
        raise StoreUnavailable(f"{what}: {type(e).__name__}: {str(e)[:300]}") from e


class KolPlanner:
    """Short-lived reads and admin writes (import, clear progress)."""

    def __init__(self, dsn: str):
        self.dsn = dsn

    async def _with(self, what: str, fn):
        store = open_store(self.dsn)
        try:
            return await _guard(what, fn(store))
        finally:
            await store.aclose()

    async def plan(self) -> tuple[list[Kol], set[str]]:
        async def go(store: ClickHouseStore):
            await asyncio.to_thread(apply_migrations, store)
            rows = await store.query_rows(
                "SELECT kol, id, user_name FROM twitter_kol FINAL ORDER BY added_at, kol"
            )
            done = await store.query_rows(
                "SELECT kol FROM twitter_kol_progress FINAL WHERE status = 'done'"
            )
            return [Kol(*r) for r in rows], {r[0] for r in done}

        return await self._with("reading the KOL list", go)

    async def import_kols(self, entries: Iterable[str]) -> tuple[int, int]:
        """Add KOLs (handles or ids) in file order; ones already listed are left alone."""
        parsed = []
        for e in entries:
            k = kol_key(e)
            if k is not None:
                parsed.append(k)

        async def go(store: ClickHouseStore):
            await asyncio.to_thread(apply_migrations, store)
            known = {r[0] for r in await store.query_rows("SELECT kol FROM twitter_kol FINAL")}
            now = datetime.now(UTC)
            rows, seen = [], set()
            for i, (key, uid, handle) in enumerate(parsed):
                if key in known or key in seen:
                    continue
                seen.add(key)
                added = now + timedelta(microseconds=i)
                rows.append((key, uid, handle, added, int(added.timestamp() * 1_000_000)))
            await store.insert("twitter_kol", rows, KOL_COLUMNS)
            return len(rows), len(parsed) - len(rows)

        return await self._with("importing KOLs", go)

    async def check(self) -> str:
        async def go(store: ClickHouseStore):
            await asyncio.to_thread(apply_migrations, store)
            ((n,),) = await store.query_rows("SELECT count() FROM twitter_kol FINAL")
            ((d,),) = await store.query_rows(
                "SELECT count() FROM twitter_kol_progress FINAL WHERE status = 'done'"
            )
            return f"ClickHouse ok: {n} KOLs listed, {d} done"

        return await self._with("checking ClickHouse", go)

    async def clear_progress(self) -> None:
        async def go(store: ClickHouseStore):
            await asyncio.to_thread(apply_migrations, store)
            await store.command("TRUNCATE TABLE twitter_kol_progress")

        await self._with("clearing KOL progress", go)


class KolWriter:
    """Writes a KOL's rows, then marks it done; (re)opens ClickHouse on demand."""

    def __init__(self, dsn: str, retry_s: float):
        self.dsn = dsn
        self.retry_s = retry_s
        self._store: ClickHouseStore | None = None
        self._failed_at: float | None = None
        self.last_error: str | None = None
        self.last_cause: BaseException | None = None  # what the driver raised, for failures.py

    async def _get(self) -> ClickHouseStore:
        if self._failed_at is not None and time.monotonic() - self._failed_at < self.retry_s:
            raise StoreUnavailable(self.last_error or "ClickHouse unavailable")
        if self._store is None:
            self._store = open_store(self.dsn)
        return self._store

    async def _fail(self, e: StoreUnavailable) -> None:
        self.last_error = str(e)
        # A fast refusal (within retry_s of a failure) carries no cause: keep the last one.
        self.last_cause = e.__cause__ or self.last_cause or e
        self._failed_at = time.monotonic()
        store, self._store = self._store, None
        if store is not None:
            try:
                await store.aclose()
            except Exception:  # noqa: BLE001 - it is already broken
                pass
        log.warning("ClickHouse write failed: %s", e)

    async def store_kol(
        self, kol: Kol, kol_id: str, source: str, pages: list[tuple[datetime, list[FollowedUser]]]
    ) -> int:
        """Every row of one KOL, then its done mark (only after the rows are stored)."""
        users: dict[str, tuple[FollowedUser, datetime]] = {}
        for fetched_at, page_users in pages:
            for u in page_users:
                users[u.id] = (u, fetched_at)
        all_rows = [
            (
                u.id,
                u.name,
                u.user_name,
                u.avatar,
                u.description,
                u.created_at,
                u.created_at_time,
                u.followers,
                u.following,
                u.statuses_count,
                source,
                at,
                int(at.timestamp() * 1000),
            )
            for u, at in users.values()
        ]
        edges = [(kol_id, u.id, at, at) for u, at in users.values()]
        now = datetime.now(UTC)
        done = [
            (
                kol.kol,
                kol_id,
                "done",
                len(pages),
                len(users),
                source,
                now,
                int(now.timestamp() * 1000),
            )
        ]
        try:
            store = await self._get()
            if kol_id != kol.id:
                await _guard("writing twitter_kol", self._set_id(store, kol, kol_id))
            for i in range(0, len(all_rows), 5000):
                await _guard(
                    "writing twitter_kol_all",
                    store.insert("twitter_kol_all", all_rows[i : i + 5000], ALL_COLUMNS),
                )
                await _guard(
                    "writing twitter_kol_following",
                    store.insert("twitter_kol_following", edges[i : i + 5000], EDGE_COLUMNS),
                )
            await _guard(
                "marking the KOL done", store.insert("twitter_kol_progress", done, PROGRESS_COLUMNS)
            )
        except StoreUnavailable as e:
            await self._fail(e)
            raise
        self._failed_at = None
        return len(all_rows)

    @staticmethod
    async def _set_id(store: ClickHouseStore, kol: Kol, kol_id: str) -> None:
        """Record a resolved id on the KOL's row (a newer version of the same key)."""
        rows = await store.query_rows(
            "SELECT added_at, version FROM twitter_kol FINAL WHERE kol = {k:String}", {"k": kol.kol}
        )
        added, version = rows[0] if rows else (datetime.now(UTC), 0)
        await store.insert(
            "twitter_kol", [(kol.kol, kol_id, kol.user_name, added, version + 1)], KOL_COLUMNS
        )

    async def aclose(self) -> None:
        if self._store is not None:
            await self._store.aclose()
            self._store = None
