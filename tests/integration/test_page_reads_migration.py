"""Migration 014 on a store that already holds posts and report batches: post_cards (a page's
columns as one JSON card, in small granules) and post_batches (batch membership by post id) start out holding
exactly what was stored before, every later write reaches them in the same insert, and the
data API's readers (a page of posts, a post's batch file) answer from them what they answered
from posts and report_batches."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta

import orjson

from libs.records.posts import Post
from libs.storage.clickhouse import ClickHouseStore
from libs.storage.migrate import MIGRATIONS_DIR, apply_migrations
from libs.storage.post_oss import batch_paths
from libs.storage.post_rows import POST_COLUMNS, post_row
from services.reporter.store import BATCH_COLUMNS, Batch
from services.task_gateway import post_cards, post_query, tweet_view
from services.task_gateway.post_search import PostFilter

T0 = datetime(2026, 11, 2, tzinfo=UTC)
PAGE_COLUMNS = tweet_view.parse_fields(None, False)[1]


def _post(i: int, likes: int, collected: datetime) -> Post:
    pid = str(1_860_000_000_000_000_000 + i * 1000)
    return Post(
        post_id=pid,
        post_url=f"https://x.com/carol/status/{pid}",
        post_type="text",
        author_handle="@Carol",
        post_time=T0 + timedelta(minutes=i),
        # what JSON must escape, and text beyond ASCII: the card gives it back unchanged
        post_content=f'post number {i}: "quoted" \\ a/b\t🚀 中文\nnext line',
        hashtags=["中文", 'a"b'],
        like_count=likes,
        keyword="kw",
        task_id="task-1",
        collected_at=collected,
        raw_data=orjson.dumps({"rest_id": pid}).decode(),
    )


def _batch(no: int, ids: list[str], path: str, at: datetime, task: str = "task-1") -> list:
    return Batch(task, no, "kw", ids, path, "partial", len(ids), created_at=at).row()


async def _cards(store: ClickHouseStore) -> list[dict]:
    rows = await store.query_rows("SELECT card FROM post_cards FINAL ORDER BY post_id")
    return [post_cards.from_card(r[0], PAGE_COLUMNS) for r in rows]


async def _newest(store: ClickHouseStore) -> list[dict]:
    cols = ", ".join(PAGE_COLUMNS)
    return await store.query_dicts(f"SELECT {cols} FROM posts FINAL ORDER BY post_id")


async def test_014_copies_what_was_stored_and_follows_every_write(chdb_path, tmp_path):
    before = tmp_path / "migrations-before-014"
    before.mkdir()
    for f in MIGRATIONS_DIR.glob("*.sql"):
        if int(f.name[:3]) < 14:
            shutil.copy(f, before / f.name)
    store = ClickHouseStore(f"chdb://{chdb_path}")
    try:
        apply_migrations(store, before)
        first = [_post(i, 10, T0 + timedelta(hours=1)) for i in range(5)]
        # post 0 collected again later: 900 likes now (two rows until parts merge)
        again = first[0].model_copy(
            update={"like_count": 900, "collected_at": T0 + timedelta(hours=2)}
        )
        await store.insert("posts", [post_row(p) for p in first], POST_COLUMNS)
        await store.insert("posts", [post_row(again)], POST_COLUMNS)
        ids = [p.post_id for p in first]
        await store.insert(
            "report_batches", [_batch(1, ids[:3], "reports/b1.json", T0)], BATCH_COLUMNS
        )
        await store.insert(  # a later batch holding post 0 again: its newest file
            "report_batches",
            [_batch(2, ids[:1], "reports/b2.json", T0 + timedelta(hours=3))],
            BATCH_COLUMNS,
        )

        assert apply_migrations(store)[0] == "014_page_reads"

        assert await _cards(store) == await _newest(store)
        assert len(await _cards(store)) == 5
        assert await batch_paths(store, first) == {
            ids[0]: "reports/b2.json",
            ids[1]: "reports/b1.json",
            ids[2]: "reports/b1.json",
        }

        # Later writes: a new post, a re-collection, a new batch.
        late = _post(9, 3, T0 + timedelta(hours=4))
        third = first[1].model_copy(
            update={"like_count": 77, "collected_at": T0 + timedelta(hours=4)}
        )
        await store.insert("posts", [post_row(late), post_row(third)], POST_COLUMNS)
        await store.insert(
            "report_batches",
            [_batch(3, [late.post_id, ids[4]], "reports/b3.json", T0 + timedelta(hours=5))],
            BATCH_COLUMNS,
        )
        assert await _cards(store) == await _newest(store)
        assert len(await _cards(store)) == 6
        paths = await batch_paths(store, [*first, late])
        assert paths[late.post_id] == paths[ids[4]] == "reports/b3.json"
        assert paths[ids[0]] == "reports/b2.json" and ids[3] not in paths

        # A page reads post_cards (newest rows); raw_data, asked for, comes from posts.
        carol = PostFilter(username="carol")
        page = await post_query.page(store, carol, PAGE_COLUMNS, 50, 0)
        assert [(p["post_id"], p["like_count"]) for p in page] == [
            (late.post_id, 3),
            *[(p.post_id, {0: 900, 1: 77}.get(i, 10)) for i, p in reversed(list(enumerate(first)))],
        ]
        raw = await post_query.page(store, carol, ["post_id", "raw_data"], 2, 0)
        assert raw == [
            {"post_id": late.post_id, "raw_data": late.raw_data},
            {"post_id": ids[4], "raw_data": first[4].raw_data},
        ]
        liked = await post_query.page(
            store, PostFilter(username="carol", min_likes=50), ["post_id"], 50, 0
        )
        assert [p["post_id"] for p in liked] == [ids[1], ids[0]]
    finally:
        store.close()
