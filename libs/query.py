"""X advanced-search queries: task filters → the `rawQuery` X's search box would build.

The keyword is passed through as the client wrote it (any language, "quoted phrases", OR,
-exclusions, #hashtags); the filters become X's operators. Every filter is validated, so a bad
value is a 422 naming the field (`filters.min_faves`, `filters.lang`, …) instead of a query X
silently answers with nothing.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator

HANDLE = re.compile(r"^@?[A-Za-z0-9_]{1,15}$")
INCLUDE = Literal[
    "images",
    "videos",
    "media",
    "links",
    "verified",
    "blue_verified",
    "replies",
    "quote",
    "native_video",
    "hashtags",
    "mentions",
]
EXCLUDE = Literal[
    "replies", "nativeretweets", "retweets", "links", "media", "images", "videos", "quote"
]


class SearchFilters(BaseModel):
    """Optional narrowing of a search; every field maps to one of X's search operators."""

    from_users: list[str] = Field(default_factory=list, description="from:handle (OR-ed)")
    to_users: list[str] = Field(default_factory=list, description="to:handle (OR-ed)")
    mentions: list[str] = Field(default_factory=list, description="@handle mentioned (OR-ed)")
    lang: str | None = Field(None, description="lang:xx (ISO 639-1 code, e.g. en, zh, ja)")
    include: list[INCLUDE] = Field(default_factory=list, description="filter:x")
    exclude: list[EXCLUDE] = Field(default_factory=list, description="-filter:x")
    exclude_words: list[str] = Field(default_factory=list, description='-word / -"phrase"')
    min_faves: int | None = Field(None, ge=0, description="min_faves:N (likes)")
    min_retweets: int | None = Field(None, ge=0, description="min_retweets:N")
    min_replies: int | None = Field(None, ge=0, description="min_replies:N")
    conversation_id: str | None = Field(None, description="conversation_id:ID (a thread)")
    tab: Literal["Latest", "Top", "Media"] = Field("Latest", description="Search tab (product).")

    @field_validator("from_users", "to_users", "mentions")
    @classmethod
    def _handles(cls, v: list[str]) -> list[str]:
        for h in v:
            if not HANDLE.match(h):
                raise ValueError(f"{h!r} is not an X handle (1-15 letters, digits or _)")
        return [h.lstrip("@") for h in v]

    @field_validator("lang")
    @classmethod
    def _lang(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[a-z]{2,3}(-[a-z]{2,4})?", v):
            raise ValueError(f"{v!r} is not a language code like 'en', 'zh' or 'pt'")
        return v

    @field_validator("conversation_id")
    @classmethod
    def _conversation(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"\d{1,20}", v):
            raise ValueError("conversation_id is a post id (digits)")
        return v

    @field_validator("exclude_words")
    @classmethod
    def _words(cls, v: list[str]) -> list[str]:
        for w in v:
            if not w.strip() or '"' in w:
                raise ValueError(f"{w!r}: exclude words must be non-empty, without quotes")
        return [w.strip() for w in v]


def x_time(t: datetime) -> str:
    """X's advanced-search time operand: since:2026-11-01_00:00:00_UTC."""
    return t.astimezone(UTC).strftime("%Y-%m-%d_%H:%M:%S_UTC")


def _any(op: str, values: list[str]) -> str | None:
    if not values:
        return None
    terms = [f"{op}{v}" for v in values]
    return terms[0] if len(terms) == 1 else "(" + " OR ".join(terms) + ")"


def build_query(
    keyword: str,
    filters: SearchFilters | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> str:
    """The rawQuery: keyword, then operators in X's own order, then the time window."""
    f = filters or SearchFilters()
    parts: list[str | None] = [keyword.strip()]
    parts += [_any("from:", f.from_users), _any("to:", f.to_users), _any("@", f.mentions)]
    parts += [f'-"{w}"' if " " in w else f"-{w}" for w in f.exclude_words]
    if f.lang:
        parts.append(f"lang:{f.lang}")
    parts += [f"filter:{x}" for x in f.include]
    parts += [f"-filter:{x}" for x in f.exclude]
    for op, n in (
        ("min_faves", f.min_faves),
        ("min_retweets", f.min_retweets),
        ("min_replies", f.min_replies),
    ):
        if n is not None:
            parts.append(f"{op}:{n}")
    if f.conversation_id:
        parts.append(f"conversation_id:{f.conversation_id}")
    if since is not None:
        parts.append(f"since:{x_time(since)}")
    if until is not None:
        parts.append(f"until:{x_time(until)}")
    return " ".join(p for p in parts if p)
