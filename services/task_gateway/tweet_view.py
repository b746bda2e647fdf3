"""How a stored post reads in the data API: our standard record plus the design's
TweetResponse names (tweet_id, text, user, reply_count, urls, media, created_at), and the
`fields=` selection that lets a client leave out what it does not read (raw_data above all:
~10 KB of a post's ~13 KB).

A user reads with the design's UserResponse names next to ours (see `user_item`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from libs.storage.post_rows import POST_FIELDS

from .limits import FieldError

# Fields the design's TweetResponse names, derived from our record (see tweet_item).
DESIGN_FIELDS = (
    "tweet_id",
    "text",
    "user",
    "reply_count",
    "urls",
    "media",
    "created_at",
)
ITEM_FIELDS = (*POST_FIELDS, *DESIGN_FIELDS)
# What each design field is made of (to select only the columns a `fields=` needs).
_SOURCES = {
    "tweet_id": ("post_id",),
    "text": ("post_content",),
    "user": ("author_id", "author_handle", "author_name"),
    "reply_count": ("comment_count",),
    "urls": ("post_links",),
    "media": ("post_images",),
    "created_at": ("post_time",),
}
MEDIA_PATH = "/api/v1/data/media/"


def parse_fields(fields: str | None, include_raw: bool) -> tuple[list[str] | None, list[str]]:
    """(the item keys to answer, or None for all; the posts columns to read). Unknown names
    are a 422 naming them. raw_data is read only when asked for."""
    if fields is None:
        cols = [c for c in POST_FIELDS if c != "raw_data" or include_raw]
        keys = None if include_raw else [k for k in ITEM_FIELDS if k != "raw_data"]
        return keys, cols
    keys = [f.strip() for f in fields.split(",") if f.strip()]
    unknown = [k for k in keys if k not in ITEM_FIELDS]
    if unknown or not keys:
        raise FieldError(
            "fields",
            f"unknown field(s) {', '.join(unknown) or '(none given)'}; "
            f"known: {', '.join(ITEM_FIELDS)}",
        )
    if include_raw and "raw_data" not in keys:
        keys.append("raw_data")
    need = {"post_id", "post_images", "original_post_images", "oss_file_path"}
    for k in keys:
        need.update(_SOURCES.get(k, (k,)))
    return keys, [c for c in POST_FIELDS if c in need]


def _utc(v: Any) -> Any:
    if isinstance(v, datetime) and v.tzinfo is None:
        return v.replace(tzinfo=UTC)
    return v


def tweet_item(post: dict, authors: dict[str, dict]) -> dict:
    """Add the design's names to a post record (a dict in JSON form). `authors`: user rows
    by user_id (verified, followers) for the page's authors."""
    out = dict(post)
    if "post_id" in post:
        out["tweet_id"] = post["post_id"]
    if "post_content" in post:
        out["text"] = post["post_content"]
    if "author_handle" in post:
        a = authors.get(post.get("author_id") or "", {})
        out["user"] = {
            "user_id": post.get("author_id") or "",
            "username": post["author_handle"].lstrip("@"),
            "display_name": post.get("author_name") or post["author_handle"].lstrip("@"),
            "verified": bool(a.get("verified") or a.get("blue_verified")),
            "followers_count": int(a.get("followers") or 0),
            "profile_image_url": post.get("author_avatar"),
        }
    if "comment_count" in post:
        out["reply_count"] = post["comment_count"]
    if "post_links" in post:
        out["urls"] = [lk.get("expanded_url") or lk["url"] for lk in post["post_links"]]
    if "post_images" in post:
        out["media"] = [
            {
                "type": m["type"],
                "url": m.get("oss_url") or m["original_url"],
                "width": m.get("width"),
                "height": m.get("height"),
                "thumbnail_url": m.get("thumbnail_url"),
            }
            for m in post["post_images"]
        ]
    if "post_time" in post:
        out["created_at"] = post["post_time"]
    return out


def select(item: dict, keys: list[str] | None) -> dict:
    return item if keys is None else {k: item[k] for k in keys if k in item}


def user_item(u: dict) -> dict:
    """A `users` row with the design's UserResponse names added. `created_at` is the
    account's creation time (ISO 8601), as the design types it; X's own text of it stays in
    `created_at_text`."""
    out = {k: _utc(v) for k, v in u.items()}
    out["created_at_text"] = u.get("created_at")
    out["created_at"] = _utc(u.get("created_at_time"))
    out.update(
        username=u["user_name"],
        display_name=u.get("name") or u["user_name"],
        verified=bool(u.get("verified") or u.get("blue_verified")),
        followers_count=u.get("followers", 0),
        following_count=u.get("following", 0),
        tweet_count=u.get("statuses_count", 0),
        profile_image_url=u.get("avatar"),
        collected_at=_utc(u.get("seen_at")),
    )
    return out
