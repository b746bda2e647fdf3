"""Raw X GraphQL responses -> the client's standard records (Post, XUser, MediaJob).

One pass: the body is parsed once with orjson, the timeline's instructions are walked in entry
order, and every tweet result met there is mapped. Nothing is deep-copied and the page is never
re-serialized; only each post's own `result` object is serialized (its `raw_data`).

twscrape 0.20.1 is reused where it covers a field: `to_old_obj` flattens a Tweet or User
result of either X schema (legacy.* or the 2025+/2026 layout with `core`, `avatar`,
`relationship_counts`, ... and `legacy: null`), `_get_views` reads view counts, `_parse_links`
reads links. Our own code covers what twscrape does not: the timeline walk (top-level posts vs.
nested originals), visibility unwrapping, raw_data, media type mapping with sizes and variants,
parent ids, retweet full text, and skipping unusable users instead of raising.
"""

from __future__ import annotations

import email.utils
import html
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from twscrape.models import _get_views, _parse_links
from twscrape.utils import to_old_obj

from libs.records.posts import MediaJob, Post, PostLink, PostMedia, VideoVariant, XUser

log = logging.getLogger("xget.parsing")

__all__ = [
    "PageParseError",
    "ParsedPage",
    "ParsedUsersPage",
    "parse_timeline_page",
    "parse_users_page",
]


class PageParseError(Exception):
    """The page cannot be parsed at all: malformed JSON, an X error body, an unexpected shape."""


@dataclass
class ParsedPage:
    posts: list[Post] = field(default_factory=list)
    users: list[XUser] = field(default_factory=list)
    media_jobs: list[MediaJob] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    cursor_bottom: str | None = None
    entries: int = 0  # timeline entries that carried a tweet (TimelineTweet items)


@dataclass
class ParsedUsersPage:
    users: list[XUser] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    cursor_bottom: str | None = None


# --------------------------------------------------------------------------- helpers

_MONTHS = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
_UTC = UTC


def parse_x_time(s: str | None) -> datetime | None:
    """X's 'Wed Jul 08 21:59:10 +0000 2026' -> aware UTC datetime (fast path, RFC 2822 fallback)."""
    if not s:
        return None
    try:
        if len(s) == 30 and s[20:25] == "+0000":
            return datetime(
                int(s[26:30]),
                _MONTHS[s[4:7]],
                int(s[8:10]),
                int(s[11:13]),
                int(s[14:16]),
                int(s[17:19]),
                tzinfo=_UTC,
            )
        dt = email.utils.parsedate_to_datetime(s)
    except (KeyError, ValueError, TypeError, IndexError):
        try:
            dt = email.utils.parsedate_to_datetime(s)
        except (ValueError, TypeError, IndexError):
            return None
    if dt.tzinfo is None:
        return dt.replace(tzinfo=_UTC)
    return dt.astimezone(_UTC)


def _loads(body: str | bytes) -> Any:
    if isinstance(body, memoryview):
        body = bytes(body)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise PageParseError(f"malformed JSON: {e}") from None
    except TypeError as e:
        raise PageParseError(f"body must be str or bytes, got {type(body).__name__}: {e}") from None


def _error_text(doc: dict) -> str:
    errs = doc.get("errors")
    if isinstance(errs, list) and errs:
        parts = []
        for e in errs[:5]:
            if isinstance(e, dict):
                code = e.get("code") or (e.get("extensions") or {}).get("code")
                parts.append(f"{e.get('message', '?')}" + (f" (code {code})" if code else ""))
            else:
                parts.append(str(e))
        return "; ".join(parts)
    return ""


def _data_of(doc: Any) -> dict:
    if not isinstance(doc, dict):
        raise PageParseError(f"unexpected shape: top level is {type(doc).__name__}, not an object")
    data = doc.get("data")
    if not isinstance(data, dict) or not data:
        err = _error_text(doc)
        if err:
            raise PageParseError(f"X error response without data: {err}")
        raise PageParseError(f"unexpected shape: no 'data' object (keys: {sorted(doc)[:10]})")
    return data


