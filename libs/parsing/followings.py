"""Followings pages (X's Following GraphQL or a twitterapi.io-style REST API) -> twitter_kol_all rows.

The client's field mapping, the same for both sources:
id -> id, name -> name, screen_name -> user_name, profile_image_url_https -> avatar,
description -> description, created_at -> created_at (text) and created_at_time,
followers_count -> followers, following_count -> following, statuses_count -> statuses_count.
X pages go through the shared X parser (its flattening covers X's 2025+ user layout, where
following_count is friends_count). REST pages come in the snake_case shape the mapping names
or the camelCase shape of the API's published example (userName, profilePicture, followers,
following, statusesCount, createdAt); each field is read from whichever is present.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from libs.parsing.x import PageParseError, parse_users_page, parse_x_time


@dataclass(frozen=True)
class FollowedUser:
    id: str
    name: str
    user_name: str
    avatar: str
    description: str
    created_at: str
    created_at_time: datetime | None
    followers: int
    following: int
    statuses_count: int


@dataclass
class FollowingsPage:
    users: list[FollowedUser]
    cursor_out: str | None
    final: bool


def _first(obj: dict, *names: str) -> Any:
    for n in names:
        v = obj.get(n)
        if v is not None:
            return v
    return None


def _count(obj: dict, *names: str) -> int:
    v = _first(obj, *names)
    try:
        return max(0, int(v))
    except (TypeError, ValueError):
        return 0


def api_user(u: dict) -> FollowedUser | None:
    uid = _first(u, "id_str", "id")
    user_name = _first(u, "screen_name", "userName")
    if uid in (None, "") or not user_name:
        return None
    created = _first(u, "created_at", "createdAt") or ""
    return FollowedUser(
        id=str(uid),
        name=_first(u, "name") or "",
        user_name=str(user_name),
        avatar=_first(u, "profile_image_url_https", "profilePicture") or "",
        description=_first(u, "description") or "",
        created_at=created,
        created_at_time=parse_x_time(created) if created else None,
        followers=_count(u, "followers_count", "followers"),
        following=_count(u, "following_count", "friends_count", "following"),
        statuses_count=_count(u, "statuses_count", "statusesCount"),
    )


def parse_api_followings(body: str | bytes) -> FollowingsPage:
    """A REST followings page; PageParseError when the API answered an error or garbage."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise PageParseError(f"not JSON: {e}") from e
    if (
        not isinstance(doc, dict)
        or doc.get("status") == "error"
        or not isinstance(doc.get("followings"), list)
    ):
        msg = doc.get("message") or doc.get("msg") if isinstance(doc, dict) else None
        raise PageParseError(f"API error: {msg or 'no followings list'}")
    users = [u for u in (api_user(x) for x in doc["followings"] if isinstance(x, dict)) if u]
    cursor = doc.get("next_cursor") or None
    return FollowingsPage(users, cursor, not (doc.get("has_next_page") and cursor))


def parse_x_following(
    body: str | bytes, cursor_in: str | None, seen_at: datetime
) -> FollowingsPage:
    """An X Following page: the end is an empty page or a cursor that does not move."""
    page = parse_users_page(body, collected_at=seen_at)
    users = [
        FollowedUser(
            id=u.user_id,
            name=u.name or "",
            user_name=u.user_name,
            avatar=u.avatar or "",
            description=u.description or "",
            created_at=u.created_at or "",
            created_at_time=u.created_at_time,
            followers=u.followers,
            following=u.following,
            statuses_count=u.statuses_count,
        )
        for u in page.users
    ]
    cursor = page.cursor_bottom
    final = not users and (cursor is None or cursor == cursor_in)
    return FollowingsPage(users, cursor, final)


def parse_api_lookup(body: str | bytes) -> tuple[str, str]:
    """(id, handle) from a REST user-info answer."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise PageParseError(f"not JSON: {e}") from e
    data = doc.get("data") if isinstance(doc, dict) else None
    u = api_user(data) if isinstance(data, dict) else None
    if u is None:
        raise PageParseError(f"API error: {(doc or {}).get('msg') or 'no user'}")
    return u.id, u.user_name


def parse_x_lookup(body: str | bytes, seen_at: datetime) -> tuple[str, str]:
    users = parse_users_page(body, collected_at=seen_at).users
    if not users:
        raise PageParseError("X answered no user")
    return users[0].user_id, users[0].user_name
