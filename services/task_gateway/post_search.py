"""The stored-posts filter: one model for the data API's search, a user's posts, and export.

`post_filter_params(settings)` is the FastAPI dependency that declares every filter as a query
parameter (the design's names: keyword, start_date, end_date, username, min_likes, has_media;
the console's: min_retweets, lang, post_type, task_keyword, task_id; today's start_time /
end_time as aliases) and returns a `PostFilter`; `where_sql(f)` turns it into a ClickHouse
WHERE clause with bound parameters. Search and export share both, so an export holds exactly
the rows the search counted.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Literal

from fastapi import Query
from pydantic import BaseModel

from libs.query import HANDLE
from libs.records.posts import PostType
from libs.settings import Settings

from .limits import FieldError, check_time, utc

SORTS = {
    "newest": "post_time DESC, post_id DESC",
    "oldest": "post_time ASC, post_id ASC",
    "likes": "like_count DESC, post_id DESC",
    "retweets": "retweet_count DESC, post_id DESC",
}
Sort = Literal["newest", "oldest", "likes", "retweets"]
# A word of the full-text index (libs/storage/migrations/008_post_search.sql): ASCII letters and
# digits; anything else separates words.
_WORD = re.compile(r"[A-Za-z0-9]+")


class PostFilter(BaseModel):
    keyword: str | None = None
    task_keyword: str | None = None
    task_id: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    end_inclusive: bool = False
    username: str | None = None
    min_likes: int | None = None
    min_retweets: int | None = None
    has_media: bool | None = None
    lang: str | None = None
    post_type: list[str] = []
    sort: Sort = "newest"

    @property
    def order_by(self) -> str:
        return SORTS[self.sort]


def post_filter_params(settings: Settings) -> Callable[..., Awaitable[PostFilter]]:
    text = settings.api_max_string_length
    num = settings.api_max_number

    async def params(
        keyword: str | None = Query(
            None,
            min_length=1,
            max_length=text,
            description="Words the post's text contains, all of them, whole words, any case "
            "(a #hashtag or @mention in the text matches its word). Text in scripts "
            "without spaces (Chinese, Japanese) matches as a case-insensitive substring.",
        ),
        task_keyword: str | None = Query(
            None,
            min_length=1,
            max_length=text,
            description="Posts collected by a task of this keyword (the billing keyword).",
        ),
        task_id: str | None = Query(
            None, min_length=1, max_length=text, description="Posts collected by this task."
        ),
        start_date: datetime | None = Query(
            None, description="Posted at or after (ISO 8601; naive = UTC)."
        ),
        end_date: datetime | None = Query(
            None, description="Posted at or before (ISO 8601; naive = UTC; inclusive)."
        ),
        start_time: datetime | None = Query(None, description="Alias of start_date."),
        end_time: datetime | None = Query(
            None, description="Posted before (exclusive), the older name of end_date."
        ),
        username: str | None = Query(
            None, max_length=text, pattern=HANDLE.pattern, description="Author's handle."
        ),
        min_likes: int | None = Query(None, ge=0, le=num),
        min_retweets: int | None = Query(None, ge=0, le=num),
        has_media: bool | None = Query(None, description="Has an image, GIF or video."),
        lang: str | None = Query(
            None, pattern=r"^[a-z]{2,3}(-[A-Za-z]{2,4})?$|^und$", description="X's language code"
        ),
        post_type: list[PostType] | None = Query(
            None, description="One or more of text, image, video, retweet, quote (repeat it)."
        ),
        sort: Sort = Query("newest", description="newest, oldest, likes or retweets first."),
    ) -> PostFilter:
        for name, t in (
            ("start_date", start_date),
            ("end_date", end_date),
            ("start_time", start_time),
            ("end_time", end_time),
        ):
            check_time(settings, name, t)
        if post_type is not None and len(post_type) > settings.api_max_list_items:
            raise FieldError("post_type", f"at most {settings.api_max_list_items} values")
        if keyword is not None and not keyword.strip():
            raise FieldError("keyword", "has no word to search for")
        if start_date is not None and start_time is not None:
            raise FieldError("start_date", "given together with start_time: use one of them")
        if end_date is not None and end_time is not None:
            raise FieldError("end_date", "given together with end_time: use one of them")
        start = start_date if start_date is not None else start_time
        end = end_date if end_date is not None else end_time
        if start is not None and end is not None and utc(end) < utc(start):
            raise FieldError("end_date" if end_date else "end_time", "is before the start")
        return PostFilter(
            keyword=keyword.strip() if keyword else None,
            task_keyword=task_keyword,
            task_id=task_id,
            start=utc(start) if start else None,
            end=utc(end) if end else None,
            end_inclusive=end_date is not None,
            username=username,
            min_likes=min_likes,
            min_retweets=min_retweets,
            has_media=has_media,
            lang=lang,
            post_type=list(post_type or []),
            sort=sort,
        )

    return params


def without(
    params: Callable[..., Awaitable[PostFilter]], *names: str
) -> Callable[..., Awaitable[PostFilter]]:
    """The dependency with some filters left out (a route whose path names the user)."""
    sig = inspect.signature(params)

    async def narrower(**kw) -> PostFilter:
        return await params(**kw, **dict.fromkeys(names))

    # FastAPI reads a dependency's parameters from __signature__.
    narrower.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=[p for p in sig.parameters.values() if p.name not in names]
    )
    return narrower


def where_sql(f: PostFilter) -> tuple[str, dict]:
    """The WHERE clause (over `posts`) and its bound parameters."""
    fixed, changing, p = where_parts(f)
    return (" AND ".join(fixed + changing) or "1"), p


def where_parts(f: PostFilter) -> tuple[list[str], list[str], dict]:
    """The filter's conditions over `posts` in two lists, and their bound parameters:
    - on what every stored version of a post says alike (its text, time, author, language,
      type, media, the tasks that collected it): a post matches when any of its rows does;
    - on its counts (min_likes, min_retweets), which a later collection changes: only the
      post's newest row (the one FINAL reads) decides."""
    where: list[str] = []
    changing: list[str] = []
    p: dict[str, object] = {}
    if f.keyword is not None:
        if f.keyword.isascii():
            # Every word through the full-text index: exact, without reading post_content.
            where.append("hasAllTokens(post_content, {kw:String})")
            p["kw"] = " ".join(_WORD.findall(f.keyword)) or f.keyword
            if not _WORD.search(f.keyword):  # only punctuation: match it as written
                where[-1] = "positionCaseInsensitiveUTF8(post_content, {kw:String}) > 0"
        else:
            where.append("positionCaseInsensitiveUTF8(post_content, {kw:String}) > 0")
            p["kw"] = f.keyword
    if f.task_keyword is not None:
        # keyword_month_posts is sorted by keyword: this reads only that keyword's rows.
        where.append(
            "post_id IN (SELECT post_id FROM keyword_month_posts WHERE keyword = {tk:String})"
        )
        p["tk"] = f.task_keyword
    if f.task_id is not None:
        where.append("post_id IN (SELECT post_id FROM task_posts WHERE task_id = {tid:String})")
        p["tid"] = f.task_id
    if f.start is not None:
        where.append("post_time >= {st:DateTime64(3, 'UTC')}")
        p["st"] = f.start
    if f.end is not None:
        where.append(f"post_time {'<=' if f.end_inclusive else '<'} {{et:DateTime64(3, 'UTC')}}")
        p["et"] = f.end
    if f.username is not None:
        where.append("lower(author_handle) = {u:String}")
        p["u"] = "@" + f.username.lstrip("@").lower()
    if f.min_likes is not None:
        changing.append("like_count >= {ml:UInt64}")
        p["ml"] = f.min_likes
    if f.min_retweets is not None:
        changing.append("retweet_count >= {mr:UInt64}")
        p["mr"] = f.min_retweets
    if f.has_media is not None:
        # post_images != '[]', kept as its own column (migration 013)
        where.append("has_media = {hm:Bool}")
        p["hm"] = f.has_media
    if f.lang is not None:
        where.append("lang = {lg:String}")
        p["lg"] = f.lang
    if f.post_type:
        where.append("post_type IN {pt:Array(String)}")
        p["pt"] = f.post_type
    return where, changing, p
