"""A task's actual cost, end to end: its X requests (counted by the simulator, which is X here)
times the configured prices, live while it runs and exact when it is done; every create
answers the design's quote; the month's cost per keyword."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from infra.service_process import ServiceProcess, wait_until

from .harness import Gateway, Simulator
from .test_pipeline import pipeline_settings

pytestmark = pytest.mark.e2e

START, END = "2026-09-01T00:00:00Z", "2026-09-03T00:00:00Z"
PRICES = dict(
    cost_per_x_request_usd=0.001,
    cost_x_request_usd_by_operation="UserByScreenName:0.01",
    cost_per_post_usd=0.0001,
    cost_per_media_gb_usd=5.0,
)


def test_actual_cost_is_the_simulators_requests_times_the_prices(noida, xsim, tmp_path, chdb_path):
    uid = uuid.uuid4().hex[:6]
    keyword = f"cost{uid}"
    sim = Simulator(xsim)
    sim.configure(limits={"SearchTimeline": 100_000})
    # Two of one account's requests fail (X answers 5xx): failed requests cost too.
    token = f"tok-cost-{uid}"
    sim.client.post(
        "/_sim/faults",
        json={"kind": "http_5xx", "account": token, "operation": "SearchTimeline", "count": 2},
    ).raise_for_status()
    settings = pipeline_settings(
        noida, xsim, tmp_path, chdb_path, x_accounts=f"cost{uid}:{token}:ct0-c", **PRICES
    )
    proc = ServiceProcess("xget-all", ["all"], settings, tmp_path).start()
    gw = Gateway(settings)
    try:
        wait_until(lambda: proc.alive() and gw.ready(), 60, f"the gateway\n{proc.tail()}")
        r = gw.submit(keyword=keyword, required_count=300, start_time=START, end_time=END)
        assert r.status_code == 200, r.text
        created = r.json()
        task_id = created["task_id"]
        # The design's quote, on the create answer: 1 query, 300 items, 40 free, tier 1.
        q = created["quote"]
        assert (q["tier"], q["free_items"], q["paid_items"]) == (1, 40, 260)
        assert q["total_cost"] == pytest.approx(0.016 + 260 * 0.0004)

        def cost() -> dict:
            r = gw.client.get(f"/api/v1/statistics/tasks/{task_id}/cost")
            r.raise_for_status()
            return r.json()

        # The cost shows the requests as they are made (the usage meter flushes each second, so
        # a fast task may already be final when its first cost is read).
        wait_until(lambda: cost()["actual"]["x_requests_total"] > 0, 120, "the task's first costs")
        wait_until(lambda: gw.status(task_id)["status"] == "completed", 120, "the task")
        asked = sim.search_requests(keyword)  # every request X received for the task
        assert any(e.get("status") == 503 for e in asked), "the injected failures happened"
        n = len(asked)
        got = wait_until(
            lambda: (c := cost())["actual"]["x_requests_total"] == n and c,
            30,
            f"the cost to count the simulator's {n} requests ({cost()['actual']})",
        )
        a = got["actual"]
        assert got["final"] and a["x_requests"] == {
            "SearchTimeline": {"requests": n, "cost": pytest.approx(n * 0.001)}
        }
        assert a["posts"] == 300
        assert a["cost_usd"]["x_requests"] == pytest.approx(n * 0.001)
        assert a["cost_usd"]["posts"] == pytest.approx(300 * 0.0001)
        assert a["cost_usd"]["media"] == pytest.approx(a["media_bytes"] / 1e9 * 5.0, abs=1e-6)
        assert a["cost_usd"]["total"] == pytest.approx(
            n * 0.001 + 0.03 + a["cost_usd"]["media"], abs=1e-6
        )
        assert got["quote"]["total_cost"] == q["total_cost"]

        # A user_profile task: one UserByScreenName request at its own price.
        r = gw.client.post(
            "/api/v1/tasks/search", json={"type": "user_profile", "username": f"prof{uid}"}
        )
        assert r.status_code == 200, r.text
        prof = r.json()["task_id"]
        assert r.json()["quote"]["kind"] == "profile_query"
        wait_until(lambda: gw.status(prof)["status"] == "completed", 60, "the profile task")
        pc = wait_until(
            lambda: (
                (c := gw.client.get(f"/api/v1/statistics/tasks/{prof}/cost").json()["actual"])[
                    "x_requests_total"
                ]
                and c
            ),
            30,
            "the profile task's cost",
        )
        ops = [
            e
            for e in sim.log()
            if e.get("operation") == "UserByScreenName" and f"prof{uid}" in str(e)
        ]
        assert pc["x_requests"]["UserByScreenName"]["requests"] == len(ops) >= 1
        assert pc["cost_usd"]["x_requests"] == pytest.approx(len(ops) * 0.01)

        now = datetime.now(UTC)
        r = gw.client.get(
            "/api/v1/statistics/cost/monthly",
            params={"year": now.year, "month": now.month, "keyword": keyword},
        )
        assert r.status_code == 200, r.text
        (row,) = r.json()["costs"]
        assert row["keyword"] == keyword and row["x_requests_total"] == n
        assert (
            gw.client.get(
                "/api/v1/statistics/cost/monthly", params={"year": now.year, "month": 13}
            ).status_code
            == 422
        )
        assert gw.client.get("/api/v1/statistics/tasks/nope/cost").status_code == 404
    finally:
        sim.client.delete("/_sim/faults")
        proc.stop()
