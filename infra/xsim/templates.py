"""Fixture loading and pre-processing into byte templates.

Each real captured response is parsed once at startup; the fields a page varies (ids, times,
sort indexes, screen names) are swapped for placeholders, the result is serialized with orjson
and split at the placeholders. Rendering a post is then a join of byte pieces: no JSON
parsing or deep copies per request.
"""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

_PH_RE = re.compile(rb"@@([A-Z]+[0-9]?)@@")


class Template:
    """Bytes with @@KEY@@ placeholders, pre-split for fast rendering."""

    __slots__ = ("keys", "pieces")

    def __init__(self, data: bytes):
        parts = _PH_RE.split(data)
        # parts alternate literal, key, literal, key, ...
        self.pieces: list[bytes | str] = []
        for n, p in enumerate(parts):
            self.pieces.append(p.decode() if n % 2 else p)
        self.keys = {p for p in self.pieces if isinstance(p, str)}

    def render(self, values: dict[str, bytes]) -> bytes:
        return b"".join(values[p] if isinstance(p, str) else p for p in self.pieces)


def _ph(key: str) -> str:
    return f"@@{key}@@"


def _replace_number(text: bytes, number: str, key: str) -> bytes:
    return re.sub(rb"(?<![0-9])" + number.encode() + rb"(?![0-9])", _ph(key).encode(), text)


def unwrap_tweet(result: dict | None) -> dict | None:
    if not isinstance(result, dict):
        return None
    if result.get("__typename") == "TweetWithVisibilityResults" and "tweet" in result:
        return result["tweet"]
    return result


def find_key(obj: Any, key: str) -> Any:
    """First value stored under `key` anywhere in obj (depth-first)."""
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        for v in obj.values():
            r = find_key(v, key)
            if r is not None:
                return r
    elif isinstance(obj, list):
        for v in obj:
            r = find_key(v, key)
            if r is not None:
                return r
    return None


def _add_entries_instruction(instructions: list[dict]) -> dict:
    for ins in instructions:
        if "entries" in ins:
            return ins
    raise ValueError("fixture has no instruction with entries")


def _envelope(doc: dict, instructions: list[dict]) -> tuple[bytes, bytes]:
    """Serialize doc with the entries list replaced by a marker; return (prefix, suffix)."""
    ins = _add_entries_instruction(instructions)
    saved = ins["entries"]
    ins["entries"] = ["@@ENTRIES@@"]
    try:
        raw = orjson.dumps(doc)
    finally:
        ins["entries"] = saved
    prefix, suffix = raw.split(b'"@@ENTRIES@@"')
    return prefix, suffix


@dataclass
class SearchTemplates:
    prefix: bytes
    suffix: bytes
    tweets: list[Template]
    top_cursor: dict
    bottom_cursor: dict
    originals: list[dict]  # the fixture's tweet entries, untouched (tests compare against them)


@dataclass
class UserListTemplates:
    prefix: bytes
    suffix: bytes
    users: list[Template]  # placeholders UID, GID, SORT and SN (screen name)
    top_cursor: dict
    bottom_cursor: dict
    names: list[bytes] = field(default_factory=list)  # each template's screen name (JSON-escaped)


@dataclass
class Fixtures:
    search: SearchTemplates
    lists: dict[str, UserListTemplates] = field(default_factory=dict)
    user: Template | None = None
    tweet_detail: Template | None = None
    tweet_detail_focal: str = ""


def _cursor_shape(entries: list[dict], ctype: str) -> dict:
    for e in entries:
        if e.get("content", {}).get("cursorType") == ctype:
            return e
    return {
        "content": {
            "__typename": "TimelineTimelineCursor",
            "cursorType": ctype,
            "entryType": "TimelineTimelineCursor",
            "value": "",
        },
        "entryId": f"cursor-{ctype.lower()}-0",
        "sortIndex": "0",
    }


