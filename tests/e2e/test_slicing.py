"""Long windows: a 30-day task is cut into day slices that run in parallel on 3 accounts and
collect every post of the window exactly once; with a target, all slices stop at it and X is
asked for nothing beyond the pages already in flight."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import datetime

import pytest

from infra.service_process import wait_until
from libs.kafka import scan_partition
from libs.records.pages import RawPage
from libs.topics import RAW_PAGES
from services.task_gateway.scheduler import search_query

from .harness import Simulator
from .test_reports import Stack, report_settings

pytestmark = pytest.mark.e2e

START, END = "2026-07-01T00:00:00Z", "2026-07-31T00:00:00Z"  # 30 days


def _dt(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def test_thirty_day_window_sliced_parallel_exact(noida, xsim, s3, tmp_path, chdb_path):
    settings = report_settings(noida, xsim, tmp_path, chdb_path, s3, report_media_wait_s=0,
                               x_accounts="s1:tok-s1:c1,s2:tok-s2:c2,s3:tok-s3:c3")
    all_kw, tgt_kw = f"month{uuid.uuid4().hex[:6]}", f"target{uuid.uuid4().hex[:6]}"
    sim = Simulator(xsim)
    # 4 posts an hour: 2,880 posts in the 30 days, 96 a day (5 pages per slice).
    sim.configure(limits={"SearchTimeline": 100_000}, densities={all_kw: 4, tgt_kw: 4})
    with Stack(settings, tmp_path) as stack:
        gw = stack.gw
        a = gw.submit(keyword=all_kw, required_count=0, start_time=START, end_time=END).json()
        t = gw.submit(keyword=tgt_kw, required_count=700, start_time=START, end_time=END).json()
        done_a = wait_until(lambda: (s := gw.status(a["task_id"]))["status"] == "completed"
                            and s, 240, "the 30-day task")
        done_t = wait_until(lambda: (s := gw.status(t["task_id"]))["status"] == "completed"
                            and s, 240, "the 700-post task")
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
    pages = sorted((p.requested_at, p.entries) for p in asyncio.run(
        raw_pages(settings, t["task_id"])))
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
            if isinstance(rec, RawPage) and rec.task_id == task_id and rec.outcome == "ok" \
                    and rec.response is not None:
                out.append(rec)
    return out
