"""An account's budget for one X operation (its OpWindow): X's rate-limit window, a block X
imposed, the lease out on it, and the operator's daily and hourly caps (UTC calendar). Pure
functions of the window and the time, so the rules read and test apart from the pool."""

from __future__ import annotations

from datetime import UTC, datetime

from libs.leases import EXPIRY_MARGIN_S
from libs.records.accounts import AccountState, OpWindow


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def count_lease(w: OpWindow, used: int, now: float) -> None:
    """The day's and hour's counts are at least what the lease made (its events may come
    later, or never): an operator's cap holds even when outcomes are lost."""
    roll_calendar(w, now)
    if w.lease_granted_at is None:
        return
    if w.day == w.lease_granted_at.strftime("%Y-%m-%d"):
        w.day_used = max(w.day_used, w.lease_day_before + used)
    if w.hour == w.lease_granted_at.strftime("%Y-%m-%dT%H"):
        w.hour_used = max(w.hour_used, w.lease_hour_before + used)


def roll_calendar(w: OpWindow, now: float) -> None:
    """A new UTC day or hour starts its count at 0."""
    d = _dt(now)
    today, hour = d.strftime("%Y-%m-%d"), d.strftime("%Y-%m-%dT%H")
    if w.day != today:
        w.day, w.day_used = today, 0
    if w.hour != hour:
        w.hour, w.hour_used = hour, 0


def end_lease(w: OpWindow) -> None:
    w.lease_id = w.lease_holder = w.lease_expires = w.lease_granted_at = None
    w.lease_revoked = False
    w.lease_budget = w.lease_used_before = w.lease_day_before = w.lease_hour_before = 0


def roll(w: OpWindow, now: float, margin_s: float) -> bool:
    """X's block and window over (with the margin): the account serves again."""
    m = margin_s
    changed = False
    if w.blocked_until is not None and now >= w.blocked_until.timestamp() + m:
        w.blocked_until = None
        changed = True
    if w.window_reset is not None and now >= w.window_reset.timestamp() + m and w.lease_id is None:
        w.used, w.window_reset = 0, None
        changed = True
    return changed


def left(a: AccountState, op: str, w: OpWindow, now: float) -> int:
    """Requests the account may still make for `op` now: X's window, then the operator's
    daily and hourly caps."""
    roll_calendar(w, now)
    left = w.limit - w.used
    if op in a.daily_caps:
        left = min(left, a.daily_caps[op] - w.day_used)
    if op in a.hourly_caps:
        left = min(left, a.hourly_caps[op] - w.hour_used)
    return left


def cap_ends(a: AccountState, op: str, w: OpWindow, now: float) -> float | None:
    """When an operator's cap that stops the account lifts (next UTC hour or day)."""
    d = _dt(now)
    day_used, hour_used = w.day_used, w.hour_used
    if w.lease_id is not None:  # a lease out may spend its whole budget
        day_used = max(day_used, w.lease_day_before + w.lease_budget)
        hour_used = max(hour_used, w.lease_hour_before + w.lease_budget)
    ends = []
    if op in a.hourly_caps and hour_used >= a.hourly_caps[op]:
        ends.append(d.replace(minute=0, second=0, microsecond=0).timestamp() + 3600)
    if op in a.daily_caps and day_used >= a.daily_caps[op]:
        midnight = d.replace(hour=0, minute=0, second=0, microsecond=0)
        ends.append(midnight.timestamp() + 86400)
    return max(ends) if ends else None


def window_ending(w: OpWindow, now: float) -> bool:
    """The window ends too soon for a lease: a scraper stops using a lease EXPIRY_MARGIN_S
    before its end, and a lease ends with the window. Granting one would consume the
    request while giving the scraper nothing; it waits for the reset instead."""
    return w.window_reset is not None and now >= w.window_reset.timestamp() - EXPIRY_MARGIN_S