def _tweet_template(entry: dict) -> Template:
    entry = orjson.loads(orjson.dumps(entry))
    res = entry["content"]["itemContent"]["tweet_results"]["result"]
    main = unwrap_tweet(res)
    roles: dict[str, int] = {}

    def assign(tid: str | None, kind: int | None = None) -> None:
        if not tid or tid in roles:
            return
        if kind is None:
            used = set(roles.values())
            free = [k for k in range(4, 8) if k not in used]
            if not free:
                return
            kind = free[0]
        roles[tid] = kind

    if main is None:
        raise ValueError("the template's focal entry holds no tweet")
    leg = main["legacy"]
    assign(main["rest_id"], 0)
    quoted = unwrap_tweet((main.get("quoted_status_result") or {}).get("result"))
    if quoted and quoted.get("rest_id"):
        assign(quoted["rest_id"], 1)
    assign(leg.get("quoted_status_id_str"), 1)
    rt = unwrap_tweet((leg.get("retweeted_status_result") or {}).get("result"))
    if rt and rt.get("rest_id"):
        assign(rt["rest_id"], 2)
    assign(leg.get("in_reply_to_status_id_str"), 3)
    assign(leg.get("conversation_id_str"))
    for t in (quoted, rt):
        if t and "legacy" in t:
            for k in ("conversation_id_str", "in_reply_to_status_id_str", "quoted_status_id_str"):
                assign(t["legacy"].get(k))

    leg["created_at"] = _ph("CA")
    if quoted and "legacy" in quoted:
        quoted["legacy"]["created_at"] = _ph("CB")
    if rt and "legacy" in rt:
        rt["legacy"]["created_at"] = _ph("CC")
    entry["sortIndex"] = _ph("SORT")
    raw = orjson.dumps(entry)
    for tid, kind in sorted(roles.items(), key=lambda kv: -len(kv[0])):
        raw = _replace_number(raw, tid, f"I{kind}")
    return Template(raw)


def _user_template(entry_or_result: dict, result: dict) -> Template:
    raw = orjson.dumps(entry_or_result)
    uid = result["rest_id"]
    gid = result.get("id")
    if gid:
        raw = raw.replace(f'"{gid}"'.encode(), b'"@@GID@@"')
    raw = _replace_number(raw, uid, "UID")
    return Template(raw)


def load_fixtures(fixtures_dir: str | os.PathLike) -> Fixtures:
    d = Path(fixtures_dir)

    doc = orjson.loads((d / "raw_search.json").read_bytes())
    instructions = find_key(doc, "instructions")
    entries = _add_entries_instruction(instructions)["entries"]
    tweets = [e for e in entries if e["entryId"].startswith("tweet-")]
    prefix, suffix = _envelope(doc, instructions)
    search = SearchTemplates(
        prefix,
        suffix,
        [_tweet_template(e) for e in tweets],
        _cursor_shape(entries, "Top"),
        _cursor_shape(entries, "Bottom"),
        tweets,
    )
    fx = Fixtures(search=search)

    for op, name in (
        ("Following", "raw_following.json"),
        ("Followers", "raw_followers.json"),
        ("Retweeters", "raw_retweeters.json"),
    ):
        p = d / name
        if not p.exists():
            continue
        ldoc = orjson.loads(p.read_bytes())
        lins = find_key(ldoc, "instructions")
        lentries = _add_entries_instruction(lins)["entries"]
        users, names = [], []
        for e in lentries:
            if not e["entryId"].startswith("user-"):
                continue
            r = find_key(e, "user_results")
            r = (r or {}).get("result") or {}
            if not r.get("rest_id"):
                continue
            e2 = orjson.loads(orjson.dumps(e))
            e2["sortIndex"] = _ph("SORT")
            r2 = find_key(e2, "user_results")["result"]
            name = ""
            for holder in (r2.get("core"), r2.get("legacy")):
                if isinstance(holder, dict) and "screen_name" in holder:
                    name = name or holder["screen_name"]
                    holder["screen_name"] = _ph("SN")
            names.append(orjson.dumps(name)[1:-1])
            users.append(_user_template(e2, r))
        lp, ls = _envelope(ldoc, lins)
        fx.lists[op] = UserListTemplates(
            lp, ls, users, _cursor_shape(lentries, "Top"), _cursor_shape(lentries, "Bottom"), names
        )

    p = d / "raw_user_by_login.json"
    if p.exists():
        udoc = orjson.loads(p.read_bytes())
        r = udoc["data"]["user"]["result"]
        for holder in (r.get("core"), r.get("legacy")):
            if isinstance(holder, dict) and "screen_name" in holder:
                holder["screen_name"] = _ph("SN")
        fx.user = _user_template(udoc, r)

    p = d / "raw_tweet_details.json"
    if p.exists():
        raw = p.read_bytes()
        tdoc = orjson.loads(raw)
        tentries = _add_entries_instruction(find_key(tdoc, "instructions"))["entries"]
        focal = next(e["entryId"][6:] for e in tentries if e["entryId"].startswith("tweet-"))
        fx.tweet_detail = Template(_replace_number(orjson.dumps(tdoc), focal, "FOCAL"))
        fx.tweet_detail_focal = focal
    return fx


def user_gid(uid: int | str) -> bytes:
    return base64.b64encode(f"User:{uid}".encode())


def default_fixtures_dir() -> Path:
    env = os.environ.get("XGET_FIXTURES_DIR")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    return (repo / ".." / "shared" / "fixtures" / "x").resolve()
