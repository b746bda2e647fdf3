"""The scraper's slice runner (services/scraper/slice_runner.py `run_slice`) without a broker:
raw pages, checkpoints, task progress and controls live in the handler harness's in-memory log
(libs/handler_harness.py), read back by the real PageLedger through its log seam, while the
real XClient pages through the real X simulator (a process: the session's `xsim` fixture, so
these tests live here and not in tests/unit). Each test reads what a user would see: the pages
on raw-pages, the slice's end reason, and what X was asked (the simulator's request log)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import pairwise

import httpx
import pytest
from aiokafka.structs import RecordMetadata

from libs.handler_harness import (
    MemoryLeases,
    MemoryLedgerLog,
    MemoryLog,
    MemoryProducer,
    MemoryTable,
)
from libs.kafka import Outgoing
from libs.records.pages import RawPage, SliceCheckpoint
from libs.records.tasks import SearchJob, TaskControl, TaskProgress
from libs.topics import RAW_PAGES, SCRAPE_CHECKPOINTS, TASK_CONTROLS, TASK_PROGRESS
from libs.xclient import XAccount, XClient
from services.scraper.ledger import PageLedger
from services.scraper.slice_runner import RecentPages, SliceDeps, run_slice
from services.task_gateway.scheduler import search_query
from tests.conftest import make_settings
from tests.e2e.harness import Simulator
from tests.xsim.helpers import post_ids

START = datetime(2026, 7, 1, tzinfo=UTC)
END = datetime(2026, 7, 2, tzinfo=UTC)  # one day at 3 posts an hour: 72 posts
PER_HOUR = 3
PAGE_SIZE = 20


class Crash(Exception):
    """The scraper process dying at a chosen write."""


class HookedProducer(MemoryProducer):
    """A MemoryProducer that runs `before` ahead of each write (it may raise Crash: the write
    never happens) and `after` once a write is acknowledged."""

    def __init__(
        self,
        log: MemoryLog,
        before: Callable[[Outgoing], None] | None = None,
        after: Callable[[Outgoing], None] | None = None,
    ):
        super().__init__(log)
        self.before, self.after = before, after

    async def send_and_wait(self, out: Outgoing) -> RecordMetadata:
        if self.before is not None:
            self.before(out)
        md = await super().send_and_wait(out)
        if self.after is not None:
            self.after(out)
        return md


def new_account() -> XAccount:
    """An account of its own: its own rate-limit buckets, faults and log entries in the
    simulator."""
    n = uuid.uuid4().hex[:8]
    return XAccount(f"h{n}", f"tok-h{n}", f"ct0-h{n}")


def slice_job(keyword: str, required_count: int = 0) -> SearchJob:
    return SearchJob(
        task_id=f"t-{keyword}",
        slice_id="2026-07-01",
        keyword=keyword,
        query=search_query(keyword, START, END),
        required_count=required_count,
        start_time=START,
        end_time=END,
    )


class Scraper:
    """One scraper process's slice dependencies over a shared in-memory log: a second
    Scraper over the same log is the process started again after a crash (nothing of the
    first one's memory survives)."""

    def __init__(self, xsim: str, log: MemoryLog, account: XAccount, **hooks):
        settings = make_settings(x_graphql_url=f"{xsim}/i/api/graphql", x_transaction_id="static")
        self.producer = HookedProducer(log, **hooks)
        self.leases = MemoryLeases([account])
        self.xclient = XClient(settings)
        # In-memory twins of the Producer, TopicTable and LeaseClient: the methods
        # run_slice and PageLedger call, answered from `log` and `account`.
        self.deps = SliceDeps(
            producer=self.producer,
            ledger=PageLedger(settings, self.producer, MemoryLedgerLog(log)),
            progress=MemoryTable(log, TASK_PROGRESS),
            pool=self.leases,
            xclient=self.xclient,
            page_size=PAGE_SIZE,
            target_wait_s=5.0,
            controls=MemoryTable(log, TASK_CONTROLS),
            recent=RecentPages(),
        )

    async def run(self, job: SearchJob) -> str:
        try:
            return await run_slice(job, self.deps)
        finally:
            await self.xclient.aclose()


@pytest.fixture
def sim(xsim) -> Simulator:
    return Simulator(xsim)


@pytest.fixture
def keyword(sim) -> str:
    kw = f"slice{uuid.uuid4().hex[:8]}"
    sim.configure(densities={kw: PER_HOUR})
    return kw


def raw_pages(log: MemoryLog, job: SearchJob) -> list[RawPage]:
    """The slice's records on raw-pages, in the order written."""
    return [
        r
        for r in log.read(RAW_PAGES)
        if isinstance(r, RawPage) and r.task_id == job.task_id and r.slice_id == job.slice_id
    ]


def asked(sim: Simulator, keyword: str) -> list[str | None]:
    """The cursor of every request X answered for the keyword's search, in order."""
    return [e.get("cursor") for e in sim.search_requests(keyword)]


def assert_paged_in_order(pages: list[RawPage]) -> None:
    """Successful pages 0..n-1, each asking from where the one before ended; only the last
    is final."""
    ok = [p for p in pages if p.outcome == "ok"]
    assert [p.page_no for p in ok] == list(range(len(ok)))
    assert ok[0].cursor_in is None
    for before, after in pairwise(ok):
        assert after.cursor_in == before.cursor_out
    assert [p.final for p in ok] == [False] * (len(ok) - 1) + [True]


async def test_a_slice_pages_through_x_to_exhaustion(xsim, sim, keyword):
    log, job = MemoryLog(), slice_job(keyword)
    scraper = Scraper(xsim, log, new_account())

    assert await scraper.run(job) == "exhausted"

    pages = raw_pages(log, job)
    assert_paged_in_order(pages)
    assert all(p.outcome == "ok" and p.response for p in pages)
    assert pages[-1].end_reason == "exhausted" and pages[-1].entries == 0
    # Every post X holds for the slice's query is on raw-pages, once.
    ids = [i for p in pages for i in post_ids(p.response or "")]
    assert sorted(ids) == sorted(sim.corpus_ids(job.query)) and len(ids) == 24 * PER_HOUR
    # One request to X per page, each asked with its page's cursor.
    assert asked(sim, keyword) == [p.cursor_in for p in pages]
    assert [r.outcome for r in scraper.leases.released] == ["ok"] * len(pages)
    # The checkpoint says the slice is done: started again, it asks X nothing.
    cp = MemoryTable(log, SCRAPE_CHECKPOINTS).rows[f"{job.task_id}/{job.slice_id}"]
    assert isinstance(cp, SliceCheckpoint) and cp.final and cp.last_page_no == len(pages) - 1
    assert await Scraper(xsim, log, new_account()).run(job) == "exhausted"
    assert len(asked(sim, keyword)) == len(pages) and raw_pages(log, job) == pages


async def test_a_slice_resumed_after_a_crash_asks_x_nothing_already_on_raw_pages(
    xsim, sim, keyword
):
    log, job = MemoryLog(), slice_job(keyword)

    def die_before_checkpoint_of_page_1(out: Outgoing) -> None:
        # Page 1 is on raw-pages; the process dies before its checkpoint is written.
        if isinstance(out.record, SliceCheckpoint) and out.record.last_page_no == 1:
            raise Crash

    with pytest.raises(Crash):
        await Scraper(xsim, log, new_account(), before=die_before_checkpoint_of_page_1).run(job)
    before = raw_pages(log, job)
    assert [p.page_no for p in before] == [0, 1] and len(asked(sim, keyword)) == 2

    assert await Scraper(xsim, log, new_account()).run(job) == "exhausted"

    pages = raw_pages(log, job)
    assert pages[:2] == before
    assert_paged_in_order(pages)  # no page written twice
    cursors = asked(sim, keyword)
    assert len(cursors) == len(pages) and max(Counter(cursors).values()) == 1
    # The second process's first request continued after page 1: nothing asked again.
    assert cursors[2] == before[1].cursor_out
    ids = [i for p in pages for i in post_ids(p.response or "")]
    assert sorted(ids) == sorted(sim.corpus_ids(job.query))


async def test_a_cancel_before_the_next_request_ends_the_slice_without_asking_x(xsim, sim, keyword):
    log, job = MemoryLog(), slice_job(keyword)

    def client_cancels_after_page_0(out: Outgoing) -> None:
        # The client cancels (the gateway's control record) as page 0 is acknowledged.
        if isinstance(out.record, RawPage) and out.record.page_no == 0:
            log.append(
                Outgoing(
                    TASK_CONTROLS,
                    job.task_id,
                    TaskControl(
                        task_id=job.task_id,
                        state="cancelled",
                        reason="client",
                        updated_at=datetime.now(UTC),
                    ),
                )
            )

    scraper = Scraper(xsim, log, new_account(), after=client_cancels_after_page_0)
    assert await scraper.run(job) == "cancelled"

    pages = raw_pages(log, job)
    assert [(p.page_no, p.outcome, p.final, p.end_reason) for p in pages] == [
        (0, "ok", False, None),
        (1, "ok", True, "cancelled"),
    ]
    assert pages[1].response is None and pages[1].cursor_in == pages[0].cursor_out
    assert asked(sim, keyword) == [None]  # page 0 only
    assert len(scraper.leases.granted) == 1  # no account was even taken for page 1


async def test_a_completed_task_ends_the_slice_target_reached_without_asking_x(xsim, sim, keyword):
    log, job = MemoryLog(), slice_job(keyword, required_count=10)

    def counter_confirms_target_after_page_0(out: Outgoing) -> None:
        # The dedup-counter confirms the task's 10 posts once page 0's 20 are counted.
        if isinstance(out.record, RawPage) and out.record.page_no == 0:
            log.append(
                Outgoing(
                    TASK_PROGRESS,
                    job.task_id,
                    TaskProgress(
                        task_id=job.task_id,
                        keyword=job.keyword,
                        status="completed",
                        collected=10,
                        target=10,
                        end_reason="target_reached",
                        updated_at=datetime.now(UTC),
                    ),
                )
            )

    scraper = Scraper(xsim, log, new_account(), after=counter_confirms_target_after_page_0)
    assert await scraper.run(job) == "target_reached"

    pages = raw_pages(log, job)
    assert [(p.page_no, p.outcome, p.final, p.end_reason) for p in pages] == [
        (0, "ok", False, None),
        (1, "ok", True, "target_reached"),
    ]
    assert pages[1].response is None and pages[1].entries == 0  # a closing record, no answer
    assert asked(sim, keyword) == [None]
    assert len(scraper.leases.granted) == 1


async def test_a_page_x_answers_with_a_transient_error_is_retried_and_the_slice_completes(
    xsim, sim, keyword
):
    log, job, account = MemoryLog(), slice_job(keyword), new_account()
    # X answers the slice's second request 503 once.
    async with httpx.AsyncClient(base_url=xsim, timeout=10) as admin:
        (
            await admin.post(
                "/_sim/faults",
                json={
                    "kind": "http_5xx",
                    "account": account.auth_token,
                    "operation": "SearchTimeline",
                    "after": 1,
                    "count": 1,
                },
            )
        ).raise_for_status()
        try:
            scraper = Scraper(xsim, log, account)
            assert await scraper.run(job) == "exhausted"
        finally:
            await admin.delete("/_sim/faults")

    pages = raw_pages(log, job)
    failed = [p for p in pages if p.outcome != "ok"]
    assert [(p.page_no, p.outcome, p.http_status, p.final) for p in failed] == [
        (1, "server_error", 503, False)
    ]
    assert_paged_in_order(pages)
    ok = [p for p in pages if p.outcome == "ok"]
    assert ok[1].cursor_in == failed[0].cursor_in  # the same page asked again
    cursors = asked(sim, keyword)
    assert cursors == [p.cursor_in for p in pages]  # the failed request, then its retry
    assert len(cursors) == len(ok) + 1
    ids = [i for p in ok for i in post_ids(p.response or "")]
    assert sorted(ids) == sorted(sim.corpus_ids(job.query))
    outcomes = [r.outcome for r in scraper.leases.released]
    assert outcomes == ["ok", "server_error"] + ["ok"] * (len(ok) - 1)
