"""The proxy pool's rules without a broker: per-proxy request counts and latency, operator
fields, enable/disable and expiry (a proxy that may not carry requests gets no lease)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client import REGISTRY

from libs.metrics import observe_proxies
from libs.records.accounts import LeaseGrant, LeaseWait, ProxyCommand
from libs.secretbox import SecretBox
from libs.settings import Settings
from services.account_manager.admin import InputError, proxy_fields, proxy_identity, proxy_view
from services.account_manager.pool import AccountPool, proxy_usable

from .test_account_pool import Clock, add, dt, event, records, request


@pytest.fixture
def box():
    return SecretBox("unit-test-key")


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def pool(box, clock):
    return AccountPool(Settings(_env_file=None, x_rate_limits="SearchTimeline:5"), box, clock)


def sample(name: str, **labels) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def add_proxy(pool, box, n: str, **fields) -> list:
    outs = pool.handle(
        [
            ProxyCommand(
                command_id=f"add-{n}",
                action="add",
                proxy_id=n,
                display=f"socks4://{n}:1",
                secrets=box.seal(f"socks4://{n}:1"),
                requested_at=dt(pool.clock()),
                **fields,
            )
        ]
    )
    return outs + pool.proxy_checked(n, True, 5.0, None)


def switch(pool, n: str, action: str, reason: str | None = None) -> None:
    pool.handle(
        [
            ProxyCommand(
                command_id=f"{action}-{n}",
                action=action,
                proxy_id=n,
                reason=reason,
                requested_at=dt(pool.clock()),
            )
        ]
    )


def test_requests_through_a_proxy_count_in_its_metrics(pool, box):
    add_proxy(pool, box, "p1", region="us", provider="acme", cost_per_gb=1.5)
    add(pool, box, "a")
    assert pool.accounts["a"].proxy_id == "p1"
    for outcome, ms in (("ok", 100.0), ("ok", 200.0), ("proxy_error", 5000.0), ("auth_failed", 50)):
        event(pool, "a", outcome, proxy_id="p1", elapsed_ms=ms)
    p = pool.proxies["p1"]
    assert (p.requests, p.request_failures) == (4, 1)  # X refusing the account is not the proxy
    assert 100 < p.request_latency_ms < 5000
    view = proxy_view(p)
    assert view["request_success_rate"] == 0.75 and view["requests"] == 4
    assert (view["region"], view["provider"], view["cost_per_gb"]) == ("us", "acme", 1.5)
    # The design's ProxyResponse fields, with their types.
    assert (view["proxy_id"], view["host"], view["port"], view["type"]) == ("p1", "p1", 1, "socks4")
    assert (view["location"], view["status"], view["latency_ms"]) == ("us", "healthy", 5)
    assert isinstance(view["success_rate"], float)
    observe_proxies(pool.proxies.values())
    assert sample("xget_proxy_requests", proxy="p1", result="ok") == 3
    assert sample("xget_proxy_requests", proxy="p1", result="failed") == 1
    assert sample("xget_proxy_latency_ms", proxy="p1") == p.request_latency_ms


def test_a_disabled_proxy_gets_no_lease_and_its_accounts_move(pool, box, clock):
    add_proxy(pool, box, "p1")
    add(pool, box, "a")
    assert pool.accounts["a"].proxy_id == "p1"
    switch(pool, "p1", "disable", "provider maintenance")
    assert pool.proxies["p1"].disabled_reason == "provider maintenance"
    assert proxy_view(pool.proxies["p1"])["status"] == "disabled"
    # No other proxy: the account waits rather than going out through the disabled one.
    assert records(request(pool, "q1"), LeaseWait) and not records(request(pool, "q2"), LeaseGrant)
    # A usable proxy appears: the waiting request is served through it.
    g = records(add_proxy(pool, box, "p2"), LeaseGrant)
    assert [x.proxy_id for x in g] == ["p2"] and box.open(g[0].secrets)["proxy_url"].endswith(
        "p2:1"
    )
    observe_proxies(pool.proxies.values())
    assert sample("xget_proxy_usable", proxy="p1") == 0
    switch(pool, "p1", "enable")
    assert not pool.proxies["p1"].disabled and pool.accounts["a"].proxy_id == "p2"  # sticky


def test_an_expired_proxy_carries_nothing(pool, box, clock):
    add_proxy(pool, box, "p1", expires_at=dt(clock.t + 10))
    add_proxy(pool, box, "p2")
    add(pool, box, "a")
    add(pool, box, "b")
    clock.t += 11
    g = records(request(pool, "q1", ttl=5) + request(pool, "q2", ttl=5), LeaseGrant)
    assert g and all(x.proxy_id == "p2" for x in g)
    assert not proxy_usable(pool.proxies["p1"], clock.t)


def test_socks4_and_operator_fields_are_accepted_and_checked():
    assert proxy_identity("socks4://10.0.0.1:1080") == (
        "socks4-10.0.0.1-1080",
        "socks4://10.0.0.1:1080",
    )
    f = proxy_fields({"region": "eu", "cost_per_gb": "2.5", "expires_at": "2027-01-01T00:00:00Z"})
    assert f["cost_per_gb"] == 2.5 and f["expires_at"].utcoffset() == timedelta(0)
    with pytest.raises(InputError, match="cost_per_gb"):
        proxy_fields({"cost_per_gb": "cheap"})
    with pytest.raises(InputError, match="expires_at"):
        proxy_fields({"expires_at": "soon"})
