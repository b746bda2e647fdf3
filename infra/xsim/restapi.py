"""A twitterapi.io-compatible REST API over the same simulated users as the GraphQL routes.

    GET /twitter/user/followings?userName=&cursor=&pageSize=   header X-API-Key
      -> {"followings": [user…], "has_next_page": bool, "next_cursor": str,
          "status": "success", "message": ""}
    GET /twitter/user/info?userName=
      -> {"data": {user…}, "status": "success", "msg": "success"}

The followings of a handle are the GraphQL Following list of the id UserByScreenName gives it,
with the same users (each rendered from its fixture user), so both sources agree. User objects
come in two styles (config `api_user_style`): `v1` — snake_case fields (screen_name,
profile_image_url_https, followers_count, following_count, statuses_count, created_at), the
fields the client's current script maps — or `profile`, the camelCase shape of the published
OpenAPI example (userName, profilePicture, followers, following, statusesCount, createdAt).
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from .corpus import decode_cursor, encode_cursor
from .follows import user_id_of_name
from .templates import find_key
from .timelines import Timelines

MAX_PAGE = 200


def _get(obj: dict, *paths: str):
    for path in paths:
        cur: Any = obj
        for part in path.split("."):
            cur = cur.get(part) if isinstance(cur, dict) else None
        if cur not in (None, ""):
            return cur
    return None


def user_fields(result: dict) -> dict:
    """The attributes of an X GraphQL User result (2025+ layout, legacy fallback)."""
    return {
        "id": str(result.get("rest_id")),
        "screen_name": _get(result, "core.screen_name", "legacy.screen_name") or "",
        "name": _get(result, "core.name", "legacy.name") or "",
        "created_at": _get(result, "core.created_at", "legacy.created_at") or "",
        "avatar": _get(result, "avatar.image_url", "legacy.profile_image_url_https") or "",
        "banner": _get(result, "banner.image_url", "legacy.profile_banner_url") or "",
        "description": _get(result, "profile_bio.description", "legacy.description") or "",
        "location": _get(result, "location.location", "legacy.location") or "",
        "followers": int(
            _get(result, "relationship_counts.followers", "legacy.followers_count") or 0
        ),
        "following": int(
            _get(result, "relationship_counts.following", "legacy.friends_count") or 0
        ),
        "statuses": int(_get(result, "tweet_counts.tweets", "legacy.statuses_count") or 0),
        "media": int(_get(result, "tweet_counts.media_tweets", "legacy.media_count") or 0),
        "favourites": int(
            _get(result, "action_counts.favorites_count", "legacy.favourites_count") or 0
        ),
        "blue": bool(result.get("is_blue_verified")),
        "verified": bool(_get(result, "verification.verified", "legacy.verified")),
        "can_dm": bool(_get(result, "dm_permissions.can_dm", "legacy.can_dm")),
    }


def api_user(f: dict, style: str) -> dict:
    if style == "profile":
        return {
            "type": "user",
            "userName": f["screen_name"],
            "url": f"https://x.com/{f['screen_name']}",
            "id": f["id"],
            "name": f["name"],
            "isBlueVerified": f["blue"],
            "profilePicture": f["avatar"],
            "coverPicture": f["banner"],
            "description": f["description"],
            "location": f["location"],
            "followers": f["followers"],
            "following": f["following"],
            "canDm": f["can_dm"],
            "createdAt": f["created_at"],
            "favouritesCount": f["favourites"],
            "mediaCount": f["media"],
            "statusesCount": f["statuses"],
        }
    return {
        "id": f["id"],
        "name": f["name"],
        "screen_name": f["screen_name"],
        "location": f["location"],
        "description": f["description"],
        "protected": False,
        "verified": f["verified"],
        "followers_count": f["followers"],
        "following_count": f["following"],
        "favourites_count": f["favourites"],
        "statuses_count": f["statuses"],
        "media_tweets_count": f["media"],
        "created_at": f["created_at"],
        "profile_banner_url": f["banner"],
        "profile_image_url_https": f["avatar"],
        "can_dm": f["can_dm"],
    }


def key_label(api_key: str) -> str:
    """How the request log names an API key (never the key itself)."""
    return "key-" + hashlib.sha256(api_key.encode()).hexdigest()[:10]


class RestApi:
    def __init__(self, timelines: Timelines):
        self.tl = timelines

    @property
    def style(self) -> str:
        return self.tl.config.api_user_style

    def _member(self, target: str, j: int) -> dict:
        entry = orjson.loads(self.tl.render_member("Following", target, j))
        result = find_key(entry, "user_results")["result"]
        return api_user(user_fields(result), self.style)

    def followings(self, user_name: str, cursor: str | None, page_size: int) -> dict:
        target = str(user_id_of_name(self.tl.config.seed, user_name))
        graph = self.tl.graph
        total = graph.total("Following", target)
        tag = graph.list_tag("Following", target)
        pos = decode_cursor(cursor, "apifollowings", tag)
        start = pos[0] if pos else 0
        stop = min(total, start + max(1, min(page_size, MAX_PAGE)))
        users = [self._member(target, j) for j in range(start, stop)]
        more = stop < total
        return {
            "followings": users,
            "has_next_page": more,
            "next_cursor": encode_cursor("apifollowings", tag, stop, total) if more else "",
            "status": "success",
            "message": "",
        }

    def user_info(self, user_name: str) -> dict:
        body = orjson.loads(self.tl.user_by_screen_name({"screen_name": user_name}))
        f = user_fields(body["data"]["user"]["result"])
        return {"data": api_user(f, "profile"), "status": "success", "msg": "success"}