def _find_instructions(data: dict) -> list | None:
    """Breadth-first through objects only (not lists) to the first 'instructions' list."""
    level = [data]
    for _ in range(6):
        nxt = []
        for o in level:
            ins = o.get("instructions")
            if isinstance(ins, list):
                return ins
            for v in o.values():
                if isinstance(v, dict):
                    nxt.append(v)
        if not nxt:
            break
        level = nxt
    return None


def _iter_entries(instructions: list):
    """Yield each timeline entry's content, in order (pinned entries first as X shows them)."""
    for ins in instructions:
        if not isinstance(ins, dict):
            continue
        t = ins.get("type")
        if t == "TimelineAddEntries":
            for e in ins.get("entries") or ():
                c = e.get("content") if isinstance(e, dict) else None
                if c:
                    yield c
        elif t in ("TimelinePinEntry", "TimelineReplaceEntry"):
            e = ins.get("entry")
            c = e.get("content") if isinstance(e, dict) else None
            if c:
                yield c
        elif t == "TimelineAddToModule":
            for it in ins.get("moduleItems") or ():
                item = it.get("item") if isinstance(it, dict) else None
                if isinstance(item, dict):
                    yield {
                        "entryType": "TimelineTimelineItem",
                        "itemContent": item.get("itemContent"),
                    }


def _item_contents(content: dict):
    """Item contents of one entry: the item itself, or each item of a module."""
    et = content.get("entryType") or content.get("__typename")
    if et == "TimelineTimelineItem":
        ic = content.get("itemContent")
        if isinstance(ic, dict):
            yield ic
    elif et == "TimelineTimelineModule":
        for it in content.get("items") or ():
            item = it.get("item") if isinstance(it, dict) else None
            ic = item.get("itemContent") if isinstance(item, dict) else None
            if isinstance(ic, dict):
                yield ic
    elif et == "TimelineTimelineCursor":
        yield content


def _unwrap(result: Any) -> dict | None:
    """TweetWithVisibilityResults -> its .tweet; None for tombstones/unavailable/non-objects."""
    if not isinstance(result, dict):
        return None
    tn = result.get("__typename")
    if tn == "TweetWithVisibilityResults" or (
        tn is None and "tweet" in result and "legacy" not in result
    ):
        inner = result.get("tweet")
        return inner if isinstance(inner, dict) else None
    if tn in ("TweetTombstone", "TweetUnavailable"):
        return None
    if "legacy" not in result and "rest_id" not in result:
        return None
    return result


def _int(v: Any) -> int | None:
    if v is None:
        return None
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _text_of(flat: dict) -> str:
    note = flat.get("note_tweet")
    if note:
        t = (((note.get("note_tweet_results") or {}).get("result")) or {}).get("text")
        if t:
            return t
    t = flat.get("full_text") or ""
    # legacy.full_text is HTML-escaped by X (&amp; &lt; &gt;); note_tweet text is not.
    return html.unescape(t) if "&" in t else t


def _note_entities(flat: dict) -> dict | None:
    note = flat.get("note_tweet")
    if not note:
        return None
    res = (note.get("note_tweet_results") or {}).get("result") or {}
    return res.get("entity_set") or None


def _media_of(flat: dict) -> list[PostMedia]:
    ents = flat.get("extended_entities") or flat.get("entities") or {}
    out = []
    for m in ents.get("media") or ():
        mt = m.get("type")
        url = m.get("media_url_https") or m.get("media_url")
        if not url:
            continue
        info = m.get("original_info") or {}
        if mt == "photo":
            out.append(
                PostMedia(
                    original_url=url,
                    type="image",
                    width=info.get("width"),
                    height=info.get("height"),
                )
            )
        elif mt in ("video", "animated_gif"):
            vi = m.get("video_info") or {}
            # Like twscrape's MediaVideo: variants that carry a bitrate (the mp4 renditions);
            # the bitrate-less HLS playlist is left out.
            variants = [
                VideoVariant(
                    url=v["url"], content_type=v.get("content_type"), bitrate=v.get("bitrate")
                )
                for v in vi.get("variants") or ()
                if "bitrate" in v and v.get("url")
            ]
            out.append(
                PostMedia(
                    original_url=url,
                    type="video_cover" if mt == "video" else "gif",
                    width=info.get("width"),
                    height=info.get("height"),
                    video_duration_ms=_int(vi.get("duration_millis")),
                    video_variants=variants,
                )
            )
        else:
            log.warning("unknown media type %r on post %s", mt, flat.get("id_str"))
    return out


