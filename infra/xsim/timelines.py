"""Page builders for each GraphQL operation, from the pre-split fixture templates."""

from __future__ import annotations

import re

import orjson

from .config import SimConfig
from .corpus import (
    KIND_DELTA_MS,
    KeywordSeries,
    decode_cursor,
    encode_cursor,
    now_ms,
    parse_query,
    x_time,
)
from .follows import FollowGraph, screen_name, user_id_of_name
from .templates import Fixtures, user_gid

MAX_COUNT = 100


def _count(variables: dict, default: int = 20) -> int:
    try:
        n = int(variables.get("count") or default)
    except (TypeError, ValueError):
        n = default
    return max(1, min(n, MAX_COUNT))


def _cursor_entry(shape: dict, value: str) -> bytes:
    content = dict(shape["content"])
    content["value"] = value
    return orjson.dumps({**shape, "content": content})


class Timelines:
    def __init__(self, fixtures: Fixtures, config: SimConfig):
        self.fx = fixtures
        self.config = config
        self._series: dict[tuple[str, float, int], KeywordSeries] = {}
        self.graph = FollowGraph(config)

    # --- search -----------------------------------------------------------------------------

    def series(self, keyword: str) -> KeywordSeries:
        key = (keyword, self.config.density(keyword), self.config.seed)
        s = self._series.get(key)
        if s is None:
            if len(self._series) > 100_000:
                self._series.clear()
            s = self._series[key] = KeywordSeries.make(keyword, key[1], key[2])
        return s

    def window(self, raw_query: str, now: int | None = None) -> tuple[KeywordSeries, int, int]:
        q = parse_query(raw_query)
        s = self.series(q.keyword)
        lo, hi = s.window(
            q.since_ms, q.until_ms, now_ms() if now is None else now, self.config.max_posts
        )
        return s, lo, hi

    def corpus(self, raw_query: str) -> list[tuple[str, int]]:
        s, lo, hi = self.window(raw_query)
        return [(str(s.id_of(i)), s.time_of(i)) for i in range(hi, lo - 1, -1)]

    def render_post(self, s: KeywordSeries, i: int) -> bytes:
        tpls = self.fx.search.tweets
        tpl = tpls[i % len(tpls)]
        ms = s.time_of(i)
        pid = str(s.id_of(i)).encode()
        vals: dict[str, bytes] = {"I0": pid, "SORT": pid}
        for k in tpl.keys:
            if k[0] == "I" and k != "I0":
                vals[k] = str(s.id_of(i, int(k[1]))).encode()
            elif k == "CA":
                vals[k] = x_time(ms).encode()
            elif k == "CB":
                vals[k] = x_time(ms - KIND_DELTA_MS).encode()
            elif k == "CC":
                vals[k] = x_time(ms - 2 * KIND_DELTA_MS).encode()
        return tpl.render(vals)

    def search_page(self, variables: dict) -> bytes:
        raw_query = str(variables.get("rawQuery") or "")
        count = _count(variables)
        cursor_in = variables.get("cursor")
        s, lo, hi = self.window(raw_query)
        pos = decode_cursor(cursor_in, "search", s.low19)
        if pos is not None:
            nxt, lo = pos
        else:
            nxt = hi
        end = max(lo, nxt - count + 1)
        posts = [self.render_post(s, i) for i in range(nxt, end - 1, -1)]
        if posts:
            bottom = encode_cursor("search", s.low19, end - 1, lo)
        else:
            bottom = (
                cursor_in
                if isinstance(cursor_in, str) and cursor_in
                else encode_cursor("search", s.low19, nxt, lo)
            )
        top = encode_cursor("searchtop", s.low19, nxt, lo)
        st = self.fx.search
        posts.append(_cursor_entry(st.top_cursor, top))
        posts.append(_cursor_entry(st.bottom_cursor, bottom))
        return st.prefix + b",".join(posts) + st.suffix

    # --- user lists -------------------------------------------------------------------------------

    def list_page(self, op: str, variables: dict) -> bytes:
        lt = self.fx.lists[op]
        target = str(variables.get("tweetId") if op == "Retweeters" else variables.get("userId"))
        total = self.graph.total(op, target)
        count = _count(variables)
        tag = self.graph.list_tag(op, target)
        cursor_in = variables.get("cursor")
        pos = decode_cursor(cursor_in, op, tag)
        start = pos[0] if pos else 0
        stop = min(total, start + count)
        entries = [self.render_member(op, target, j) for j in range(start, stop)]
        if entries:
            bottom = encode_cursor(op, tag, stop, total)
        else:
            bottom = (
                cursor_in
                if isinstance(cursor_in, str) and cursor_in
                else encode_cursor(op, tag, start, total)
            )
        entries.append(_cursor_entry(lt.top_cursor, encode_cursor(op + "top", tag, start, total)))
        entries.append(_cursor_entry(lt.bottom_cursor, bottom))
        return lt.prefix + b",".join(entries) + lt.suffix

    def render_member(self, op: str, target: str, j: int) -> bytes:
        """Member j of a target's list as X's timeline entry (a user's looks depend on its id)."""
        lt = self.fx.lists[op]
        m = self.graph.member(op, target, j)
        n = len(lt.users)
        uid = str(m.uid).encode()
        return lt.users[m.k % n].render(
            {
                "UID": uid,
                "GID": user_gid(uid.decode()),
                "SORT": str((1 << 62) - j).encode(),
                "SN": screen_name(lt.names[m.k % n], m.k, n),
            }
        )

    # --- single objects --------------------------------------------------------------------------

    def user_by_screen_name(self, variables: dict) -> bytes:
        name = str(variables.get("screen_name") or "XDevelopers")
        uid = str(user_id_of_name(self.config.seed, name))
        assert self.fx.user is not None, "the corpus has no user template"
        return self.fx.user.render(
            {"UID": uid.encode(), "GID": user_gid(uid), "SN": orjson.dumps(name)[1:-1]}
        )

    def tweet_detail(self, variables: dict) -> bytes:
        focal = str(variables.get("focalTweetId") or "")
        if not re.fullmatch(r"[0-9]{1,19}", focal):
            focal = self.fx.tweet_detail_focal
        assert self.fx.tweet_detail is not None, "the corpus has no TweetDetail template"
        return self.fx.tweet_detail.render({"FOCAL": focal.encode()})
