"""Priority and fairness with scarce accounts: one account, ten low-priority tasks queued
before one priority-1 task — the priority-1 task completes first, and every low-priority task
still completes (aging keeps them from starving)."""

from __future__ import annotations

import uuid

import pytest

from infra.service_process import wait_until

from .harness import Simulator
from .test_reports import Stack, report_settings

pytestmark = pytest.mark.e2e

WINDOW_S = 4
START, END = "2026-06-01T00:00:00Z", "2026-06-02T00:00:00Z"


def test_priority_one_first_and_no_starvation(noida, xsim, s3, tmp_path, chdb_path):
    uid = uuid.uuid4().hex[:6]
    settings = report_settings(
        noida,
        xsim,
        tmp_path,
        chdb_path,
        s3,
        report_media_wait_s=0,
        x_accounts=f"pri{uid}:tok-pri{uid}:ct0",
        x_rate_limits="SearchTimeline:5",
        x_rate_window_s=WINDOW_S,
        scraper_concurrency=32,
        task_priority_aging_s=60,
    )
    sim = Simulator(xsim)
    sim.configure(limits={"SearchTimeline": 5}, window_seconds=WINDOW_S)
    try:
        with Stack(settings, tmp_path) as stack:
            gw = stack.gw
            # A low task needs 6 pages, more than one window holds (5): one that took the
            # first window's budget before the priority-1 task's jobs arrived still cannot
            # finish before it (with 3 pages, it could: a race of arrival, not of priority).
            low = [
                gw.submit(
                    task_id=f"low{i}-{uid}",
                    keyword=f"low{i}{uid}",
                    priority=9,
                    required_count=120,
                    start_time=START,
                    end_time=END,
                ).json()["task_id"]
                for i in range(10)
            ]
            high = gw.submit(
                task_id=f"high-{uid}",
                keyword=f"high{uid}",
                priority=1,
                required_count=100,
                start_time=START,
                end_time=END,
            ).json()["task_id"]
            done: dict[str, str] = {}

            def all_done() -> bool:
                for t in [high, *low]:
                    if t not in done and (s := gw.status(t))["status"] == "completed":
                        done[t] = s["updated_at"]
                return len(done) == 11

            wait_until(all_done, 240, "all eleven tasks")
    finally:
        sim.configure(limits={"SearchTimeline": 100_000}, window_seconds=900)
    first_low = min(done[t] for t in low)
    assert done[high] < first_low, (done[high], sorted(done.values()))
