"""Drills: a dependency goes down in the middle of a task, as operators meet it, and comes back.

Every service runs as its own process (and once all in one, the single-process mode); ClickHouse is reached over HTTP (infra/chdb_http, the
real engine), objects go to a real S3 server (moto) and reports to a real HTTP receiver. Each
drill ends in the exact state of an undisturbed run:
  * the stored posts are exactly the simulator's posts of the window, each row once
    (`count()` of the final table = `uniqExact(post_id)`), the monthly count equals them;
  * every post is in exactly one delivered batch, the last one `completed`;
  * no dead letter at all (every cause was transient);
  * X was asked for no page twice (none of these dependencies is on the scraper's path);
  * no process exited on the outage (each runs supervised, and none had to be restarted).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from datetime import UTC, datetime

import pytest

from infra import local
from infra.separate_stack import SERVICES, SeparateStack
from infra.service_process import wait_until
from libs.storage.clickhouse import ClickHouseStore
from libs.storage.objects import open_object_store
from services.task_gateway.scheduler import search_query
from tests.integration.kafka_helpers import dead_letters
from tests.webhook_server import WebhookServer

from .harness import Gateway, Simulator
from .test_pipeline import pipeline_settings
from .test_reports import SECRET

pytestmark = pytest.mark.e2e

# 60 posts an hour in the simulator: 36 hours hold 2,160 posts, about 110 pages.
START, END = "2026-08-01T00:00:00Z", "2026-08-02T12:00:00Z"
OUTAGE_S = 60


def _dt(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).astimezone(UTC)


def drill_stack(
    noida, xsim, s3, tmp_path, hook_port: int, services: tuple[str, ...] = SERVICES
) -> SeparateStack:
    settings = pipeline_settings(
        noida,
        xsim,
        tmp_path,
        str(tmp_path / "unused"),
        object_store_url=f"s3://drill-{uuid.uuid4().hex[:10]}",
        s3_access_key="testing",
        s3_secret_key="testing",
        webhook_secret=SECRET,
        webhook_allow_hosts="127.0.0.1",
        webhook_url=f"http://127.0.0.1:{hook_port}/hook",
        webhook_backoff_base_s=0.2,
        webhook_backoff_max_s=5.0,
        dependency_retry_base_s=0.5,
        dependency_retry_max_s=5.0,
        report_max_wait_s=1.0,
        report_tick_s=0.2,
        report_media_wait_s=120,
    )
    return SeparateStack(settings, tmp_path, str(s3), services)


def _delivered(hooks: list[WebhookServer], task_id: str) -> list[dict]:
    return [r.body for h in hooks for r in h.accepted() if r.body.get("task_id") == task_id]


@pytest.mark.parametrize(
    "fault, services",
    [
        ("clickhouse", SERVICES),
        ("object-store", SERVICES),
        ("webhook", SERVICES),
        ("clickhouse", ("all",)),  # the single-process mode: every service in one process
    ],
    ids=["clickhouse", "object-store", "webhook", "clickhouse-single-process"],
)
def test_a_dependency_down_mid_task_loses_and_duplicates_nothing(
    fault, services, noida, xsim, s3, tmp_path
):
    sim = Simulator(xsim)
    sim.configure(limits={"SearchTimeline": 100_000})
    hook_port = local.free_port()
    hooks = [WebhookServer(SECRET, port=hook_port).__enter__()]
    stack = drill_stack(noida, xsim, s3, tmp_path, hook_port, services)
    keyword = f"drill{uuid.uuid4().hex[:6]}"
    task_id = f"drill-{fault}-{keyword}"
    # X answers slowly enough that the fault lands while pages are still coming in.
    sim.client.post("/_sim/faults", json={"kind": "slow", "delay_s": 0.15}).raise_for_status()
    try:
        stack.start()
        gw = Gateway(stack.settings)
        r = gw.submit(
            task_id=task_id, keyword=keyword, required_count=0, start_time=START, end_time=END
        )
        assert r.status_code == 200, r.text

        def collected() -> int:
            return gw.status(task_id)["progress"]["collected"]

        if fault == "webhook":
            wait_until(lambda: _delivered(hooks, task_id), 120, "a first delivered batch")
            hooks[-1].__exit__()
            down_at = time.monotonic()
            wait_until(
                lambda: gw.status(task_id)["status"] == "completed",
                180,
                "the task to complete while the webhook is down",
            )
            time.sleep(max(0.0, OUTAGE_S * 2 - (time.monotonic() - down_at)))
            hooks.append(WebhookServer(SECRET, port=hook_port).__enter__())
        else:
            wait_until(lambda: collected() >= 300, 120, "300 posts before the fault")
            if fault == "clickhouse":
                stack.clickhouse_down()
            else:
                stack.s3_down()
            before = collected()
            time.sleep(OUTAGE_S)
            if fault == "clickhouse":
                # Posts are stored in ClickHouse: none counted, the task not "completed".
                assert collected() == before, "posts counted while ClickHouse was down"
                assert gw.status(task_id)["status"] != "completed"
                stack.clickhouse_up()
            else:
                # X is still asked (the scraper needs no bucket); parsing waits for the raw-page
                # archive (a page is archived before it counts as done), media and batch files
                # for the bucket.
                stack.s3_up()
        wait_until(
            lambda: any(b["completion_status"] == "completed" for b in _delivered(hooks, task_id)),
            300,
            f"the completed report\n{stack.tails()}",
        )
        assert stack.dead() == [] and stack.restarts() == {}, stack.tails()
        final = gw.status(task_id)
        monthly = gw.client.get(
            "/api/v1/statistics/monthly",
            params={
                "year": datetime.now(UTC).year,
                "month": datetime.now(UTC).month,
                "keyword": keyword,
            },
        ).json()
    finally:
        sim.client.delete("/_sim/faults")
        for h in hooks:
            h.__exit__()
        stack.stop()

    expected = set(sim.corpus_ids(search_query(keyword, _dt(START), _dt(END))))
    assert len(expected) > 2000
    with _reopened(stack) as ch:
        ids = {
            r[0]
            for r in ch.query_rows_sync(
                "SELECT post_id FROM task_posts WHERE task_id = {t:String}", {"t": task_id}
            )
        }
        rows, unique = ch.query_rows_sync(
            "SELECT count(), uniqExact(post_id) FROM posts FINAL WHERE task_id = {t:String}",
            {"t": task_id},
        )[0]
        billed = ch.query_rows_sync(
            "SELECT uniqExact(post_id) FROM keyword_month_posts WHERE keyword = {k:String}",
            {"k": keyword},
        )[0][0]
        media_states = Counter(
            r[0] for r in ch.query_rows_sync("SELECT status FROM media_objects FINAL")
        )
    assert ids == expected
    assert rows == unique == billed == len(expected)
    assert final["status"] == "completed" and final["progress"]["collected"] == len(expected)
    assert monthly["statistics"][0]["unique_posts_count"] == len(expected)

    # Every post in exactly one delivered batch, batch ids consecutive, the last completed.
    bodies = {b["batch_id"]: b for b in _delivered(hooks, task_id)}
    reported = Counter(pid for b in bodies.values() for pid in b["post_ids"])
    assert set(reported) == expected and max(reported.values()) == 1
    ordered = sorted(bodies)
    assert ordered == [f"{task_id}_batch_{i:03d}" for i in range(1, len(ordered) + 1)]
    assert bodies[ordered[-1]]["completion_status"] == "completed"

    # Each batch file holds exactly its batch's posts, and every medium of them was stored
    # (none turned into a failure by the outage).
    objects = open_object_store(stack.settings.model_copy(update={"s3_endpoint": str(s3)}))
    for b in bodies.values():
        records = json.loads(objects.get_sync(b["oss_file_path"]))
        assert [r["post_id"] for r in records] == b["post_ids"]
    assert media_states and set(media_states) == {"stored"}, media_states

    assert asyncio.run(dead_letters(stack.settings)) == []
    asked = Counter(
        (e["raw_query"], e.get("cursor"))
        for e in sim.search_requests(keyword)
        if e.get("status") == 200
    )
    assert max(asked.values()) == 1, [k for k, n in asked.items() if n > 1][:5]


class _reopened:
    """ClickHouse read after the drill: the server is started again on the drill's data."""

    def __init__(self, stack: SeparateStack):
        self.stack = stack

    def __enter__(self) -> ClickHouseStore:
        self.stack.clickhouse_up()
        self.store = ClickHouseStore(self.stack.dsn)
        return self.store

    def __exit__(self, *exc) -> None:
        self.store.close()
        self.stack.clickhouse.stop()
