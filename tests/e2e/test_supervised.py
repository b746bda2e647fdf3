"""Processes that die come back by themselves: every service runs under the local launcher's
supervisor (infra/supervise.py, as `make up` runs them); SIGKILLed mid-task, the scraper and
the parser are started again without anyone's help and the task ends exactly as an
undisturbed one."""

from __future__ import annotations

import uuid

import pytest

from infra.service_process import ServiceProcess, wait_until

from .harness import Gateway, Simulator
from .test_pipeline import pipeline_settings, stored

pytestmark = pytest.mark.e2e

START, END = "2026-09-10T00:00:00Z", "2026-09-13T00:00:00Z"  # 4,320 posts at 60/h
TARGET = 3000


def test_killed_service_processes_come_back_by_themselves(noida, xsim, tmp_path, chdb_path):
    settings = pipeline_settings(noida, xsim, tmp_path, chdb_path)
    sim = Simulator(xsim)
    sim.configure(limits={"SearchTimeline": 100_000})
    keyword = f"sup{uuid.uuid4().hex[:6]}"
    db = ServiceProcess(
        "db", ["task-gateway", "dedup-counter"], settings, tmp_path, supervised=True
    )  # one process owns the embedded chdb path
    scraper = ServiceProcess(
        "scraper", ["scraper", "account-manager"], settings, tmp_path, supervised=True
    )
    parser = ServiceProcess("parser", ["parser"], settings, tmp_path, supervised=True)
    procs = [db, scraper, parser]
    gw = Gateway(settings)
    sim.client.post("/_sim/faults", json={"kind": "slow", "delay_s": 0.1}).raise_for_status()
    try:
        for p in procs:
            p.start()
        wait_until(lambda: gw.ready(), 60, "the gateway to answer")
        r = gw.submit(keyword=keyword, required_count=TARGET, start_time=START, end_time=END)
        assert r.status_code == 200, r.text
        task_id = r.json()["task_id"]

        def collected() -> int:
            return gw.status(task_id)["progress"]["collected"]

        wait_until(lambda: collected() >= 600, 180, "600 posts before the kills")
        for victim in (parser, scraper):
            before = victim.child_pid()
            victim.kill()  # the service process alone: its supervisor stays
            wait_until(
                lambda v=victim, b=before: v.restarts() == 1 and v.child_pid() != b,
                30,
                f"{victim.name} to be started again",
            )
        assert gw.status(task_id)["status"] != "completed", "the kills came too late"
        final = wait_until(
            lambda: (s := gw.status(task_id))["status"] == "completed" and s,
            300,
            "the task to complete\n" + "\n".join(p.tail(20) for p in procs),
        )
        assert final["progress"]["collected"] == TARGET
        assert all(p.alive() for p in procs)
        assert [p.restarts() for p in procs] == [0, 1, 1]
    finally:
        sim.client.delete("/_sim/faults")
        for p in procs:
            p.stop()
    assert not any(p.alive() for p in procs), "a stopped supervisor must not start anything"
    got = stored(chdb_path, task_id)
    assert got["task_posts"] == got["posts_final"] == got["billing"] == TARGET
