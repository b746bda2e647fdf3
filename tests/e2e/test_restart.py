"""Crash safety: SIGKILL services mid-task and restart them; the result must equal an
undisturbed run (exact counts), and killing the parser and counter never makes X be asked for
the same page twice."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from infra.service_process import ServiceProcess, wait_until
from services.task_gateway.scheduler import search_query

from .harness import Gateway, Simulator
from .test_pipeline import _dt, pipeline_settings, stored

pytestmark = pytest.mark.e2e

START, END = "2026-09-01T00:00:00Z", "2026-09-05T00:00:00Z"  # 5,760 posts at 60/h
TARGET = 5000


def test_sigkill_of_parser_counter_and_scraper_loses_and_duplicates_nothing(
        noida, xsim, tmp_path, chdb_path):
    settings = pipeline_settings(noida, xsim, tmp_path, chdb_path)
    sim = Simulator(xsim)
    # Slow X down a little so the kills land mid-run rather than after the end.
    sim.configure(limits={"SearchTimeline": 100_000})
    keyword = f"restart{uuid.uuid4().hex[:6]}"
    front = ServiceProcess("gateway-scraper", ["task-gateway", "scraper", "account-manager"],
                           settings, tmp_path)
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
        r = gw.submit(task_id=f"restart-{keyword}", keyword=keyword, required_count=TARGET,
                      start_time=START, end_time=END)
        assert r.status_code == 200, r.text
        task_id = r.json()["task_id"]

        def collected() -> int:
            return gw.status(task_id)["progress"]["collected"]

        wait_until(lambda: collected() >= 800, 120, "800 posts before the first kill")
        parser.kill()
        counter.kill()
        before = len(sim.search_requests(keyword))
        # The scraper keeps fetching while they are down; its pages wait on raw-pages.
        wait_until(lambda: len(sim.search_requests(keyword)) >= before + 10, 60,
                   "the scraper to fetch on while parser and counter are dead")
        parser.start()
        counter.start()

        wait_until(lambda: collected() >= 2500, 180, "2,500 posts before the scraper is killed")
        before_scraper_kill = sim.search_requests(keyword)
        front.kill()
        front.start()
        wait_until(lambda: front.alive() and gw.ready(), 60, "the gateway to come back")

        final = wait_until(lambda: (s := gw.status(task_id))["status"] == "completed" and s,
                           300, f"the task to complete\n{front.tail()}\n{counter.tail()}")
        assert final["progress"]["collected"] == TARGET
    finally:
        sim.client.delete("/_sim/faults")
        for p in procs:
            p.stop()

    got = stored(chdb_path, task_id)
    assert got["task_posts"] == got["posts_final"] == got["billing"] == TARGET
    corpus = sim.corpus_ids(search_query(keyword, _dt(START), _dt(END)))
    assert {p["post_id"] for p in got["posts"]} == set(corpus[:TARGET])

    # While the parser and the counter were killed and restarted, X was never asked for the
    # same page twice: every (query, cursor) pair was answered once.
    asked = Counter((e["raw_query"], e.get("cursor")) for e in before_scraper_kill
                    if e.get("status") == 200)
    twice = {k: n for k, n in asked.items() if n > 1}
    assert not twice, f"pages requested more than once: {list(twice)[:5]}"
    assert len(asked) >= 800 // 20
    # After the scraper itself is SIGKILLed only the exact counts above are asserted: the
    # resumed slice sometimes asks X again for the page before the one in flight at the kill
    # (seen on noida-db and on Tansu) — an open defect of the scraper's recovery (issue 2).
