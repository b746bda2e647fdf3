"""The data API (`/api/v1/data/*`): stored posts and users, trending hashtags, the export of a
filter's posts, and media objects through the gateway.

Every query binds its values as server-side parameters, never by formatting SQL. Posts are
read with FINAL (their newest row), so they are right before ClickHouse has merged parts; a
search's page and total: post_query.
"""

from __future__ import annotations

import asyncio
import mimetypes
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response
from fastapi.responses import StreamingResponse
from starlette.datastructures import URL

from libs.query import HANDLE
from libs.settings import Settings
from libs.storage.clickhouse import ClickHouseStore
from libs.storage.objects import check_key, open_object_store
from libs.storage.post_rows import POST_FIELDS

from . import export, post_query, tweet_view
from .api_models import ERRORS, TWEET_EXAMPLE, TweetOut
from .limits import FieldError
from .paging import paged_responses, request_url, search_headers
from .post_search import PostFilter, post_filter_params, without

USER_FIELDS = (
    "user_id, user_name, name, avatar, description, created_at, created_at_time, "
    "followers, following, statuses_count, verified, blue_verified, seen_at"
)
_JSON_LISTS = {"post_images", "original_post_images", "post_links"}
StoreOf = Callable[[], Awaitable[ClickHouseStore]]


def _post_dict(row: dict) -> dict:
    """A selected posts row (any subset of the columns) as its record reads in JSON: the JSON
    list columns parsed, times in UTC ISO 8601."""
    out = {}
    for k, v in row.items():
        if k in _JSON_LISTS:
            v = orjson.loads(v) if v else []
        elif isinstance(v, datetime):
            v = (v if v.tzinfo else v.replace(tzinfo=UTC)).isoformat().replace("+00:00", "Z")
        elif isinstance(v, bytes):
            v = v.decode()
        out[k] = v
    return out


def _json(body: Any, headers: dict[str, str] | None = None) -> Response:
    """The answer serialised by orjson at once: FastAPI's generic encoder walks every value of
    a page of posts (~40 ms of CPU for 50 posts, measured)."""
    return Response(orjson.dumps(body), media_type="application/json", headers=headers)