def _best_variant(m: PostMedia) -> str | None:
    best = None
    for v in m.video_variants:
        if best is None or (v.bitrate or 0) > (best.bitrate or 0):
            best = v
    return best.url if best else None


# --------------------------------------------------------------------------- the parser


class _PageParser:
    __slots__ = (
        "collected_at",
        "job_keys",
        "jobs",
        "keyword",
        "posts",
        "seen",
        "skipped",
        "skipped_users",
        "task_id",
        "user_cache",
        "users",
    )

    def __init__(self, task_id: str, keyword: str, collected_at: datetime):
        self.task_id = task_id
        self.keyword = keyword
        self.collected_at = collected_at
        # user id → (flattened, raw) of each user met; XUser records are built at the end,
        # only for the users the caller publishes (see parse_timeline_page's publish_user)
        self.users: dict[str, tuple[dict, dict]] = {}
        self.user_cache: dict[int, dict | None] = {}  # id(raw user obj) -> flattened or None
        self.posts: list[Post] = []
        self.seen: set[str] = set()
        self.jobs: list[MediaJob] = []
        self.job_keys: set[tuple[str, str]] = set()
        self.skipped: list[str] = []
        self.skipped_users: set[int] = set()

    # users ---------------------------------------------------------------
    def skip(self, reason: str) -> None:
        log.warning("skipped: %s", reason)
        self.skipped.append(reason)

    def user(self, raw: Any, context: str) -> dict | None:
        """Flatten (and register) a User result; None (with a skip line) when unusable."""
        key = id(raw)
        if key in self.user_cache:
            return self.user_cache[key]
        flat = None
        if not isinstance(raw, dict):
            self.skip(f"user of {context}: no user object")
        elif raw.get("__typename") == "UserUnavailable" or not raw.get("rest_id"):
            self.skip(
                f"user of {context}: {raw.get('__typename', 'User')} with null rest_id"
                f"{' (' + str(raw.get('reason')) + ')' if raw.get('reason') else ''}"
            )
            if raw.get("__typename") != "UserUnavailable":
                # not a usable XUser, but its handle may still name a post's author
                tmp = to_old_obj(raw)
                if tmp.get("screen_name"):
                    tmp["id_str"] = None
                    flat = tmp
        else:
            flat = to_old_obj(raw)
            if not flat.get("screen_name"):
                self.skip(f"user {raw.get('rest_id')} of {context}: no screen_name")
                flat = None
            else:
                uid = str(raw["rest_id"])
                if uid not in self.users:
                    self.users[uid] = (flat, raw)
        self.user_cache[key] = flat
        return flat

    def built_users(self, publish_user: Callable[[str, str], bool] | None = None) -> list[XUser]:
        """XUser records of the users met, in order; with `publish_user(user_id, raw_json)`
        only of those it accepts (a user sent moments ago is not built at all)."""
        out = []
        for uid, (flat, raw) in self.users.items():
            raw_json = orjson.dumps(raw).decode()
            if publish_user is None or publish_user(uid, raw_json):
                out.append(xuser_from_flat(flat, raw, self.collected_at, raw_json))
        return out

    def author(self, flat_tw: dict, raw_tw: dict) -> dict | None:
        core = raw_tw.get("core") or {}
        res = (core.get("user_results") or {}).get("result")
        if res is None:
            res = (raw_tw.get("author_results") or {}).get("result")
        return self.user(res, f"post {flat_tw.get('id_str')}")

    # posts ---------------------------------------------------------------
    def original(self, flat: dict, which: str) -> tuple[dict | None, dict | None, str | None]:
        """(raw original, flattened original, original id) of a retweet or quote."""
        key = "retweeted_status_result" if which == "rt" else "quoted_status_result"
        holder = flat.get(key)
        raw = _unwrap(holder.get("result")) if isinstance(holder, dict) else None
        oid = (raw or {}).get("rest_id") or flat.get(
            "retweeted_status_id_str" if which == "rt" else "quoted_status_id_str"
        )
        return raw, (to_old_obj(raw) if raw is not None else None), (str(oid) if oid else None)

    def nested_users(self, raw: dict | None, flat: dict | None, depth: int) -> None:
        """Register authors of originals nested deeper (e.g. the quote inside a retweet)."""
        if raw is None or depth > 3:
            return
        self.author(flat, raw)
        self.media_users(flat)
        for which in ("rt", "qt"):
            r2, f2, _ = self.original(flat, which)
            if r2 is not None:
                self.nested_users(r2, f2, depth + 1)

    def media_users(self, flat: dict) -> None:
        """Register users that media credit (additional_media_info.source_user)."""
        ents = flat.get("extended_entities") or flat.get("entities") or {}
        for m in ents.get("media") or ():
            ami = m.get("additional_media_info")
            if ami:
                su = ((ami.get("source_user") or {}).get("user_results") or {}).get("result")
                if su is not None:
                    self.user(su, f"media of post {flat.get('id_str')}")

    def post(self, raw: dict) -> None:
        rid = raw.get("rest_id")
        if not rid:
            self.skip("tweet result without rest_id")
            return
        pid = str(rid)
        if pid in self.seen:
            return
        raw_data = orjson.dumps(raw).decode()
        flat = to_old_obj(raw)
        au = self.author(flat, raw)
        if au is None:
            self.skip(f"post {pid}: author unusable, post skipped")
            return
        self.seen.add(pid)
        handle = au["screen_name"]

        rt_raw, rt_flat, rt_id = self.original(flat, "rt")
        qt_raw, qt_flat, qt_id = self.original(flat, "qt")
        is_retweet = rt_id is not None
        is_quote = bool(qt_id) or bool(flat.get("is_quote_status"))

        text = _text_of(flat)
        o_raw, o_flat, o_id = (rt_raw, rt_flat, rt_id) if is_retweet else (qt_raw, qt_flat, qt_id)
        o_user = o_text = o_time = None
        o_media: list[PostMedia] = []
        if o_flat is not None:
            o_user = self.author(o_flat, o_raw)
            o_text = _text_of(o_flat)
            o_time = parse_x_time(o_flat.get("created_at"))
            o_media = _media_of(o_flat)
            if o_media:
                self.media_users(o_flat)
            # deeper originals (a quote inside a retweet): register their authors
            for which in ("rt", "qt"):
                r2, f2, _ = self.original(o_flat, which)
                if r2 is not None:
                    self.nested_users(r2, f2, 2)
        if is_retweet and o_flat is not None and o_user is not None and text.endswith("…"):
            # issue #42 of twscrape: the retweet's own text is cut at 140 chars
            text = f"RT @{o_user['screen_name']}: {o_text}"
        media = _media_of(flat)
        if media:
            self.media_users(flat)
        if is_retweet:
            post_type = "retweet"
        elif is_quote:
            post_type = "quote"
        elif any(m.type != "image" for m in media):
            post_type = "video"
        elif media:
            post_type = "image"
        else:
            post_type = "text"

        note_ents = _note_entities(flat)
        ents = flat.get("entities") or {}
        if note_ents:
            link_objs = _parse_links(flat, ["note_tweet.note_tweet_results.result.entity_set.urls"])
            htags = note_ents.get("hashtags") or ents.get("hashtags") or ()
            ments = note_ents.get("user_mentions") or ents.get("user_mentions") or ()
        else:
            link_objs = _parse_links(flat, ["entities.urls"])
            htags = ents.get("hashtags") or ()
            ments = ents.get("user_mentions") or ()
        links = [
            PostLink(url=lk.tcourl, expanded_url=lk.url, display_url=lk.text) for lk in link_objs
        ]

        conv = flat.get("conversation_id_str")
        reply_to = flat.get("in_reply_to_status_id_str")
        parent_post_id = parent_comment_id = None
        if reply_to:
            parent_post_id = str(conv) if conv else None
            if str(reply_to) != parent_post_id:
                parent_comment_id = str(reply_to)

        has_bm = "bookmark_count" in (raw.get("legacy") or raw)
        o_author_handle = f"@{o_user['screen_name']}" if o_user else None
        post = Post(
            post_url=f"https://x.com/{handle}/status/{pid}",
            post_id=pid,
            post_type=post_type,
            author_id=str(au["id_str"]) if au.get("id_str") else None,
            author_avatar=au.get("profile_image_url_https") or None,
            author_name=au.get("name"),
            author_handle=f"@{handle}",
            post_time=parse_x_time(flat.get("created_at")),
            post_content=text,
            post_images=media,
            comment_count=flat.get("reply_count") or 0,
            retweet_count=flat.get("retweet_count") or 0,
            like_count=flat.get("favorite_count") or 0,
            quote_count=flat.get("quote_count") or 0,
            view_count=_get_views(flat, rt_flat or {}),
            bookmark_count=(flat.get("bookmark_count") or 0) if has_bm else None,
            is_retweet=is_retweet,
            is_quote=is_quote,
            original_post_id=o_id,
            original_author_avatar=(o_user.get("profile_image_url_https") or None)
            if o_user
            else None,
            original_author_name=o_user.get("name") if o_user else None,
            original_author_handle=o_author_handle,
            original_post_time=o_time,
            original_post_content=o_text,
            original_post_images=o_media,
            post_links=links,
            hashtags=[h["text"] for h in htags if h.get("text")],
            mentions=[m["screen_name"] for m in ments if m.get("screen_name")],
            lang=flat.get("lang") or None,
            conversation_id=str(conv) if conv else None,
            parent_post_id=parent_post_id,
            parent_comment_id=parent_comment_id,
            keyword=self.keyword,
            task_id=self.task_id,
            collected_at=self.collected_at,
            raw_data=raw_data,
        )
        self.posts.append(post)
        for lst, of_original in ((media, False), (o_media, True)):
            for m in lst:
                k = (pid, m.original_url)
                if k in self.job_keys:
                    continue  # a retweet repeats its original's media: one job per URL
                self.job_keys.add(k)
                self.jobs.append(
                    MediaJob(
                        task_id=self.task_id,
                        post_id=pid,
                        original_url=m.original_url,
                        type=m.type,
                        video_url=_best_variant(m),
                        of_original=of_original,
                    )
                )


