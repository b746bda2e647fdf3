"""Rate limits, injected faults, and how XClient classifies each of them."""

from __future__ import annotations

import socket
import time

import pytest

from libs.settings import Settings
from libs.xclient import XClient

from .helpers import account

Q = "faulty since:2026-01-01 until:2026-01-01_01:00:00_UTC"


async def test_rate_limit_429_after_limit_with_headers_and_reset(settings, admin):
    admin.post("/_sim/config", json={"limits": {"SearchTimeline": 3}}).raise_for_status()
    client = XClient(settings)
    acc = account("rl")
    try:
        rs = [await client.search_page(acc, Q, None) for _ in range(4)]
        other = await client.search_page(account("rl"), Q, None)
    finally:
        admin.post("/_sim/config", json={"limits": {"SearchTimeline": 50}})
        await client.aclose()
    assert [r.outcome for r in rs] == ["ok", "ok", "ok", "rate_limited"]
    assert [r.rate_limit_remaining for r in rs] == [2, 1, 0, 0]
    assert all(r.rate_limit_limit == 3 for r in rs)
    last = rs[-1]
    assert last.http_status == 429 and '"code":88' in last.body
    now = time.time()
    assert now < last.rate_limit_reset <= now + 900 + 1
    assert last.rate_limit_reset == rs[0].rate_limit_reset
    assert other.outcome == "ok"  # limits are per account


async def test_rate_limit_window_resets(settings, admin):
    admin.post("/_sim/config", json={"limits": {"Followers": 1}, "window_seconds": 1})
    try:
        hdr = {"cookie": "auth_token=winacc; ct0=x"}
        url = "/i/api/graphql/x/Followers"
        assert (
            admin.get(url, headers=hdr, params={"variables": '{"userId":"1"}'}).status_code == 200
        )
        r = admin.get(url, headers=hdr, params={"variables": '{"userId":"1"}'})
        assert r.status_code == 429 and r.headers["x-rate-limit-remaining"] == "0"
        time.sleep(1.1)
        assert (
            admin.get(url, headers=hdr, params={"variables": '{"userId":"1"}'}).status_code == 200
        )
    finally:
        admin.post("/_sim/config", json={"limits": {"Followers": 50}, "window_seconds": 900})


@pytest.mark.parametrize(
    "kind, outcome, status",
    [
        ("suspended", "suspended", 403),
        ("locked", "suspended", 403),
        ("expired_cookies", "auth_failed", 401),
        ("cloudflare_403", "blocked", 403),
        ("rate_limit_no_headers", "rate_limited", 429),
        ("http_5xx", "server_error", 503),
        ("malformed_json", "malformed", 200),
    ],
)
async def test_fault_kinds_classified(settings, admin, kind, outcome, status):
    acc = account(kind)
    admin.post("/_sim/faults", json={"kind": kind, "account": acc.auth_token}).raise_for_status()
    client = XClient(settings)
    try:
        r = await client.search_page(acc, Q, None)
        unaffected = await client.search_page(account("bystander"), Q, None)
    finally:
        await client.aclose()
    assert (r.outcome, r.http_status) == (outcome, status), r
    assert r.body is not None and r.entries == 0 and not r.exhausted
    assert unaffected.outcome == "ok"
    if kind == "rate_limit_no_headers":
        assert r.rate_limit_remaining is None and r.rate_limit_reset is None
    if kind == "cloudflare_403":
        assert "<html" in r.body.lower()


async def test_fault_after_and_count(settings, admin):
    acc = account("ac")
    admin.post(
        "/_sim/faults",
        json={
            "kind": "http_5xx",
            "account": acc.auth_token,
            "operation": "SearchTimeline",
            "after": 1,
            "count": 2,
        },
    )
    client = XClient(settings)
    try:
        outs = [(await client.search_page(acc, Q, None)).outcome for _ in range(4)]
    finally:
        await client.aclose()
    assert outs == ["ok", "server_error", "server_error", "ok"]


async def test_slow_fault_and_timeout(settings, admin):
    acc = account("slow")
    admin.post(
        "/_sim/faults", json={"kind": "slow", "account": acc.auth_token, "delay_s": 0.3, "count": 1}
    )
    client = XClient(settings)
    try:
        r = await client.search_page(acc, Q, None)
        assert r.outcome == "ok" and r.elapsed_ms >= 300
        # The log tells when the request came in and when it was answered.
        e = admin.get("/_sim/log").json()[-1]
        assert e["account"] == acc.auth_token and e["ts"] - e["received"] >= 0.3
        admin.post(
            "/_sim/faults",
            json={"kind": "slow", "account": acc.auth_token, "delay_s": 2.0, "count": 1},
        )
        fast = XClient(settings.model_copy(update={"x_request_timeout_s": 0.5}))
        try:
            r = await fast.search_page(acc, Q, None)
        finally:
            await fast.aclose()
        assert r.outcome == "network_error" and "timeout" in r.error
    finally:
        await client.aclose()


async def test_network_error_when_nothing_listens():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = XClient(
        Settings(
            _env_file=None,
            x_graphql_url=f"http://127.0.0.1:{port}/i/api/graphql",
            x_transaction_id="static",
        )
    )
    try:
        r = await client.search_page(account(), Q, None)
    finally:
        await client.aclose()
    assert r.outcome == "network_error" and r.http_status is None


def test_unknown_fault_kind_rejected(admin):
    assert admin.post("/_sim/faults", json={"kind": "nope"}).status_code == 400
