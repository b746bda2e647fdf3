"""media-downloader on the real broker (noida-db), real S3 (moto_server) and the X simulator."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from libs.parsing import parse_timeline_page
from libs.records.posts import MediaJob
from services.media_downloader.batch_index import offsets_of
from services.media_downloader.fetch import source_url

from .helpers import (
    MediaRun,
    SimMedia,
    committed_offsets,
    indexed,
    media_settings,
    publish_jobs,
    rewind_group,
)

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "x"


@pytest.fixture
async def sim(xsim):
    s = SimMedia(xsim)
    try:
        yield s
    finally:
        await s.client.delete("/_sim/media-faults")
        await s.aclose()


def job(
    url: str,
    task: str = "t-media",
    post: str = "1",
    type_: str = "image",
    video_url: str | None = None,
) -> MediaJob:
    return MediaJob(task_id=task, post_id=post, original_url=url, type=type_, video_url=video_url)


def token() -> str:
    return uuid.uuid4().hex[:10]


async def test_every_job_of_a_page_is_stored_with_the_served_bytes(noida, s3, xsim, sim):
    """All media jobs the parser makes of a real X page (photos, video covers, GIF thumbnails,
    quoted originals' media, and the videos themselves) end stored, byte for byte what the
    simulator served, with its Content-Type and the image header's size."""
    page = parse_timeline_page(
        (FIXTURES / "raw_search.json").read_bytes(),
        task_id="t-page",
        keyword="k",
        collected_at=datetime.now(UTC),
    )
    jobs = page.media_jobs
    assert {j.type for j in jobs} >= {"image", "video_cover"} and any(j.of_original for j in jobs)
    settings = media_settings(noida, s3, xsim)
    async with MediaRun(settings) as run:
        await publish_jobs(settings, jobs)
        results = await run.wait_results(len(jobs))
    assert len(results) == len(jobs)
    assert {(r.post_id, r.original_url) for r in results} == {
        (j.post_id, j.original_url) for j in jobs
    }
    store = run.store.inner
    for r in results:
        assert r.status == "stored", (r.original_url, r.cause)
        served = await sim.served(source_url(r.original_url, "image", settings))
        data = await store.get(r.object_key)
        assert data == served.content
        info = await store.stat(r.object_key)
        assert info.content_type == r.content_type == served.headers["content-type"]
        assert (
            r.bytes == len(data)
            and r.sha256
            and r.object_key
            == (
                f"media/{r.sha256[:2]}/{r.sha256}.{'png' if r.content_type == 'image/png' else 'jpg'}"
            )
        )
        assert r.oss_url == store.url(r.object_key)
        assert (r.width, r.height) == ((1, 1) if r.content_type == "image/png" else (8, 8))
        if r.type != "image":  # this page's jobs come straight from the parser: video asked
            assert r.video_status == "stored", r.video_cause
            video = await sim.served(source_url(r.video_url, "video", settings))
            assert await store.get(r.video_object_key) == video.content
            assert (await store.stat(r.video_object_key)).content_type == "video/mp4"
            assert r.video_bytes == len(video.content)


async def test_identical_bytes_are_stored_once(noida, s3, xsim, sim):
    t = token()
    a = f"https://pbs.twimg.com/media/{t}-a.jpg"
    b = f"https://pbs.twimg.com/media/{t}-b.jpg?name=orig"
    await sim.fault(path_contains=f"{t}-b", kind="alias", as_path=f"/media/{t}-a.jpg")
    settings = media_settings(noida, s3, xsim)
    async with MediaRun(settings) as run:
        await publish_jobs(settings, [job(a, post="1"), job(b, post="2")])
        results = await run.wait_results(2)
    assert [r.status for r in results] == ["stored", "stored"]
    assert results[0].object_key == results[1].object_key
    assert await run.store.inner.list("media/") == [results[0].object_key]
    assert [k for k in run.store.writes if k.startswith("media/")] == [results[0].object_key]
    # Both URLs are indexed, naming the one object.
    assert await indexed(run.store.inner) == {a: results[0].object_key, b: results[0].object_key}


async def test_redelivered_jobs_are_neither_downloaded_nor_uploaded_again(noida, s3, xsim, sim):
    t = token()
    urls = [f"https://pbs.twimg.com/media/{t}-{i}.jpg" for i in range(5)]
    jobs = [job(u, post=str(i)) for i, u in enumerate(urls)]
    jobs.append(job(urls[0], post="99"))  # another post with the same image
    settings = media_settings(noida, s3, xsim)
    seq = await sim.last_seq()
    async with MediaRun(settings) as run:
        await publish_jobs(settings, jobs)
        first = list(await run.wait_results(len(jobs)))
        assert len(await sim.media_gets(seq, t)) == 5  # one download per URL
        writes = list(run.store.writes)
        objects = [w for w in writes if w.startswith("media/")]
        assert sorted(objects) == sorted({r.object_key for r in first}) and len(objects) == 5
        # The rest: batch index objects (one per input partition of a batch), naming every URL.
        assert all(offsets_of(w) for w in writes if w not in objects)
        assert len(writes) - len(objects) <= len({(r.original_url) for r in first})
        assert await indexed(run.store.inner) == {r.original_url: r.object_key for r in first}

        # Everything is delivered again, as after a crash before the commit.
        await run.stop()
        await rewind_group(settings)
        run.start()
        again = (await run.wait_results(2 * len(jobs)))[len(jobs) :]
    assert [r.model_dump() for r in again] == [r.model_dump() for r in first]
    assert len(await sim.media_gets(seq, t)) == 5  # no second download
    assert run.store.writes == writes  # no second upload
    assert all(r.status == "stored" for r in first)


async def test_permanent_failures_are_recorded_with_their_cause(noida, s3, xsim, sim):
    t = token()
    await sim.fault(path_contains=f"{t}-gone", kind="404")
    await sim.fault(path_contains=f"{t}-huge", kind="huge", size_mb=60)
    await sim.fault(path_contains=f"{t}-stream", kind="huge", size_mb=3, chunked=True)
    await sim.fault(path_contains=f"{t}-html", kind="html")
    await sim.fault(path_contains=f"{t}-bigvid", kind="huge", size_mb=2)
    base = f"https://pbs.twimg.com/media/{t}"
    video = f"https://video.twimg.com/ext_tw_video/1/pu/vid/avc1/720x720/{t}"
    jobs = [
        job(f"{base}-gone.jpg", post="1"),
        job(f"{base}-huge.jpg", post="2"),
        job(f"{base}-stream.jpg", post="3"),
        job(f"{base}-html.jpg", post="4"),
        job(f"{base}-fine.jpg", post="5"),
        job(
            f"https://pbs.twimg.com/ext_tw_video_thumb/1/pu/img/{t}-cover.jpg",
            post="6",
            type_="video_cover",
            video_url=f"{video}-bigvid.mp4",
        ),
        job(
            f"https://pbs.twimg.com/ext_tw_video_thumb/1/pu/img/{t}-cover2.jpg",
            post="7",
            type_="video_cover",
            video_url=f"{video}-page.html",
        ),
    ]
    await sim.fault(path_contains=f"{t}-page.html", kind="html")
    settings = media_settings(
        noida, s3, xsim, media_max_image_bytes=2 * 1024 * 1024, media_max_video_bytes=1024 * 1024
    )
    seq = await sim.last_seq()
    async with MediaRun(settings) as run:
        await publish_jobs(settings, jobs)
        results = {r.post_id: r for r in await run.wait_results(len(jobs))}
    cap = 2 * 1024 * 1024
    assert (results["1"].status, results["1"].cause) == ("failed", "http 404")
    assert (results["2"].status, results["2"].cause) == (
        "failed",
        f"too large: {60 * 1024 * 1024} > {cap} bytes",
    )
    assert results["3"].status == "failed"
    assert results["3"].cause.startswith(f"too large: more than {cap} bytes")
    assert (results["4"].status, results["4"].cause) == ("failed", "not an image: text/html")
    assert results["5"].status == "stored"  # the others never block it
    for r in (results["1"], results["2"], results["3"], results["4"]):
        assert r.object_key is None and r.oss_url is None
    # A video over its own cap, or not a video, fails alone: the cover is stored.
    assert results["6"].status == results["7"].status == "stored"
    assert (results["6"].video_status, results["6"].video_cause) == (
        "failed",
        f"too large: {2 * 1024 * 1024} > {1024 * 1024} bytes",
    )
    assert (results["7"].video_status, results["7"].video_cause) == (
        "failed",
        "not a video: text/html",
    )
    # Permanent failures are not retried: one request each.
    gets = Counter(e["path"].rsplit("/", 1)[-1] for e in await sim.media_gets(seq, t))
    assert all(n == 1 for n in gets.values()), gets
    assert len(await run.store.inner.list("media/")) == 3


async def test_transient_errors_are_retried_then_stored(noida, s3, xsim, sim):
    t = token()
    await sim.fault(path_contains=f"{t}-flaky", kind="500", count=2)
    await sim.fault(path_contains=f"{t}-busy", kind="429", count=1, retry_after=0)
    await sim.fault(path_contains=f"{t}-down", kind="500")  # never recovers
    base = f"https://pbs.twimg.com/media/{t}"
    settings = media_settings(noida, s3, xsim, media_attempts=4)
    seq = await sim.last_seq()
    async with MediaRun(settings) as run:
        await publish_jobs(
            settings,
            [
                job(f"{base}-flaky.jpg", post="1"),
                job(f"{base}-busy.jpg", post="2"),
                job(f"{base}-down.jpg", post="3"),
            ],
        )
        results = {r.post_id: r for r in await run.wait_results(3)}
    statuses = {}
    for e in await sim.media_gets(seq, t):
        statuses.setdefault(e["path"].rsplit("-", 1)[-1], []).append(e["status"])
    assert statuses == {"flaky.jpg": [500, 500, 200], "busy.jpg": [429, 200], "down.jpg": [500] * 4}
    assert results["1"].status == results["2"].status == "stored"
    for r in (results["1"], results["2"]):
        served = await sim.served(source_url(r.original_url, "image", settings))
        assert await run.store.inner.get(r.object_key) == served.content
    assert (results["3"].status, results["3"].cause) == ("failed", "http 500 after 4 attempts")


async def test_media_reused_by_later_posts_is_not_fetched_again_and_old_index_is_deleted(
    noida, s3, xsim, sim
):
    """Later jobs reusing a stored URL (other posts) cost no download; the batch index keeps
    only what is not committed yet: cleanup (here after every batch) deletes index objects
    wholly below the committed offsets, and a restart deletes the rest."""
    t = token()
    base = f"https://pbs.twimg.com/media/{t}"
    settings = media_settings(noida, s3, xsim, media_index_gc_s=0)
    wave1 = [job(f"{base}-{i}.jpg", post=str(i)) for i in range(12)]
    wave2 = [job(j.original_url, post=f"again-{j.post_id}") for j in wave1] + [
        job(f"{base}-new-{i}.jpg", post=f"new-{i}") for i in range(12)
    ]
    seq = await sim.last_seq()
    async with MediaRun(settings) as run:
        store = run.store.inner
        await publish_jobs(settings, wave1)
        first = {r.original_url: r for r in await run.wait_results(len(wave1))}
        wave1_index = set(await store.list("media-index/"))  # its last batches' objects
        assert wave1_index

        await publish_jobs(settings, wave2)
        results = (await run.wait_results(len(wave1) + len(wave2)))[len(wave1) :]
        # Wave 1 was committed before wave 2's last batch ran its cleanup.
        assert not wave1_index & set(await store.list("media-index/"))
    again = [r for r in results if r.post_id.startswith("again-")]
    assert len(again) == 12 and all(
        (r.status, r.object_key) == ("stored", first[r.original_url].object_key) for r in again
    )
    gets = Counter(e["path"] for e in await sim.media_gets(seq, t))
    assert len(gets) == 24 and set(gets.values()) == {1}  # each URL downloaded once

    # Restarted with everything committed: what is left is below the committed offsets.
    committed = await committed_offsets(settings)
    left = await store.list("media-index/")
    assert all(offsets_of(k)[1] < committed[int(k.split("/")[-2])] for k in left)
    async with MediaRun(settings):
        deadline = time.monotonic() + 30
        while await store.list("media-index/"):
            assert time.monotonic() < deadline, "index objects below the commit not deleted"
            await asyncio.sleep(0.2)


async def test_a_retry_after_http_date_is_honoured(noida, s3, xsim, sim):
    """A CDN answering 429 with `Retry-After: <HTTP date>` (the form many CDNs send) is asked
    again only once that time has come, not after our own much shorter backoff."""
    t = token()
    await sim.fault(
        path_contains=f"{t}-later", kind="429", count=1, retry_after=3, retry_after_date=True
    )
    settings = media_settings(noida, s3, xsim, media_attempts=3, media_backoff_s=0.05)
    seq = await sim.last_seq()
    async with MediaRun(settings) as run:
        await publish_jobs(settings, [job(f"https://pbs.twimg.com/media/{t}-later.jpg")])
        (result,) = await run.wait_results(1)
    gets = await sim.media_gets(seq, t)
    assert [e["status"] for e in gets] == [429, 200]
    # The date has one-second resolution: the retry comes at least ~2 s after the 429.
    assert gets[1]["received"] - gets[0]["ts"] >= 2.0, gets
    assert result.status == "stored"
