"""What an operator steers on an account, as the pool's rules (no broker): enable/disable with
a reason, priority, tags, daily and hourly caps, per-account counts, scheduled checks of idle
accounts and cookie refreshes of password accounts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from libs.records.accounts import (
    AccountCommand,
    AccountEvent,
    AccountState,
    LeaseGrant,
    LeaseRelease,
    LeaseRequest,
    LeaseRevoke,
    LeaseWait,
)
from libs.secretbox import SecretBox
from libs.settings import Settings
from services.account_manager.admin import account_view
from services.account_manager.pool import CHECK_OPERATION, AccountPool

from .test_account_pool import OP, Clock, add, dt, event, records, request


@pytest.fixture
def box() -> SecretBox:
    return SecretBox("unit-test-key")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def pool(box, clock) -> AccountPool:
    s = Settings(_env_file=None, x_rate_limits=f"{OP}:5", x_rate_window_s=60)
    return AccountPool(s, box, clock)


def command(pool, account, action, **kw):
    return pool.handle(
        [
            AccountCommand(
                command_id=f"{action}-{account}-{pool.clock()}",
                action=action,
                account_id=account,
                requested_at=dt(pool.clock()),
                **kw,
            )
        ]
    )


def tagged_request(pool, rid, tag, ttl=20):
    now = pool.clock()
    return pool.handle(
        [
            LeaseRequest(
                request_id=rid,
                requester="r1",
                operation=OP,
                task_id="t1",
                account_tag=tag,
                requested_at=dt(now),
                valid_until=dt(now + ttl),
            )
        ]
    )


def release(pool, g: LeaseGrant, used: int):
    return pool.handle(
        [
            LeaseRelease(
                lease_id=g.lease_id,
                account_id=g.account_id,
                operation=g.operation,
                used=used,
                requester=g.requester,
                released_at=dt(pool.clock()),
            )
        ]
    )


def test_disable_revokes_leases_keeps_state_and_enable_serves_again(pool, box, clock):
    add(pool, box, "a")
    g = records(request(pool, "q1"), LeaseGrant)[0]
    event(pool, "a")
    before = pool.accounts["a"].model_copy(deep=True)
    outs = command(pool, "a", "disable", reason="flagged by X support")
    revoked = records(outs, LeaseRevoke)
    assert [(r.lease_id, r.requester) for r in revoked] == [(g.lease_id, "r1")]
    a = pool.accounts["a"]
    assert a.disabled and a.disabled_reason == "flagged by X support"
    assert a.status == before.status and a.health == before.health
    assert a.ops[OP].used == before.ops[OP].used and a.requests == 1
    release(pool, g, 1)
    outs = request(pool, "q2", ttl=120)
    assert not records(outs, LeaseGrant)
    assert records(outs, LeaseWait)[0].earliest_free_at is None  # nobody serves until enabled
    outs = command(pool, "a", "enable", reason="cleared")
    assert not pool.accounts["a"].disabled and pool.accounts["a"].disabled_reason is None
    assert records(outs, LeaseGrant)[0].request_id == "q2"  # the queued request, at once


def test_a_lease_revoked_by_a_change_of_caps_is_marked_until_it_is_back(box, clock):
    """Its holder may use a revoked lease, with the budget of the old caps, until it reads the
    revoke: the state records (what the admin API and the CLI read) say so until the lease is
    back or has expired, and only then do they answer. A lease granted after the change, under
    the new caps, is not marked (nothing waits for it)."""
    s = Settings(_env_file=None, x_rate_limits=f"{OP}:50", x_rate_window_s=600)
    pool = AccountPool(s, box, clock)
    add(pool, box, "a")
    old = records(request(pool, "q1"), LeaseGrant)[0]
    assert old.budget == 50

    def state(outs) -> AccountState:
        return [o.record for o in outs if isinstance(o.record, AccountState)][-1]

    outs = command(pool, "a", "set", daily_caps={OP: 2})
    assert [r.lease_id for r in records(outs, LeaseRevoke)] == [old.lease_id]
    w = state(outs).ops[OP]
    assert (w.lease_id, w.lease_revoked) == (old.lease_id, True)
    outs = release(pool, old, 1)  # one request made with it before the holder read the revoke
    w = state(outs).ops[OP]
    assert (w.lease_id, w.lease_revoked, w.day_used) == (None, False, 1)
    new = records(request(pool, "q2"), LeaseGrant)[0]
    assert new.budget == 1  # the new cap: 2 a day, 1 spent
    assert not pool.accounts["a"].ops[OP].lease_revoked

    # A revoked lease that is never given back is no longer marked once it has expired.
    outs = command(pool, "a", "set", hourly_caps={OP: 5})
    assert state(outs).ops[OP].lease_revoked
    clock.t += s.account_lease_ttl_s
    w = state(pool.tick()).ops[OP]
    assert (w.lease_id, w.lease_revoked, w.day_used) == (None, False, 2)


def test_priority_orders_accounts_and_backup_serves_last(pool, box, clock):
    for n in ("a", "b", "c"):
        add(pool, box, n)
    command(pool, "a", "set", priority="backup")
    command(pool, "c", "set", priority="high")
    got = [records(request(pool, f"q{i}", requester=f"r{i}"), LeaseGrant) for i in range(4)]
    assert [g[0].account_id for g in got[:3]] == ["c", "b", "a"]
    assert not got[3]


def test_tag_restricts_a_request_to_its_accounts(pool, box, clock):
    add(pool, box, "a")
    add(pool, box, "b")
    command(pool, "b", "set", tags=["vip", " eu "])
    assert pool.accounts["b"].tags == ["eu", "vip"]
    g = records(tagged_request(pool, "q1", "vip"), LeaseGrant)[0]
    assert g.account_id == "b" and g.tags == ["eu", "vip"]
    outs = tagged_request(pool, "q2", "vip")  # b is leased; a has no tag
    assert not records(outs, LeaseGrant)
    outs = tagged_request(pool, "q3", "asia")
    assert "no usable account with tag 'asia'" in records(outs, LeaseWait)[0].reason
    # An untagged request may use any account.
    assert records(request(pool, "q4", requester="r9"), LeaseGrant)[0].account_id == "a"


def test_daily_and_hourly_caps_bound_leases(box, clock):
    s = Settings(_env_file=None, x_rate_limits=f"{OP}:50", x_rate_window_s=60)
    pool = AccountPool(s, box, clock)
    clock.t = datetime(2026, 12, 6, 22, 59, 0, tzinfo=UTC).timestamp()
    add(pool, box, "a")
    command(pool, "a", "set", daily_caps={OP: 7}, hourly_caps={OP: 4})
    g = records(request(pool, "q1"), LeaseGrant)[0]
    assert g.budget == 4  # the hourly cap, not X's 50
    release(pool, g, 4)
    outs = request(pool, "q2", ttl=300)
    wait = records(outs, LeaseWait)[0]
    assert wait.earliest_free_at == datetime(2026, 12, 6, 23, 0, tzinfo=UTC)  # the next hour
    clock.t += 61
    g = records(pool.tick(), LeaseGrant)[0]
    assert g.budget == 3  # what the day has left
    # A lease that expires without coming back counts in full against the day.
    clock.t += 60  # the lease's TTL (and the window) ends
    pool.tick()
    w = pool.accounts["a"].ops[OP]
    assert (w.day_used, w.hour_used) == (7, 3)
    outs = request(pool, "q3", ttl=300)
    assert records(outs, LeaseWait)[0].earliest_free_at == datetime(2026, 12, 7, tzinfo=UTC)
    clock.t = datetime(2026, 12, 7, 0, 0, 1, tzinfo=UTC).timestamp()
    assert records(request(pool, "q4"), LeaseGrant)[0].budget == 4


def test_caps_survive_a_restart(pool, box, clock):
    add(pool, box, "a")
    command(pool, "a", "set", daily_caps={OP: 2})
    g = records(request(pool, "q1"), LeaseGrant)[0]
    release(pool, g, 2)
    saved = [o.record for o in pool.tick()] + [pool.accounts["a"].model_copy(deep=True)]
    fresh = AccountPool(pool.s, box, clock)
    fresh.load([r for r in saved if r.__class__.__name__ == "AccountState"][-1:], [])
    assert not records(request(fresh, "q2"), LeaseGrant)


def test_counts_per_account(pool, box, clock):
    add(pool, box, "a")
    event(pool, "a")
    event(pool, "a")
    event(pool, "a", "server_error", http_status=503)
    event(pool, "a", "rate_limited", rate_limit_reset=int(clock.t) + 30)
    a = pool.accounts["a"]
    assert (a.requests, a.successes) == (4, 2)
    assert a.errors == {"server_error": 1, "rate_limited": 1}
    assert a.last_used_at == dt(clock.t)


def test_idle_accounts_are_checked_on_schedule(box, clock):
    s = Settings(_env_file=None, account_idle_check_s=600)
    pool = AccountPool(s, box, clock)
    add(pool, box, "a")
    add(pool, box, "b")
    assert pool.due_checks(clock.t) == []
    clock.t += 601
    records(request(pool, "q1"), LeaseGrant)  # a is leased: not checked while in use
    assert pool.due_checks(clock.t) == ["b"]
    dead = AccountEvent(
        account_id="b",
        operation=CHECK_OPERATION,
        outcome="auth_failed",
        http_status=401,
        error="(32) Could not authenticate you.",
        at=dt(clock.t),
    )
    pool.checked("b", dead)
    b = pool.accounts["b"]
    assert b.status == "needs_login" and b.last_checked_at == dt(clock.t)
    assert b.last_test.startswith("scheduled check: auth_failed")
    assert pool.due_checks(clock.t) == []
    disabled = AccountPool(Settings(_env_file=None, account_idle_check_s=0), box, clock)
    add(disabled, box, "c")
    clock.t += 10_000
    assert disabled.due_checks(clock.t) == []


def test_password_accounts_log_in_before_their_cookies_expire(box, clock):
    s = Settings(_env_file=None, account_cookie_max_age_s=86400 * 3, account_cookie_refresh_s=3600)
    pool = AccountPool(s, box, clock)
    add(pool, box, "p", password="pw")
    add(pool, box, "c")  # cookies only: nothing to log in with
    pool.logged_in("p", {"auth_token": "t2", "ct0": "c2"}, None, expires_at=clock.t + 7200)
    pool.due_logins(clock.t)
    assert pool.work.logins == set()
    clock.t += 3601
    pool.due_logins(clock.t)
    assert pool.work.logins == {"p"}
    pool.work.logins.clear()
    pool.logged_in("p", {"auth_token": "t3", "ct0": "c3"}, None)  # no expiry given
    assert pool.accounts["p"].cookies_expire_at == dt(clock.t + 86400 * 3)
    pool.due_logins(clock.t)
    assert pool.work.logins == set()
    # Cookies that come back about to expire are not refreshed in a loop.
    pool.logged_in("p", {"auth_token": "t4", "ct0": "c4"}, None, expires_at=clock.t + 60)
    pool.due_logins(clock.t + 1)
    assert pool.work.logins == set()


def test_late_outcomes_of_a_returned_lease_are_not_counted_twice(pool, box, clock):
    """A lease comes back saying it made 3 requests before their outcomes arrive: the day's
    count (and so a daily cap) stays at 3."""
    add(pool, box, "a")
    command(pool, "a", "set", daily_caps={OP: 5})
    g = records(request(pool, "q1"), LeaseGrant)[0]
    release(pool, g, 3)
    for _ in range(3):
        event(pool, "a", lease_id=g.lease_id)
    w = pool.accounts["a"].ops[OP]
    assert (w.used, w.day_used) == (3, 3)
    assert pool.accounts["a"].requests == 3  # the account's own counts see every request
    assert records(request(pool, "q2"), LeaseGrant)[0].budget == 2


def test_an_account_reads_as_the_designs_account_response(pool, box, clock):
    """GET /api/v1/admin/accounts answers the design's AccountResponse fields, with their
    types: a new account's success rate is 1.0 (as the design's metrics compute it), today's
    use is the requests it made, and the day's limit is X's window limit over the day until an
    operator caps it."""
    add(pool, box, "a")
    window_s = pool.s.x_rate_window_s  # 60 s here: 1,440 windows of 5 requests a day
    v = account_view(pool.accounts["a"], window_s)
    assert (v["account_id"], v["username"], v["status"]) == ("a", "a", "active")
    assert (v["success_rate"], v["health_score"], v["daily_used"]) == (1.0, 1.0, 0)
    assert v["last_used"] is None
    for outcome in ("ok", "ok", "server_error"):  # three requests reported by a scraper
        event(pool, "a", outcome, http_status=503 if outcome != "ok" else None)
    v = account_view(pool.accounts["a"], window_s)
    assert v["daily_used"] == 3 and v["daily_limit"] == 5 * 1440
    assert v["success_rate"] == round(2 / 3, 4) and isinstance(v["success_rate"], float)
    assert v["last_used"] == dt(clock.t) and 0 < v["health_score"] < 1
    command(pool, "a", "set", daily_caps={OP: 100})
    assert account_view(pool.accounts["a"], window_s)["daily_limit"] == 100
