"""Pages through one slice of a task: request a page, persist it, checkpoint, repeat.

Order per page: X answers → the raw page is on raw-pages (acknowledged) → checkpoint. Nothing
else happens to a response before it is durable, so a crash at any point resumes at the next
page that is not yet on raw-pages.

X's answers also stay in this process's memory a while (RecentPages): when a broker fault
fails a raw page's write, or a broker restart loses pages it had acknowledged, the slice
resumes at the first page the broker does not hold and writes it again from memory instead of
asking X again. Only a crash of the scraper process itself repeats a request: the one page
each slice had in flight.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from libs.kafka import Outgoing, Producer
from libs.leases import ACCOUNT_REFUSED, LeaseClient
from libs.records.accounts import LeaseWait
from libs.records.pages import RawPage
from libs.records.tasks import SearchJob, TaskControl, TaskProgress
from libs.topic_table import TopicTable
from libs.topics import RAW_PAGES, SEARCH_JOBS
from libs.xclient import XAccount, XClient

from . import split
from .backpressure import ParserLagGate
from .ledger import PageLedger, SliceState, raw_page_key
from .parking import Parking

log = logging.getLogger(__name__)

# Transient X answers retried on another account/after backoff before the slice gives up.
MAX_TRANSIENT_FAILURES = 8
# How soon a pause or cancel reaches a slice that waits for an account.
CONTROL_CHECK_S = 0.2


class RecentPages:
    """X's successful answers of the running slices, newest few per slice, kept until the
    slice ends: a page the broker did not keep is written again from here, not asked again."""

    def __init__(self, per_slice: int = 8):
        self.per_slice = per_slice
        self._pages: dict[str, dict[int, RawPage]] = {}

    def put(self, page: RawPage) -> None:
        pages = self._pages.setdefault(f"{page.task_id}/{page.slice_id}", {})
        pages[page.page_no] = page
        while len(pages) > self.per_slice:
            del pages[min(pages)]

    def get(self, job: SearchJob, page_no: int, cursor: str | None) -> RawPage | None:
        page = self._pages.get(f"{job.task_id}/{job.slice_id}", {}).get(page_no)
        return page if page is not None and page.cursor_in == cursor else None

    def forget(self, job: SearchJob) -> None:
        self._pages.pop(f"{job.task_id}/{job.slice_id}", None)


@dataclass
class SliceDeps:
    producer: Producer
    ledger: PageLedger
    progress: TopicTable
    pool: LeaseClient
    xclient: XClient
    page_size: int
    target_wait_s: float = 30.0
    controls: TopicTable | None = None  # task-controls: pause / cancel
    split_pages: int = 0  # dense-slice threshold (settings.scraper_split_pages; 0 = never)
    recent: RecentPages | None = None  # answers kept to re-write after a broker fault
    gate: ParserLagGate | None = None  # holds requests to X while the parser lags too far
    parking: Parking | None = None  # slices waiting for an account or paused: no slot held


def task_priority(controls: TopicTable | None, job: SearchJob) -> int:
    """The job's priority, or the client's newer one (PATCH): read before every page."""
    c = controls.rows.get(job.task_id) if controls is not None else None
    if isinstance(c, TaskControl) and c.priority is not None:
        return c.priority
    return job.priority


def control_state(controls: TopicTable | None, task_id: str) -> str:
    c = controls.rows.get(task_id) if controls is not None else None
    return c.state if isinstance(c, TaskControl) else "active"


async def fetch_page(deps: SliceDeps, account, job: SearchJob, cursor: str | None):
    """One request of the job's X operation (for user operations `query` is the post id or
    the screen name)."""
    if job.operation == "Retweeters":
        return await deps.xclient.retweeters_page(account, job.query, cursor, count=deps.page_size)
    if job.operation == "UserByScreenName":
        return await deps.xclient.user_by_screen_name(account, job.query)
    return await deps.xclient.search_page(
        account, job.query, cursor, product=job.product, count=deps.page_size
    )


def task_completed(progress: TopicTable, task_id: str) -> bool:
    p = progress.rows.get(task_id)
    return isinstance(p, TaskProgress) and p.status == "completed"


async def run_slice(job: SearchJob, deps: SliceDeps) -> str:
    """Run a slice to its end; returns the end reason."""
    state = await deps.ledger.recover(job)
    if state is None:
        state = await deps.ledger.begin(job)
    elif state.final:
        return state.end_reason or "exhausted"
    else:
        log.info("slice %s/%s resumes at page %d", job.task_id, job.slice_id, state.next_page_no)

    failures = 0
    while True:
        # The client's controls take effect before the next request to X.
        ctl = control_state(deps.controls, job.task_id)
        if ctl == "cancelled":
            return await _finish(job, deps, state, "cancelled")
        if ctl == "paused":
            _park(deps, job, "paused")
            try:
                assert deps.controls is not None  # paused: a control said so
                await deps.controls.wait_for(
                    lambda: control_state(deps.controls, job.task_id) != "paused", 5.0
                )
            finally:
                _unpark(deps, job)
            continue
        if task_completed(deps.progress, job.task_id):
            return await _finish(job, deps, state, "target_reached")
        if (
            state.next_page_no == 1
            and state.oldest_post_time is not None
            and split.can_split(job, deps.split_pages)
            and split.dense(job, state.oldest_post_time, deps.split_pages, deps.page_size)
        ):
            return await _split(job, deps, state)
        if job.required_count and (
            state.entries_total >= job.required_count
            or deps.ledger.task_entries(job.task_id) >= job.required_count
        ):
            # Enough entries fetched for the target by all the task's slices together: give
            # the counter time to confirm before paying X for more (it may find duplicates and
            # need another page).
            done = await deps.progress.wait_for(
                lambda: task_completed(deps.progress, job.task_id), deps.target_wait_s
            )
            if done:
                return await _finish(job, deps, state, "target_reached")

        kept = deps.recent.get(job, state.next_page_no, state.cursor) if deps.recent else None
        if kept is not None:
            # X answered this page before a broker fault lost it: written again, not asked.
            log.info(
                "slice %s/%s page %d: written again from memory",
                job.task_id,
                job.slice_id,
                kept.page_no,
            )
            md = await deps.producer.send_and_wait(Outgoing(RAW_PAGES, raw_page_key(job), kept))
            deps.ledger.written(job, state, md.offset)
            if not await _advance(job, deps, state, kept, md.offset):
                return "exhausted"
            continue

        if deps.gate is not None:
            await deps.gate.wait()
        account = await _account(job, deps)
        if account is None:
            continue  # paused or cancelled while it waited: X is not asked
        started = datetime.now(UTC)
        result = None
        try:
            result = await fetch_page(deps, account, job, state.cursor)
        finally:
            await deps.pool.release(account, job.operation, result, task_id=job.task_id)

        page = RawPage(
            task_id=job.task_id,
            slice_id=job.slice_id,
            slice_count=job.slice_count,
            page_no=state.next_page_no,
            keyword=job.keyword,
            operation=job.operation,
            query=job.query,
            cursor_in=state.cursor,
            cursor_out=result.cursor_out,
            http_status=result.http_status,
            account=account.name,
            requested_at=started,
            elapsed_ms=result.elapsed_ms,
            response=result.body,
            entries=result.entries,
            outcome=result.outcome,
            required_count=job.required_count,
            download_video=job.download_video,
            parent_slice_id=job.parent_slice_id,
            oldest_post_time=(
                split.oldest_post_time(result.body)
                if state.next_page_no == 0
                and result.outcome == "ok"
                and split.can_split(job, deps.split_pages)
                else None
            ),
            final=result.outcome == "ok" and result.exhausted,
            end_reason="exhausted" if result.outcome == "ok" and result.exhausted else None,
        )
        if result.outcome == "ok" and deps.recent is not None:
            deps.recent.put(page)  # before the write: a failed write is retried from here
        md = await deps.producer.send_and_wait(Outgoing(RAW_PAGES, raw_page_key(job), page))
        deps.ledger.written(job, state, md.offset)
        if result.outcome != "ok":
            log.warning(
                "slice %s/%s page %d: %s (%s) on %s",
                job.task_id,
                job.slice_id,
                page.page_no,
                result.outcome,
                result.error,
                account.name,
            )
            if result.outcome in ACCOUNT_REFUSED:
                # The account (or its proxy) is refused, not the page: the same cursor goes
                # to another account right away; the manager deals with this one.
                continue
            failures += 1
            if result.outcome in ("server_error", "malformed", "network_error"):
                if failures >= MAX_TRANSIENT_FAILURES:
                    return await _finish(job, deps, state, "failed")
                await asyncio.sleep(min(30.0, 0.2 * 2**failures))
            continue
        failures = 0
        if not await _advance(job, deps, state, page, md.offset):
            return "exhausted"


def _park(deps: SliceDeps, job: SearchJob, why: str) -> None:
    if deps.parking is not None:
        deps.parking.park(job, why)


def _unpark(deps: SliceDeps, job: SearchJob) -> None:
    if deps.parking is not None:
        deps.parking.unpark(job)


def _hand_back(deps: SliceDeps, job: SearchJob, get: asyncio.Future) -> None:
    """An account granted to a slice that was cancelled meanwhile goes back unused."""
    if not get.cancelled() and get.exception() is None:
        asyncio.get_running_loop().create_task(deps.pool.unused(get.result(), job.operation))


async def _account(job: SearchJob, deps: SliceDeps) -> XAccount | None:
    """An account for the slice's next request, or None once the task is paused or
    cancelled. While the account-manager says no account can serve the operation now, the
    slice is parked (it holds no slot); a pause or cancel ends the wait within
    CONTROL_CHECK_S, and nothing is sent to X for it."""
    parked = False

    def on_wait(_: LeaseWait) -> None:
        nonlocal parked
        if not parked:
            parked = True
            _park(deps, job, f"waiting for an account for {job.operation}")

    get = asyncio.ensure_future(
        deps.pool.acquire(
            job.operation,
            job.task_id,
            task_priority(deps.controls, job),
            tag=job.account_tag,
            on_wait=on_wait,
        )
    )
    try:
        while not get.done():
            await asyncio.wait({get}, timeout=CONTROL_CHECK_S)
            if not get.done() and control_state(deps.controls, job.task_id) != "active":
                get.cancel()
                await asyncio.wait({get})
    finally:
        if not get.done():  # this slice itself was cancelled (revoked, stopping)
            get.cancel()
            get.add_done_callback(lambda t: _hand_back(deps, job, t))
        if parked:
            _unpark(deps, job)
    if get.cancelled():
        return None
    account = get.result()
    if control_state(deps.controls, job.task_id) != "active":
        await deps.pool.unused(account, job.operation)  # granted as the task was paused
        return None
    return account


async def _advance(
    job: SearchJob, deps: SliceDeps, state: SliceState, page: RawPage, raw_offset: int
) -> bool:
    """A successful page is on raw-pages: checkpoint it; False when it was the last."""
    state.entries_total += page.entries
    if page.page_no == 0:
        state.oldest_post_time = page.oldest_post_time
    await deps.ledger.advance(job, state, page, raw_offset)
    if page.final:
        return False
    state.next_page_no += 1
    state.cursor = page.cursor_out
    return True


async def _split(job: SearchJob, deps: SliceDeps, state: SliceState) -> str:
    """A dense slice: hand the rest of its window to finer slices, then end (see split.py).
    The children are published before the slice ends, so a crash in between repeats them."""
    kids = split.children(
        job,
        state.oldest_post_time,  # type: ignore[arg-type]  # set: a split follows page 0
        deps.split_pages,
    )
    for kid in kids:
        await deps.producer.send_and_wait(
            Outgoing(SEARCH_JOBS, f"{kid.task_id}/{kid.slice_id}", kid)
        )
    log.info(
        "slice %s/%s is dense: its rest goes to %d finer slices",
        job.task_id,
        job.slice_id,
        len(kids),
    )
    await _finish(job, deps, state, "exhausted", children=len(kids))
    return "split"


async def _finish(
    job: SearchJob, deps: SliceDeps, state: SliceState, reason: str, children: int = 0
) -> str:
    """Close the slice with a final record that carries no X response."""
    page = RawPage(
        task_id=job.task_id,
        slice_id=job.slice_id,
        slice_count=job.slice_count,
        page_no=state.next_page_no,
        keyword=job.keyword,
        operation=job.operation,
        query=job.query,
        cursor_in=state.cursor,
        requested_at=datetime.now(UTC),
        final=True,
        end_reason=reason,
        required_count=job.required_count,
        parent_slice_id=job.parent_slice_id,
        children=children,
    )
    md = await deps.producer.send_and_wait(Outgoing(RAW_PAGES, raw_page_key(job), page))
    deps.ledger.written(job, state, md.offset)
    await deps.ledger.advance(job, state, page, md.offset)
    return reason
