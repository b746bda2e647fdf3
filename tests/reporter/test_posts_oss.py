"""`posts` rows carry the media oss_urls and the batch file once known, against the real
ClickHouse engine (chdb), through the services' own handlers: the dedup-counter stores the
posts, the reporter's media sink stores media results, the reporter writes a batch. The rows
then show what the batch file shows, one row per post, and no count moves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from libs.kafka import Incoming
from libs.parsing import parse_timeline_page
from libs.records.media import MediaStored
from libs.records.posts import Post
from libs.storage import post_oss
from libs.storage.clickhouse import ClickHouseStore
from libs.storage.migrate import apply_migrations
from libs.storage.post_rows import SELECT_POST, post_from_row
from libs.topics import POSTS_TARGET_HEADER
from services.dedup_counter.handler import DedupCounter
from services.reporter.media_sink import MediaSink
from services.reporter.store import Batch, ReportStore, batch_file, batch_path

# A retweet whose original carries several media (a video cover and photos).
FIXTURE = (
    Path(__file__).resolve().parents[1] / "fixtures" / "x" / "retweet_without_own_view_count.json"
)
T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


@pytest.fixture(params=["chdb", "http"])
def ch(request, chdb_path):
    """Embedded chdb, and ClickHouse over HTTP (infra.chdb_http) as the drills run it."""
    dsn = (
        f"chdb://{chdb_path}"
        if request.param == "chdb"
        else request.getfixturevalue("clickhouse_http_dsn")
    )
    store = ClickHouseStore(dsn)
    apply_migrations(store)
    try:
        yield store
    finally:
        store.close()


def collected(task_id: str, at: datetime, content_suffix: str = "") -> list[Post]:
    """The fixture page's posts as the parser derives them for `task_id` at `at`."""
    posts = parse_timeline_page(
        FIXTURE.read_bytes(), task_id=task_id, keyword=f"kw-{task_id}", collected_at=at
    ).posts[:1]
    for p in posts:
        p.post_content += content_suffix
    return posts


_offsets = iter(range(1_000_000))


def incoming(records) -> list[Incoming]:
    return [
        Incoming("posts", 0, next(_offsets), r.task_id, r, {POSTS_TARGET_HEADER: b"0"})
        for r in records
    ]


def stored(p: Post, url: str, status: str = "stored") -> MediaStored:
    ok = status == "stored"
    return MediaStored(
        task_id=p.task_id,
        post_id=p.post_id,
        original_url=url,
        type="image" if "/media/" in url else "video_cover",
        of_original=True,
        status=status,
        cause=None if ok else "http 404",
        object_key=f"media/ab/{abs(hash(url))}.jpg" if ok else None,
        oss_url=f"http://s3.local/b/media/ab/{abs(hash(url))}.jpg" if ok else None,
        content_type="image/jpeg" if ok else None,
        width=1200 if ok else None,
        height=675 if ok else None,
    )


def by_url(p: Post) -> dict:
    return {m.original_url: m for m in (*p.post_images, *p.original_post_images)}


async def rows(ch: ClickHouseStore) -> dict[str, Post]:
    got = await ch.query_dicts(f"SELECT {SELECT_POST} FROM posts FINAL")
    return {r["post_id"]: post_from_row(r) for r in got}


async def counts(ch: ClickHouseStore) -> tuple:
    return (
        await ch.query_rows(
            "SELECT (SELECT count() FROM posts FINAL), "
            "(SELECT uniqExact(post_id) FROM posts), "
            "(SELECT count() FROM task_posts FINAL), "
            "(SELECT uniqExact(keyword, month, post_id) FROM keyword_month_posts)"
        )
    )[0]


async def report(ch: ClickHouseStore, task_id: str, post_ids: list[str], no: int) -> bytes:
    """What the reporter does for one batch: membership, file contents, posts rows."""
    store = ReportStore(ch)
    b = Batch(task_id, no, f"kw-{task_id}", post_ids, batch_path(task_id, no, T0), "partial", 1)
    await store.save_batch(b)
    posts = await store.posts(post_ids)
    media = await store.media_results(post_oss.media_urls(posts))
    body = batch_file(posts, media, task_id, f"kw-{task_id}", b.oss_file_path)
    await store.save_posts_oss(b, media)
    return body


def media_view(images: list[dict]) -> list[tuple]:
    return [
        (m["original_url"], m["oss_url"], m["media_status"], m.get("media_error")) for m in images
    ]


