"""Task commands, the search jobs the scheduler derives from them, and task progress."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from ..query import SearchFilters
from .base import Record

# The X operation a task runs. SearchTimeline covers keyword searches, user timelines and
# quotes (advanced-search queries); the others fetch users: a profile or a post's retweeters.
Operation = Literal["SearchTimeline", "Retweeters", "UserByScreenName"]
USER_OPERATIONS = ("Retweeters", "UserByScreenName")
SearchType = Literal["keyword_search", "user_timeline", "quotes", "user_profile", "retweeters"]


class OnDemandTask(Record):
    """A client's on-demand collection: posts for a keyword in a time window."""

    schema_name = "xget.OnDemandTask"

    task_id: str = Field(description="Client-chosen or gateway-assigned task id.")
    keyword: str = Field(min_length=1, max_length=512, description="X search keyword/query.")
    priority: int = Field(5, ge=1, le=10, description="1 is the highest priority.")
    required_count: int = Field(
        0, ge=0, description="Unique posts wanted; 0 means every post that exists in the window."
    )
    start_time: datetime = Field(description="Window start (UTC, inclusive).")
    end_time: datetime = Field(description="Window end (UTC, exclusive).")
    callback_url: str | None = Field(None, description="Webhook for batch reports.")
    filters: SearchFilters | None = Field(
        None, description="X advanced-search filters (from:, lang:, min_faves:, tab, ...)."
    )
    download_video: bool = Field(
        False, description="Also store each video's best variant (the cover is always stored)."
    )
    submitted_at: datetime = Field(description="When the gateway (or client) issued the command.")
    operation: Operation = Field(
        "SearchTimeline", description="X operation: a search, or a user list/profile fetch."
    )
    target: str | None = Field(
        None,
        description="What a user operation fetches: the post id (Retweeters) or the "
        "screen name (UserByScreenName). The window is not used by those.",
    )
    search_type: SearchType | None = Field(
        None,
        description="The generic search form's type (POST /api/v1/tasks/search); none "
        "for an on-demand keyword search.",
    )
    account_tag: str | None = Field(
        None, max_length=64, description="Only accounts with this tag serve the task."
    )

    def kind(self) -> str:
        """The search type, for listing: the form's, else what the operation implies."""
        if self.search_type:
            return self.search_type
        return {"UserByScreenName": "user_profile", "Retweeters": "retweeters"}.get(
            self.operation, "keyword_search"
        )

    @model_validator(mode="after")
    def _target_shape(self) -> OnDemandTask:
        v, op = self.target, self.operation
        if op == "Retweeters" and not (v and v.isdigit() and len(v) <= 19):
            raise ValueError("target: Retweeters needs the post id (up to 19 digits)")
        if op == "UserByScreenName" and not (
            v and 1 <= len(v) <= 15 and all(c.isalnum() or c == "_" for c in v)
        ):
            raise ValueError(
                "target: UserByScreenName needs an X screen name (1-15 of A-Z, 0-9, _)"
            )
        return self

    @field_validator("keyword")
    @classmethod
    def _strip_keyword(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("keyword must not be blank")
        return v

    @field_validator("task_id")
    @classmethod
    def _task_id_shape(cls, v: str) -> str:
        if not v or len(v) > 128 or not all(c.isalnum() or c in "-_." for c in v):
            raise ValueError("task_id must be 1-128 characters of letters, digits, '-', '_', '.'")
        return v

    @field_validator("start_time", "end_time")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("must carry a timezone (use UTC, e.g. '2026-10-01T00:00:00Z')")
        return v

    @field_validator("end_time")
    @classmethod
    def _after_start(cls, v: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("start_time")
        if start is not None and v <= start:
            raise ValueError("end_time must be after start_time")
        return v


class SearchJob(Record):
    """One slice of a task for the scraper: a search query over part of the task's window."""

    schema_name = "xget.SearchJob"

    task_id: str = Field(description="The task this slice belongs to.")
    slice_id: str = Field(description="Unique within the task; stable across restarts.")
    slice_count: int = Field(1, ge=1, description="How many slices the task was cut into.")
    keyword: str = Field(description="The task's keyword, for reports and billing.")
    query: str = Field(description="The X search query, e.g. 'kw since:… until:…'.")
    product: Literal["Latest", "Top", "Media"] = Field("Latest", description="X search tab.")
    priority: int = Field(5, ge=1, le=10)
    required_count: int = Field(0, ge=0, description="The task's target; 0 = exhaust the slice.")
    start_time: datetime = Field(description="Slice window start (UTC).")
    end_time: datetime = Field(description="Slice window end (UTC).")
    download_video: bool = Field(False, description="The task's download_video option.")
    operation: Operation = Field(
        "SearchTimeline",
        description="X operation; for user operations `query` holds the "
        "post id (Retweeters) or screen name (UserByScreenName).",
    )
    parent_slice_id: str | None = Field(
        None,
        description="Set on a finer slice the scraper cut from a dense slice: the slice "
        "that handed it part of its window. None: cut by the scheduler.",
    )
    account_tag: str | None = Field(None, description="The task's account_tag.")


class TaskProgress(Record):
    """The dedup-counter's view of a task: unique posts stored against the target."""

    schema_name = "xget.TaskProgress"

    task_id: str
    keyword: str
    status: Literal["running", "completed"] = Field(description="completed = target or exhausted.")
    collected: int = Field(ge=0, description="Unique posts stored for the task.")
    target: int = Field(ge=0, description="required_count; 0 = everything that exists.")
    slices_done: int = Field(0, ge=0)
    slice_count: int = Field(1, ge=1)
    end_reason: str | None = Field(None, description="Why it completed: target_reached/exhausted.")
    updated_at: datetime


class TaskControl(Record):
    """The client's say over a running task (latest per task on a compacted topic): pause,
    resume, cancel, and its priority. The scraper reads it before every page request."""

    schema_name = "xget.TaskControl"

    task_id: str
    # "rejected": the scheduler refused the command (written once, never by the client). A
    # reader from before it skips such a record: it is about a task that never ran.
    state: Literal["active", "paused", "cancelled", "rejected"] = "active"
    priority: int | None = Field(None, ge=1, le=10, description="Overrides the task's priority.")
    reason: str | None = Field(None, description="Why it was paused, cancelled or rejected.")
    updated_at: datetime
    frequency: Literal["hourly", "daily", "weekly"] | None = Field(
        None, description="Scheduled tasks: a new frequency (the schedule runner re-plans)."
    )
    frequency_count: int | None = Field(
        None, ge=1, le=3600, description="Scheduled tasks: a new number of runs per period."
    )


class ScheduledTask(Record):
    """A client's recurring collection: `frequency_count` runs per hour/day/week, spread evenly.

    Run n (from 0) fires at submitted_at + n × period / frequency_count and becomes the
    on-demand task `{task_id}-r{n+1:04d}` over the time since the previous run's window ended,
    so a run never asks X again for posts an earlier run already covered. A frequency change
    (TaskControl) re-plans the runs not fired yet (ScheduleState keeps the plan in force)."""

    schema_name = "xget.ScheduledTask"

    task_id: str
    keyword: str = Field(min_length=1, max_length=512)
    priority: int = Field(5, ge=1, le=10, description="1 is the highest priority.")
    frequency: Literal["hourly", "daily", "weekly"]
    frequency_count: int = Field(1, ge=1, le=3600, description="Runs per period.")
    filters: SearchFilters | None = None
    callback_url: str | None = None
    download_video: bool = False
    submitted_at: datetime = Field(description="Anchor of the schedule: the first run's time.")
    account_tag: str | None = Field(
        None, max_length=64, description="Only accounts with this tag serve its runs."
    )

    @field_validator("keyword")
    @classmethod
    def _strip(cls, v: str) -> str:
        return OnDemandTask._strip_keyword(v)

    @field_validator("task_id")
    @classmethod
    def _task_id_shape(cls, v: str) -> str:
        return OnDemandTask._task_id_shape(v)


class ScheduleState(Record):
    """How far a scheduled task has fired (compacted, per task): survives a gateway restart,
    so no run is lost and none fires twice."""

    schema_name = "xget.ScheduleState"

    task_id: str
    last_run: int = Field(ge=-1, description="Index of the last run fired (-1: none yet).")
    updated_at: datetime
    # The plan the runs follow. None: the task's own frequency from its submission. After a
    # change (PATCH), run n > base_run fires at base_time + (n - base_run) × the new interval,
    # base_run being the last run fired before the change and base_time its fire time.
    frequency: Literal["hourly", "daily", "weekly"] | None = None
    frequency_count: int | None = Field(None, ge=1, le=3600)
    base_run: int = Field(0, ge=0, description="Run the plan is anchored on.")
    base_time: datetime | None = Field(None, description="Its fire time (None: submitted_at).")
