"""The `posts` table row of a Post, and back: one mapping for the writer (dedup-counter) and
the readers (reporter batch files, data API)."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import orjson

from libs.records.posts import Post, PostLink, PostMedia

POST_COLUMNS = [
    "platform",
    "post_id",
    "post_url",
    "post_type",
    "author_id",
    "author_avatar",
    "author_name",
    "author_handle",
    "post_time",
    "post_content",
    "post_images",
    "comment_count",
    "retweet_count",
    "like_count",
    "quote_count",
    "view_count",
    "bookmark_count",
    "is_retweet",
    "is_quote",
    "original_post_id",
    "original_author_avatar",
    "original_author_name",
    "original_author_handle",
    "original_post_time",
    "original_post_content",
    "original_post_images",
    "post_links",
    "hashtags",
    "mentions",
    "lang",
    "conversation_id",
    "parent_post_id",
    "parent_comment_id",
    "oss_file_path",
    "keyword",
    "task_id",
    "collected_at",
    "raw_data",
    "version",
]
_JSON_LISTS = {"post_images": PostMedia, "original_post_images": PostMedia, "post_links": PostLink}
# Every column but the bookkeeping version, in table order: what readers select.
POST_FIELDS = [c for c in POST_COLUMNS if c != "version"]
SELECT_POST = ", ".join(POST_FIELDS)


def post_row(p: Post) -> list:
    """The insert row. The large text columns (raw_data, the JSON lists) are handed over as
    UTF-8 bytes: clickhouse-connect writes bytes as they are, while a str column costs it
    about 20 µs per raw_data (its own per-value encode), twice what str.encode() costs."""
    row: list[object] = []
    for c in POST_COLUMNS:
        if c == "version":
            row.append(int(p.collected_at.timestamp() * 1000))
        elif c in _JSON_LISTS:
            row.append(orjson.dumps([m.model_dump(mode="json") for m in getattr(p, c)]))
        elif c == "raw_data":
            row.append(p.raw_data.encode())
        else:
            row.append(getattr(p, c))
    return row


def post_from_row(row: dict[str, Any]) -> Post:
    """A Post from a `SELECT {SELECT_POST} FROM posts` row (as a dict)."""
    data = {}
    for c in POST_FIELDS:
        v = row[c]
        if c in _JSON_LISTS:
            v = orjson.loads(v) if v else []
        elif hasattr(v, "tzinfo") and v is not None and v.tzinfo is None:
            v = v.replace(tzinfo=UTC)
        data[c] = v
    return Post.model_validate(data)
