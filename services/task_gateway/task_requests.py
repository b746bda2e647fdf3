"""What a client sends to create a task (the design's names and ours), and the 422 the
gateway answers a bad one with: `{"status": "rejected", "detail": [{"field", "message"}]}`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import Field, ValidationError, field_validator

from libs.query import SearchFilters
from libs.records.tasks import OnDemandTask, SearchType
from libs.strict_params import StrictModel


class ScheduledRequest(StrictModel):
    task_id: str | None = None
    keyword: str
    priority: int = Field(5, ge=1, le=10)
    frequency: Literal["hourly", "daily", "weekly"]
    frequency_count: int = Field(1, ge=1, le=3600)
    filters: SearchFilters | None = None
    callback_url: str | None = None
    download_video: bool = False
    account_tag: str | None = Field(
        None, max_length=64, description="Only accounts with this tag serve its runs."
    )


class _WindowRequest(StrictModel):
    """What every search-over-a-window request carries (on-demand and generic search)."""

    task_id: str | None = None
    priority: int = Field(5, ge=1, le=10)
    required_count: int = Field(0, ge=0)
    start_time: datetime
    end_time: datetime
    callback_url: str | None = None
    filters: SearchFilters | None = None
    download_video: bool = False
    account_tag: str | None = Field(
        None, max_length=64, description="Only accounts with this tag serve the task."
    )

    def task(
        self, task_id: str, keyword: str, search_type: SearchType | None = None
    ) -> OnDemandTask:
        """The on-demand command for this request (raises ValidationError on bad input)."""
        return OnDemandTask(
            task_id=self.task_id or task_id,
            keyword=keyword,
            priority=self.priority,
            required_count=self.required_count,
            start_time=self.start_time,
            end_time=self.end_time,
            callback_url=self.callback_url,
            filters=self.filters,
            download_video=self.download_video,
            submitted_at=datetime.now(UTC),
            search_type=search_type,
            account_tag=self.account_tag,
        )


class OnDemandRequest(_WindowRequest):
    keyword: str


class SearchRequest(_WindowRequest):
    """The design's TaskRequest (type, keyword, username, count, priority "high"/"normal"/…,
    start_date, end_date) and our names for the same things (required_count, priority 1-10,
    start_time, end_time), plus post_id for quotes and retweeters."""

    type: SearchType
    keyword: str | None = None
    username: str | None = None
    post_id: str | None = None
    count: int | None = Field(
        None, ge=1, le=10000, description="Design's name of required_count (1-10000)."
    )
    priority: int = Field(
        5,
        ge=1,
        le=10,
        description="1 (highest) to 10, or the design's words: urgent 1, high 2, normal 5, low 8.",
    )
    start_date: datetime | None = Field(None, description="Design's name of start_time.")
    end_date: datetime | None = Field(None, description="Design's name of end_time.")
    # user_profile and retweeters fetch a user list, not a window of posts; searches without
    # a window cover the last XGET_API_DEFAULT_WINDOW_DAYS days
    start_time: datetime | None = None  # type: ignore[assignment]  # optional here (above)
    end_time: datetime | None = None  # type: ignore[assignment]  # optional here (above)

    @field_validator("priority", mode="before")
    @classmethod
    def _priority_word(cls, v):
        if isinstance(v, str) and not v.strip().isdigit():
            word = v.strip().lower()
            if word not in PRIORITY_WORDS:
                raise ValueError(
                    f"priority is 1-10 or one of {', '.join(PRIORITY_WORDS)}, not {v!r}"
                )
            return PRIORITY_WORDS[word]
        return v

    def merged(self, default_days: int) -> SearchRequest | JSONResponse:
        """Our names filled from the design's (a 422 when both are given and differ), and the
        default window for a search without one."""
        out = self.model_copy()
        for ours, theirs in (
            ("required_count", "count"),
            ("start_time", "start_date"),
            ("end_time", "end_date"),
        ):
            a, b = getattr(self, ours), getattr(self, theirs)
            if b is None:
                continue
            if ours in self.model_fields_set and a != b:
                return field_error(theirs, f"{theirs} and {ours} are the same field; give one")
            setattr(out, ours, b)
        if (
            self.type not in ("user_profile", "retweeters")
            and out.start_time is None
            and out.end_time is None
        ):
            end = datetime.now(UTC).replace(microsecond=0)
            out.start_time, out.end_time = end - timedelta(days=default_days), end
        return out

    def user_task(self, task_id: str, operation: str, target: str) -> OnDemandTask:
        """The command of a user operation. Its window is not used; it is fixed (X's first
        day) so that resubmitting the same request stays idempotent."""
        return OnDemandTask(
            task_id=self.task_id or task_id,
            keyword=USER_TASK_KEYWORD[operation] + target,
            priority=self.priority,
            required_count=self.required_count,
            start_time=X_EPOCH,
            end_time=X_EPOCH + timedelta(days=1),
            callback_url=self.callback_url,
            operation=operation,
            target=target,
            submitted_at=datetime.now(UTC),
            search_type=self.type,
            account_tag=self.account_tag,
        )


X_EPOCH = datetime(2006, 3, 21, tzinfo=UTC)
PRIORITY_WORDS = {"urgent": 1, "high": 2, "normal": 5, "low": 8}
USER_TASK_KEYWORD = {"UserByScreenName": "profile:", "Retweeters": "retweeters:"}


def field_error(field: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"status": "rejected", "detail": [{"field": field, "message": message}]}, status_code=422
    )


# Where FastAPI says a parameter came from; the field's name alone is what the client sent.
LOCATIONS = ("body", "query", "path", "header")


def validation_errors(e: ValidationError | RequestValidationError) -> list[dict]:
    out = []
    for err in e.errors():
        loc = [str(x) for x in err.get("loc", ())]
        if loc and loc[0] in LOCATIONS:
            loc = loc[1:]
        out.append({"field": ".".join(loc) or None, "message": err.get("msg")})
    return out
