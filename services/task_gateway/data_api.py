"""Stored-data queries, answered from ClickHouse (statistics: statistics_api.py).

Every query binds its values as server-side parameters, never by formatting SQL. Counts are
exact (uniqExact / FINAL), so they are right before ClickHouse has merged parts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Depends, HTTPException, Path, Query

from libs.query import HANDLE
from libs.settings import Settings
from libs.storage.clickhouse import ClickHouseStore
from libs.storage.post_rows import SELECT_POST, post_from_row

from .limits import check_time
from .task_view import TaskView
from .unavailable import DependencyUnavailable, root_cause

StoreGetter = Callable[[], Awaitable[ClickHouseStore]]

USER_FIELDS = (
    "user_id, user_name, name, avatar, description, created_at, created_at_time, "
    "followers, following, statuses_count, verified, blue_verified, seen_at"
)


def _utc(t):
    if isinstance(t, datetime) and t.tzinfo is None:
        return t.replace(tzinfo=UTC)
    return t


def create_router(settings: Settings, get_store: StoreGetter, view: TaskView, auth) -> APIRouter:
    r = APIRouter(dependencies=[Depends(auth)])
    # Bounds of every parameter (Settings.api_*): beyond them a 422 names the parameter.
    text = settings.api_max_string_length

    async def store() -> ClickHouseStore:
        try:
            return await get_store()
        except Exception as e:
            raise DependencyUnavailable(
                "clickhouse", type(root_cause(e)).__name__, f"{type(e).__name__}: {e}"[:500]
            ) from e

    async def with_media(posts: list[dict]) -> list[dict]:
        """Fill each media's oss_url from media_objects and oss_file_path from report_batches."""
        ch = await store()
        ids = [p["post_id"] for p in posts]
        urls = sorted(
            {
                m["original_url"]
                for p in posts
                for m in (*p["post_images"], *p["original_post_images"])
            }
        )
        media = {}
        if urls:
            media = {
                row[0]: row[1:]
                for row in await ch.query_rows(
                    "SELECT original_url, status, oss_url FROM media_objects FINAL "
                    "WHERE original_url IN {u:Array(String)}",
                    {"u": urls},
                )
            }
        files = {}
        if ids:
            files = {
                row[0]: row[1]
                for row in await ch.query_rows(
                    "SELECT pid, argMax(oss_file_path, created_at) FROM report_batches FINAL "
                    "ARRAY JOIN post_ids AS pid WHERE pid IN {ids:Array(String)} GROUP BY pid",
                    {"ids": ids},
                )
            }
        for p in posts:
            p["oss_file_path"] = files.get(p["post_id"], p.get("oss_file_path"))
            for m in (*p["post_images"], *p["original_post_images"]):
                status, oss = media.get(m["original_url"], (None, None))
                m["oss_url"] = oss if status == "stored" else None
                m["media_status"] = status or "pending"
        return posts

    async def posts_where(
        where: str, params: dict, limit: int, offset: int, order: str = "post_time DESC, post_id"
    ) -> dict:
        ch = await store()
        total = (await ch.query_rows(f"SELECT count() FROM posts FINAL WHERE {where}", params))[0][
            0
        ]
        rows = await ch.query_dicts(
            f"SELECT {SELECT_POST} FROM posts FINAL WHERE {where} ORDER BY {order} "
            "LIMIT {lim:UInt32} OFFSET {off:UInt64}",
            {**params, "lim": limit, "off": offset},
        )
        posts = [post_from_row(x).model_dump(mode="json") for x in rows]
        return {"total": total, "limit": limit, "offset": offset, "items": await with_media(posts)}

    # --- data ------------------------------------------------------------------------------------
    @r.get("/api/v1/data/tweets/search")
    async def search(
        keyword: str | None = Query(None, min_length=1, max_length=text),
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        username: str | None = Query(None, max_length=text, pattern=HANDLE.pattern),
        min_likes: int | None = Query(None, ge=0, le=settings.api_max_number),
        has_media: bool | None = None,
        limit: int = Query(50, ge=1, le=settings.api_max_page_size),
        offset: int = Query(0, ge=0, le=settings.api_max_offset),
    ):
        check_time(settings, "start_time", start_time)
        check_time(settings, "end_time", end_time)
        where, params = ["1"], {}
        if keyword is not None:
            where.append("post_id IN (SELECT post_id FROM task_posts WHERE keyword = {k:String})")
            params["k"] = keyword
        if start_time is not None:
            where.append("post_time >= {st:DateTime64(3, 'UTC')}")
            params["st"] = _utc(start_time)
        if end_time is not None:
            where.append("post_time < {et:DateTime64(3, 'UTC')}")
            params["et"] = _utc(end_time)
        if username is not None:
            where.append("lower(author_handle) = {u:String}")
            params["u"] = "@" + username.lstrip("@").lower()
        if min_likes is not None:
            where.append("like_count >= {ml:UInt64}")
            params["ml"] = min_likes
        if has_media is not None:
            where.append("(post_images != '[]') = {hm:Bool}")
            params["hm"] = has_media
        return await posts_where(" AND ".join(where), params, limit, offset)

    @r.get("/api/v1/data/tweets/{post_id}")
    async def tweet(post_id: str = Path(max_length=text)):
        ch = await store()
        rows = await ch.query_dicts(
            f"SELECT {SELECT_POST} FROM posts FINAL WHERE post_id = {{p:String}}", {"p": post_id}
        )
        if not rows:
            raise HTTPException(404, f"no post {post_id}")
        return (await with_media([post_from_row(rows[0]).model_dump(mode="json")]))[0]

    @r.get("/api/v1/data/users/{username}")
    async def user(username: str = Path(max_length=text, pattern=HANDLE.pattern)):
        ch = await store()
        rows = await ch.query_dicts(
            f"SELECT {USER_FIELDS} FROM users FINAL WHERE lower(user_name) = {{u:String}} "
            "ORDER BY seen_at DESC LIMIT 1",
            {"u": username.lstrip("@").lower()},
        )
        if not rows:
            raise HTTPException(404, f"no user {username}")
        u = rows[0]
        for k in ("created_at_time", "seen_at"):
            u[k] = _utc(u[k])
        return u

    @r.get("/api/v1/data/users/{username}/tweets")
    async def user_tweets(
        username: str = Path(max_length=text, pattern=HANDLE.pattern),
        limit: int = Query(50, ge=1, le=settings.api_max_page_size),
        offset: int = Query(0, ge=0, le=settings.api_max_offset),
    ):
        return await posts_where(
            "lower(author_handle) = {u:String}",
            {"u": "@" + username.lstrip("@").lower()},
            limit,
            offset,
        )

    @r.get("/api/v1/data/analytics/trending")
    async def trending(
        hours: int = Query(24, ge=1, le=24 * settings.api_max_window_days),
        limit: int = Query(20, ge=1, le=settings.api_max_page_size),
    ):
        ch = await store()
        since = datetime.now(UTC) - timedelta(hours=hours)
        rows = await ch.query_rows(
            "SELECT lower(tag) AS hashtag, uniqExact(post_id) AS posts FROM posts FINAL "
            "ARRAY JOIN hashtags AS tag WHERE post_time >= {s:DateTime64(3, 'UTC')} "
            "GROUP BY hashtag ORDER BY posts DESC, hashtag LIMIT {n:UInt32}",
            {"s": since, "n": limit},
        )
        return {
            "hours": hours,
            "since": since,
            "hashtags": [{"hashtag": h, "posts": n} for h, n in rows],
        }

    return r
