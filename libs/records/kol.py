"""KOL following lists: every call's raw answer (the cache), the gateway task and its progress."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from .base import Record

KolSource = Literal["x", "api"]
KolOperation = Literal["followings", "lookup"]


class KolPage(Record):
    """One call to a followings source and its answer, verbatim, written before anything
    parses or stores it. The kol-pages topic of these records IS the cache: a page found
    there is never requested again.

    A KOL's followings are a chain of pages: page 0 without a cursor, page n with the cursor
    page n-1 answered. `lookup` records resolve a handle to a user id (or back) once.
    """

    schema_name = "xget.KolPage"
    schema_version = 2  # v2: response travels as the xget-body header
    read_versions = (1,)
    body_field = "response"
    body_since = 2

    kol: str = Field(description="The KOL's key in twitter_kol (its id, or '@handle').")
    kol_id: str | None = Field(None, description="X user id of the KOL, when known.")
    kol_user_name: str | None = Field(None, description="Handle of the KOL, when known.")
    source: KolSource
    operation: KolOperation = "followings"
    page_no: int = Field(0, ge=0, description="Position in the KOL's chain of pages.")
    cursor_in: str | None = Field(None, description="Cursor the page was requested with.")
    cursor_out: str | None = Field(None, description="Cursor for the next page.")
    final: bool = Field(False, description="No further page exists.")
    users: int = Field(0, ge=0, description="Users on the page.")
    outcome: str = Field("ok", description="ok, or why the answer is unusable.")
    http_status: int | None = None
    error: str | None = None
    account: str | None = Field(None, description="X account used (x source; never secrets).")
    requested_at: datetime
    elapsed_ms: float = Field(0.0, ge=0)
    response: str | None = Field(None, description="The answer's body, verbatim.")


class KolCacheCleared(Record):
    """Written to every kol-pages partition by `--clear-cache`: pages before it are forgotten."""

    schema_name = "xget.KolCacheCleared"

    cleared_at: datetime


class KolFollowingsTask(Record):
    """Fetch the followings of some KOLs (handles) or of every KOL not yet done."""

    schema_name = "xget.KolFollowingsTask"
    intake_filled: ClassVar[dict[str, str]] = {"task_id": "key", "submitted_at": "timestamp"}

    task_id: str
    handles: list[str] = Field(default_factory=list, description="Empty = every KOL.")
    limit: int | None = Field(None, ge=1, description="At most this many KOLs not yet done.")
    submitted_at: datetime

    @field_validator("handles")
    @classmethod
    def _clean(cls, v: list[str]) -> list[str]:
        out = []
        for h in v:
            h = h.strip().lstrip("@")
            if not h or len(h) > 50 or not all(c.isalnum() or c == "_" for c in h):
                raise ValueError(f"not an X handle or user id: {h!r}")
            out.append(h)
        return out


class KolTaskProgress(Record):
    """Where a KOL followings task stands (compacted, keyed by task id)."""

    schema_name = "xget.KolTaskProgress"

    task_id: str
    status: Literal["pending", "running", "completed", "failed"]
    kols_done: int = Field(0, ge=0)
    kols_total: int = Field(0, ge=0)
    pages: int = Field(0, ge=0)
    rows: int = Field(0, ge=0)
    api_calls: int = Field(0, ge=0)
    cache_hits: int = Field(0, ge=0)
    estimated_cost: float = Field(0.0, ge=0)
    error: str | None = None
    created_at: datetime
    updated_at: datetime
