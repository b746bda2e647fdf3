"""The one retry policy: full-jitter backoff and Retry-After in both of HTTP's forms."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from libs.retry import RetryPolicy, backoff_delay, retry_after_seconds

NOW = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)


def test_retry_after_in_seconds_and_as_an_http_date():
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds(" 0 ") == 0.0
    # "Sun, 06 Dec 2026 12:01:30 GMT"
    in_90s = format_datetime(NOW + timedelta(seconds=90), usegmt=True)
    assert retry_after_seconds(in_90s, now=NOW) == pytest.approx(90.0)
    past = format_datetime(NOW - timedelta(hours=1), usegmt=True)
    assert retry_after_seconds(past, now=NOW) == 0.0  # already due: retry at once


@pytest.mark.parametrize("value", [None, "", "soon", "Sun, 99 Foo 2026"])
def test_an_unreadable_retry_after_leaves_the_backoff_in_charge(value):
    assert retry_after_seconds(value) is None


def test_a_servers_retry_after_wins_but_is_capped():
    p = RetryPolicy(base_s=1.0, cap_s=10.0, max_retry_after_s=60.0)
    assert p.delay(0, retry_after=5.0) == 5.0
    assert p.delay(3, retry_after=86_400.0) == 60.0  # a broken server cannot park us for a day


def test_backoff_grows_is_capped_and_is_jittered():
    draws = [backoff_delay(0, base_s=1.0, cap_s=30.0) for _ in range(200)]
    assert all(0.5 <= d <= 1.0 for d in draws)
    assert len({round(d, 6) for d in draws}) > 100, "replicas must not retry in step"
    late = [backoff_delay(10, base_s=1.0, cap_s=30.0) for _ in range(200)]
    assert all(0.5 <= d <= 30.0 for d in late) and max(late) > 15.0
