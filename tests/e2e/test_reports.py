"""Batch reports end to end: a task's posts reach the client's webhook (a real local HTTP
server) in signed batches, with every batch file in the S3 bucket (moto), through the real
broker, chdb, the simulator and every service as OS processes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from infra.service_process import REPO, ServiceProcess, settings_env, wait_until
from libs.kafka import Outgoing, Producer
from libs.records.posts import Post
from libs.storage.clickhouse import ClickHouseStore
from libs.storage.objects import open_object_store
from libs.topics import POSTS, POSTS_TARGET_HEADER
from tests.webhook_server import WebhookServer

from .harness import Gateway, Simulator
from .test_pipeline import pipeline_settings

pytestmark = pytest.mark.e2e

SECRET = "hook-secret"
# 60 posts per hour by default: a day holds 1,440 posts.
START, END = "2026-10-01T00:00:00Z", "2026-10-02T00:00:00Z"


def report_settings(noida, xsim, tmp_path, chdb_path, s3, **overrides):
    opts = dict(
        object_store_url=f"s3://xget-{uuid.uuid4().hex[:10]}",
        s3_endpoint=str(s3),
        s3_access_key="testing",
        s3_secret_key="testing",
        webhook_secret=SECRET,
        webhook_allow_hosts="127.0.0.1",
        webhook_backoff_base_s=0.05,
        webhook_backoff_max_s=0.5,
        report_max_wait_s=1.0,
        report_tick_s=0.2,
        report_media_wait_s=20,
    )
    opts.update(overrides)
    return pipeline_settings(noida, xsim, tmp_path, chdb_path, **opts)


class Stack:
    """db process (gateway + dedup-counter + reporter share chdb) and a front process."""

    def __init__(
        self,
        settings,
        tmp_path: Path,
        front=("scraper", "parser", "media-downloader", "account-manager"),
    ):
        self.db = ServiceProcess(
            "db", ["task-gateway", "dedup-counter", "reporter"], settings, tmp_path
        )
        self.front = ServiceProcess("front", list(front), settings, tmp_path)
        self.gw = Gateway(settings)

    def __enter__(self):
        try:
            self.db.start()
            self.front.start()
            wait_until(lambda: self.db.alive() and self.gw.ready(), 60, "the gateway to answer")
        except BaseException:
            self.__exit__()  # a failed start must not leave the processes running
            raise
        return self

    def __exit__(self, *exc):
        for p in (self.front, self.db):
            if not p.stop():
                print(p.tail())


def completed_report(hook: WebhookServer, task_id: str):
    return next(
        (
            r
            for r in hook.accepted()
            if r.body.get("task_id") == task_id and r.body.get("completion_status") == "completed"
        ),
        None,
    )


def task_post_ids(chdb_dir: str, task_id: str) -> set[str]:
    with ClickHouseStore(f"chdb://{chdb_dir}") as ch:
        return {
            r[0]
            for r in ch.query_rows_sync(
                "SELECT post_id FROM task_posts FINAL WHERE task_id = {t:String}", {"t": task_id}
            )
        }


# The report body of the client's design ("搜索结果上报接口"): each field with its type.
DESIGN_REPORT_FIELDS = {
    "post_id": str,
    "keyword": str,
    "task_id": str,
    "oss_file_path": str,
    "batch_size": int,
    "total_collected": int,
    "completion_status": str,
}


def assert_design_report(body: dict) -> None:
    """Every field of the design's report, with the design's name and type (extra fields of
    ours, post_ids, batch_id, user_ids, are allowed next to them)."""
    for name, kind in DESIGN_REPORT_FIELDS.items():
        assert name in body, f"report lacks the design's {name!r}: {body}"
        value = body[name]
        assert isinstance(value, kind) and not isinstance(value, bool), (name, value)
    assert body["completion_status"] in ("partial", "completed")
    assert isinstance(body["post_ids"], list) and isinstance(body["user_ids"], list)
    assert isinstance(body["batch_id"], str)


def assert_reports_consistent(
    hook: WebhookServer, task_id: str, stored_ids: set[str], objects, late_batches: int = 0
) -> list[dict]:
    """`late_batches`: batches cut after the task's first completed one (posts that arrived
    late), which are marked completed too."""
    accepted = [r for r in hook.accepted() if r.body["task_id"] == task_id]
    keys = [r.idempotency_key for r in accepted]
    assert len(keys) == len(set(keys)), "a batch id was acknowledged twice"
    assert all(r.signature_ok for r in hook.all())
    bodies = sorted((r.body for r in accepted), key=lambda b: b["batch_id"])
    assert [b["batch_id"] for b in bodies] == [
        f"{task_id}_batch_{i:03d}" for i in range(1, len(bodies) + 1)
    ]
    done = len(bodies) - 1 - late_batches
    assert all(b["completion_status"] == "completed" for b in bodies[done:])
    assert all(b["completion_status"] == "partial" for b in bodies[:done])
    reported: list[str] = [pid for b in bodies for pid in b["post_ids"]]
    assert len(reported) == len(set(reported)), "a post was reported in two batches"
    assert set(reported) == stored_ids
    assert bodies[-1]["total_collected"] == len(stored_ids)
    for i, b in enumerate(bodies):
        assert_design_report(b)
        # post_id names the batch's first post (an empty closing batch: the last one reported)
        earlier = [pid for x in bodies[:i] for pid in x["post_ids"]]
        named = b["post_ids"][0] if b["post_ids"] else (earlier[-1] if earlier else "")
        assert b["post_id"] == named, (i, b)
        assert b["batch_size"] == len(b["post_ids"])
        assert b["oss_file_path"].startswith("data/") and b["oss_file_path"].endswith(
            f"/{b['batch_id']}.json"
        )
        records = json.loads(objects.get_sync(b["oss_file_path"]))
        assert [r["post_id"] for r in records] == b["post_ids"]
        assert all(
            r["task_id"] == task_id and r["oss_file_path"] == b["oss_file_path"] for r in records
        )
    return bodies


# Media the simulator is told to break: (path piece, fault, expected cause prefix).
MEDIA_FAULTS = [
    ("HMt0Fw0bQAAEz9N", {"kind": "404"}, "http 404"),
    ("HMu23HtXsAEqNOA", {"kind": "html"}, "not an image"),
    ("HMu2W_waoAAZmp3", {"kind": "huge", "size_mb": 60}, "too large"),
]


def test_task_reported_in_signed_batches_with_files_and_media_in_the_bucket(
    noida, xsim, s3, tmp_path, chdb_path
):
    settings = report_settings(noida, xsim, tmp_path, chdb_path, s3, report_media_wait_s=60)
    sim = Simulator(xsim)
    sim.configure(limits={"SearchTimeline": 100_000})
    for piece, fault, _ in MEDIA_FAULTS:
        sim.client.post(
            "/_sim/media-faults", json={"path_contains": piece, **fault}
        ).raise_for_status()
    task_id = f"rep-{uuid.uuid4().hex[:8]}"
    try:
        with WebhookServer(SECRET, fail_times=3) as hook, Stack(settings, tmp_path) as stack:
            r = stack.gw.submit(
                task_id=task_id,
                keyword=f"kw{uuid.uuid4().hex[:6]}",
                required_count=1000,
                start_time=START,
                end_time=END,
                callback_url=hook.url,
            )
            assert r.status_code == 200, r.text
            wait_until(lambda: completed_report(hook, task_id), 240, "the completed report")
    finally:
        sim.client.delete("/_sim/media-faults")
    stored = task_post_ids(chdb_path, task_id)
    assert len(stored) == 1000
    objects = open_object_store(settings)
    bodies = assert_reports_consistent(hook, task_id, stored, objects)
    assert len(bodies) == 10  # 1,000 posts in batches of 100
    assert [r.status for r in hook.all()][:3] == [500, 500, 500]  # retried, then delivered

    # Every media item of every reported post: stored with the simulator's exact bytes, or
    # (the broken ones) failed with the cause; their posts are reported all the same.
    media = [
        m
        for b in bodies
        for rec in json.loads(objects.get_sync(b["oss_file_path"]))
        for m in (*rec["post_images"], *rec["original_post_images"])
    ]
    assert media, "the fixture's posts carry images"
    seen_failed = set()
    served: dict[str, bytes] = {}
    prefix = f"/{objects.bucket}/"
    for m in media:
        fault = next((f for f in MEDIA_FAULTS if f[0] in m["original_url"]), None)
        if fault is not None:
            assert m["media_status"] == "failed" and m["oss_url"] is None, m
            assert m["media_error"].startswith(fault[2]), m
            seen_failed.add(fault[0])
            continue
        assert m["media_status"] == "stored" and m["oss_url"], m
        key = m["oss_url"].split(prefix, 1)[1]
        if m["original_url"] not in served:
            path = m["original_url"].split("pbs.twimg.com", 1)[1]
            served[m["original_url"]] = sim.client.get(path).content
        assert objects.get_sync(key) == served[m["original_url"]]
    assert seen_failed == {f[0] for f in MEDIA_FAULTS}

    # A client reading `posts` directly sees what the batch files show: each media's oss_url
    # and status, and the batch file; still one row per post, and no count moved.
    def media_view(images: list[dict]) -> list[tuple]:
        return [(m["original_url"], m["oss_url"], m["media_status"]) for m in images]

    with ClickHouseStore(f"chdb://{chdb_path}") as ch:
        rows = {
            r["post_id"]: r
            for r in ch.query_dicts_sync(
                "SELECT post_id, task_id, oss_file_path, post_images, original_post_images "
                "FROM posts FINAL WHERE post_id IN {ids:Array(String)}",
                {"ids": sorted(stored)},
            )
        }
        (tally,) = ch.query_rows_sync(
            "SELECT (SELECT count() FROM posts FINAL WHERE task_id = {t:String}), "
            "(SELECT uniqExact(post_id) FROM keyword_month_posts WHERE task_id = {t:String})",
            {"t": task_id},
        )
    assert tally == (1000, 1000)
    for b in bodies:
        for rec in json.loads(objects.get_sync(b["oss_file_path"])):
            row = rows[rec["post_id"]]
            assert row["task_id"] == task_id and row["oss_file_path"] == b["oss_file_path"]
            for key in ("post_images", "original_post_images"):
                assert media_view(json.loads(row[key])) == media_view(rec[key]), rec["post_id"]


def test_pause_then_resume_and_dead_letters_then_replay(noida, xsim, s3, tmp_path, chdb_path):
    settings = report_settings(
        noida,
        xsim,
        tmp_path,
        chdb_path,
        s3,
        report_batch_size=50,
        report_media_wait_s=0,
        webhook_max_attempts=2,
        report_pause_s=600,
    )
    Simulator(xsim).configure(limits={"SearchTimeline": 100_000})
    paused, dead = f"pause-{uuid.uuid4().hex[:6]}", f"dead-{uuid.uuid4().hex[:6]}"
    with (
        WebhookServer(SECRET, pause_after_batches={f"{paused}_batch_001"}) as hook,
        WebhookServer(SECRET, fail_status=500) as dead_hook,
        Stack(settings, tmp_path) as stack,
    ):
        for tid, url in ((paused, hook.url), (dead, dead_hook.url)):
            r = stack.gw.submit(
                task_id=tid,
                keyword=f"kw{uuid.uuid4().hex[:6]}",
                required_count=200,
                start_time=START,
                end_time=END,
                callback_url=url,
            )
            assert r.status_code == 200, r.text
        # The paused task: batch 1 is delivered, then nothing while the client holds it.
        wait_until(lambda: hook.accepted(), 120, "the first report of the paused task")
        wait_until(lambda: stack.gw.status(paused)["status"] == "completed", 120, "collection")
        # The dead webhook: every batch is tried twice, then dead-lettered.
        wait_until(lambda: len(dead_hook.all()) >= 2 * 4, 120, "the dead webhook's attempts")
        assert [r.body["batch_id"] for r in hook.accepted()] == [f"{paused}_batch_001"]
        resumed = stack.gw.client.post(f"/api/v1/tasks/{paused}/reports/resume")
        assert resumed.status_code == 200, resumed.text
        wait_until(lambda: completed_report(hook, paused), 120, "the resumed reports")

        dead_hook.fail_status = None
        env = {**os.environ, **settings_env(settings), "PYTHONPATH": str(REPO)}
        out = subprocess.run(
            [sys.executable, "-m", "services.cli", "reports", "replay", "--task", dead],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        assert "queued 4 dead report(s)" in out.stdout, out.stdout
        wait_until(lambda: completed_report(dead_hook, dead), 120, "the replayed reports")
    objects = open_object_store(settings)
    assert_reports_consistent(hook, paused, task_post_ids(chdb_path, paused), objects)
    assert_reports_consistent(dead_hook, dead, task_post_ids(chdb_path, dead), objects)


def test_reporter_killed_mid_run_loses_no_batch_and_moves_no_post(
    noida, xsim, s3, tmp_path, chdb_path
):
    """SIGKILL of the process holding the gateway, dedup-counter and reporter after a few
    reports: after restart every post is reported exactly once, in the same batches; a batch
    the client may see again carries the same id (Idempotency-Key) and the same posts."""
    settings = report_settings(noida, xsim, tmp_path, chdb_path, s3, report_media_wait_s=0)
    sim = Simulator(xsim)
    sim.configure(limits={"SearchTimeline": 100_000})
    fault = sim.client.post("/_sim/faults", json={"kind": "slow", "delay_s": 0.05})
    fault.raise_for_status()
    task_id = f"kill-{uuid.uuid4().hex[:8]}"
    try:
        with WebhookServer(SECRET) as hook, Stack(settings, tmp_path) as stack:
            r = stack.gw.submit(
                task_id=task_id,
                keyword=f"kw{uuid.uuid4().hex[:6]}",
                required_count=1000,
                start_time=START,
                end_time=END,
                callback_url=hook.url,
            )
            assert r.status_code == 200, r.text
            wait_until(lambda: len(hook.accepted()) >= 2, 120, "two reports")
            stack.db.kill()
            assert not completed_report(hook, task_id), "the kill came too late to test"
            killed_at = len(hook.accepted())
            stack.db.start()
            wait_until(lambda: completed_report(hook, task_id), 240, "the completed report")
    finally:
        sim.client.delete("/_sim/faults")
    assert len(hook.accepted()) > killed_at
    by_key: dict[str, dict] = {}
    for rec in hook.accepted():
        prev = by_key.setdefault(rec.idempotency_key, rec.body)
        assert prev == rec.body, "a batch id was re-sent with different content"
    hook.requests = [
        r
        for i, r in enumerate(hook.requests)
        if r.idempotency_key not in {x.idempotency_key for x in hook.requests[:i]}
    ]
    bodies = assert_reports_consistent(
        hook, task_id, task_post_ids(chdb_path, task_id), open_object_store(settings)
    )
    # 10 full batches, plus any partial one cut while the killed counter was away
    assert len(bodies) >= 10


def test_slow_webhook_of_one_client_does_not_delay_another(noida, xsim, s3, tmp_path, chdb_path):
    settings = report_settings(
        noida,
        xsim,
        tmp_path,
        chdb_path,
        s3,
        report_batch_size=50,
        report_media_wait_s=0,
        webhook_timeout_s=60,
    )
    Simulator(xsim).configure(limits={"SearchTimeline": 100_000})
    slow_task, fast_task = f"slow-{uuid.uuid4().hex[:6]}", f"fast-{uuid.uuid4().hex[:6]}"
    with (
        WebhookServer(SECRET, delay_s=60) as slow,
        WebhookServer(SECRET) as fast,
        Stack(settings, tmp_path) as stack,
    ):
        for tid, url in ((slow_task, slow.url), (fast_task, fast.url)):
            r = stack.gw.submit(
                task_id=tid,
                keyword=f"kw{uuid.uuid4().hex[:6]}",
                required_count=200,
                start_time=START,
                end_time=END,
                callback_url=url,
            )
            assert r.status_code == 200, r.text
        wait_until(lambda: slow.arrived >= 1, 120, "the slow client's first report to arrive")
        wait_until(lambda: completed_report(fast, fast_task), 120, "the fast client's reports")
        assert slow.arrived == 1 and not slow.all(), "the slow client is still on its first"
        assert len(fast.accepted()) == 4


def test_task_that_finds_nothing_still_gets_one_completed_report(
    noida, xsim, s3, tmp_path, chdb_path
):
    settings = report_settings(noida, xsim, tmp_path, chdb_path, s3, report_media_wait_s=0)
    keyword = f"empty{uuid.uuid4().hex[:6]}"
    Simulator(xsim).configure(limits={"SearchTimeline": 100_000}, densities={keyword: 0})
    task_id = f"none-{uuid.uuid4().hex[:6]}"
    with WebhookServer(SECRET) as hook, Stack(settings, tmp_path) as stack:
        r = stack.gw.submit(
            task_id=task_id, keyword=keyword, start_time=START, end_time=END, callback_url=hook.url
        )
        assert r.status_code == 200, r.text
        wait_until(lambda: completed_report(hook, task_id), 120, "the completed report")
    [only] = hook.accepted()
    assert only.body["batch_size"] == 0 and only.body["post_ids"] == []
    assert only.body["total_collected"] == 0 and only.body["batch_id"] == f"{task_id}_batch_001"
    assert json.loads(open_object_store(settings).get_sync(only.body["oss_file_path"])) == []


def test_posts_stored_after_the_completed_report_are_reported_once(
    noida, xsim, s3, tmp_path, chdb_path
):
    """A post that reaches a finished task late (a replay after a parser fix, a redriven dead
    letter) is reported in a further batch, marked completed, with total_collected grown;
    the same late post arriving again is never reported twice."""
    settings = report_settings(noida, xsim, tmp_path, chdb_path, s3, report_media_wait_s=0)
    keyword = f"late{uuid.uuid4().hex[:6]}"
    Simulator(xsim).configure(limits={"SearchTimeline": 100_000}, densities={keyword: 5})
    task_id = f"late-{uuid.uuid4().hex[:6]}"
    with WebhookServer(SECRET) as hook, Stack(settings, tmp_path) as stack:
        r = stack.gw.submit(
            task_id=task_id, keyword=keyword, start_time=START, end_time=END, callback_url=hook.url
        )
        assert r.status_code == 200, r.text
        wait_until(lambda: completed_report(hook, task_id), 120, "the completed report")
        first = [r.body for r in hook.accepted()]
        n = first[-1]["total_collected"]
        assert n > 0

        asyncio.run(_publish_late(settings, task_id, keyword, ["901", "902", "903"]))
        wait_until(lambda: len(hook.accepted()) > len(first), 120, "the late posts' report")
        asyncio.run(_publish_late(settings, task_id, keyword, ["901", "902", "903", "904"]))
        wait_until(
            lambda: any("9000000000000000904" in r.body["post_ids"] for r in hook.accepted()),
            120,
            "the second late report",
        )
    bodies = [r.body for r in hook.accepted()]
    late = bodies[len(first) :]
    assert [b["post_ids"] for b in late] == [
        ["9000000000000000901", "9000000000000000902", "9000000000000000903"],
        ["9000000000000000904"],
    ]
    assert [b["completion_status"] for b in late] == ["completed", "completed"]
    assert [b["total_collected"] for b in late] == [n + 3, n + 4]
    assert [b["batch_id"] for b in late] == [
        f"{task_id}_batch_{i:03d}" for i in (len(first) + 1, len(first) + 2)
    ]
    assert_reports_consistent(
        hook,
        task_id,
        task_post_ids(chdb_path, task_id),
        open_object_store(settings),
        late_batches=2,
    )


async def _publish_late(settings, task_id: str, keyword: str, suffixes: list[str]) -> None:
    """Posts of the task as the parser publishes them (a replay or redrive does the same)."""
    now = datetime.now(UTC)
    producer = await Producer(settings).start()
    try:
        await producer.send_all(
            [
                Outgoing(
                    POSTS,
                    task_id,
                    Post(
                        post_url=f"https://x.com/late/status/9000000000000000{s}",
                        post_id=f"9000000000000000{s}",
                        post_type="text",
                        author_handle="@late",
                        post_time=now,
                        post_content=f"late {s}",
                        keyword=keyword,
                        task_id=task_id,
                        collected_at=now,
                        raw_data="{}",
                    ),
                    headers=((POSTS_TARGET_HEADER, b"0"),),
                )
                for s in suffixes
            ]
        )
    finally:
        await producer.stop()
