"""The account pool's rules without a broker: leases, limits, outcomes, proxies, restart."""

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
    LeaseWait,
    ProxyCommand,
    ProxyState,
    TaskAccountWait,
)
from libs.secretbox import SecretBox, SecretKeyError
from libs.settings import Settings
from services.account_manager.admin import InputError, parse_import
from services.account_manager.pool import AccountPool

OP = "SearchTimeline"


class Clock:
    def __init__(self, t: float = 1_800_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


@pytest.fixture
def box():
    return SecretBox("unit-test-key")


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def pool(box, clock):
    s = Settings(
        _env_file=None,
        x_rate_limits=f"{OP}:5",
        x_rate_window_s=60,
        account_lease_ttl_s=30,
        account_reset_margin_s=0.5,
        account_cooldown_s=100,
    )
    return AccountPool(s, box, clock)


def add(pool, box, name, password=None, cookies=True):
    creds = {"auth_token": f"tok-{name}", "ct0": f"ct0-{name}"} if cookies else {}
    if password:
        creds["password"] = password
    return pool.handle(
        [
            AccountCommand(
                command_id=f"c-{name}",
                action="add",
                account_id=name,
                name=name,
                secrets=box.seal(creds),
                has_password=bool(password),
                requested_at=dt(pool.clock()),
            )
        ]
    )


def request(pool, rid, requester="r1", task_id="t1", ttl=20):
    now = pool.clock()
    return pool.handle(
        [
            LeaseRequest(
                request_id=rid,
                requester=requester,
                operation=OP,
                task_id=task_id,
                requested_at=dt(now),
                valid_until=dt(now + ttl),
            )
        ]
    )


def records(outs, kind):
    return [o.record for o in outs if isinstance(o.record, kind)]


def event(pool, account, outcome="ok", **kw):
    return pool.handle(
        [AccountEvent(account_id=account, operation=OP, outcome=outcome, at=dt(pool.clock()), **kw)]
    )


def test_grant_is_exclusive_and_budgeted_then_waits_until_reset(pool, box, clock):
    add(pool, box, "a")
    g = records(request(pool, "q1"), LeaseGrant)
    assert len(g) == 1 and g[0].account_id == "a" and g[0].budget == 5
    creds = box.open(g[0].secrets)
    assert creds["auth_token"] == "tok-a"
    # The account is leased: a second requester waits, told when it frees up.
    outs = request(pool, "q2", requester="r2", task_id="t2", ttl=120)
    wait = records(outs, LeaseWait)
    assert not records(outs, LeaseGrant) and wait[0].earliest_free_at is not None
    assert records(outs, TaskAccountWait)[0].waiting is True
    # The first lease comes back spent: nothing until the window resets (+ margin).
    pool.handle(
        [
            LeaseRelease(
                lease_id=g[0].lease_id,
                account_id="a",
                operation=OP,
                used=5,
                requester="r1",
                released_at=dt(clock.t),
            )
        ]
    )
    clock.t += 59
    assert not records(pool.tick(), LeaseGrant)
    clock.t += 1.6
    outs = pool.tick()
    g2 = records(outs, LeaseGrant)
    assert g2 and g2[0].requester == "r2" and g2[0].budget == 5
    assert records(outs, TaskAccountWait)[0].waiting is False


def test_partial_lease_leaves_the_rest_of_the_window(pool, box, clock):
    add(pool, box, "a")
    g = records(request(pool, "q1"), LeaseGrant)[0]
    pool.handle(
        [
            LeaseRelease(
                lease_id=g.lease_id,
                account_id="a",
                operation=OP,
                used=2,
                requester="r1",
                released_at=dt(clock.t),
            )
        ]
    )
    g2 = records(request(pool, "q2"), LeaseGrant)[0]
    assert g2.budget == 3


def test_expired_lease_counts_its_whole_budget(pool, box, clock):
    """A scraper that died never says what it used: assume everything, never exceed X."""
    add(pool, box, "a")
    records(request(pool, "q1"), LeaseGrant)
    clock.t += 31  # past the lease TTL, inside the 60 s window
    assert not records(request(pool, "q2", ttl=5), LeaseGrant)
    clock.t += 30  # window over
    assert records(pool.tick(), LeaseGrant) == []  # q2 gave up meanwhile
    assert records(request(pool, "q3"), LeaseGrant)[0].budget == 5


def test_rate_limit_headers_override_settings(pool, box, clock):
    add(pool, box, "a")
    g = records(request(pool, "q1"), LeaseGrant)[0]
    event(
        pool, "a", rate_limit_limit=50, rate_limit_remaining=40, rate_limit_reset=int(clock.t) + 300
    )
    pool.handle(
        [
            LeaseRelease(
                lease_id=g.lease_id,
                account_id="a",
                operation=OP,
                used=1,
                requester="r1",
                released_at=dt(clock.t),
            )
        ]
    )
    w = pool.accounts["a"].ops[OP]
    assert (w.limit, w.used) == (50, 10)
    assert w.window_reset == dt(int(clock.t) + 300)
    assert records(request(pool, "q2"), LeaseGrant)[0].budget == 40


def test_outcomes_change_status(pool, box, clock):
    for n in ("a", "b", "c", "d"):
        add(pool, box, n, password="pw" if n == "b" else None)
    event(pool, "a", "suspended", error="(64) Your account is suspended")
    event(pool, "b", "auth_failed", error="(32) Could not authenticate you.")
    event(pool, "c", "rate_limited", rate_limit_reset=int(clock.t) + 120)
    event(pool, "d", "blocked", error="blocked by Cloudflare: HTTP 403")
    a, b, c, d = (pool.accounts[n] for n in "abcd")
    assert a.status == "suspended" and "suspended" in a.status_reason
    assert b.status == "needs_login" and "b" in pool.work.logins
    assert c.status == "rate_limited" and c.ops[OP].blocked_until == dt(int(clock.t) + 120)
    assert d.status == "cooling_down"
    # Nobody can serve now; c is the first to free up.
    outs = request(pool, "q1")
    assert not records(outs, LeaseGrant)
    assert records(outs, LeaseWait)[0].earliest_free_at.timestamp() == pytest.approx(
        int(clock.t) + 120.5
    )
    # b's login succeeds: it is leased at once with its new cookies.
    outs = pool.logged_in("b", {"auth_token": "new-tok", "ct0": "new-ct0"}, None)
    g = records(outs, LeaseGrant)
    assert g and g[0].account_id == "b" and box.open(g[0].secrets)["auth_token"] == "new-tok"
    assert pool.accounts["b"].status == "active" and pool.accounts["b"].logins == 1


def test_healthiest_least_used_first(pool, box, clock):
    add(pool, box, "a")
    add(pool, box, "b")
    for _ in range(8):
        event(pool, "a", "server_error")
    assert pool.accounts["a"].health < pool.accounts["b"].health
    assert records(request(pool, "q1"), LeaseGrant)[0].account_id == "b"


def test_state_survives_a_restart(pool, box, clock):
    add(pool, box, "a")
    add(pool, box, "b")
    outs = request(pool, "q1")
    g = records(outs, LeaseGrant)[0]
    event(pool, "b", "suspended", error="(64) suspended")
    saved = {
        o.record.account_id: o.record
        for o in pool.handle([]) + outs
        if isinstance(o.record, AccountState)
    }
    saved.update({a.account_id: a.model_copy(deep=True) for a in pool.accounts.values()})
    fresh = AccountPool(pool.s, box, clock)
    fresh.load([AccountState.decode(a.encode()) for a in saved.values()], [])
    # The lease granted before the restart still holds; b stays suspended.
    assert fresh.accounts[g.account_id].ops[OP].lease_id == g.lease_id
    assert not records(request(fresh, "q2"), LeaseGrant)
    assert fresh.accounts["b"].status == "suspended"


def test_sticky_proxy_replaced_only_when_dead(pool, box, clock):
    for n in ("p1", "p2"):
        pool.handle(
            [
                ProxyCommand(
                    command_id=n,
                    action="add",
                    proxy_id=n,
                    display=f"http://{n}:1",
                    secrets=box.seal(f"http://{n}:1"),
                    requested_at=dt(clock.t),
                )
            ]
        )
        pool.proxy_checked(n, True, 5.0, None)
    add(pool, box, "a")
    add(pool, box, "b")
    first = pool.accounts["a"].proxy_id
    assert {pool.accounts["a"].proxy_id, pool.accounts["b"].proxy_id} == {"p1", "p2"}
    pool.proxy_checked("p1" if first == "p2" else "p2", True, 5.0, None)
    assert pool.accounts["a"].proxy_id == first  # a healthy check of another changes nothing
    for _ in range(pool.s.proxy_dead_after):
        pool.proxy_checked(first, False, None, "ConnectError")
    assert pool.proxies[first].status == "dead"
    new = pool.accounts["a"].proxy_id
    assert new != first
    pool.proxy_checked(first, True, 5.0, None)  # the old one comes back: a keeps the new one
    assert pool.accounts["a"].proxy_id == new
    g = records(request(pool, "q1"), LeaseGrant)
    assert {box.open(x.secrets)["proxy_url"] for x in g} == {f"http://{new}:1"}


def test_secrets_never_in_clear(pool, box):
    outs = add(pool, box, "a", password="hunter2-password")
    text = b"".join(o.record.encode() for o in outs)
    assert b"hunter2-password" not in text and b"tok-a" not in text
    with pytest.raises(SecretKeyError):
        SecretBox("another-key").open(pool.accounts["a"].secrets)
    with pytest.raises(SecretKeyError):
        SecretBox("")


def test_import_formats():
    lines = parse_import("alice:pw1:a@x.io:mailpw\n# comment\nbob:pw2:b@x.io:mailpw2:TOTPSECRET\n")
    assert [n for n, _ in lines] == ["alice", "bob"]
    assert lines[1][1]["totp_secret"] == "TOTPSECRET" and lines[0][1]["email"] == "a@x.io"
    js = parse_import(
        '[{"username": "c", "cookies": [{"name": "auth_token", "value": "T"},'
        ' {"name": "ct0", "value": "C"}]}]'
    )
    assert js[0][1]["auth_token"] == "T" and js[0][1]["cookies"]["ct0"] == "C"
    csv = parse_import("username,auth_token,ct0\nd,T2,C2\n")
    assert csv[0] == ("d", {"auth_token": "T2", "ct0": "C2"})
    with pytest.raises(InputError):
        parse_import('[{"username": "e"}]')  # neither cookies nor password


def test_proxy_ids_hide_credentials():
    from services.account_manager.admin import proxy_identity

    assert proxy_identity("http://user:secret@10.0.0.1:3128") == (
        "http-10.0.0.1-3128",
        "http://10.0.0.1:3128",
    )
    with pytest.raises(InputError):
        proxy_identity("ftp://10.0.0.1:21")


def test_no_account_ever_serves_means_no_earliest_time(pool, box):
    add(pool, box, "a")
    event(pool, "a", "suspended", error="(64)")
    assert records(request(pool, "q1"), LeaseWait)[0].earliest_free_at is None
    assert isinstance(pool.accounts["a"], AccountState)
    assert ProxyState  # imported for the record types' completeness


def prio_request(pool, rid, requester, priority, waited=0.0, ttl=200):
    now = pool.clock()
    return pool.handle(
        [
            LeaseRequest(
                request_id=rid,
                requester=requester,
                operation=OP,
                task_id=f"task-{rid}",
                requested_at=dt(now),
                valid_until=dt(now + ttl),
                priority=priority,
                waiting_since=dt(now - waited),
            )
        ]
    )


def test_queue_serves_best_priority_across_replicas_with_aging(box, clock):
    s = Settings(
        _env_file=None,
        x_rate_limits=f"{OP}:5",
        x_rate_window_s=60,
        account_lease_ttl_s=30,
        task_priority_aging_s=100,
    )
    pool = AccountPool(s, box, clock)
    add(pool, box, "a")
    held = records(prio_request(pool, "first", "r0", 5), LeaseGrant)[0]
    # Scarce: the one account is leased. Replica r1 queues low-priority work, then replica r2
    # asks for a priority-1 task.
    assert records(prio_request(pool, "low", "r1", 9), LeaseWait)
    clock.t += 1
    assert records(prio_request(pool, "high", "r2", 1), LeaseWait)
    clock.t += 1
    outs = pool.handle(
        [
            LeaseRelease(
                lease_id=held.lease_id,
                account_id="a",
                operation=OP,
                used=1,
                requester="r0",
                reason="done",
                released_at=dt(clock.t),
            )
        ]
    )
    grants = records(outs, LeaseGrant)
    assert [g.requester for g in grants] == ["r2"]  # the later, better request first

    # Aging: a priority-9 request that waited 500 s (9 - 5 = 4) beats a fresh priority 5.
    g2 = grants[0]
    assert records(prio_request(pool, "fresh5", "r3", 5), LeaseWait)
    assert records(prio_request(pool, "old9", "r4", 9, waited=500), LeaseWait)
    clock.t += 1
    outs = pool.handle(
        [
            LeaseRelease(
                lease_id=g2.lease_id,
                account_id="a",
                operation=OP,
                used=1,
                requester="r2",
                reason="done",
                released_at=dt(clock.t),
            )
        ]
    )
    assert [g.requester for g in records(outs, LeaseGrant)] == ["r4"]


def test_no_lease_for_the_last_moment_of_a_window(pool, box, clock):
    """An account with budget left as its window ends gets no lease a scraper could not use
    (the scraper stops using a lease EXPIRY_MARGIN_S before its end): the request waits for
    the reset and is served then, with the new window's whole budget."""
    from libs.leases import EXPIRY_MARGIN_S

    add(pool, box, "a")
    g = records(request(pool, "q1", ttl=200), LeaseGrant)[0]
    reset = int(clock.t) + 10  # what X's headers say
    event(pool, "a", rate_limit_limit=5, rate_limit_remaining=3, rate_limit_reset=reset)
    pool.handle(
        [
            LeaseRelease(
                lease_id=g.lease_id,
                account_id="a",
                operation=OP,
                used=2,
                requester="r1",
                released_at=dt(clock.t),
            )
        ]
    )
    for t in (reset - EXPIRY_MARGIN_S + 0.2, reset + 0.2):  # window ending; ended, not rolled
        clock.t = t
        outs = request(pool, f"late{t}", ttl=200)
        assert not records(outs, LeaseGrant), "a lease that ends before it can be used"
        assert records(outs, LeaseWait)[0].earliest_free_at == dt(reset + 0.5)
    clock.t = reset + 0.5
    grants = records(pool.tick(), LeaseGrant)  # one account: the first request; one waits on
    assert [g.budget for g in grants] == [5]
    assert grants[0].expires_at.timestamp() - clock.t > EXPIRY_MARGIN_S
