"""The client's pricing calculator (design: "事件驱动定价模型") and a task's actual cost.

Quote (before a task runs), exactly the design's formula with its prices as settings:
  base_cost  = QUERY_COSTS[single_tweet]                     for a single post
             = QUERY_COSTS[kind] × query_count               otherwise
  tier       = the first tier whose max_queries ≥ query_count (five tiers)
  free_items = min(query_count × free_items_per_query, expected_items)
  paid_items = expected_items − free_items
  item_cost  = paid_items × tier's cost_per_item
  total_cost = base_cost + item_cost
A task request is one query (a scheduled task: its runs per period); its expected items are
its required_count, else the estimate's posts for its window.

Actual cost (what the task spent): X requests per operation × their price, posts × the post
price, media bytes × the GB price, KOL API calls × their price (settings cost_*, kol_api_*).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from libs.query import SearchFilters
from libs.settings import Settings

from .limits import check_body

# The design's query kinds for each task type (a profile fetch is a profile query; the
# advanced searches — keyword, user timeline, quotes — are search queries).
KIND_OF_TYPE = {
    "keyword_search": "search_query",
    "user_timeline": "search_query",
    "quotes": "search_query",
    "retweeters": "standard_query",
    "user_profile": "profile_query",
    "single_tweet": "single_tweet",
}


def _pairs(spec: str, field: str) -> list[tuple[str, float]]:
    out = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, value = part.partition(":")
        if not sep:
            raise ValueError(f"{field}: '{part}' is not 'name:price'")
        out.append((name.strip(), float(value)))
    return out


def query_costs(settings: Settings) -> dict[str, float]:
    return dict(_pairs(settings.pricing_query_costs, "XGET_PRICING_QUERY_COSTS"))


def tiers(settings: Settings) -> list[tuple[float, float]]:
    """[(max_queries, cost_per_item)] in order; tier n is index n-1."""
    out = [(float(m), c) for m, c in _pairs(settings.pricing_tiers, "XGET_PRICING_TIERS")]
    if not out or out[-1][0] != math.inf:
        raise ValueError("XGET_PRICING_TIERS: the last tier must be 'inf:price'")
    return out


def tier_for(settings: Settings, query_count: int) -> int:
    for n, (max_queries, _) in enumerate(tiers(settings), 1):
        if query_count <= max_queries:
            return n
    return len(tiers(settings))


def calculate(settings: Settings, kind: str, query_count: int, expected_items: int) -> dict:
    """The design's calculate_task_cost, with the prices of `settings`."""
    costs = query_costs(settings)
    if kind not in costs:
        raise ValueError(f"no price for query kind {kind!r} (XGET_PRICING_QUERY_COSTS)")
    base = costs[kind] if kind == "single_tweet" else costs[kind] * query_count
    tier = tier_for(settings, query_count)
    per_item = tiers(settings)[tier - 1][1]
    free = min(query_count * settings.pricing_free_items_per_query, expected_items)
    paid = max(0, expected_items - free)
    item_cost = paid * per_item
    return {
        "kind": kind,
        "query_count": query_count,
        "expected_items": expected_items,
        "base_cost": round(base, 6),
        "item_cost": round(item_cost, 6),
        "total_cost": round(base + item_cost, 6),
        "tier": tier,
        "cost_per_item": per_item,
        "free_items": free,
        "paid_items": paid,
        "currency": "USD",
    }


def _expected_items(settings: Settings, request: Any, kind: str) -> int:
    if getattr(request, "expected_items", None) is not None:
        return int(request.expected_items)
    if kind in ("profile_query", "single_tweet"):
        return 1
    required = getattr(request, "required_count", 0) or 0
    if required:
        return int(required)
    if kind == "standard_query":  # a retweeters list without a target
        from .estimate import ASSUMED_RETWEETERS

        return ASSUMED_RETWEETERS
    start, end = getattr(request, "start_time", None), getattr(request, "end_time", None)
    if start is None or end is None:
        return 0
    hours = (end - start).total_seconds() / 3600
    return max(0, math.ceil(hours * settings.estimate_posts_per_hour))


