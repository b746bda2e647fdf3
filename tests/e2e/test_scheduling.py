"""Scheduling that never blocks on an unrelated shortage, end to end (real broker, simulator,
services as OS processes): work waiting for an account of its X operation is parked and holds
no scraper slot, so tasks of other operations run at once; parked work resumes at the window
reset by itself, also after a restart, where it left off; a cancel reaches parked work at
once and nothing more is sent to X for it."""

from __future__ import annotations

import time
import uuid

import pytest

from infra.service_process import ServiceProcess, wait_until

from .harness import Gateway, Simulator
from .test_pipeline import pipeline_settings

pytestmark = pytest.mark.e2e

WINDOW = 30  # the simulator's rate-limit window (s)
SEARCH_LIMIT = 3  # SearchTimeline requests per account per window


def test_parked_search_holds_no_slot(noida, xsim, tmp_path, chdb_path):
    """2 accounts, 2 scraper slots. A 7-day search (7 slices, hundreds of pages) exhausts
    SearchTimeline on both accounts; a user_profile and a retweeters task submitted after it
    complete within seconds (their operations have budget), the search shows
    `waiting_for_accounts` with the reset time and resumes at the reset by itself; restarted
    while parked, it resumes where it stood (no page asked twice); and once it is cancelled
    while parked, X receives no request for it."""
    uid = uuid.uuid4().hex[:6]
    sim = Simulator(xsim)
    tokens = [f"tok-hol{i}-{uid}" for i in range(2)]
    settings = pipeline_settings(
        noida,
        xsim,
        tmp_path,
        chdb_path,
        x_accounts=",".join(f"hol{i}{uid}:{t}:ct0-{i}" for i, t in enumerate(tokens)),
        x_rate_limits=f"SearchTimeline:{SEARCH_LIMIT}",
        x_rate_window_s=WINDOW,
        scraper_concurrency=2,
        account_idle_check_s=0,
    )
    sim.configure(limits={"SearchTimeline": SEARCH_LIMIT}, window_seconds=WINDOW)
    keyword = f"wide{uid}"
    procs = [ServiceProcess("xget-all", ["all"], settings, tmp_path).start()]
    gw = Gateway(settings)

    def tail() -> str:
        return procs[-1].tail(40)

    def searches(status: int | None = None) -> list[dict]:
        return [
            e
            for e in sim.search_requests(keyword)
            if e.get("account") in tokens and (status is None or e["status"] == status)
        ]

    def spend_window(reset: float, what: str, ready_at: float = 0.0) -> float:
        """The search resumes at the window reset (or at once, if it was restarted later)
        and spends the window, then parks again; returns when that window resets."""

        def since() -> list[dict]:
            return [e for e in searches(200) if e["received"] >= reset]

        wait_until(since, WINDOW + 30, f"the search to resume {what}\n{tail()}")
        resumed = min(e["received"] for e in since())
        assert resumed - max(reset, ready_at) < 5, (resumed, reset, ready_at)
        wait_until(
            lambda: len(since()) >= 2 * SEARCH_LIMIT,
            WINDOW,
            f"the search to spend the window {what}\n{tail()}",
        )
        wait_until(
            lambda: gw.status(wide)["status"] == "waiting_for_accounts",
            20,
            f"the search to park again {what}\n{tail()}",
        )
        return max(int(e["received"]) for e in since()[: 2 * SEARCH_LIMIT]) + WINDOW

    try:
        wait_until(lambda: procs[-1].alive() and gw.ready(), 60, f"gateway\n{tail()}")
        r = gw.submit(
            keyword=keyword, start_time="2026-08-01T00:00:00Z", end_time="2026-08-08T00:00:00Z"
        )
        assert r.status_code == 200, r.text
        wide = r.json()["task_id"]

        # Both accounts spend their SearchTimeline window; the search's slices park.
        wait_until(
            lambda: len(searches(200)) >= 2 * SEARCH_LIMIT,
            60,
            f"the search to spend both accounts' windows\n{tail()}",
        )
        first = min(e["received"] for e in searches())
        reset = int(first) + WINDOW  # the simulator's windows start on a whole second
        waiting = wait_until(
            lambda: (s := gw.status(wide))["status"] == "waiting_for_accounts" and s,
            20,
            f"the search to show waiting_for_accounts\n{tail()}",
        )
        assert waiting["waiting_for_accounts"]["until"], waiting
        assert waiting["waiting_for_accounts"]["operation"] == "SearchTimeline"

        # Other operations have budget: they run now, not after the reset.
        submitted = time.time()
        assert submitted < reset - 12, "the search took too long to spend the window"
        profile = gw.client.post(
            "/api/v1/tasks/search", json={"type": "user_profile", "username": f"hol{uid}"}
        )
        post_id = str(1_800_000_000_000_000_000 + int(uid, 16))
        retweeters = gw.client.post(
            "/api/v1/tasks/search", json={"type": "retweeters", "post_id": post_id}
        )
        assert profile.status_code == 200 and retweeters.status_code == 200
        user_tasks = [profile.json()["task_id"], retweeters.json()["task_id"]]
        wait_until(  # within seconds: before the search's window resets (12 s or more)
            lambda: all(gw.status(t)["status"] == "completed" for t in user_tasks),
            reset - time.time(),
            f"the user tasks to complete while the search is parked\n{tail()}",
        )
        done_in = time.time() - submitted
        assert time.time() < reset, "the user tasks waited for the search's reset"
        assert not [e for e in searches() if e["status"] == 429]

        # At the reset the search resumes by itself.
        reset = spend_window(reset, "at the first reset")

        # Restarted while parked, it keeps its place: it goes on from its cursors at the
        # next reset, and no page is asked twice.
        procs[-1].stop()
        procs.append(ServiceProcess("xget-all-2", ["all"], settings, tmp_path).start())
        wait_until(lambda: procs[-1].alive() and gw.ready(), 60, f"gateway\n{tail()}")
        reset = spend_window(reset, "after the restart", ready_at=time.time())
        pages = [(e["raw_query"], e["cursor"]) for e in searches(200)]
        assert len(pages) == len(set(pages)), "a page was asked twice"

        # Parked again, it is cancelled: nothing more goes to X for it.
        r = gw.client.post(f"/api/v1/tasks/{wide}/cancel", json={"reason": "test"})
        assert r.status_code == 200, r.text
        cancelled_at = time.time()
        assert gw.status(wide)["status"] == "cancelled"
        # Past the next reset (when the parked slices would have been served) and then some.
        time.sleep(max(0.0, reset + 5 - time.time()))
        assert procs[-1].alive(), tail()
        late = [e for e in searches() if e["received"] > cancelled_at]
        assert not late, late
    finally:
        sim.configure(limits={"SearchTimeline": 50}, window_seconds=900)
        for p in procs:
            p.stop()
    print(f"user tasks completed {done_in:.1f}s after submission, while the search was parked")
