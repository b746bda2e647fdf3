"""The pricing calculator against the design's own formula ("事件驱动定价模型"), on every tier
boundary, and the quote route a client calls before submitting a task."""

from __future__ import annotations

import httpx
import pytest

from libs.settings import Settings
from services.task_gateway.api import create_app
from services.task_gateway.pricing import actual_cost, calculate, quote_for

# The design's PricingCalculator, verbatim in substance (its constants and its arithmetic).
QUERY_COSTS = {
    "standard_query": 0.016,
    "single_tweet": 0.05,
    "profile_query": 0.016,
    "search_query": 0.016,
}
TIER_PRICING = {
    1: {"max_queries": 5, "cost_per_item": 0.0004},
    2: {"max_queries": 10, "cost_per_item": 0.0008},
    3: {"max_queries": 30, "cost_per_item": 0.0012},
    4: {"max_queries": 100, "cost_per_item": 0.0016},
    5: {"max_queries": float("inf"), "cost_per_item": 0.002},
}


def design_cost(task_type: str, query_count: int, expected_items: int) -> dict:
    if task_type == "single_tweet":
        base_cost = QUERY_COSTS["single_tweet"]
    else:
        base_cost = QUERY_COSTS["standard_query"] * query_count
    tier = next(t for t, c in TIER_PRICING.items() if query_count <= c["max_queries"])
    free_items = min(query_count * 40, expected_items)
    paid_items = max(0, expected_items - free_items)
    item_cost = paid_items * TIER_PRICING[tier]["cost_per_item"]
    return {
        "base_cost": base_cost,
        "item_cost": item_cost,
        "total_cost": base_cost + item_cost,
        "tier": tier,
        "free_items": free_items,
        "paid_items": paid_items,
    }


SETTINGS = Settings(_env_file=None, api_token="t" * 32, insecure_dev_defaults=True)


@pytest.mark.parametrize("query_count", [1, 5, 6, 10, 11, 30, 31, 100, 101, 1000])
@pytest.mark.parametrize("expected_items", [0, 39, 40, 41, 4000, 4001, 100_000])
@pytest.mark.parametrize("kind", ["search_query", "profile_query", "single_tweet"])
def test_the_quote_is_the_designs_formula_on_every_tier_boundary(kind, query_count, expected_items):
    got = calculate(SETTINGS, kind, query_count, expected_items)
    want = design_cost(
        "single_tweet" if kind == "single_tweet" else "search", query_count, expected_items
    )
    for key in ("tier", "free_items", "paid_items"):
        assert got[key] == want[key], key
    for key in ("base_cost", "item_cost", "total_cost"):
        assert got[key] == pytest.approx(want[key], abs=1e-6), key


def test_tiers_change_exactly_at_their_boundaries():
    assert [calculate(SETTINGS, "search_query", q, 0)["tier"] for q in (5, 6, 10, 11)] == [
        1,
        2,
        2,
        3,
    ]
    assert [calculate(SETTINGS, "search_query", q, 0)["tier"] for q in (30, 31, 100, 101)] == [
        3,
        4,
        4,
        5,
    ]


def test_prices_are_settings():
    s = Settings(
        _env_file=None,
        pricing_query_costs="search_query:1,single_tweet:2,profile_query:3,standard_query:4",
        pricing_tiers="2:0.5,inf:0.25",
        pricing_free_items_per_query=10,
    )
    q = calculate(s, "search_query", 3, 100)
    assert (q["tier"], q["base_cost"], q["free_items"], q["paid_items"]) == (2, 3.0, 30, 70)
    assert q["total_cost"] == pytest.approx(3.0 + 70 * 0.25)


def test_a_task_request_is_one_query_with_its_required_count_or_window():
    class Req:
        type = "keyword_search"
        required_count = 500
        start_time = end_time = None

    assert quote_for(Req(), SETTINGS)["total_cost"] == pytest.approx(
        design_cost("search", 1, 500)["total_cost"]
    )


async def test_the_quote_route_answers_before_submission_and_names_bad_fields():
    app = create_app(SETTINGS, None, None)  # type: ignore[arg-type]
    h = {"Authorization": "Bearer " + "t" * 32}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        r = await c.post(
            "/api/v1/pricing/quote",
            headers=h,
            json={
                "keyword": "tesla",
                "start_time": "2026-10-01T00:00:00Z",
                "end_time": "2026-10-02T00:00:00Z",
            },
        )
        assert r.status_code == 200, r.text
        q = r.json()["quote"]
        # 24 h at the estimate's 60 posts/h: 1,440 items, 40 free, 1,400 at tier 1
        assert (q["expected_items"], q["tier"], q["paid_items"]) == (1440, 1, 1400)
        assert q["total_cost"] == pytest.approx(design_cost("search", 1, 1440)["total_cost"])
        r = await c.post(
            "/api/v1/pricing/quote",
            headers=h,
            json={"type": "user_profile", "username": "jack", "query_count": 31},
        )
        assert r.json()["quote"]["tier"] == 4
        r = await c.post("/api/v1/pricing/quote", headers=h, json={"type": "nope"})
        assert r.status_code == 422 and r.json()["detail"][0]["field"] == "type"
        r = await c.post("/api/v1/pricing/quote", headers=h, json={"surprise": 1})
        assert r.status_code == 422 and r.json()["detail"][0]["field"] == "surprise"
        r = await c.post("/api/v1/pricing/quote", json={})
        assert r.status_code == 401


def test_actual_cost_is_the_counts_times_the_prices():
    s = Settings(
        _env_file=None,
        cost_per_x_request_usd=0.001,
        cost_x_request_usd_by_operation="UserByScreenName:0.01",
        cost_per_post_usd=0.0001,
        cost_per_media_gb_usd=2.0,
        kol_api_price_per_call=0.5,
    )
    c = actual_cost(s, {"SearchTimeline": 7, "UserByScreenName": 2}, 130, 500_000_000, 3)
    assert c["x_requests"]["SearchTimeline"] == {"requests": 7, "cost": 0.007}
    assert c["x_requests"]["UserByScreenName"] == {"requests": 2, "cost": 0.02}
    assert c["cost_usd"]["total"] == pytest.approx(0.007 + 0.02 + 0.013 + 1.0 + 1.5)


def test_a_kol_followings_task_is_one_standard_query_per_kol():
    from services.task_gateway.pricing import quote_task

    class Kol:
        handles = ("a", "b", "c", "d", "e", "f")
        limit = None

    q = quote_task(Kol(), SETTINGS)
    assert (q["type"], q["query_count"], q["tier"]) == ("kol_followings", 6, 2)
    assert q["total_cost"] == pytest.approx(6 * 0.016)
