"""What a task will cost before it runs: X requests, time with the current account pool, and
money at configurable prices — the figures a client compares with per-1,000-post APIs.

Time comes from the budget the pool actually has for the task's X operation (`Capacity`: what
the accounts have left in their current windows, when those reset, what a full window gives)
and from the requests of tasks queued ahead of it (same operation, priority at least as high):
a task behind a spent window waits for the reset, and one behind a long queue waits for it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from libs.records.accounts import AccountState
from libs.records.tasks import OnDemandTask
from libs.settings import Settings

# A retweeters list without a target is assumed this long (X shows at most a few hundred).
ASSUMED_RETWEETERS = 100


@dataclass
class Capacity:
    """The pool's budget for one X operation (and account tag), read from the account-state."""

    operation: str
    accounts: int  # accounts that may serve it (enabled, not suspended, with the tag)
    left_now: int  # requests left in their current windows (operators' caps included)
    per_window: int  # requests they allow per full window
    resets_in_s: float  # until the soonest spent or running window resets (0: none running)
    ahead: int = 0  # requests of tasks queued ahead (same operation, priority at least as high)


def capacity(
    settings: Settings,
    accounts: Iterable[AccountState],
    op: str,
    tag: str | None = None,
    now: datetime | None = None,
) -> Capacity:
    now = now or datetime.now(UTC)
    today, hour = now.strftime("%Y-%m-%d"), now.strftime("%Y-%m-%dT%H")
    n = left = per_window = 0
    resets: list[float] = []
    for a in accounts:
        if a.removed or a.disabled or a.status not in ("active", "rate_limited", "cooling_down"):
            continue
        if tag is not None and tag not in a.tags:
            continue
        n += 1
        w = a.ops.get(op)
        limit = w.limit if w is not None else settings.rate_limit(op)
        per_window += limit
        used = 0
        if w is not None and w.window_reset is not None and w.window_reset > now:
            used = w.used
            resets.append((w.window_reset - now).total_seconds())
        room = max(0, limit - used)
        if w is not None and op in a.daily_caps:
            room = min(room, max(0, a.daily_caps[op] - (w.day_used if w.day == today else 0)))
        if w is not None and op in a.hourly_caps:
            room = min(room, max(0, a.hourly_caps[op] - (w.hour_used if w.hour == hour else 0)))
        left += room
    return Capacity(op, n, left, per_window, min(resets) if resets else 0.0)


def requests_for(settings: Settings, task: OnDemandTask) -> tuple[int, int]:
    """(posts, X requests) the task is expected to take."""
    op = task.operation
    if op == "UserByScreenName":
        posts, requests = 1, 1  # "posts" counts what the task collects: here one user
    elif op == "Retweeters":
        posts = task.required_count or ASSUMED_RETWEETERS
        requests = math.ceil(posts / settings.x_page_size) + (0 if task.required_count else 1)
    else:
        hours = (task.end_time - task.start_time).total_seconds() / 3600
        window_posts = math.ceil(hours * settings.estimate_posts_per_hour)
        posts = min(task.required_count, window_posts) if task.required_count else window_posts
        # One request per page, plus the last (empty) page of every day slice.
        slices = max(1, math.ceil(hours / 24))
        requests = math.ceil(posts / settings.x_page_size) + (0 if task.required_count else slices)
    return posts, requests


def seconds_with(settings: Settings, c: Capacity, requests: int) -> float:
    """Time for `requests` after the queue ahead: what is left in the current windows goes
    at XGET_ESTIMATE_SECONDS_PER_PAGE per request per account, the rest waits for resets."""
    total = c.ahead + requests
    pace = settings.estimate_seconds_per_page / max(1, c.accounts)
    if total <= c.left_now:
        return total * pace
    rest = total - c.left_now
    per_window = max(1, c.per_window)
    windows = math.ceil(rest / per_window)  # full windows after the current ones
    # No window running yet: the first one starts with the first request.
    first_reset = max(c.left_now * pace, c.resets_in_s or settings.x_rate_window_s)
    last = rest - (windows - 1) * per_window
    return first_reset + (windows - 1) * settings.x_rate_window_s + last * pace


def estimate(
    settings: Settings,
    task: OnDemandTask,
    active_accounts: int,
    capacity: Capacity | None = None,
) -> dict:
    op = task.operation
    posts, requests = requests_for(settings, task)
    budget = None
    if capacity is not None and capacity.accounts > 0:
        seconds = seconds_with(settings, capacity, requests)
        basis = (
            f"{capacity.accounts} account(s) for {op}: {capacity.left_now} request(s) left in "
            f"the current window(s), {capacity.per_window} per {settings.x_rate_window_s} s "
            f"window; {capacity.ahead} request(s) of tasks queued ahead"
        )
        budget = {
            "operation": op,
            "accounts": capacity.accounts,
            "left_in_window": capacity.left_now,
            "per_window": capacity.per_window,
            "window_resets_in_s": round(capacity.resets_in_s, 1),
            "queued_ahead_requests": capacity.ahead,
        }
    elif active_accounts > 0:
        per_second = active_accounts * settings.rate_limit(op) / settings.x_rate_window_s
        seconds = requests / per_second
        basis = (
            f"{active_accounts} active account(s) at {settings.rate_limit(op)} "
            f"requests per {settings.x_rate_window_s} s"
        )
    else:
        seconds = requests * settings.estimate_seconds_per_page
        basis = "no active account known yet: XGET_ESTIMATE_SECONDS_PER_PAGE per request"
    req_usd = requests * settings.cost_per_x_request_usd
    post_usd = posts * settings.cost_per_post_usd
    out = {
        "posts": posts,
        "x_requests": requests,
        "seconds": round(seconds, 1),
        "basis": basis,
        "cost_usd": {
            "x_requests": round(req_usd, 6),
            "posts": round(post_usd, 6),
            "total": round(req_usd + post_usd, 6),
            "per_1000_posts": round(1000 * (req_usd + post_usd) / posts, 6) if posts else 0.0,
        },
    }
    if budget is not None:
        out["budget"] = budget
    return out


def completion(submitted_at: datetime, est: dict) -> datetime:
    return submitted_at + timedelta(seconds=est["seconds"])
