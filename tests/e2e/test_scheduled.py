"""Scheduled tasks end to end, with the hour accelerated (XGET_SCHEDULE_TIME_SCALE): runs are
spread evenly, each asks X only for what is newer than the previous run covered, and a SIGKILL
of the gateway/scheduler loses no run and fires none twice."""

from __future__ import annotations

import itertools
import re
import uuid
from collections import Counter
from datetime import UTC, datetime

import pytest

from infra.service_process import wait_until

from .harness import Simulator
from .test_reports import Stack, report_settings

pytestmark = pytest.mark.e2e

SCALE = 0.01  # an hour lasts 36 s: hourly x 4 = a run every 9 s


def since_until(q: str) -> tuple[datetime, datetime]:
    s, u = re.search(r"since:(\S+) until:(\S+)", q).groups()
    f = "%Y-%m-%d_%H:%M:%S_UTC"
    return (datetime.strptime(s, f), datetime.strptime(u, f))


def test_hourly_runs_are_spread_incremental_and_survive_a_sigkill(
    noida, xsim, s3, tmp_path, chdb_path
):
    settings = report_settings(
        noida,
        xsim,
        tmp_path,
        chdb_path,
        s3,
        report_media_wait_s=0,
        schedule_time_scale=SCALE,
        schedule_tick_s=0.2,
    )
    keyword = f"sched{uuid.uuid4().hex[:6]}"
    sim = Simulator(xsim)
    sim.configure(limits={"SearchTimeline": 100_000}, densities={keyword: 36_000})
    with Stack(settings, tmp_path) as stack:
        gw = stack.gw
        r = gw.client.post(
            "/api/v1/tasks/scheduled",
            json={"keyword": keyword, "frequency": "hourly", "frequency_count": 4, "priority": 3},
        )
        assert r.status_code == 200, r.text
        task_id, first_at = r.json()["task_id"], r.json()["next_execution"]
        bad = gw.client.post(
            "/api/v1/tasks/scheduled", json={"keyword": keyword, "frequency": "monthly"}
        )
        assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "frequency"

        wait_until(lambda: gw.status(task_id)["runs_fired"] >= 2, 60, "two runs")
        stack.db.kill()  # the gateway (and its timer) dies between runs
        stack.db.start()
        wait_until(lambda: stack.gw.ready(), 60, "the gateway back")
        st = wait_until(
            lambda: (s := gw.status(task_id))["runs_fired"] >= 4 and s,
            90,
            "four runs in the accelerated hour",
        )
        runs = st["run_task_ids"][:4]
        for rid in runs:
            wait_until(lambda: gw.status(rid)["status"] == "completed", 60, f"run {rid}")
        gw.client.post(f"/api/v1/tasks/{task_id}/cancel")  # stop the schedule here
        assert gw.status(task_id)["status"] == "cancelled"
        assert st["created_at"] == first_at

    # Spread evenly and incremental: run k+1 starts exactly where run k ended, 9 s apart.
    log = [e for e in sim.search_requests(keyword) if e.get("status") == 200]
    windows = sorted({since_until(e["raw_query"]) for e in log})
    assert len(windows) >= 4
    for (_s1, u1), (s2, u2) in itertools.pairwise(windows):
        assert u1 == s2, "a gap or an overlap between runs"
        assert (u2 - s2).total_seconds() == pytest.approx(9, abs=1)
    # The second run asks X only for posts newer than the first run's newest.
    first_posts = sim.client.get("/_sim/corpus", params={"query": log[0]["raw_query"]}).json()
    newest_first = max(p["time"] for p in first_posts["posts"])
    assert first_posts["count"] > 0
    newest = newest_first / 1000 if newest_first > 1e11 else newest_first
    assert datetime.fromtimestamp(newest, UTC).replace(tzinfo=None) < windows[1][0]
    # Nothing paid twice across runs and the restart.
    asked = Counter((e["raw_query"], e.get("cursor")) for e in log)
    assert max(asked.values()) == 1, [k for k, n in asked.items() if n > 1][:3]


