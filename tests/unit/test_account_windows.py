"""An account's budget for one X operation (services/account_manager/windows.py): X's window,
the operator's caps on the UTC calendar, a lease's share counted even when its events are lost."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from libs.records.accounts import AccountState, OpWindow
from services.account_manager import windows

NOON = datetime(2026, 12, 6, 12, 30, tzinfo=UTC).timestamp()


def account(**caps) -> AccountState:
    return AccountState(
        account_id="a1",
        name="alice",
        status="active",
        added_at=datetime.fromtimestamp(NOON, UTC),
        updated_at=datetime.fromtimestamp(NOON, UTC),
        **caps,
    )


def test_left_is_the_smallest_of_the_window_and_the_caps():
    a = account(daily_caps={"SearchTimeline": 30}, hourly_caps={"SearchTimeline": 8})
    w = OpWindow(limit=50, used=10)
    windows.roll_calendar(w, NOON)
    w.day_used, w.hour_used = 25, 3
    assert windows.left(a, "SearchTimeline", w, NOON) == 5  # the day's cap is the tightest
    w.hour_used = 6
    assert windows.left(a, "SearchTimeline", w, NOON) == 2  # now the hour's
    assert windows.left(a, "UserByScreenName", OpWindow(limit=50, used=10), NOON) == 40


def test_a_new_utc_hour_and_day_start_their_counts_at_zero():
    w = OpWindow(limit=50)
    windows.roll_calendar(w, NOON)
    w.day_used, w.hour_used = 20, 7
    windows.roll_calendar(w, NOON + 3600)  # 13:30 the same day
    assert (w.day_used, w.hour_used) == (20, 0)
    windows.roll_calendar(w, NOON + 12 * 3600)  # 00:30 the next day
    assert (w.day_used, w.hour_used) == (0, 0)


def test_a_cap_that_stops_the_account_lifts_at_the_next_hour_or_day():
    a = account(daily_caps={"SearchTimeline": 10}, hourly_caps={"SearchTimeline": 4})
    w = OpWindow(limit=50)
    windows.roll_calendar(w, NOON)
    w.hour_used = 4
    assert (
        windows.cap_ends(a, "SearchTimeline", w, NOON)
        == datetime(2026, 12, 6, 13, tzinfo=UTC).timestamp()
    )
    w.day_used = 10
    assert (
        windows.cap_ends(a, "SearchTimeline", w, NOON)
        == datetime(2026, 12, 7, tzinfo=UTC).timestamp()
    )
    assert windows.cap_ends(account(), "SearchTimeline", w, NOON) is None


def test_a_lease_counts_toward_the_caps_even_when_its_events_never_come():
    w = OpWindow(limit=50)
    windows.roll_calendar(w, NOON)
    w.lease_granted_at = datetime.fromtimestamp(NOON, UTC)
    w.lease_day_before, w.lease_hour_before = 3, 1
    windows.count_lease(w, 5, NOON + 60)
    assert (w.day_used, w.hour_used) == (8, 6)


def test_the_window_reopens_after_its_reset_and_the_margin_and_not_under_a_lease():
    reset = datetime.fromtimestamp(NOON, UTC) + timedelta(minutes=15)
    w = OpWindow(limit=50, used=50, window_reset=reset)
    assert not windows.roll(w, reset.timestamp() + 1, margin_s=2)
    assert windows.roll(w, reset.timestamp() + 2, margin_s=2) and w.used == 0
    w = OpWindow(limit=50, used=50, window_reset=reset, lease_id="l1")
    assert not windows.roll(w, reset.timestamp() + 60, margin_s=2)  # the lease ends it first
    assert windows.window_ending(OpWindow(limit=50, window_reset=reset), reset.timestamp() - 1)
