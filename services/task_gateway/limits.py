"""The gateway's input limits: every number, time, string and list a request carries is
bounded by a setting (Settings.api_*), and a value beyond is a 422 naming the field.

Query and path parameters get their bounds where the routes declare them (Query/Path built
from the settings); request bodies are walked here after pydantic has parsed them, so a field
added to a body model later is bounded too. A task's window has its own rules: both ends
within [api_earliest_time, api_latest_time], at most api_max_window_days long and cut into at
most api_max_slices_per_task day slices (one search job each), so one request can no longer
ask for millions of search jobs.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

from pydantic import BaseModel

from libs.settings import Settings


class FieldError(ValueError):
    """A request value out of bounds: the app answers 422 with this field and message."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def utc(t: datetime) -> datetime:
    """A naive time is read as UTC (the data API's convention)."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


def check_time(settings: Settings, field: str, t: datetime | None) -> None:
    if t is None:
        return
    lo, hi = settings.api_earliest_time, settings.api_latest_time
    try:
        inside = lo <= utc(t) <= hi
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before datetime.min in UTC
        inside = False
    if not inside:
        raise FieldError(field, f"must lie between {lo.isoformat()} and {hi.isoformat()}")


def check_number(
    settings: Settings, field: str, n: int | float | None, ceiling: int | None = None
) -> None:
    ceiling = settings.api_max_number if ceiling is None else ceiling
    if n is not None and not -ceiling <= n <= ceiling:
        raise FieldError(field, f"must be at most {ceiling} in magnitude")


def check_string(settings: Settings, field: str, s: str | None) -> None:
    if s is not None and len(s) > settings.api_max_string_length:
        raise FieldError(
            field,
            f"is {len(s)} characters long; at most {settings.api_max_string_length} are allowed",
        )


def day_slice_count(start: datetime, end: datetime) -> int:
    """How many UTC calendar days [start, end) touches: the scheduler's day slices."""
    first = utc(start).astimezone(UTC).date()
    last = (utc(end).astimezone(UTC) - timedelta(microseconds=1)).date()
    return max(1, (last - first).days + 1)


def check_window(settings: Settings, start: datetime | None, end: datetime | None) -> None:
    check_time(settings, "start_time", start)
    check_time(settings, "end_time", end)
    if start is None or end is None or utc(end) <= utc(start):
        return  # the task record says why (end_time must be after start_time)
    days = (utc(end) - utc(start)) / timedelta(days=1)
    if days > settings.api_max_window_days:
        raise FieldError(
            "end_time",
            f"the window is {math.ceil(days)} days long; at most "
            f"{settings.api_max_window_days} days are allowed "
            "(XGET_API_MAX_WINDOW_DAYS)",
        )
    slices = day_slice_count(start, end)
    if slices > settings.api_max_slices_per_task:
        raise FieldError(
            "end_time",
            f"the window touches {slices} days, one search job each; "
            f"at most {settings.api_max_slices_per_task} are allowed "
            "(XGET_API_MAX_SLICES_PER_TASK)",
        )


def check_body(settings: Settings, body: BaseModel | None) -> None:
    """Every value of a parsed request body within the limits (nested models and lists
    included); the task window's own rules when the body has start_time/end_time."""
    if body is None:
        return
    _walk(settings, body, "")
    if "start_time" in type(body).model_fields and "end_time" in type(body).model_fields:
        window = cast(Any, body)  # a task model: both fields are declared (checked above)
        check_window(settings, window.start_time, window.end_time)


# Body fields with their own ceiling instead of api_max_number.
_CEILINGS = {"required_count": "api_max_required_count"}


def _walk(settings: Settings, value, field: str) -> None:
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            _walk(settings, getattr(value, name), f"{field}.{name}" if field else name)
    elif isinstance(value, (list, tuple, set)):
        if len(value) > settings.api_max_list_items:
            raise FieldError(
                field, f"has {len(value)} items; at most {settings.api_max_list_items} are allowed"
            )
        for i, item in enumerate(value):
            _walk(settings, item, f"{field}.{i}")
    elif isinstance(value, bool):
        return
    elif isinstance(value, (int, float)):
        ceiling = _CEILINGS.get(field.rsplit(".", 1)[-1])
        check_number(settings, field, value, getattr(settings, ceiling) if ceiling else None)
    elif isinstance(value, str):
        check_string(settings, field, value)
    elif isinstance(value, datetime):
        check_time(settings, field, value)
    elif isinstance(value, date):
        check_time(settings, field, datetime.combine(value, datetime.min.time()))