def test_frequency_change_replans_the_next_runs(noida, xsim, s3, tmp_path, chdb_path):
    """hourly x 4 (a run every 9 s at SCALE) changed to hourly x 2 after two runs: the next
    runs are 18 s apart, their windows continue exactly where the last run ended, and no run
    fires twice."""
    settings = report_settings(
        noida,
        xsim,
        tmp_path,
        chdb_path,
        s3,
        report_media_wait_s=0,
        schedule_time_scale=SCALE,
        schedule_tick_s=0.2,
    )
    keyword = f"freq{uuid.uuid4().hex[:6]}"
    sim = Simulator(xsim)
    sim.configure(limits={"SearchTimeline": 100_000}, densities={keyword: 3_600})
    with Stack(settings, tmp_path) as stack:
        gw = stack.gw
        r = gw.client.post(
            "/api/v1/tasks/scheduled",
            json={"keyword": keyword, "frequency": "hourly", "frequency_count": 4},
        )
        assert r.status_code == 200, r.text
        task_id = r.json()["task_id"]
        od = gw.submit(
            keyword=keyword, start_time="2026-08-01T00:00:00Z", end_time="2026-08-01T01:00:00Z"
        ).json()["task_id"]

        # Bad values name the field; an on-demand task has no frequency.
        for body, field in (
            ({"frequency": "monthly"}, "frequency"),
            ({"frequency_count": 0}, "frequency_count"),
        ):
            bad = gw.client.patch(f"/api/v1/tasks/{task_id}", json=body)
            assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == field, bad.text
        bad = gw.client.patch(f"/api/v1/tasks/{od}", json={"frequency_count": 2})
        assert bad.status_code == 422 and "on-demand" in bad.json()["detail"][0]["message"]

        wait_until(lambda: gw.status(task_id)["runs_fired"] >= 2, 60, "two runs")
        r = gw.client.patch(f"/api/v1/tasks/{task_id}", json={"frequency_count": 2})
        assert r.status_code == 200 and r.json()["frequency_count"] == 2, r.text
        fired_at_change = r.json()["runs_fired"]
        st = wait_until(
            lambda: (s := gw.status(task_id))["runs_fired"] >= fired_at_change + 2 and s,
            90,
            "two runs on the new frequency",
        )
        gw.client.post(f"/api/v1/tasks/{task_id}/cancel")
        assert st["frequency"] == "hourly" and st["frequency_count"] == 2
        # A run is listed once fired (schedule-state); its command reaches the task view a
        # moment later (task-commands): wait for each to be readable.
        runs = [
            wait_until(
                lambda rid=rid: gw.client.get(f"/api/v1/tasks/{rid}").json().get("task"),
                30,
                f"run {rid} in the task view",
            )
            for rid in st["run_task_ids"]
        ]
        for rid in st["run_task_ids"]:
            wait_until(lambda: gw.status(rid)["status"] == "completed", 60, f"run {rid}")

    windows = [
        (datetime.fromisoformat(t["start_time"]), datetime.fromisoformat(t["end_time"]))
        for t in runs
    ]
    spans = [(e - s).total_seconds() for s, e in windows]
    # runs before the change every 9 s, after it every 18 s; no gap, no overlap
    assert spans[1:fired_at_change] == pytest.approx([9.0] * (fired_at_change - 1), abs=0.01)
    assert spans[fired_at_change:] == pytest.approx(
        [18.0] * (len(spans) - fired_at_change), abs=0.01
    )
    for (_, e1), (s2, _) in itertools.pairwise(windows):
        assert e1 == s2, "a gap or an overlap between runs"
    # No run fired twice: each window was searched by one run only, each page asked once.
    log = [
        e
        for e in sim.search_requests(keyword)
        if e.get("status") == 200 and "2026-08-01" not in e["raw_query"]
    ]
    asked = Counter((e["raw_query"], e.get("cursor")) for e in log)
    assert asked and max(asked.values()) == 1
    assert len({since_until(e["raw_query"]) for e in log}) == len(windows)