async def test_posts_rows_carry_oss_urls_and_batch_file_once_known(ch):
    counter, sink = DedupCounter(ch), MediaSink(ch)
    (post,) = collected("task-a", T0)
    urls = list(by_url(post))
    assert len(urls) >= 2, "the fixture's post carries several media"
    await counter.handle(incoming([post]))
    before = await counts(ch)
    assert before == (1, 1, 1, 1)
    (row,) = (await rows(ch)).values()
    assert row.oss_file_path is None and all(m.oss_url is None for m in by_url(row).values())

    # media results land: the row gets them (one stored, one failed); no count moves
    await sink.handle(
        [
            Incoming("media-stored", 0, 1, None, stored(post, urls[0])),
            Incoming("media-stored", 0, 2, None, stored(post, urls[1], "failed")),
        ]
    )
    row = (await rows(ch))[post.post_id]
    m0, m1 = by_url(row)[urls[0]], by_url(row)[urls[1]]
    assert m0.media_status == "stored" and m0.oss_url and m0.width == by_url(post)[urls[0]].width
    assert m1.media_status == "failed" and m1.oss_url is None and m1.media_error == "http 404"
    assert await counts(ch) == before

    # the batch: the row shows exactly what the batch file shows
    body = await report(ch, "task-a", [post.post_id], 1)
    (rec,) = orjson.loads(body)
    row = (await rows(ch))[post.post_id]
    assert row.oss_file_path == rec["oss_file_path"] == batch_path("task-a", 1, T0)
    dumped = row.model_dump(mode="json")
    assert media_view(dumped["original_post_images"]) == media_view(rec["original_post_images"])
    assert media_view(dumped["post_images"]) == media_view(rec["post_images"])
    assert row.task_id == "task-a" and row.keyword == "kw-task-a"  # the collection's own
    assert await counts(ch) == before

    # a replay re-derives the post (same collection time): the new derivation wins and keeps
    # what the row knew; the dedup-counter counts nothing twice
    await counter.handle(incoming(collected("task-a", T0, " (re-derived)")))
    row = (await rows(ch))[post.post_id]
    assert row.post_content.endswith(" (re-derived)")
    assert row.oss_file_path == batch_path("task-a", 1, T0)
    assert by_url(row)[urls[0]].oss_url == m0.oss_url
    assert await counts(ch) == before

    # another task collects it later: its row keeps the facts until its own batch names its file
    later = T0 + timedelta(hours=1)
    await counter.handle(incoming(collected("task-b", later)))
    row = (await rows(ch))[post.post_id]
    assert row.task_id == "task-b" and by_url(row)[urls[0]].oss_url == m0.oss_url
    assert row.oss_file_path == batch_path("task-a", 1, T0)
    await report(ch, "task-b", [post.post_id], 1)
    row = (await rows(ch))[post.post_id]
    assert row.task_id == "task-b" and row.oss_file_path == batch_path("task-b", 1, T0)
    # a media result that lands after the batch still reaches the row
    await sink.handle([Incoming("media-stored", 0, 3, None, stored(post, urls[1]))])
    row = (await rows(ch))[post.post_id]
    assert by_url(row)[urls[1]].media_status == "stored" and by_url(row)[urls[1]].oss_url
    assert row.oss_file_path == batch_path("task-b", 1, T0)
    after = await counts(ch)
    assert after[0] == after[1] == 1  # one post, one row
    assert after[2:] == (2, 2)  # task_posts and billing: one per task, as without any of this


async def test_a_media_result_before_the_post_is_stored_reaches_it_through_its_batch(ch):
    counter, sink = DedupCounter(ch), MediaSink(ch)
    (post,) = collected("task-c", T0)
    url = next(iter(by_url(post)))
    await sink.handle([Incoming("media-stored", 0, 1, None, stored(post, url))])
    assert await rows(ch) == {}  # no row to fill yet; nothing invented
    await counter.handle(incoming([post]))
    await report(ch, "task-c", [post.post_id], 1)
    row = (await rows(ch))[post.post_id]
    assert by_url(row)[url].media_status == "stored"
    assert row.oss_file_path == batch_path("task-c", 1, T0)


async def test_a_fill_racing_a_replay_does_not_put_back_the_older_derivation(ch, monkeypatch):
    """The dedup-counter stores a re-derivation between the fill's read and its write: the
    fill reads again and fills the new derivation."""
    counter, sink = DedupCounter(ch), MediaSink(ch)
    (post,) = collected("task-d", T0)
    url = next(iter(by_url(post)))
    await counter.handle(incoming([post]))
    real = post_oss.post_parts
    calls, raced = [], []

    async def replay_lands_first(store, ids):
        calls.append(ids)
        if len(calls) == 2:  # the look right before the insert: the row was read already
            raced.append(True)
            await counter.handle(incoming(collected("task-d", T0, " (re-derived)")))
        return await real(store, ids)

    monkeypatch.setattr(post_oss, "post_parts", replay_lands_first)
    await sink.handle([Incoming("media-stored", 0, 1, None, stored(post, url))])
    assert raced and len(calls) == 4  # read, raced, read again, written
    row = (await rows(ch))[post.post_id]
    assert row.post_content.endswith(" (re-derived)")
    assert by_url(row)[url].media_status == "stored" and by_url(row)[url].oss_url


async def test_lookups_take_a_counters_batch_of_ids(ch):
    """A dedup-counter batch holds hundreds of posts and a media batch as many: the lookups
    take them in one query (over HTTP, clickhouse-connect then sends them as a form)."""
    counter = DedupCounter(ch)
    (post,) = collected("task-e", T0)
    await counter.handle(incoming([post]))
    await report(ch, "task-e", [post.post_id], 1)
    ids = [post.post_id, *(str(10**18 + i) for i in range(600))]
    assert list(await post_oss.carried_rows(ch, ids)) == [post.post_id]
    assert await post_oss.refresh(ch, ids) == 0  # nothing new to fill
    assert (
        await post_oss.media_results(ch, [f"https://pbs.twimg.com/m/{i}.jpg" for i in range(600)])
        == {}
    )
