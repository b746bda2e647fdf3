"""The gateway's bounds on request values (services/task_gateway/limits.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from libs.query import SearchFilters
from libs.settings import Settings
from services.task_gateway.limits import FieldError, check_body, check_window, day_slice_count
from services.task_gateway.task_requests import OnDemandRequest

UTC = UTC


def settings(**kw) -> Settings:
    return Settings(_env_file=None, **kw)


def field_of(fn, *args) -> str:
    with pytest.raises(FieldError) as e:
        fn(*args)
    return e.value.field


@pytest.mark.parametrize(
    "start, end, days",
    [
        ("2026-10-01T00:00:00", "2026-10-02T00:00:00", 1),
        ("2026-10-01T12:00:00", "2026-10-02T00:00:00", 1),
        ("2026-10-01T12:00:00", "2026-10-02T00:00:01", 2),
        ("2026-10-01T00:00:00", "2026-10-04T00:00:00", 3),
        ("2026-10-01T23:00:00-02:00", "2026-10-02T01:00:00-02:00", 1),  # both on 2 Oct UTC
    ],
)
def test_day_slice_count_is_the_schedulers_day_slices(start, end, days):
    from services.task_gateway.scheduler import day_slices

    s, e = datetime.fromisoformat(start), datetime.fromisoformat(end)
    s, e = (t if t.tzinfo else t.replace(tzinfo=UTC) for t in (s, e))
    assert day_slice_count(s, e) == len(day_slices(s, e)) == days


def test_window_bounds():
    st = settings(api_max_window_days=10, api_max_slices_per_task=5)
    t = datetime(2026, 10, 1, tzinfo=UTC)
    check_window(st, t, t + timedelta(days=4, hours=23))
    assert field_of(check_window, st, t, t + timedelta(days=5, seconds=1)) == "end_time"  # 6 days
    assert field_of(check_window, st, t, t + timedelta(days=11)) == "end_time"
    assert field_of(check_window, st, datetime(2001, 1, 1, tzinfo=UTC), t) == "start_time"
    assert field_of(check_window, st, t, datetime(2200, 1, 1, tzinfo=UTC)) == "end_time"
    # before datetime.min once converted to UTC: out of range, not an OverflowError
    early = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))
    assert field_of(check_window, st, early, t) == "start_time"


def test_a_bound_set_without_a_zone_is_utc(monkeypatch):
    monkeypatch.setenv("XGET_API_LATEST_TIME", "2030-01-01")
    st = settings()
    t = datetime(2029, 12, 31, tzinfo=UTC)
    check_window(st, t, t + timedelta(hours=1))
    assert field_of(check_window, st, t, t + timedelta(days=2)) == "end_time"


def test_body_walk_names_nested_fields_and_list_items():
    st = settings(api_max_list_items=3, api_max_string_length=16, api_max_number=100)
    base = dict(keyword="x", start_time="2026-10-01T00:00:00Z", end_time="2026-10-02T00:00:00Z")
    check_body(st, OnDemandRequest(**base, filters=SearchFilters(from_users=["a", "b", "c"])))
    cases = {
        "filters.from_users": dict(filters=SearchFilters(from_users=["a", "b", "c", "d"])),
        "filters.exclude_words.1": dict(filters=SearchFilters(exclude_words=["ok", "y" * 17])),
        "filters.min_faves": dict(filters=SearchFilters(min_faves=101)),
        "keyword": dict(keyword="k" * 17),
        "required_count": dict(required_count=10**7),
    }
    for field, change in cases.items():
        assert field_of(check_body, st, OnDemandRequest(**{**base, **change})) == field
