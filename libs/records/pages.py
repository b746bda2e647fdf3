"""Raw X responses exactly as X returned them: the durable cache that is never fetched twice."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from .base import Record

EndReason = Literal["exhausted", "target_reached", "failed", "cancelled"]


class RawPage(Record):
    """One X page request and its response, or the marker that ends a slice.

    A slice is a chain of pages: page 0 is requested with no cursor, page n with the Bottom
    cursor of page n-1. `final` marks the last record of a slice; a final record may carry no
    response (the target was reached before asking X again).
    """

    schema_name = "xget.RawPage"
    schema_version = 2  # v2: response travels as the xget-body header
    read_versions = (1,)
    body_field = "response"
    body_since = 2

    task_id: str
    slice_id: str
    slice_count: int = Field(1, ge=1)
    page_no: int = Field(ge=0, description="Position of the page within its slice.")
    keyword: str
    operation: str = Field(description="X GraphQL operation, e.g. SearchTimeline.")
    query: str = Field(description="The search query sent to X.")
    cursor_in: str | None = Field(None, description="Cursor this page was requested with.")
    cursor_out: str | None = Field(None, description="Bottom cursor X answered with.")
    http_status: int | None = Field(None, description="X's HTTP status; None when not requested.")
    account: str | None = Field(None, description="Account name used (never its secrets).")
    requested_at: datetime
    elapsed_ms: float = Field(0.0, ge=0)
    response: str | None = Field(None, description="X's response body, verbatim JSON text.")
    entries: int = Field(0, ge=0, description="Post entries X returned on this page.")
    outcome: str = Field("ok", description="ok, or why X's answer is unusable (rate_limited…).")
    final: bool = Field(False, description="Last record of the slice.")
    end_reason: EndReason | None = Field(None, description="Why the slice ended (final only).")
    required_count: int = Field(0, ge=0, description="The task's target, carried for the counter.")
    download_video: bool = Field(
        False, description="The task's download_video option, for the parser."
    )
    parent_slice_id: str | None = Field(None, description="The job's parent_slice_id.")
    children: int = Field(
        0,
        ge=0,
        description="Final only: finer slices this slice handed the rest of its window "
        "to (a dense slice cut at a page boundary).",
    )
    oldest_post_time: datetime | None = Field(
        None,
        description="Time of the oldest post on the page (from its snowflake id), when "
        "the scraper needs it to decide whether the slice is dense.",
    )


class SliceEnd(Record):
    """Written by the parser on the posts topic after the last post of a slice, in order."""

    schema_name = "xget.SliceEnd"

    task_id: str
    slice_id: str
    slice_count: int = Field(1, ge=1)
    keyword: str
    end_reason: EndReason
    required_count: int = Field(0, ge=0)
    pages: int = Field(ge=0, description="Pages the slice took.")
    parent_slice_id: str | None = Field(None, description="The slice that cut this one off.")
    children: int = Field(0, ge=0, description="Finer slices this one handed its rest to.")


class SliceCheckpoint(Record):
    """Where a slice stands, so a restarted scraper resumes without asking X twice.

    Written before a slice's first request (`last_page_no` -1) and after each raw page is
    acknowledged. `raw_offset_floor` is an offset of the slice's raw-pages partition at or
    before which nothing of this slice is newer than the checkpoint: recovery reads the
    partition from there to its end, so a page that reached raw-pages just before a crash
    (whose checkpoint never got written) is found and never requested again.
    """

    schema_name = "xget.SliceCheckpoint"

    task_id: str
    slice_id: str
    raw_partition: int = Field(ge=0)
    raw_offset_floor: int = Field(ge=0)
    last_page_no: int = Field(ge=-1, description="-1 before the first page.")
    cursor_out: str | None = None
    entries_total: int = Field(0, ge=0, description="Post entries fetched so far in the slice.")
    final: bool = False
    updated_at: datetime
    oldest_post_time: datetime | None = Field(
        None, description="Oldest post time of the slice's first page (dense-slice decision)."
    )
