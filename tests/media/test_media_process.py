"""The media-downloader as a real process: the per-task `download_video` option end to end
(gateway → scheduler → scraper → X simulator → parser → media-downloader → S3 → media-stored),
and a SIGKILL mid-run."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter

import pytest

from infra.local import free_port
from infra.service_process import ServiceProcess
from libs.records.media import MediaStored
from libs.records.pages import SliceEnd
from libs.records.posts import MediaJob
from libs.storage.objects import open_object_store
from libs.topic_table import TopicTable
from libs.topics import MEDIA_JOBS, MEDIA_STORED, POSTS
from services.media_downloader.fetch import source_url
from tests.e2e.harness import Gateway, Simulator

from .helpers import SimMedia, media_settings, publish_jobs

pytestmark = pytest.mark.e2e

WINDOW = {"start_time": "2026-10-01T00:00:00Z", "end_time": "2026-10-01T01:00:00Z"}  # 60 posts


async def until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.2)


def _ready(gw: Gateway) -> bool:
    try:
        return gw.ready()
    except Exception:  # noqa: BLE001 - not listening yet
        return False


async def test_video_is_downloaded_only_for_tasks_that_ask(noida, s3, xsim, tmp_path):
    settings = media_settings(
        noida,
        s3,
        xsim,
        x_graphql_url=f"{xsim}/i/api/graphql",
        x_transaction_id="static",
        x_accounts="mv1:tok-mv1:ct0-mv1,mv2:tok-mv2:ct0-mv2",
        gateway_port=free_port(),
        api_token="media-token",
        data_dir=str(tmp_path / "xget"),
        account_key="media-account-key",
        account_admin_port=free_port(),
    )
    Simulator(xsim).configure(limits={"SearchTimeline": 100_000})
    jobs: dict[str, list[MediaJob]] = {}
    results: dict[str, list[MediaStored]] = {}
    ended: set[str] = set()

    def on_job(_k, rec):
        if isinstance(rec, MediaJob):
            jobs.setdefault(rec.task_id, []).append(rec)

    def on_result(_k, rec):
        if isinstance(rec, MediaStored):
            results.setdefault(rec.task_id, []).append(rec)

    def on_post(_k, rec):
        if isinstance(rec, SliceEnd):
            ended.add(rec.task_id)

    tables = [
        TopicTable(settings, MEDIA_JOBS, on_job),
        TopicTable(settings, MEDIA_STORED, on_result),
        TopicTable(settings, POSTS, on_post),
    ]
    for t in tables:
        await t.start()
    proc = ServiceProcess(
        "media-e2e",
        ["task-gateway", "scraper", "parser", "media-downloader", "account-manager"],
        settings,
        tmp_path,
    ).start()
    gw = Gateway(settings)
    tag = uuid.uuid4().hex[:6]
    try:
        await until(lambda: _ready(gw), 60, f"the gateway\n{proc.tail()}")
        with_video = gw.submit(keyword=f"vids{tag}", download_video=True, **WINDOW).json()[
            "task_id"
        ]
        without = gw.submit(keyword=f"novids{tag}", **WINDOW).json()["task_id"]

        def covered(task: str) -> bool:
            want = {(j.post_id, j.original_url) for j in jobs.get(task, [])}
            got = {(r.post_id, r.original_url) for r in results.get(task, [])}
            return task in ended and bool(want) and want <= got

        await until(
            lambda: covered(with_video) and covered(without),
            180,
            f"media results of both tasks\n{proc.tail()}",
        )
    finally:
        proc.stop()
        for t in tables:
            await t.stop()

    store = open_object_store(settings)
    sim = SimMedia(xsim)
    try:
        for task, video_asked in ((with_video, True), (without, False)):
            assert len(results[task]) == len(jobs[task])  # one result per job
            videos = [r for r in results[task] if r.type != "image"]
            assert videos and any(r.type == "image" for r in results[task])
            for r in results[task]:
                assert r.status == "stored", r.cause
                served = await sim.served(source_url(r.original_url, "image", settings))
                assert await store.get(r.object_key) == served.content
                assert (await store.stat(r.object_key)).content_type == served.headers[
                    "content-type"
                ]
            for r in videos:
                if not video_asked:
                    assert r.video_url is None and r.video_status is None
                    assert r.video_object_key is None
                    continue
                assert r.video_url and r.video_status == "stored", r.video_cause
                served = await sim.served(source_url(r.video_url, "video", settings))
                assert served.headers["content-type"] == "video/mp4"
                assert await store.get(r.video_object_key) == served.content
    finally:
        await sim.aclose()
    assert not any(j.video_url for j in jobs[without])


async def test_sigkill_mid_run_loses_no_job_and_redownloads_nothing_indexed(
    noida, s3, xsim, tmp_path
):
    """SIGKILL the media-downloader process mid-run, start it again: every job gets its stored
    result, and no URL whose result was already out is downloaded a second time."""
    settings = media_settings(noida, s3, xsim, media_concurrency=4, kafka_max_poll_records=50)
    t = uuid.uuid4().hex[:8]
    jobs = [
        MediaJob(
            task_id="t-kill",
            post_id=str(i),
            type="image",
            original_url=f"https://pbs.twimg.com/media/{t}-{i}.jpg",
        )
        for i in range(400)
    ]
    results: dict[str, MediaStored] = {}
    table = await TopicTable(
        settings, MEDIA_STORED, lambda _k, r: results.setdefault(r.post_id, r)
    ).start()
    sim = SimMedia(xsim)
    seq = await sim.last_seq()
    await publish_jobs(settings, jobs)
    proc = ServiceProcess("media-kill", ["media-downloader"], settings, tmp_path).start()
    try:
        await until(lambda: len(results) >= 60, 60, f"first results\n{proc.tail()}")
        proc.kill()
        before = {results[k].original_url for k in list(results)}
        assert len(before) < len(jobs), "the run ended before the kill: nothing to prove"
        proc = ServiceProcess("media-kill", ["media-downloader"], settings, tmp_path).start()
        await until(lambda: len(results) == len(jobs), 120, f"every result\n{proc.tail()}")
    finally:
        proc.stop()
        await table.stop()
    try:
        gets = Counter(e["path"] for e in await sim.media_gets(seq, t))
        assert set(gets) == {SimMedia.path_of(j.original_url) for j in jobs}
        twice = {p for p, n in gets.items() if n > 1}
        assert not twice & {SimMedia.path_of(u) for u in before}
        store = open_object_store(settings)
        for r in results.values():
            assert r.status == "stored"
            served = await sim.served(source_url(r.original_url, "image", settings))
            assert await store.get(r.object_key) == served.content
    finally:
        await sim.aclose()
