"""What a task will cost before it runs: X requests, time with the current account pool, and
money at configurable prices — the figures a client compares with per-1,000-post APIs."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from libs.records.kol import KolFollowingsTask
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


# A KOL's following list is assumed this long when estimating (X shows up to thousands).
ASSUMED_KOL_FOLLOWINGS = 500
# KOLs assumed by a task for "all" KOLs without a limit (the gateway does not count them).
ASSUMED_ALL_KOLS = 100


def kol_estimate(settings: Settings, task: KolFollowingsTask) -> dict:
    """Calls and time for a KOL followings task: per KOL one lookup and the pages of its
    list at the source's page size, one call per XGET_KOL_API_INTERVAL_S (api) or at the
    Following limit of one account (x)."""
    kols = len(task.handles) or task.limit or ASSUMED_ALL_KOLS
    if settings.kol_source == "api":
        page, per_call_s = settings.kol_api_page_size, settings.kol_api_interval_s
        price = settings.kol_api_price_per_call
        basis = f"{settings.kol_api_page_size} followings per call, one call per "
        basis += f"{settings.kol_api_interval_s} s"
    else:
        page, price = settings.kol_x_page_size, settings.cost_per_x_request_usd
        per_call_s = settings.x_rate_window_s / settings.rate_limit("Following")
        basis = f"{settings.rate_limit('Following')} Following requests per "
        basis += f"{settings.x_rate_window_s} s"
    calls = kols * (1 + math.ceil(ASSUMED_KOL_FOLLOWINGS / page))
    followings = kols * ASSUMED_KOL_FOLLOWINGS
    basis += f"; {kols} KOL(s) assumed {ASSUMED_KOL_FOLLOWINGS} followings each"
    if not task.handles and not task.limit:
        basis += f" ({ASSUMED_ALL_KOLS} KOLs assumed for 'all')"
    usd = calls * price
    return {
        "posts": followings,
        "x_requests": calls,
        "seconds": round(calls * per_call_s, 1),
        "basis": basis,
        "cost_usd": {
            "x_requests": round(usd, 6),
            "posts": 0.0,
            "total": round(usd, 6),
            "per_1000_posts": round(1000 * usd / followings, 6) if followings else 0.0,
        },
    }
