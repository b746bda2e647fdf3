"""Long windows: a 30-day task is cut into day slices that run in parallel on 3 accounts and
collect every post of the window exactly once; with a target, all slices stop at it and X is
asked for nothing beyond the pages already in flight."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import datetime

import pytest

from infra.service_process import ServiceProcess, wait_until
from libs.kafka import scan_partition
from libs.records.pages import RawPage
from libs.topics import RAW_PAGES
from services.task_gateway.scheduler import search_query

from .harness import Simulator
from .test_reports import Stack, report_settings, task_post_ids
from .test_scheduled import since_until

pytestmark = pytest.mark.e2e

START, END = "2026-07-01T00:00:00Z", "2026-07-31T00:00:00Z"  # 30 days


def _dt(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def test_thirty_day_window_sliced_parallel_exact(noida, xsim, s3, tmp_path, chdb_path):
    settings = report_settings(
        noida,
        xsim,
        tmp_path,
        chdb_path,
        s3,
        report_media_wait_s=0,
        x_accounts="s1:tok-s1:c1,s2:tok-s2:c2,s3:tok-s3:c3",
    )
    all_kw, tgt_kw = f"month{uuid.uuid4().hex[:6]}", f"target{uuid.uuid4().hex[:6]}"
    sim = Simulator(xsim)
    # 4 posts an hour: 2,880 posts in the 30 days, 96 a day (5 pages per slice).
    sim.configure(limits={"SearchTimeline": 100_000}, densities={all_kw: 4, tgt_kw: 4})
    with Stack(settings, tmp_path) as stack:
        gw = stack.gw
        a = gw.submit(keyword=all_kw, required_count=0, start_time=START, end_time=END).json()
        t = gw.submit(keyword=tgt_kw, required_count=700, start_time=START, end_time=END).json()
        done_a = wait_until(
            lambda: (s := gw.status(a["task_id"]))["status"] == "completed" and s,
            240,
            "the 30-day task",
        )
        done_t = wait_until(
            lambda: (s := gw.status(t["task_id"]))["status"] == "completed" and s,
            240,
            "the 700-post task",
        )
        prog = gw.client.get(f"/api/v1/tasks/{a['task_id']}/progress").json()

    expected = sim.corpus_ids(search_query(all_kw, _dt(START), _dt(END)))
    assert len(expected) == 2880
    assert done_a["progress"]["collected"] == len(expected)
    assert prog["slice_count"] == 30 and prog["slices_done"] == 30
    log = [e for e in sim.search_requests(all_kw) if e.get("status") == 200]
    assert len({e["account"] for e in log}) == 3, "the slices ran on all 3 accounts"
    asked = Counter((e["raw_query"], e.get("cursor")) for e in log)
    assert max(asked.values()) == 1 and len({q for q, _ in asked}) == 30

    assert done_t["progress"]["collected"] == 700
    # Order the target task's pages by when they were asked: once the pages asked so far held
    # 700 posts, only pages already in flight may follow (at most one per running slice).
    pages = sorted(
        (p.requested_at, p.entries) for p in asyncio.run(raw_pages(settings, t["task_id"]))
    )
    total, reached = 0, None
    for i, (_, n) in enumerate(pages):
        total += n
        if total >= 700:
            reached = i
            break
    assert reached is not None
    after = len(pages) - reached - 1
    assert after <= settings.scraper_concurrency - 1, (after, len(pages))
    assert len(pages) == len([e for e in sim.search_requests(tgt_kw) if e.get("status") == 200])


async def raw_pages(settings, task_id: str) -> list[RawPage]:
    out = []
    for p in range(RAW_PAGES.partitions):
        async for _m, rec in scan_partition(settings, RAW_PAGES, p, 0):
            if (
                isinstance(rec, RawPage)
                and rec.task_id == task_id
                and rec.outcome == "ok"
                and rec.response is not None
            ):
                out.append(rec)
    return out


def test_dense_day_is_cut_into_hours_on_several_accounts_exact(
    noida, xsim, s3, tmp_path, chdb_path
):
    """A window of one dense day plus two hours: the day's first page shows its rest would take
    ~143 pages, so (parts of ~5 pages, an hour at least) it is cut into hour slices that run on
    several accounts; the short slice is not cut; every post of the window is collected
    exactly once, no page asked twice."""
    settings, sim, kw = dense_setup(noida, xsim, s3, tmp_path, chdb_path, "dense")
    start, end = "2026-06-01T00:00:00Z", "2026-06-02T02:00:00Z"
    with Stack(settings, tmp_path) as stack:
        gw = stack.gw
        t = gw.submit(keyword=kw, required_count=0, start_time=start, end_time=end).json()
        done = wait_until(
            lambda: (s := gw.status(t["task_id"]))["status"] == "completed" and s,
            240,
            "the dense task",
        )
        prog = gw.client.get(f"/api/v1/tasks/{t['task_id']}/progress").json()

    expected = sim.corpus_ids(search_query(kw, _dt(start), _dt(end)))
    assert len(expected) == 26 * 120
    assert done["progress"]["collected"] == len(expected)
    assert task_post_ids(chdb_path, t["task_id"]) == set(expected)

    log = [e for e in sim.search_requests(kw) if e.get("status") == 200]
    windows = {q: since_until(q) for q in {e["raw_query"] for e in log}}
    day = [q for q, (s, u) in windows.items() if (u - s).total_seconds() == 86400]
    hours = [q for q, (s, u) in windows.items() if (u - s).total_seconds() <= 3600]
    short = [q for q, (s, u) in windows.items() if (u - s).total_seconds() == 7200]
    assert len(day) == 1 and len(short) == 1 and len(hours) == 24, sorted(windows.values())
    assert len([e for e in log if e["raw_query"] == day[0]]) == 1, "the day ends after page 0"
    assert prog["slice_count"] == 2 + 24 and prog["slices_done"] == 26
    hour_accounts = {e["account"] for e in log if e["raw_query"] in hours}
    assert len(hour_accounts) > 1, "the hour slices ran on several accounts"
    asked = Counter((e["raw_query"], e.get("cursor")) for e in log)
    assert max(asked.values()) == 1


def test_sigkill_of_the_scraper_while_a_dense_day_runs_in_parts(
    noida, xsim, s3, tmp_path, chdb_path
):
    """The scraper is SIGKILLed while the parts of a cut day run: after the restart the same
    parts resume (none made twice, the day's first page not asked again), only pages that
    were in flight are asked again, and every post is collected exactly once."""
    settings, sim, kw = dense_setup(noida, xsim, s3, tmp_path, chdb_path, "densekill")
    start, end = "2026-06-03T00:00:00Z", "2026-06-04T00:00:00Z"
    sim.client.post("/_sim/faults", json={"kind": "slow", "delay_s": 0.2}).raise_for_status()
    others = ServiceProcess("parser-accounts", ["parser", "account-manager"], settings, tmp_path)
    try:
        others.start()
        with Stack(settings, tmp_path, front=("scraper",)) as stack:
            gw = stack.gw
            t = gw.submit(keyword=kw, required_count=0, start_time=start, end_time=end).json()

            def part_requests() -> int:
                return len([e for e in sim.search_requests(kw) if span_s(e["raw_query"]) < 86400])

            wait_until(lambda: part_requests() >= 20, 120, "the parts to run")
            stack.front.kill()
            killed_at = len(sim.search_requests(kw))
            stack.front.start()
            done = wait_until(
                lambda: (s := gw.status(t["task_id"]))["status"] == "completed" and s,
                240,
                f"the task after the kill\n{stack.front.tail()}",
            )
    finally:
        sim.client.delete("/_sim/faults")
        others.stop()

    expected = sim.corpus_ids(search_query(kw, _dt(start), _dt(end)))
    assert done["progress"]["collected"] == len(expected) == 24 * 120
    assert task_post_ids(chdb_path, t["task_id"]) == set(expected)
    log = [e for e in sim.search_requests(kw) if e.get("status") == 200]
    windows = {since_until(e["raw_query"]) for e in log}
    assert len([w for w in windows if (w[1] - w[0]).total_seconds() == 86400]) == 1
    assert len(windows) == 1 + 24, "the same parts after the restart, none made twice"
    day_calls = [e for e in log if span_s(e["raw_query"]) == 86400]
    assert len(day_calls) == 1, "the day's first page is not asked again"
    asked = Counter((e["raw_query"], e.get("cursor")) for e in log)
    repeated = sum(n - 1 for n in asked.values())
    assert repeated <= settings.scraper_concurrency, (repeated, killed_at)


def span_s(query: str) -> float:
    """Seconds between a query's since: and until:."""
    s, u = since_until(query)
    return (u - s).total_seconds()


def dense_setup(noida, xsim, s3, tmp_path, chdb_path, prefix: str):
    """3 accounts, parts of ~5 pages, and a keyword at 120 posts an hour (2,880 a day: the
    day's first page shows ~143 more pages)."""
    settings = report_settings(
        noida,
        xsim,
        tmp_path,
        chdb_path,
        s3,
        report_media_wait_s=0,
        x_accounts="s1:tok-s1:c1,s2:tok-s2:c2,s3:tok-s3:c3",
        scraper_split_pages=5,
    )
    kw = f"{prefix}{uuid.uuid4().hex[:6]}"
    sim = Simulator(xsim)
    sim.configure(limits={"SearchTimeline": 100_000}, densities={kw: 120})
    return settings, sim, kw
