"""The `posts` row's object-store fields: each media's `oss_url` (with its status) and the
batch file's `oss_file_path`, once they are known, so a client reading the table directly sees
what the batch files and the data API show.

They become known after the post is stored: media-downloader's results land in `media_objects`
(the reporter's media sink) and a batch's membership in `report_batches` (the reporter). Then
the post's row is written again with them filled in (`refresh`): a new version of the same
ReplacingMergeTree row, never a second post, and no other table is touched, so every count
(task_posts, keyword_month_posts, uniqExact over posts) stays what it was.

Versions: a row's version is its collection time in ms plus `oss_weight(post)` (libs.storage.post_rows), a number that only
grows as facts arrive (a path known, a media stored or failed). So
  * a filled row wins over the row it fills (same collection, more facts);
  * a newer collection still wins over an older one (a millisecond or more apart; the weight
    is at most a few units), as before;
  * of two writers filling the same row at once, the one that read more facts wins; equal
    weights mean equal facts.
The dedup-counter writes a collected post with the facts of the row it replaces (`carry`), so
a re-collection or a `xget replay` re-derivation keeps them (and, same collection and same
weight, the re-derivation wins as the row inserted last).
"""

from __future__ import annotations

from typing import Any

import orjson

from libs.records.posts import Post, PostMedia

from .clickhouse import ClickHouseStore
from .post_rows import POST_COLUMNS, SELECT_POST, STATUS_WEIGHT, oss_weight, post_from_row, post_row

# Facts read back from a posts row to carry into the next version of it.
CARRIED_COLUMNS = "post_id, post_images, original_post_images, oss_file_path"
_MEDIA_FIELDS = ("oss_url", "media_status", "media_error", "video_oss_url")


def _media_of(p: Post) -> list[PostMedia]:
    return [*p.post_images, *p.original_post_images]


def fill(p: Post, media: dict[str, dict], oss_file_path: str | None) -> Post:
    """A copy of `p` with each media's result (a media_objects row by original_url: status,
    cause, oss_url, width, height, video_oss_url) and the batch file filled in; a media without
    a result is `pending`."""
    out = p.model_copy(deep=True)
    for m in _media_of(out):
        r = media.get(m.original_url)
        if r is None:
            if m.media_status is None:
                m.media_status = "pending"
            continue
        stored = r["status"] == "stored"
        m.media_status = r["status"]
        m.oss_url = r.get("oss_url") if stored else None
        m.media_error = None if stored else r.get("cause")
        m.video_oss_url = r.get("video_oss_url") or None
        m.width = m.width or r.get("width")
        m.height = m.height or r.get("height")
    if oss_file_path:
        out.oss_file_path = oss_file_path
    return out


def carry(p: Post, prev: dict[str, Any] | None) -> Post:
    """`p` (a freshly parsed post) with the object-store facts of the row it replaces (`prev`,
    a row of CARRIED_COLUMNS), matched by media URL; `p` itself when there is nothing."""
    if prev is None:
        return p
    known: dict[str, dict] = {}
    for col in ("post_images", "original_post_images"):
        for m in orjson.loads(prev[col] or b"[]"):
            if m.get("media_status") in STATUS_WEIGHT:
                known[m["original_url"]] = m
    if not known and not prev.get("oss_file_path"):
        return p
    out = p.model_copy(deep=True)
    for m in _media_of(out):
        k = known.get(m.original_url)
        if k is not None:
            for f in _MEDIA_FIELDS:
                setattr(m, f, k.get(f))
    out.oss_file_path = out.oss_file_path or prev.get("oss_file_path")
    return out


async def carried_rows(ch: ClickHouseStore, post_ids: list[str]) -> dict[str, dict]:
    """post_id → the facts of its current row, for the posts that have one."""
    if not post_ids:
        return {}
    # Most posts a counter stores are new, and most others hold no facts: the ids whose rows
    # ever held one are found first (no FINAL: a few parts' key ranges, no merge on read), and
    # only their current rows read with FINAL. 100k posts in 8 parts, 500 ids: ~60 ms against
    # ~200 ms for FINAL over all 500 (chdb, this machine).
    rows = await ch.query_dicts(
        f"SELECT {CARRIED_COLUMNS} FROM posts FINAL WHERE post_id IN ("
        " SELECT post_id FROM posts WHERE post_id IN {ids:Array(String)} AND "
        ' (oss_file_path IS NOT NULL OR position(post_images, \'"media_status":"\') > 0'
        '  OR position(original_post_images, \'"media_status":"\') > 0))',
        {"ids": post_ids},
    )
    return {r["post_id"]: r for r in rows}


