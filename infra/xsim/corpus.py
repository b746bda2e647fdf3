"""Deterministic per-keyword corpus: query parsing, post times, snowflake ids, cursors.

Keyword K has posts at t_i = phase(K) + i * interval(K) (ms since the Unix epoch) for every
integer i; a post's id is a Twitter snowflake of t_i whose low 22 bits are
(hash19(seed, K) << 3) | kind, where kind 0 is the post itself and 1..7 are the tweets it
embeds or points to (quoted, retweeted original, reply parent, ...). Ids are therefore unique
per (keyword, time, kind) and time-ordered.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

TWITTER_EPOCH_MS = 1288834974657

KIND_POST = 0
KIND_QUOTED = 1
KIND_RETWEETED = 2
KIND_REPLY_PARENT = 3
# kind k (k >= 1) lives k hours before its post so embedded tweets look older than the post
KIND_DELTA_MS = 3_600_000

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def h64(*parts: object) -> int:
    raw = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "big")


def snowflake(ms: int, low22: int) -> int:
    return ((ms - TWITTER_EPOCH_MS) << 22) | (low22 & 0x3FFFFF)


def snowflake_ms(sid: int) -> int:
    return (sid >> 22) + TWITTER_EPOCH_MS


def x_time(ms: int) -> str:
    """X's created_at format: 'Wed Oct 25 12:00:00 +0000 2023'."""
    d = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return f"{_DAYS[d.weekday()]} {_MONTHS[d.month - 1]} {d.day:02d} {d:%H:%M:%S} +0000 {d.year}"


# --- query parsing ------------------------------------------------------------------------------

_TOKEN_RE = re.compile(r"^(since|until|since_time|until_time):(\S+)$", re.IGNORECASE)


def parse_time(value: str) -> int:
    """'YYYY-MM-DD', 'YYYY-MM-DD_HH:MM:SS_UTC', ISO, or unix seconds -> unix ms."""
    v = value.strip()
    if re.fullmatch(r"-?\d+(\.\d+)?", v):
        return int(float(v) * 1000)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", v):
        d = datetime.strptime(v, "%Y-%m-%d").replace(tzinfo=UTC)
        return int(d.timestamp() * 1000)
    m = re.fullmatch(r"(\d{4}-\d{2}-\d{2})_(\d{2}:\d{2}:\d{2})(?:_UTC)?", v)
    if m:
        d = datetime.strptime(f"{m[1]} {m[2]}", "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        return int(d.timestamp() * 1000)
    d = datetime.fromisoformat(v.replace("Z", "+00:00"))
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    return int(d.timestamp() * 1000)


@dataclass(frozen=True)
class ParsedQuery:
    keyword: str
    since_ms: int | None
    until_ms: int | None


def parse_query(raw: str) -> ParsedQuery:
    words: list[str] = []
    since = until = None
    for tok in (raw or "").split():
        m = _TOKEN_RE.match(tok)
        if not m:
            words.append(tok)
            continue
        op, val = m[1].lower(), m[2]
        try:
            ms = int(val) * 1000 if op.endswith("_time") else parse_time(val)
        except ValueError:
            words.append(tok)
            continue
        if op.startswith("since"):
            since = ms
        else:
            until = ms
    return ParsedQuery(" ".join(words), since, until)


# --- the corpus -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeywordSeries:
    keyword: str
    interval_ms: int
    phase_ms: int
    low19: int

    @classmethod
    def make(cls, keyword: str, density_per_hour: float, seed: int) -> KeywordSeries:
        interval = max(1, round(3_600_000 / max(density_per_hour, 1e-9)))
        return cls(
            keyword,
            interval,
            h64("phase", seed, keyword) % interval,
            h64("low", seed, keyword) & 0x7FFFF,
        )

    def time_of(self, i: int) -> int:
        return self.phase_ms + i * self.interval_ms

    def id_of(self, i: int, kind: int = KIND_POST) -> int:
        ms = self.time_of(i) - kind * KIND_DELTA_MS
        return snowflake(ms, (self.low19 << 3) | kind)

    def first_at_or_after(self, ms: int) -> int:
        """Smallest i with time_of(i) >= ms."""
        return -((self.phase_ms - ms) // self.interval_ms)

    def window(
        self, since_ms: int | None, until_ms: int | None, now_ms: int, max_posts: int
    ) -> tuple[int, int]:
        """Index range [lo, hi] (inclusive) of posts with since <= t < until; hi < lo if empty."""
        until = now_ms if until_ms is None else until_ms
        hi = self.first_at_or_after(until) - 1
        # ids must stay above X's epoch (and kind deltas must too)
        floor_ms = TWITTER_EPOCH_MS + 8 * KIND_DELTA_MS
        lo = self.first_at_or_after(max(since_ms if since_ms is not None else floor_ms, floor_ms))
        if since_ms is None:
            lo = max(lo, hi - max_posts + 1)
        return lo, hi


def now_ms() -> int:
    return int(time.time() * 1000)


# --- cursors --------------------------------------------------------------------------------------
# Opaque to clients: urlsafe base64 of "xsim1|<kind>|<tag>|<next>|<lo>".


def encode_cursor(kind: str, tag: int, nxt: int, lo: int) -> str:
    raw = f"xsim1|{kind}|{tag}|{nxt}|{lo}".encode()
    return "DAAD" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(value: str | None, kind: str, tag: int) -> tuple[int, int] | None:
    if not value or not value.startswith("DAAD"):
        return None
    body = value[4:]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
        magic, k, t, nxt, lo = raw.split("|")
        if magic != "xsim1" or k != kind or int(t) != tag:
            return None
        return int(nxt), int(lo)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):  # not a cursor of ours
        return None