def task_type(request: Any) -> str:
    """keyword_search, user_profile, … of a request or task record."""
    if getattr(request, "type", None):
        return request.type
    if getattr(request, "search_type", None):
        return request.search_type
    if hasattr(request, "kind") and callable(request.kind):
        return request.kind()
    return "keyword_search"


def quote_for(request: Any, settings: Settings) -> dict:
    """The quote of a task request (or task record): an on-demand or search request is one
    query, a scheduled one `frequency_count` queries per period; `query_count` and
    `expected_items` given on a quote request override both."""
    kind = KIND_OF_TYPE[task_type(request)]
    query_count = getattr(request, "query_count", None) or getattr(request, "frequency_count", None)
    out = calculate(settings, kind, int(query_count or 1), _expected_items(settings, request, kind))
    out["type"] = task_type(request)
    return out


def quote_task(task: Any, settings: Settings) -> dict:
    """The quote every create answers: quote_for, and for a KOL followings task one standard
    query per KOL (their followings are not known before they are fetched: no items)."""
    if hasattr(task, "handles"):
        n = len(task.handles) or getattr(task, "limit", None) or 1
        return {**calculate(settings, "standard_query", n, 0), "type": "kol_followings"}
    return quote_for(task, settings)


class QuoteRequest(BaseModel):
    """POST /api/v1/pricing/quote: a task request as it would be submitted, or the design's
    raw inputs (type, query_count, expected_items)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal[
        "keyword_search", "user_timeline", "quotes", "user_profile", "retweeters", "single_tweet"
    ] = "keyword_search"
    task_id: str | None = None
    keyword: str | None = None
    username: str | None = None
    post_id: str | None = None
    required_count: int = Field(0, ge=0)
    start_time: datetime | None = None
    end_time: datetime | None = None
    priority: int = Field(5, ge=1, le=10)
    frequency: Literal["hourly", "daily", "weekly"] | None = None
    frequency_count: int | None = Field(None, ge=1, le=3600)
    filters: SearchFilters | None = None
    callback_url: str | None = None
    download_video: bool = False
    query_count: int | None = Field(None, ge=1, description="Queries priced together (tier).")
    expected_items: int | None = Field(None, ge=0, description="Items the queries return.")


def router(settings: Settings, auth) -> APIRouter:
    r = APIRouter(dependencies=[Depends(auth)], tags=["pricing"])

    @r.post("/api/v1/pricing/quote")
    async def quote(req: QuoteRequest) -> dict:
        """The design's price of a task request before it is submitted."""
        check_body(settings, req)
        return {"status": "success", "quote": quote_for(req, settings)}

    return r


# --- actual cost ----------------------------------------------------------------------------


def x_request_price(settings: Settings, operation: str) -> float:
    by_op = dict(
        _pairs(settings.cost_x_request_usd_by_operation, "XGET_COST_X_REQUEST_USD_BY_OPERATION")
    )
    return by_op.get(operation, settings.cost_per_x_request_usd)


def actual_cost(
    settings: Settings,
    x_requests: dict[str, int],
    posts: int,
    media_bytes: int,
    kol_api_calls: int,
) -> dict:
    """What a task spent, at the configured prices."""
    per_op = {
        op: {"requests": n, "cost": round(n * x_request_price(settings, op), 6)}
        for op, n in sorted(x_requests.items())
    }
    x_cost = sum(v["cost"] for v in per_op.values())
    post_cost = posts * settings.cost_per_post_usd
    media_cost = media_bytes / 1e9 * settings.cost_per_media_gb_usd
    kol_cost = kol_api_calls * settings.kol_api_price_per_call
    return {
        "x_requests": per_op,
        "x_requests_total": sum(x_requests.values()),
        "posts": posts,
        "media_bytes": media_bytes,
        "kol_api_calls": kol_api_calls,
        "cost_usd": {
            "x_requests": round(x_cost, 6),
            "posts": round(post_cost, 6),
            "media": round(media_cost, 6),
            "kol_api": round(kol_cost, 6),
            "total": round(x_cost + post_cost + media_cost + kol_cost, 6),
        },
    }
