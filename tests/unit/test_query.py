"""X advanced-search query building from task filters, and the validation that names the field."""

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from libs.query import SearchFilters, build_query
from libs.records.tasks import OnDemandTask
from services.task_gateway.scheduler import jobs_for

T0 = datetime(2026, 10, 1, tzinfo=UTC)
T1 = datetime(2026, 10, 2, tzinfo=UTC)


def test_every_operator_in_order():
    f = SearchFilters(
        from_users=["elonmusk", "@Tesla"],
        to_users=["nasa"],
        mentions=["spacex"],
        lang="en",
        include=["images", "verified"],
        exclude=["replies", "nativeretweets"],
        exclude_words=["cheap", "buy now"],
        min_faves=100,
        min_retweets=10,
        min_replies=2,
        conversation_id="1234567890",
    )
    q = build_query('"model y" OR #cybertruck -fsd', f, T0, T1)
    assert q == (
        '"model y" OR #cybertruck -fsd (from:elonmusk OR from:Tesla) to:nasa @spacex '
        '-cheap -"buy now" lang:en filter:images filter:verified -filter:replies '
        "-filter:nativeretweets min_faves:100 min_retweets:10 min_replies:2 "
        "conversation_id:1234567890 since:2026-10-01_00:00:00_UTC "
        "until:2026-10-02_00:00:00_UTC"
    )


def test_keyword_alone_and_any_language():
    assert build_query("特斯拉", None, T0, T1) == (
        "特斯拉 since:2026-10-01_00:00:00_UTC until:2026-10-02_00:00:00_UTC"
    )
    assert build_query("tesla") == "tesla"


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"min_faves": -1}, "min_faves"),
        ({"lang": "English"}, "lang"),
        ({"from_users": ["not a handle!"]}, "from_users"),
        ({"include": ["gifs"]}, "include"),
        ({"exclude": ["everything"]}, "exclude"),
        ({"conversation_id": "abc"}, "conversation_id"),
        ({"tab": "Videos"}, "tab"),
        ({"exclude_words": [" "]}, "exclude_words"),
    ],
)
def test_bad_filters_name_their_field(bad, field):
    with pytest.raises(ValidationError) as e:
        SearchFilters(**bad)
    assert e.value.errors()[0]["loc"][0] == field


def test_scheduler_puts_filters_and_tab_in_every_slice():
    task = OnDemandTask(
        task_id="t",
        keyword="tesla",
        start_time=T0,
        end_time=datetime(2026, 10, 3, tzinfo=UTC),
        submitted_at=T1,
        filters=SearchFilters(lang="ja", min_faves=5, tab="Top"),
    )
    jobs = jobs_for(task)
    assert len(jobs) == 2
    assert all(j.product == "Top" and "lang:ja min_faves:5 since:" in j.query for j in jobs)


def test_estimate_counts_requests_time_with_the_pool_and_cost():
    from libs.settings import Settings
    from services.task_gateway.estimate import estimate

    s = Settings(
        _env_file=None,
        x_rate_limits="SearchTimeline:50",
        x_rate_window_s=900,
        cost_per_x_request_usd=0.001,
        cost_per_post_usd=0.0001,
        x_page_size=20,
    )
    task = OnDemandTask(
        task_id="t", keyword="k", required_count=1000, start_time=T0, end_time=T1, submitted_at=T1
    )
    e = estimate(s, task, active_accounts=2)
    assert e["x_requests"] == 50 and e["posts"] == 1000
    assert e["seconds"] == 450.0  # 50 requests at 2 x 50 per 900 s
    assert e["cost_usd"] == {
        "x_requests": 0.05,
        "posts": 0.1,
        "total": 0.15,
        "per_1000_posts": 0.15,
    }
    slow = estimate(s, task, active_accounts=1)
    assert slow["seconds"] == 900.0 and "1 active account" in slow["basis"]