def xuser_from_flat(flat: dict, raw: dict, seen_at: datetime, raw_data: str) -> XUser:
    created = flat.get("created_at")
    return XUser(
        user_id=str(flat["id_str"]),
        user_name=flat["screen_name"],
        name=flat.get("name"),
        avatar=flat.get("profile_image_url_https") or None,
        description=flat.get("description") or None,
        created_at=created,
        created_at_time=parse_x_time(created),
        followers=flat.get("followers_count") or 0,
        following=flat.get("friends_count") or 0,
        statuses_count=flat.get("statuses_count") or 0,
        verified=bool(flat.get("verified")),
        blue_verified=bool(flat.get("is_blue_verified")),
        **_profile_extras(flat, raw),
        seen_at=seen_at,
        raw_data=raw_data,
    )


def _profile_extras(flat: dict, raw: dict) -> dict:
    """protected, location, website and banner, from the legacy fields or X's newer layout
    (top-level location/website/privacy/banner objects), whichever the user has."""

    def sub(name: str, key: str):
        v = raw.get(name)
        return v.get(key) if isinstance(v, dict) else None

    urls = (((flat.get("entities") or {}).get("url") or {}).get("urls")) or [{}]
    protected = flat.get("protected")
    return {
        "protected": bool(protected if protected is not None else sub("privacy", "protected")),
        "location": flat.get("location") or sub("location", "location") or None,
        "website": urls[0].get("expanded_url") or flat.get("url") or sub("website", "url") or None,
        "banner_url": flat.get("profile_banner_url") or sub("banner", "image_url") or None,
    }


