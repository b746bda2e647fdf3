"""`xget replay`: after a parser change, re-parsing the raw pages kept on raw-pages re-derives
every stored post, asks X nothing (simulator log), and leaves the task's and the month's counts
exactly as they were; pages retention deleted from raw-pages come from the raw_data/ archive.
Also: SIGTERM during a task loses nothing (graceful stop, then restart)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from infra.service_process import ServiceProcess, wait_until
from libs.topics import RAW_PAGES, topic_name
from services.parser import handler as parser_handler
from services.parser.replay import replay

from .harness import Gateway, Simulator
from .test_pipeline import pipeline_settings

pytestmark = pytest.mark.e2e

START, END = "2026-10-01T00:00:00Z", "2026-10-02T00:00:00Z"


def task_posts(gw: Gateway, keyword: str) -> list[dict]:
    r = gw.client.get("/api/v1/data/tweets/search", params={"task_keyword": keyword, "limit": 1000})
    r.raise_for_status()
    return r.json()


def monthly(gw: Gateway, keyword: str) -> int:
    now = datetime.now(UTC)
    r = gw.client.get(
        "/api/v1/statistics/monthly",
        params={"year": now.year, "month": now.month, "keyword": keyword},
    )
    r.raise_for_status()
    stats = r.json()["statistics"]
    return stats[0]["unique_posts_count"] if stats else 0


def collected(gw: Gateway, task_id: str, keyword: str, n: int) -> list[dict]:
    """Submit a task of `n` posts; its stored posts once it is completed."""
    r = gw.submit(
        task_id=task_id, keyword=keyword, required_count=n, start_time=START, end_time=END
    )
    assert r.status_code == 200, r.text
    wait_until(lambda: gw.status(task_id)["status"] == "completed", 180, "the task")
    return wait_until(
        lambda: (p := task_posts(gw, keyword)) and len(p) == n and p, 60, f"{n} stored posts"
    )


def fix_the_parser(monkeypatch) -> None:
    """The "parser fix": every post now says lang=replayed."""
    original = parser_handler.parse_timeline_page

    def fixed(*args, **kwargs):
        parsed = original(*args, **kwargs)
        for p in parsed.posts:
            p.lang = "replayed"
        return parsed

    monkeypatch.setattr(parser_handler, "parse_timeline_page", fixed)


def assert_rederived_exactly(gw: Gateway, task_id: str, keyword: str, before: list[dict]) -> None:
    """Every stored post re-derived by the fixed parser, the same posts, the counts unchanged."""
    wait_until(
        lambda: all(p["lang"] == "replayed" for p in task_posts(gw, keyword)),
        90,
        "every stored post re-derived by the fixed parser",
    )
    after = task_posts(gw, keyword)
    assert sorted(p["post_id"] for p in after) == sorted(p["post_id"] for p in before)
    assert monthly(gw, keyword) == len(before)
    assert gw.status(task_id)["progress"]["collected"] == len(before)


def test_replay_rederives_without_x_and_keeps_counts(noida, xsim, tmp_path, chdb_path, monkeypatch):
    settings = pipeline_settings(noida, xsim, tmp_path, chdb_path, metrics_port=0)
    sim = Simulator(xsim)
    sim.configure(limits={"SearchTimeline": 100_000})
    keyword = f"rp{uuid.uuid4().hex[:6]}"
    task_id = f"rp-{uuid.uuid4().hex[:8]}"
    since = datetime.now(UTC) - timedelta(seconds=5)
    proc = ServiceProcess("xget-all", ["all"], settings, tmp_path).start()
    gw = Gateway(settings)
    try:
        wait_until(lambda: proc.alive() and gw.ready(), 60, "the gateway to answer")
        before_posts = collected(gw, task_id, keyword, 300)
        assert all(p["lang"] != "replayed" for p in before_posts)
        before_x = len(sim.search_requests(keyword))
        assert monthly(gw, keyword) == 300 and before_x > 0

        fix_the_parser(monkeypatch)
        res = asyncio.run(replay(settings, since, task_id))
        assert res.tasks == 1 and res.pages >= 15 and res.records_out >= 300
        assert res.archived_pages == 0  # all of them still on raw-pages

        assert_rederived_exactly(gw, task_id, keyword, before_posts)
        assert len(sim.search_requests(keyword)) == before_x, "replay asked X"
    finally:
        assert proc.stop(), "SIGTERM did not stop the process"


async def delete_all_raw_pages(settings) -> int:
    """What retention does to old pages, now: every raw-pages record deleted (DeleteRecords up
    to each partition's end). The number of records deleted."""
    from aiokafka import TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

    from libs.kafka import consumer_for

    topic = topic_name(RAW_PAGES, settings.topic_prefix)
    tps = [TopicPartition(topic, p) for p in range(RAW_PAGES.partitions)]
    consumer = consumer_for(settings, None, "replay-test")
    await consumer.start()
    try:
        end = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_records({tp: RecordsToDelete(end[tp]) for tp in tps if end[tp]})
    finally:
        await admin.close()
    consumer = consumer_for(settings, None, "replay-test")
    await consumer.start()
    try:
        begin = await consumer.beginning_offsets(tps)
    finally:
        await consumer.stop()
    assert begin == end, "raw-pages still holds records"
    return sum(end.values())


def test_replay_beyond_the_topics_retention_reads_the_archive_and_asks_x_nothing(
    noida, xsim, tmp_path, chdb_path, monkeypatch
):
    """The parser archives every raw page to raw_data/ before it commits it; once retention
    has deleted the pages from raw-pages, `xget replay` re-derives the task from the archive:
    every post, the counts unchanged, and not one request to X."""
    settings = pipeline_settings(noida, xsim, tmp_path, chdb_path, metrics_port=0)
    sim = Simulator(xsim)
    sim.configure(limits={"SearchTimeline": 100_000})
    keyword = f"ra{uuid.uuid4().hex[:6]}"
    task_id = f"ra-{uuid.uuid4().hex[:8]}"
    since = datetime.now(UTC) - timedelta(seconds=5)
    proc = ServiceProcess("xget-all", ["all"], settings, tmp_path).start()
    gw = Gateway(settings)
    try:
        wait_until(lambda: proc.alive() and gw.ready(), 60, "the gateway to answer")
        before_posts = collected(gw, task_id, keyword, 200)
        before_x = len(sim.search_requests(keyword))
        archived = sorted((tmp_path / "objects" / "raw_data").rglob("*.jsonl.zst"))
        assert archived, "no raw page archived under raw_data/"
        assert asyncio.run(delete_all_raw_pages(settings)) >= 10

        fix_the_parser(monkeypatch)
        res = asyncio.run(replay(settings, since, task_id))
        assert res.tasks == 1 and res.pages >= 10 and res.records_out >= 200
        assert res.archived_pages == res.pages, "pages the topic no longer holds, from the archive"

        assert_rederived_exactly(gw, task_id, keyword, before_posts)
        assert len(sim.search_requests(keyword)) == before_x, "replay asked X"
    finally:
        assert proc.stop(), "SIGTERM did not stop the process"


def test_sigterm_during_a_task_loses_nothing(noida, xsim, tmp_path, chdb_path):
    settings = pipeline_settings(noida, xsim, tmp_path, chdb_path, metrics_port=0)
    sim = Simulator(xsim)
    sim.configure(limits={"SearchTimeline": 100_000})
    # Slow X pages, so that the SIGTERM lands while slices are still paging.
    sim.client.post(
        "/_sim/faults", json={"kind": "slow", "operation": "SearchTimeline", "delay_s": 0.5}
    ).raise_for_status()
    keyword = f"st{uuid.uuid4().hex[:6]}"
    task_id = f"st-{uuid.uuid4().hex[:8]}"
    gw = Gateway(settings)
    first = ServiceProcess("xget-all-1", ["all"], settings, tmp_path).start()
    try:
        wait_until(lambda: first.alive() and gw.ready(), 60, "the gateway to answer")
        assert (
            gw.submit(
                task_id=task_id,
                keyword=keyword,
                required_count=1000,
                start_time=START,
                end_time=END,
            ).status_code
            == 200
        )
        wait_until(
            lambda: 0 < gw.status(task_id)["progress"]["collected"], 120, "the task to be under way"
        )
        assert gw.status(task_id)["progress"]["collected"] < 1000
    finally:
        stopped = first.stop(timeout=60)
        sim.client.delete("/_sim/faults").raise_for_status()
    assert stopped, "SIGTERM did not stop the process in time"
    second = ServiceProcess("xget-all-2", ["all"], settings, tmp_path).start()
    try:
        wait_until(lambda: second.alive() and gw.ready(), 60, "the gateway to answer again")
        final = wait_until(
            lambda: (s := gw.status(task_id))["status"] == "completed" and s,
            240,
            "the task to complete after the restart",
        )
        assert final["progress"]["collected"] == 1000
        posts = wait_until(
            lambda: (p := task_posts(gw, keyword)) and len(p) == 1000 and p,
            60,
            "1,000 stored posts",
        )
        assert len({p["post_id"] for p in posts}) == 1000
        assert monthly(gw, keyword) == 1000  # nothing lost, nothing counted twice
    finally:
        second.stop()