def data_routes(r: APIRouter, settings: Settings, store: StoreOf) -> None:
    text = settings.api_max_string_length
    filters = post_filter_params(settings)
    user_filters = without(filters, "username")  # the path names the user
    objects: list[Any] = []  # the object store, opened on the first media request

    async def page_params(
        limit: int = Query(50, ge=1, le=settings.api_max_page_size),
        offset: int = Query(0, ge=0, le=settings.api_max_offset),
    ) -> tuple[int, int]:
        return limit, offset

    async def field_params(
        fields: str | None = Query(
            None,
            max_length=text,
            description="Comma-separated fields of each post to answer (default: all but "
            "raw_data), e.g. tweet_id,text,like_count.",
        ),
        include_raw: bool = Query(False, description="Also answer raw_data (X's JSON)."),
    ) -> tuple[list[str] | None, list[str]]:
        return tweet_view.parse_fields(fields, include_raw)

    async def with_media(posts: list[dict]) -> list[dict]:
        """Fill each media's oss_url / thumbnail_url from media_objects and the post's
        oss_file_path from report_batches."""
        ch = await store()
        ids = [p["post_id"] for p in posts]
        urls = sorted(
            {
                m["original_url"]
                for p in posts
                for m in (*p.get("post_images", ()), *p.get("original_post_images", ()))
            }
        )
        media = {}
        if urls:
            media = {
                row[0]: row[1:]
                for row in await ch.query_rows(
                    "SELECT original_url, status, oss_url, object_key FROM media_objects FINAL "
                    "WHERE original_url IN {u:Array(String)}",
                    {"u": urls},
                )
            }
        files = {}
        if ids and any("oss_file_path" in p for p in posts):
            files = {
                row[0]: row[1]
                for row in await ch.query_rows(
                    # post_batches: report_batches' membership sorted by post id (014)
                    "SELECT post_id, argMax(oss_file_path, created_at) FROM post_batches FINAL "
                    "WHERE post_id IN {ids:Array(String)} GROUP BY post_id",
                    {"ids": ids},
                )
            }
        for p in posts:
            if "oss_file_path" in p:
                p["oss_file_path"] = files.get(p["post_id"], p.get("oss_file_path"))
            for m in (*p.get("post_images", ()), *p.get("original_post_images", ())):
                status, oss, key = media.get(m["original_url"], (None, None, None))
                stored = status == "stored"
                m["oss_url"] = oss if stored else None
                m["thumbnail_url"] = tweet_view.MEDIA_PATH + key if stored and key else None
                m["media_status"] = status or "pending"
        return posts

    async def authors(posts: list[dict]) -> dict[str, dict]:
        ids = sorted({p["author_id"] for p in posts if p.get("author_id")})
        if not ids:
            return {}
        ch = await store()
        rows = await ch.query_dicts(
            "SELECT user_id, verified, blue_verified, followers FROM users FINAL "
            "WHERE user_id IN {ids:Array(String)}",
            {"ids": ids},
        )
        return {u["user_id"]: u for u in rows}

    async def items(rows: list[dict], keys: list[str] | None) -> list[dict]:
        posts = await with_media([_post_dict(x) for x in rows])
        who = await authors(posts) if keys is None or "user" in keys else {}
        return [tweet_view.select(tweet_view.tweet_item(p, who), keys) for p in posts]

    async def page(
        url: URL, f: PostFilter, limit: int, offset: int, fields, exact: bool
    ) -> Response:
        """The page as a bare list (the design's List[TweetResponse]), its total and the
        neighbouring pages in headers (paging.py)."""
        keys, cols = fields
        ch = await store()
        # post_query: exact up to api_exact_total_limit matches (or when asked), else a lower
        # bound, flagged.
        total, is_exact = await post_query.total(ch, f, settings.api_exact_total_limit, exact)
        rows = await post_query.page(ch, f, cols, limit, offset)
        headers = search_headers(
            url, total, is_exact, len(rows), limit, offset, settings.api_max_offset
        )
        return _json(await items(rows, keys), headers)

    async def exact_param(
        exact_total: bool = Query(
            False,
            description="Count `total` exactly however many posts match (slower beyond "
            "api_exact_total_limit matches, where it is otherwise a lower bound; the "
            "X-Total-Count-Exact header says which).",
        ),
    ) -> bool:
        return exact_total

    # Each route returns its Response itself (orjson); the model documents the list.
    listed: dict[str, Any] = {
        "response_model": list[TweetOut],
        "responses": {
            **ERRORS,
            **paged_responses("A page of posts", [TWEET_EXAMPLE], exactness=True),
        },
    }

    @r.get("/api/v1/data/tweets/search", summary="搜索推文 (search stored posts)", **listed)
    async def search(
        f: PostFilter = Depends(filters),
        paging: tuple[int, int] = Depends(page_params),
        fields=Depends(field_params),
        url: URL = Depends(request_url),
        exact: bool = Depends(exact_param),
    ):
        """Stored posts matching every filter given, newest first (or `sort`), a page at a
        time: the body is the page (a JSON list), X-Total-Count the number of matches (exact
        unless X-Total-Count-Exact: false), Link the next and previous pages. Each item is our
        post record plus the design's TweetResponse names (tweet_id, text, user, reply_count,
        urls, media, created_at); raw_data only with include_raw=true or fields=raw_data;
        `fields=` answers only the fields named."""
        return await page(url, f, *paging, fields, exact)

    @r.get("/api/v1/data/tweets/export")
    async def export_posts(
        format: export.Format = Query("csv", description="csv, jsonl or xlsx"),
        f: PostFilter = Depends(filters),
        include_raw: bool = Query(False, description="Also export raw_data (X's JSON)."),
    ):
        """Every post the filters select (the same filters and order as search; as many rows
        as search's exact count), streamed as CSV, JSON Lines or XLSX."""
        cols = export.EXPORT_COLUMNS + (["raw_data"] if include_raw else [])
        # The first chunk is read before the answer starts: ClickHouse down is a 503, not a
        # download that breaks off.
        body = await export.started(export.WRITERS[format](store, f, cols))
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        return StreamingResponse(
            body,
            media_type=export.MEDIA_TYPES[format],
            headers={"Content-Disposition": f'attachment; filename="posts-{stamp}.{format}"'},
        )

    @r.get("/api/v1/data/tweets/{post_id}")
    async def tweet(post_id: str = Path(max_length=text)):
        ch = await store()
        rows = await ch.query_dicts(
            f"SELECT {', '.join(POST_FIELDS)} FROM posts FINAL WHERE post_id = {{p:String}}",
            {"p": post_id},
        )
        if not rows:
            raise HTTPException(404, f"no post {post_id}")
        return _json((await items(rows, None))[0])

    @r.get("/api/v1/data/users/{username}")
    async def user(username: str = Path(max_length=text, pattern=HANDLE.pattern)):
        ch = await store()
        rows = await ch.query_dicts(
            f"SELECT {USER_FIELDS}, protected, location, website, banner_url FROM users FINAL "
            "WHERE lower(user_name) = {u:String} ORDER BY seen_at DESC LIMIT 1",
            {"u": username.lstrip("@").lower()},
        )
        if not rows:
            raise HTTPException(404, f"no user {username}")
        return _json(tweet_view.user_item(rows[0]))

    @r.get("/api/v1/data/users/{username}/tweets", summary="获取用户的推文列表", **listed)
    async def user_tweets(
        username: str = Path(max_length=text, pattern=HANDLE.pattern),
        f: PostFilter = Depends(user_filters),
        paging: tuple[int, int] = Depends(page_params),
        fields=Depends(field_params),
        url: URL = Depends(request_url),
        exact: bool = Depends(exact_param),
    ):
        """The user's stored posts, with every other filter of search, paged as search."""
        f.username = username
        return await page(url, f, *paging, fields, exact)

    @r.get("/api/v1/data/analytics/trending")
    async def trending(
        hours: int = Query(24, ge=1, le=24 * settings.api_max_window_days),
        limit: int = Query(20, ge=1, le=settings.api_max_page_size),
    ):
        """The most used hashtags of the posts of the last `hours` (by post time): the
        design's trending_topics (tweet_count, total_likes, total_retweets per hashtag)."""
        ch = await store()
        since = datetime.now(UTC) - timedelta(hours=hours)
        rows = await ch.query_rows(
            "SELECT lower(tag) AS hashtag, count() AS posts, sum(like_count), "
            "sum(retweet_count) FROM (SELECT post_id, hashtags, like_count, retweet_count "
            "FROM posts FINAL WHERE post_time >= {s:DateTime64(3, 'UTC')} AND notEmpty(hashtags)) "
            "ARRAY JOIN arrayDistinct(arrayMap(t -> lower(t), hashtags)) AS tag "
            "GROUP BY hashtag ORDER BY posts DESC, hashtag LIMIT {n:UInt32}",
            {"s": since, "n": limit},
        )
        return _json(
            {
                "time_range_hours": hours,
                "trending_topics": [
                    {"hashtag": h, "tweet_count": n, "total_likes": lk, "total_retweets": rt}
                    for h, n, lk, rt in rows
                ],
                # the names this endpoint answered before the design's (kept for old clients)
                "hours": hours,
                "since": since,
                "hashtags": [{"hashtag": h, "posts": n} for h, n, _, _ in rows],
            }
        )

    @r.get("/api/v1/data/media/{key:path}")
    async def media(key: str = Path(max_length=text)):
        """A stored image, GIF thumbnail or video cover (or video) from the object store,
        streamed through the gateway with its content type. Only `media/` keys (what
        media-downloader stores) are served."""
        try:
            check_key(key)
        except ValueError as e:
            raise FieldError("key", str(e)) from None
        if not key.startswith("media/"):
            raise HTTPException(404, f"no media {key}")
        if not objects:
            objects.append(await asyncio.to_thread(open_object_store, settings))
        obj = objects[0]
        info = await obj.stat(key)
        if info is None:
            raise HTTPException(404, f"no media {key}")
        ctype = info.content_type
        if ctype in ("", "application/octet-stream"):
            ctype = mimetypes.guess_type(key)[0] or ctype
        it = obj.iter_sync(key)

        async def body():
            while True:
                chunk = await asyncio.to_thread(next, it, None)
                if chunk is None:
                    return
                yield chunk

        return StreamingResponse(
            body(),
            media_type=ctype,
            headers={
                "Content-Length": str(info.size),
                "Cache-Control": "private, max-age=86400",
                "ETag": f'"{info.etag}"',
            },
        )