def _cursor_of(ic: dict) -> str | None:
    if (ic.get("cursorType") == "Bottom") and ic.get("value"):
        return ic["value"]
    return None


def parse_timeline_page(
    body: str | bytes,
    *,
    task_id: str,
    keyword: str,
    collected_at: datetime,
    publish_user: Callable[[str, str], bool] | None = None,
) -> ParsedPage:
    """Parse a SearchTimeline or TweetDetail response into posts, users and media jobs.

    `publish_user(user_id, raw_json)`, when given, is asked once per user after the page
    parsed, and only the users it accepts become XUser records in `users`.

    Raises PageParseError when the page as a whole is unusable; anything smaller (a tombstone,
    a user with a null rest_id) is skipped with a log line and a reason in `skipped`.
    """
    if collected_at.tzinfo is None:
        collected_at = collected_at.replace(tzinfo=_UTC)
    data = _data_of(_loads(body))
    instructions = _find_instructions(data)
    if instructions is None:
        err = _error_text(data)
        raise PageParseError(
            "unexpected shape: no timeline instructions in data"
            + (f" ({err})" if err else f" (data keys: {sorted(data)[:10]})")
        )
    p = _PageParser(task_id, keyword, collected_at)
    cursor = None
    entries = 0
    for content in _iter_entries(instructions):
        for ic in _item_contents(content):
            tn = ic.get("itemType") or ic.get("__typename")
            if tn == "TimelineTweet":
                entries += 1
                raw = _unwrap((ic.get("tweet_results") or {}).get("result"))
                if raw is None:
                    res = (ic.get("tweet_results") or {}).get("result")
                    p.skip(
                        f"timeline tweet unavailable: {(res or {}).get('__typename', 'no result')}"
                    )
                    continue
                try:
                    p.post(raw)
                except PageParseError:
                    raise
                except Exception as e:  # one odd post never sinks the page
                    log.exception("post %s could not be parsed", raw.get("rest_id"))
                    p.skipped.append(f"post {raw.get('rest_id')}: {type(e).__name__}: {e}")
            elif tn == "TimelineTimelineCursor":
                cursor = _cursor_of(ic) or cursor
    return ParsedPage(
        posts=p.posts,
        users=p.built_users(publish_user),
        media_jobs=p.jobs,
        skipped=p.skipped,
        cursor_bottom=cursor,
        entries=entries,
    )


