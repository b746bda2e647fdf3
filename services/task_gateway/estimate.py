"""What a task will cost before it runs: X requests, time with the current account pool, and
money at configurable prices — the figures a client compares with per-1,000-post APIs."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from libs.records.tasks import OnDemandTask
from libs.settings import Settings

# A retweeters list without a target is assumed this long (X shows at most a few hundred).
ASSUMED_RETWEETERS = 100


def estimate(settings: Settings, task: OnDemandTask, active_accounts: int) -> dict:
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
    if active_accounts > 0:
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
    return {
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


def completion(submitted_at: datetime, est: dict) -> datetime:
    return submitted_at + timedelta(seconds=est["seconds"])
