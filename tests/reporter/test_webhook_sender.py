"""Webhook delivery against a real local HTTP server: signing, retries, what is final."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from infra.local import free_port
from libs.webhooks import WebhookSender, WebhookUrlError, check_url, sign, verify
from tests.webhook_server import WebhookServer

SECRET = "s3cret"


def sender(client: httpx.AsyncClient, **kw) -> WebhookSender:
    opts = dict(allow_hosts="127.0.0.1", max_attempts=4, backoff_base_s=0.01,
                backoff_max_s=0.05, timeout_s=2)
    opts.update(kw)
    return WebhookSender(client, SECRET, **opts)


async def test_signed_delivery_carries_idempotency_key_and_pause_answer():
    with WebhookServer(SECRET, pause_after_batches={"t_batch_002"}) as hook:
        async with httpx.AsyncClient() as c:
            first = await sender(c).deliver(hook.url, b'{"batch_id": "t_batch_001"}', "t_batch_001")
            second = await sender(c).deliver(hook.url, b'{"batch_id": "t_batch_002"}', "t_batch_002")
    assert first.ok and first.next_batch_allowed and first.attempts == 1
    assert second.ok and second.next_batch_allowed is False
    got = hook.all()
    assert [r.idempotency_key for r in got] == ["t_batch_001", "t_batch_002"]
    assert all(r.signature_ok for r in got)


async def test_transient_5xx_is_retried_until_accepted_once():
    with WebhookServer(SECRET, fail_times=2) as hook:
        async with httpx.AsyncClient() as c:
            d = await sender(c).deliver(hook.url, b"{}", "k1")
    assert d.ok and d.attempts == 3
    assert [r.status for r in hook.all()] == [500, 500, 200]
    assert len(hook.accepted()) == 1


async def test_permanent_5xx_gives_up_with_the_cause():
    with WebhookServer(SECRET, fail_status=503) as hook:
        async with httpx.AsyncClient() as c:
            d = await sender(c).deliver(hook.url, b"{}", "k1")
    assert not d.ok and d.attempts == 4 and d.status == 503
    assert "gave up after 4 attempts" in d.cause and "HTTP 503" in d.cause
    assert len(hook.all()) == 4


async def test_client_error_is_final_at_once():
    with WebhookServer(SECRET, fail_status=400) as hook:
        async with httpx.AsyncClient() as c:
            d = await sender(c).deliver(hook.url, b"{}", "k1")
    assert not d.ok and d.attempts == 1 and "HTTP 400" in d.cause
    assert len(hook.all()) == 1


async def test_429_waits_for_retry_after():
    with WebhookServer(SECRET, fail_status=429, retry_after="0") as hook:
        async with httpx.AsyncClient() as c:
            d = await sender(c, max_attempts=3).deliver(hook.url, b"{}", "k1")
    assert not d.ok and len(hook.all()) == 3 and "HTTP 429" in d.cause


async def test_connection_refused_is_retried_then_reported():
    url = f"http://127.0.0.1:{free_port()}/hook"
    async with httpx.AsyncClient() as c:
        d = await sender(c, max_attempts=2).deliver(url, b"{}", "k1")
    assert not d.ok and d.attempts == 2 and "ConnectError" in d.cause


async def test_an_endpoint_down_for_a_while_gets_its_report_when_back():
    """With no attempt cap (the default), an endpoint that refuses connections for longer than
    the old cap of 8 attempts covered keeps being retried, and gets the report once back."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    async with httpx.AsyncClient() as c:
        delivery = asyncio.create_task(
            sender(c, max_attempts=0, backoff_max_s=0.05).deliver(url, b"{}", "k1"))
        # Down for 1.5 s: at most 0.05 s between attempts, so well over 8 refused attempts.
        done, _ = await asyncio.wait({delivery}, timeout=1.5)
        assert not done, f"gave up while the endpoint was down: {delivery.result()}"
        with WebhookServer(SECRET, port=port) as hook:
            d = await asyncio.wait_for(delivery, 10)
    assert d.ok and d.attempts > 8
    assert len(hook.accepted()) == 1


async def test_transient_failures_end_after_give_up_after_s():
    url = f"http://127.0.0.1:{free_port()}/hook"
    async with httpx.AsyncClient() as c:
        t0 = time.monotonic()
        d = await sender(c, max_attempts=0, give_up_after_s=0.5).deliver(url, b"{}", "k1")
    assert not d.ok and "gave up after" in d.cause and "ConnectError" in d.cause
    assert d.attempts > 2 and time.monotonic() - t0 < 2


def test_url_policy():
    with pytest.raises(WebhookUrlError, match="http"):
        check_url("ftp://example.com/x")
    with pytest.raises(WebhookUrlError, match="non-public"):
        check_url("http://127.0.0.1:9/hook")
    with pytest.raises(WebhookUrlError, match="non-public"):
        check_url("http://10.1.2.3/hook", "127.0.0.1")
    assert check_url("http://127.0.0.1:9/hook", "127.0.0.1")
    assert check_url("http://10.1.2.3/hook", "10.0.0.0/8")
    with pytest.raises(WebhookUrlError, match="does not resolve"):
        check_url("http://no-such-host.invalid/hook")


def test_signature_round_trip_and_tamper():
    body = b'{"a": 1}'
    header = sign(SECRET, body)
    assert verify(SECRET, body, header)
    assert not verify(SECRET, body + b" ", header)
    assert not verify("other", body, header)
    assert not verify(SECRET, body, sign(SECRET, body, timestamp=1))  # stale