def parse_users_page(body: str | bytes, *, collected_at: datetime) -> ParsedUsersPage:
    """Parse a Followers/Following/Retweeters/BlueVerifiedFollowers or UserByScreenName page."""
    if collected_at.tzinfo is None:
        collected_at = collected_at.replace(tzinfo=_UTC)
    data = _data_of(_loads(body))
    p = _PageParser("", "", collected_at)
    cursor = None
    instructions = _find_instructions(data)
    if instructions is None:
        # UserByScreenName / UserByRestId: data.user.result
        holder = next((v for v in data.values() if isinstance(v, dict) and "result" in v), None)
        if holder is None:
            raise PageParseError(
                f"unexpected shape: no user timeline or user result "
                f"(data keys: {sorted(data)[:10]})"
            )
        p.user(holder.get("result"), "response")
    else:
        for content in _iter_entries(instructions):
            for ic in _item_contents(content):
                tn = ic.get("itemType") or ic.get("__typename")
                if tn == "TimelineUser":
                    p.user((ic.get("user_results") or {}).get("result"), "timeline entry")
                elif tn == "TimelineTimelineCursor":
                    cursor = _cursor_of(ic) or cursor
    return ParsedUsersPage(users=p.built_users(), skipped=p.skipped, cursor_bottom=cursor)
