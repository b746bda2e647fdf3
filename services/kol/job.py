"""One run of the KOL followings job: plan, then per KOL: cache → source → cache → ClickHouse.

Per KOL, in this order:
  1. its pages already in the cache are read back (cache hits, never requested again);
  2. if its id is unknown, a lookup (cached like any page) resolves it;
  3. the chain continues from the last cached cursor: call → page acknowledged on kol-pages →
     parsed; until the source says there is no next page;
  4. all its rows go to ClickHouse, then (only then) it is marked done.
A kill at any point loses at most the answer of the call in flight; the next run re-reads the
cache and continues from the next page. Modes: `resume` and `test` never call the source;
`dry_run` and `test` never write to ClickHouse.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from libs.parsing.followings import (
    FollowedUser,
    parse_api_followings,
    parse_api_lookup,
    parse_x_following,
    parse_x_lookup,
)
from libs.parsing.x import PageParseError
from libs.records.kol import KolPage
from libs.retry import RetryPolicy
from libs.settings import Settings

from .cache import KolCache
from .sources import FATAL, Answer, FollowingsSource
from .store import Kol, KolPlanner, KolWriter, StoreUnavailable

log = logging.getLogger(__name__)
# A failed call is retried after 0.4 s, doubling (with jitter) up to 30 s.
KOL_RETRY = RetryPolicy(base_s=0.4, cap_s=30.0)


@dataclass
class Mode:
    dry_run: bool = False  # call the source, write nothing to ClickHouse
    resume: bool = False  # only what is cached; never call the source
    test: bool = False  # first 3 KOLs, cached data only, nothing written
    limit: int | None = None
    handles: list[str] | None = None  # only these KOLs (gateway tasks)

    @property
    def calls_allowed(self) -> bool:
        return not (self.resume or self.test)


@dataclass
class Stats:
    kols_total: int = 0
    kols_done: int = 0
    kols_failed: int = 0
    kols_pending: int = 0  # fetched (or partly) but not stored / not complete
    pages: int = 0
    rows: int = 0
    api_calls: int = 0
    ok_calls: int = 0
    cache_hits: int = 0
    price_per_call: float = 0.0
    store_error: str | None = None
    fatal_error: str | None = None
    would_call: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    dry_rows: list[dict] = field(default_factory=list)

    @property
    def estimated_cost(self) -> float:
        return round(self.ok_calls * self.price_per_call, 6)


class FatalSourceError(RuntimeError):
    pass


class KolJob:
    def __init__(
        self,
        settings: Settings,
        cache: KolCache,
        source: FollowingsSource | None,
        planner: KolPlanner,
        writer: KolWriter,
        on_progress: Callable[[Stats], None] | None = None,
        on_rows: Callable[[Kol, list[dict]], None] | None = None,
    ):
        self.settings = settings
        self.cache = cache
        self.source = source
        self.planner = planner
        self.writer = writer
        self.on_progress = on_progress or (lambda s: None)
        self.on_rows = on_rows
        self.stats = Stats()
        self._stop = asyncio.Event()

    def stop(self) -> None:
        """Finish the call in flight, start nothing new (Ctrl-C)."""
        self._stop.set()

    @property
    def source_name(self) -> str:
        return self.source.name if self.source else self.settings.kol_source

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # --- the run ----------------------------------------------------------------------------------
    async def select(self, mode: Mode) -> list[Kol]:
        kols, done = await self.planner.plan()
        if mode.handles is not None:
            wanted = {h.lower().lstrip("@") for h in mode.handles}
            kols = [k for k in kols if k.user_name.lower() in wanted or k.id in wanted]
        todo = [k for k in kols if k.kol not in done]
        if mode.test:
            todo = todo[:3]
        if mode.limit:
            todo = todo[: mode.limit]
        return todo

    async def run(self, mode: Mode) -> Stats:
        st = self.stats
        if self.source is not None and self.source.billed:
            st.price_per_call = self.settings.kol_api_price_per_call
        kols = await self.select(mode)
        await self.cache.load()
        if mode.resume:
            kols = [k for k in kols if self.cache.has_pages(k.kol, self.source_name)]
        st.kols_total = len(kols)
        self.on_progress(st)
        sem = asyncio.Semaphore(self.settings.kol_concurrency)

        async def one(k: Kol) -> None:
            async with sem:
                if self.stopping or st.fatal_error:
                    return
                try:
                    await self.process(k, mode)
                except FatalSourceError as e:
                    st.fatal_error = str(e)
                    self.stop()
                self.on_progress(st)

        await asyncio.gather(*(one(k) for k in kols))
        return st

    # --- one KOL ----------------------------------------------------------------------------------
    async def process(self, kol: Kol, mode: Mode) -> None:
        st = self.stats
        source_name = self.source_name
        metas = self.cache.chain(kol.kol, source_name)
        cached = await self.cache.read(metas)
        st.cache_hits += len(cached)
        st.pages += len(cached)

        kol_id, handle = kol.id, kol.user_name
        if not kol_id:
            resolved = await self._resolve(kol, mode)
            if resolved is None:
                st.kols_pending += 1
                return
            kol_id, handle = resolved
        if source_name == "api" and not handle:
            st.kols_failed += 1
            st.failures.append(
                f"{kol.label}: the api source needs the KOL's handle "
                "(imported by id only); use the x source for it"
            )
            return

        pages: list[tuple[datetime, list[FollowedUser]]] = []
        cursor, final = None, False
        for p in cached:
            parsed = self._parse(p.source, p.response or "", p.cursor_in, p.requested_at)
            pages.append((p.requested_at, parsed.users))
            cursor, final = parsed.cursor_out, parsed.final
        page_no = len(cached)
        failures = 0
        while not final:
            if not mode.calls_allowed or self.source is None:
                desc = (
                    self.source.describe(kol_id, handle, cursor)
                    if self.source
                    else (f"{source_name} followings of {kol.label} from page {page_no}")
                )
                st.would_call.append(f"{kol.label}: {desc} (page {page_no}, {len(cached)} cached)")
                break
            if self.stopping:
                break
            answer = await self.source.followings(kol_id, handle, cursor)
            page = await self._keep(kol, kol_id, handle, "followings", page_no, cursor, answer)
            if answer.outcome != "ok":
                failures += 1
                if not await self._after_failure(kol, answer, failures):
                    break
                continue
            failures = 0
            parsed = self._parse(page.source, page.response or "", cursor, page.requested_at)
            pages.append((page.requested_at, parsed.users))
            st.pages += 1
            cursor, final = parsed.cursor_out, parsed.final
            page_no += 1
            self.on_progress(st)

        users = sum(len(u) for _, u in pages)
        if mode.dry_run or mode.test:
            rows = [dict(vars(u), kol_id=kol_id) for _, us in pages for u in us]
            st.rows += len(rows)
            if self.on_rows and rows:
                self.on_rows(kol, rows)
            if final:
                st.kols_done += 1
            else:
                st.kols_pending += 1
            return
        if not final:
            st.kols_pending += 1
            return
        try:
            st.rows += await self.writer.store_kol(kol, kol_id, source_name, pages)
            st.kols_done += 1
        except StoreUnavailable as e:
            st.store_error = str(e)
            st.kols_pending += 1
            log.warning("%s: %d followings cached, not stored: %s", kol.label, users, e)

    async def _resolve(self, kol: Kol, mode: Mode) -> tuple[str, str] | None:
        st = self.stats
        meta = self.cache.lookup(kol.kol)
        if meta is not None:
            (page,) = await self.cache.read([meta])
            st.cache_hits += 1
        elif not mode.calls_allowed or self.source is None:
            st.would_call.append(f"{kol.label}: look up the user id of @{kol.user_name}")
            return None
        else:
            failures = 0
            while True:
                if self.stopping:
                    return None
                answer = await self.source.lookup(kol.user_name)
                page = await self._keep(kol, None, kol.user_name, "lookup", 0, None, answer)
                if answer.outcome == "ok":
                    break
                failures += 1
                if not await self._after_failure(kol, answer, failures):
                    return None
        try:
            if page.source == "api":
                return parse_api_lookup(page.response or "")
            return parse_x_lookup(page.response or "", page.requested_at)
        except PageParseError as e:
            st.kols_failed += 1
            st.failures.append(f"{kol.label}: lookup answer unusable: {e}")
            return None

    async def _keep(
        self,
        kol: Kol,
        kol_id: str | None,
        handle: str,
        op: str,
        page_no: int,
        cursor: str | None,
        a: Answer,
    ) -> KolPage:
        """The answer goes into the cache before anything else looks at it."""
        assert self.source is not None, "only a source's answers are kept"
        st = self.stats
        final = False
        cursor_out = None
        users = 0
        if a.outcome == "ok" and op == "followings":
            try:
                parsed = self._parse(self.source.name, a.body or "", cursor, datetime.now(UTC))
                cursor_out, final, users = parsed.cursor_out, parsed.final, len(parsed.users)
            except PageParseError as e:
                a = Answer("malformed", a.http_status, a.body, str(e), a.elapsed_ms, a.account)
        page = KolPage(
            kol=kol.kol,
            kol_id=kol_id or None,
            kol_user_name=handle or None,
            source=self.source.name,
            operation=op,
            page_no=page_no,
            cursor_in=cursor,
            cursor_out=cursor_out,
            final=final,
            users=users,
            outcome=a.outcome,
            http_status=a.http_status,
            error=a.error,
            account=a.account,
            requested_at=datetime.now(UTC),
            elapsed_ms=a.elapsed_ms,
            response=a.body,
        )
        await self.cache.append(page)
        st.api_calls += 1
        if a.outcome == "ok":
            st.ok_calls += 1
        return page

    async def _after_failure(self, kol: Kol, a: Answer, failures: int) -> bool:
        """True to try again (after a backoff); False to give up on this KOL for now."""
        st = self.stats
        if a.outcome in FATAL:
            name = self.source.name if self.source is not None else "cache"
            raise FatalSourceError(f"{name} source refused: {a.error}")
        if failures >= self.settings.kol_max_failures:
            st.kols_failed += 1
            st.failures.append(f"{kol.label}: {failures} failed calls, last {a.outcome}: {a.error}")
            return False
        await asyncio.sleep(KOL_RETRY.delay(failures - 1))
        return not self.stopping

    @staticmethod
    def _parse(source: str, body: str, cursor_in: str | None, at: datetime):
        if source == "api":
            return parse_api_followings(body)
        return parse_x_following(body, cursor_in, at)