async def media_results(ch: ClickHouseStore, urls: list[str]) -> dict[str, dict]:
    """original_url → its media_objects row (stored or failed), for the URLs that have one."""
    if not urls:
        return {}
    rows = await ch.query_dicts(
        "SELECT original_url, status, cause, oss_url, width, height, video_oss_url "
        "FROM media_objects FINAL WHERE original_url IN {u:Array(String)}",
        {"u": sorted(set(urls))},
    )
    return {r["original_url"]: r for r in rows}


def media_urls(posts: list[Post]) -> list[str]:
    return sorted({m.original_url for p in posts for m in _media_of(p)})


async def batch_paths(ch: ClickHouseStore, posts: list[Post]) -> dict[str, str]:
    """post_id → the latest batch file of the post's own task that holds it (a post its task
    has not reported yet has none). post_batches (migration 014) is report_batches'
    membership sorted by post id: the posts' own rows, not every batch of their tasks."""
    if not posts:
        return {}
    rows = await ch.query_rows(
        "SELECT post_id, argMax(oss_file_path, created_at) FROM post_batches FINAL "
        "WHERE post_id IN {ids:Array(String)} AND task_id IN {t:Array(String)} "
        "GROUP BY post_id",
        {"t": sorted({p.task_id for p in posts}), "ids": [p.post_id for p in posts]},
    )
    return {r[0]: r[1] for r in rows}


def _gaining(before: list[Post], after: list[Post]) -> list[Post]:
    """The rows of `after` that hold more facts than `before` (same order), or another batch
    file (the post's newer task reported it)."""
    return [
        a
        for b, a in zip(before, after, strict=True)
        if oss_weight(a) > oss_weight(b) or a.oss_file_path != b.oss_file_path
    ]


async def post_parts(ch: ClickHouseStore, post_ids: list[str]) -> dict[str, tuple]:
    """post_id → the data parts holding its rows: any insert of the post (a new part), or a
    merge, changes them (a re-derivation has the same version, so versions cannot tell)."""
    rows = await ch.query_rows(
        "SELECT post_id, arraySort(groupArray(_part)) FROM posts "
        "WHERE post_id IN {ids:Array(String)} GROUP BY post_id",
        {"ids": post_ids},
    )
    return {r[0]: tuple(r[1]) for r in rows}


async def refresh(
    ch: ClickHouseStore,
    post_ids: list[str],
    media: dict[str, dict] | None = None,
    oss_file_path: str | None = None,
    attempts: int = 3,
) -> int:
    """Write again the rows of `post_ids` whose object-store facts are known now and not yet
    in the row: `media` results (else read from media_objects) and `oss_file_path` (else each
    post's batch file in report_batches). Posts without a row are left alone. Returns the
    number of rows written.

    Another writer may store a post between this read and this write (the dedup-counter: a
    re-collection, a replay's re-derivation). Right before inserting, the data parts holding
    the posts are looked at again; when they changed, the rows are read again and filled anew
    (up to `attempts` times), so the fill does not put back an older derivation of the post."""
    ids = sorted(set(post_ids))
    written = 0
    for _ in range(attempts):
        if not ids:
            break
        read = await post_parts(ch, ids)
        rows = await ch.query_dicts(
            f"SELECT {SELECT_POST} FROM posts FINAL WHERE post_id IN {{ids:Array(String)}}",
            {"ids": ids},
        )
        posts = [post_from_row(r) for r in rows]
        known = media if media is not None else await media_results(ch, media_urls(posts))
        paths = {} if oss_file_path else await batch_paths(ch, posts)
        after = [fill(p, known, oss_file_path or paths.get(p.post_id)) for p in posts]
        gaining = _gaining(posts, after)
        if not gaining:
            break
        now = await post_parts(ch, [p.post_id for p in gaining])
        ready = [p for p in gaining if now.get(p.post_id) == read.get(p.post_id)]
        if ready:
            await ch.insert("posts", [post_row(p) for p in ready], POST_COLUMNS)
            written += len(ready)
        ids = sorted({p.post_id for p in gaining} - {p.post_id for p in ready})
    return written
