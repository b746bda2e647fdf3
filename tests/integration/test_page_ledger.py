"""The scraper's page ledger (services/scraper/ledger.py) says where a slice stands from what
the broker holds: the newest checkpoint, then the unbroken run of pages after it on raw-pages.
A broker restart can lose page n while page n+1, written as it came back, stays: the slice
must resume at page n, not after n+1 (its posts would never be parsed)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from libs.kafka import Outgoing, Producer
from libs.records.pages import RawPage
from libs.records.tasks import SearchJob
from libs.topics import RAW_PAGES
from services.scraper.ledger import BrokerLostRecords, PageLedger, raw_page_key

NOW = datetime(2026, 9, 1, tzinfo=UTC)


def job() -> SearchJob:
    return SearchJob(
        task_id=f"t-{uuid.uuid4().hex[:8]}",
        slice_id="s1",
        keyword="kw",
        query="kw since:2026-09-01 until:2026-09-02",
        start_time=NOW,
        end_time=NOW,
    )


def page(j: SearchJob, n: int) -> RawPage:
    return RawPage(
        task_id=j.task_id,
        slice_id=j.slice_id,
        page_no=n,
        keyword=j.keyword,
        operation="SearchTimeline",
        query=j.query,
        cursor_in=f"c{n}" if n else None,
        cursor_out=f"c{n + 1}",
        http_status=200,
        requested_at=NOW,
        response="{}",
        entries=20,
    )


async def test_recovery_resumes_at_the_first_page_the_broker_does_not_hold(noida):
    settings = noida.settings()
    producer = await Producer(settings, "ledger-test", linger_ms=0).start()
    ledger = PageLedger(settings, producer)
    await ledger.start()
    try:
        j = job()
        state = await ledger.begin(j)
        for n in (0, 1):  # checkpointed
            md = await producer.send_and_wait(Outgoing(RAW_PAGES, raw_page_key(j), page(j, n)))
            ledger.written(j, state, md.offset)
            state.entries_total += 20
            await ledger.advance(j, state, page(j, n), md.offset)
        for n in (2, 4):  # on raw-pages, not checkpointed; page 3 was lost
            await producer.send_and_wait(Outgoing(RAW_PAGES, raw_page_key(j), page(j, n)))

        got = await ledger.recover(j)
        assert (got.next_page_no, got.cursor, got.entries_total) == (3, "c3", 60)

        # A page written at or below the slice's last known offset: the broker went back.
        md = await producer.send_and_wait(Outgoing(RAW_PAGES, raw_page_key(j), page(j, 3)))
        ledger.written(j, got, md.offset)  # after everything recovery saw: fine
        with pytest.raises(BrokerLostRecords):
            ledger.written(j, got, md.offset)
    finally:
        await ledger.stop()
        await producer.stop()
