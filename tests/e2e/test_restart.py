"""Crash safety: SIGKILL services mid-task and restart them; the result must equal an
undisturbed run (exact counts); killing the parser and counter never makes X be asked for
the same page twice, and killing the scraper only repeats the pages it had in flight."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import pytest

from infra.service_process import ServiceProcess, wait_until
from libs.kafka import scan_partition
from libs.records.pages import RawPage
from libs.topics import RAW_PAGES
from services.task_gateway.scheduler import search_query

from .harness import Gateway, Simulator
from .test_pipeline import _dt, pipeline_settings, stored

pytestmark = pytest.mark.e2e

START, END = "2026-09-01T00:00:00Z", "2026-09-05T00:00:00Z"  # 5,760 posts at 60/h
TARGET = 5000


def test_sigkill_of_parser_counter_and_scraper_loses_and_duplicates_nothing(
    noida, xsim, tmp_path, chdb_path
):
    settings = pipeline_settings(noida, xsim, tmp_path, chdb_path)
    sim = Simulator(xsim)
    # Slow X down a little so the kills land mid-run rather than after the end.
    sim.configure(limits={"SearchTimeline": 100_000})
    keyword = f"restart{uuid.uuid4().hex[:6]}"
    front = ServiceProcess(
        "gateway-scraper", ["task-gateway", "scraper", "account-manager"], settings, tmp_path
    )
    parser = ServiceProcess("parser", ["parser"], settings, tmp_path)
    counter = ServiceProcess("counter", ["dedup-counter"], settings, tmp_path)
    procs = [front, parser, counter]
    gw = Gateway(settings)
    fault = sim.client.post("/_sim/faults", json={"kind": "slow", "delay_s": 0.05})
    fault.raise_for_status()
    try:
        for p in procs:
            p.start()
        wait_until(lambda: front.alive() and gw.ready(), 60, "the gateway to answer")
        r = gw.submit(
            task_id=f"restart-{keyword}",
            keyword=keyword,
            required_count=TARGET,
            start_time=START,
            end_time=END,
        )
        assert r.status_code == 200, r.text
        task_id = r.json()["task_id"]

        def collected() -> int:
            return gw.status(task_id)["progress"]["collected"]

        wait_until(lambda: collected() >= 800, 120, "800 posts before the first kill")
        parser.kill()
        counter.kill()
        before = len(sim.search_requests(keyword))
        # The scraper keeps fetching while they are down; its pages wait on raw-pages.
        wait_until(
            lambda: len(sim.search_requests(keyword)) >= before + 10,
            60,
            "the scraper to fetch on while parser and counter are dead",
        )
        parser.start()
        counter.start()

        wait_until(lambda: collected() >= 2500, 180, "2,500 posts before the scraper is killed")
        before_scraper_kill = sim.search_requests(keyword)
        front.kill()
        front.start()
        wait_until(lambda: front.alive() and gw.ready(), 60, "the gateway to come back")

        final = wait_until(
            lambda: (s := gw.status(task_id))["status"] == "completed" and s,
            300,
            f"the task to complete\n{front.tail()}\n{counter.tail()}",
        )
        assert final["progress"]["collected"] == TARGET
    finally:
        sim.client.delete("/_sim/faults")
        for p in procs:
            p.stop()

    got = stored(chdb_path, task_id)
    assert got["task_posts"] == got["posts_final"] == got["billing"] == TARGET
    corpus = sim.corpus_ids(search_query(keyword, _dt(START), _dt(END)))
    # The window's day slices run in parallel, so which TARGET posts of the window are taken
    # depends on timing; that each is a post of the window, once, is what must hold.
    assert {p["post_id"] for p in got["posts"]} <= set(corpus)

    # While the parser and the counter were killed and restarted, X was never asked for the
    # same page twice: every (query, cursor) pair was answered once.
    asked = Counter(
        (e["raw_query"], e.get("cursor")) for e in before_scraper_kill if e.get("status") == 200
    )
    twice = {k: n for k, n in asked.items() if n > 1}
    assert not twice, f"pages requested more than once: {list(twice)[:5]}"
    assert len(asked) >= 800 // 20
    # After the scraper itself is SIGKILLed, the only page X may be asked again is the one
    # each slice had in flight at the kill (its answer never reached raw-pages): at most one
    # per slice, asked exactly twice, with nothing else of that slice asked in between.
    log = [e for e in sim.search_requests(keyword) if e.get("status") == 200]
    all_asked = Counter((e["raw_query"], e.get("cursor")) for e in log)
    again = {k: n for k, n in all_asked.items() if n > 1}
    assert all(n == 2 for n in again.values()), again
    assert len({q for q, _ in again}) == len(again), "two pages of one slice asked again"
    for query, cursor in again:
        mine = [e.get("cursor") for e in log if e["raw_query"] == query]
        first = mine.index(cursor)
        assert mine[first + 1] == cursor, (
            f"page asked again after later pages of its slice: {query} {cursor}"
        )
    # ...and raw-pages holds every page of the task once: the first answer of a page asked
    # again had never been stored (had it been, recovery would have resumed after it).
    stored_pages = Counter(asyncio.run(raw_pages_of(settings, task_id)))
    assert stored_pages and max(stored_pages.values()) == 1, [
        k for k, n in stored_pages.items() if n > 1
    ][:5]


async def raw_pages_of(settings, task_id: str) -> list[tuple[str, str | None]]:
    out = []
    for p in range(RAW_PAGES.partitions):
        async for _m, rec in scan_partition(settings, RAW_PAGES, p, 0):
            if (
                isinstance(rec, RawPage)
                and rec.task_id == task_id
                and rec.outcome == "ok"
                and rec.response is not None
            ):
                out.append((rec.query, rec.cursor_in))
    return out
