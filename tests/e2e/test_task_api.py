"""The client's task API end to end: cancel stops X requests within one page per slice and
keeps what was collected; pause holds X requests until resume; a command published straight
onto the topic that fails validation shows as a rejected task with the reason; list, read,
progress and priority."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter

import pytest
from aiokafka import AIOKafkaProducer

from infra.service_process import wait_until
from libs.records.base import SCHEMA_HEADER
from libs.records.tasks import OnDemandTask
from libs.topics import TASK_COMMANDS, topic_name

from .harness import Simulator
from .test_reports import Stack, report_settings

pytestmark = pytest.mark.e2e

WINDOW = {"start_time": "2026-08-01T00:00:00Z", "end_time": "2026-08-04T00:00:00Z"}  # 3 slices


def x_requests(sim: Simulator, keyword: str) -> int:
    return len(sim.search_requests(keyword))


def stable(fn, seconds: float) -> int:
    """fn() once it has not changed for `seconds` (nothing in flight any more)."""
    last, since = fn(), time.monotonic()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = fn()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= seconds:
            return last
    raise AssertionError("kept changing")


async def publish_raw(settings, key: str, value: dict) -> None:
    p = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await p.start()
    try:
        await p.send_and_wait(
            topic_name(TASK_COMMANDS, settings.topic_prefix),
            json.dumps(value).encode(),
            key=key.encode(),
            headers=[(SCHEMA_HEADER, OnDemandTask.schema_id().encode())],
        )
    finally:
        await p.stop()


def test_cancel_pause_resume_reject_list(noida, xsim, s3, tmp_path, chdb_path):
    settings = report_settings(noida, xsim, tmp_path, chdb_path, s3, report_media_wait_s=0)
    sim = Simulator(xsim)
    sim.configure(limits={"SearchTimeline": 100_000})
    # X answering in 0.4 s (real X: ~0.7 s): the cancel must land within one page per slice.
    sim.client.post("/_sim/faults", json={"kind": "slow", "delay_s": 0.4}).raise_for_status()
    tag = uuid.uuid4().hex[:6]
    kw_cancel, kw_pause = f"cancel{tag}", f"pause{tag}"
    try:
        with Stack(settings, tmp_path) as stack:
            gw = stack.gw
            c = gw.submit(task_id=f"c-{tag}", keyword=kw_cancel, priority=7, **WINDOW).json()
            tc = c["task_id"]

            # Cancel mid-run: X hears at most one more request per slice (the one a slice may
            # start before the cancel reaches it), besides the pages already in flight.
            wait_until(lambda: gw.status(tc)["progress"]["collected"] >= 100, 120, "posts")
            r = gw.client.post(f"/api/v1/tasks/{tc}/cancel", json={"reason": "enough"})
            cancelled_at = time.time()
            assert r.status_code == 200, r.text
            assert r.json()["status"] == "cancelled" and r.json()["reason"] == "enough"
            stable(lambda: x_requests(sim, kw_cancel), 2.0)
            started_after = Counter(
                e["raw_query"]
                for e in sim.search_requests(kw_cancel)
                if e["received"] > cancelled_at
            )  # per slice (window)
            assert len(started_after) <= 3 and all(n <= 1 for n in started_after.values()), (
                started_after
            )
            st = gw.status(tc)
            assert st["status"] == "cancelled" and st["progress"]["collected"] >= 100
            assert gw.client.post(f"/api/v1/tasks/{tc}/cancel").status_code == 409

            # Pause: X hears nothing more for the task until it is resumed.
            tp = gw.submit(
                task_id=f"p-{tag}",
                keyword=kw_pause,
                start_time="2026-05-01T00:00:00Z",
                end_time="2026-07-01T00:00:00Z",
            ).json()["task_id"]
            wait_until(lambda: gw.status(tp)["progress"]["collected"] >= 20, 60, "pause task")
            r = gw.client.patch(f"/api/v1/tasks/{tp}", json={"action": "pause", "priority": 2})
            assert r.status_code == 200 and r.json()["status"] == "paused", r.text
            assert r.json()["priority"] == 2
            held = stable(lambda: x_requests(sim, kw_pause), 2.0)
            time.sleep(1.0)
            assert x_requests(sim, kw_pause) == held
            r = gw.client.patch(f"/api/v1/tasks/{tp}", json={"action": "resume"})
            assert r.status_code == 200 and r.json()["status"] != "paused", r.text
            wait_until(lambda: x_requests(sim, kw_pause) > held, 30, "X requests to resume")
            assert gw.client.patch(f"/api/v1/tasks/{tp}", json={}).status_code == 422
            assert gw.client.patch(f"/api/v1/tasks/{tp}", json={"priority": 11}).status_code == 422

            # A bad command published straight onto the topic is rejected with its reason.
            bad = f"bad-{tag}"
            asyncio.run(
                publish_raw(
                    settings,
                    bad,
                    {
                        "task_id": bad,
                        "keyword": "x",
                        "start_time": "2026-08-02T00:00:00Z",
                        "end_time": "2026-08-01T00:00:00Z",
                        "submitted_at": "2026-11-01T00:00:00Z",
                    },
                )
            )
            st = wait_until(
                lambda: (
                    (r := gw.client.get(f"/api/v1/tasks/{bad}/status")).status_code == 200
                    and r.json()
                ),
                30,
                "the rejected task",
            )
            assert st["status"] == "rejected" and "end_time" in st["reason"], st

            # List, read, progress.
            listed = gw.client.get("/api/v1/tasks", params={"status": "cancelled"}).json()
            assert tc in [t["task_id"] for t in listed]
            listed = gw.client.get("/api/v1/tasks", params={"keyword": kw_pause}).json()
            assert [t["task_id"] for t in listed] == [tp]
            assert listed[0]["priority"] == 2
            got = gw.client.get(f"/api/v1/tasks/{tc}").json()
            assert got["task"]["keyword"] == kw_cancel and got["priority"] == 7
            prog = gw.client.get(f"/api/v1/tasks/{tp}/progress").json()
            assert prog["task_id"] == tp and "slices_done" in prog
            assert gw.client.get("/api/v1/tasks/nope").status_code == 404
    finally:
        sim.client.delete("/_sim/faults")


def test_cancel_while_waiting_for_accounts_sends_nothing(noida, xsim, s3, tmp_path, chdb_path):
    """Slices waiting for an account when the task is cancelled never ask X once accounts free
    up: two accounts of 2 requests per 8 s window, a 3-slice task spends them and waits, is
    cancelled, and a second task then gets the renewed accounts."""
    tag = uuid.uuid4().hex[:6]
    accounts = ",".join(f"w{i}{tag}:tok-w{i}-{tag}:ct0-w{i}" for i in range(2))
    settings = report_settings(
        noida,
        xsim,
        tmp_path,
        chdb_path,
        s3,
        report_media_wait_s=0,
        x_accounts=accounts,
        x_rate_limits="SearchTimeline:2",
    )
    sim = Simulator(xsim)
    sim.configure(limits={"SearchTimeline": 2}, window_seconds=8)
    kw_cancel, kw_next = f"waitcancel{tag}", f"afterwait{tag}"
    try:
        with Stack(settings, tmp_path) as stack:
            gw = stack.gw
            tc = gw.submit(task_id=f"w-{tag}", keyword=kw_cancel, **WINDOW).json()["task_id"]
            # Both accounts' budgets spent (4 requests answered), every slice waiting.
            wait_until(
                lambda: (
                    x_requests(sim, kw_cancel) == 4
                    and gw.status(tc)["status"] == "waiting_for_accounts"
                ),
                60,
                "the task to wait for accounts",
            )
            r = gw.client.post(f"/api/v1/tasks/{tc}/cancel", json={"reason": "no wait"})
            assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
            # The next task is served once the windows renew: the cancelled slices, first in
            # line, have been handed the accounts by then.
            tn = gw.submit(task_id=f"n-{tag}", keyword=kw_next, **WINDOW).json()["task_id"]
            wait_until(
                lambda: any(e["status"] == 200 for e in sim.search_requests(kw_next)),
                60,
                "the next task to be served",
            )
            assert x_requests(sim, kw_cancel) == 4
            assert [e["status"] for e in sim.search_requests(kw_cancel)] == [200] * 4
            assert gw.status(tc)["status"] == "cancelled"
            gw.client.post(f"/api/v1/tasks/{tn}/cancel")
    finally:
        sim.configure(limits={"SearchTimeline": 50}, window_seconds=900)


def test_generic_search_types(noida, xsim, s3, tmp_path, chdb_path):
    settings = report_settings(noida, xsim, tmp_path, chdb_path, s3, report_media_wait_s=0)
    sim = Simulator(xsim)
    sim.configure(limits={"SearchTimeline": 100_000})
    tag = uuid.uuid4().hex[:6]
    with Stack(settings, tmp_path) as stack:
        gw = stack.gw

        def search(**body):
            return gw.client.post("/api/v1/tasks/search", json={**WINDOW, **body})

        ut = search(type="user_timeline", username=f"@user{tag}", required_count=40)
        qt = search(type="quotes", post_id="1790000000000000000", required_count=40)
        assert ut.status_code == qt.status_code == 200, (ut.text, qt.text)
        for r in (ut, qt):
            tid = r.json()["task_id"]
            wait_until(lambda: gw.status(tid)["status"] == "completed", 120, tid)
        queries = {
            e["raw_query"].split(" since:")[0]
            for e in sim.log()
            if e.get("operation") == "SearchTimeline"
            and (
                tag in (e.get("raw_query") or "")
                or "quoted_tweet_id:1790000000000000000" in (e.get("raw_query") or "")
            )
        }
        assert queries == {f"from:user{tag}", "quoted_tweet_id:1790000000000000000"}
        # The list filters by the search type as well as by how the task was created.
        ids = {"ut": ut.json()["task_id"], "qt": qt.json()["task_id"]}

        def listed(**params) -> set[str]:
            r = gw.client.get("/api/v1/tasks", params={**params, "limit": 500})
            assert r.status_code == 200, r.text
            return {t["task_id"] for t in r.json()} & set(ids.values())

        assert listed(type="user_timeline") == {ids["ut"]}
        assert listed(type="quotes") == {ids["qt"]}
        assert listed(type="ondemand") == set(ids.values())
        assert listed(type="keyword_search") == listed(type="scheduled") == set()
        got = gw.client.get(f"/api/v1/tasks/{ids['qt']}").json()
        assert (got["mode"], got["type"]) == ("ondemand", "quotes")
        assert gw.client.get("/api/v1/tasks", params={"type": "followers"}).status_code == 422
        for body, field in (
            ({"type": "user_timeline"}, "username"),
            ({"type": "quotes", "post_id": "abc"}, "post_id"),
            ({"type": "keyword_search"}, "keyword"),
            ({"type": "followers", "keyword": "x"}, "type"),
        ):
            r = search(**body)
            assert r.status_code == 422 and r.json()["detail"][0]["field"] == field, r.text
