"""Webhook delivery against a real local HTTP server: signing, retries, what is final."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time

import httpx
import pytest

from infra.local import free_port
from libs import webhooks
from libs.webhooks import WebhookSender, WebhookUrlError, check_url, sign, verify
from tests.webhook_server import WebhookServer

SECRET = "s3cret"


def sender(client: httpx.AsyncClient, **kw) -> WebhookSender:
    opts = dict(
        allow_hosts="127.0.0.1",
        max_attempts=4,
        backoff_base_s=0.01,
        backoff_max_s=0.05,
        timeout_s=2,
    )
    opts.update(kw)
    return WebhookSender(client, SECRET, **opts)


async def test_signed_delivery_carries_idempotency_key_and_pause_answer():
    with WebhookServer(SECRET, pause_after_batches={"t_batch_002"}) as hook:
        async with httpx.AsyncClient() as c:
            first = await sender(c).deliver(hook.url, b'{"batch_id": "t_batch_001"}', "t_batch_001")
            second = await sender(c).deliver(
                hook.url, b'{"batch_id": "t_batch_002"}', "t_batch_002"
            )
    assert first.ok and first.next_batch_allowed and first.attempts == 1
    assert second.ok and second.next_batch_allowed is False
    got = hook.all()
    assert [r.idempotency_key for r in got] == ["t_batch_001", "t_batch_002"]
    assert all(r.signature_ok for r in got)


async def test_a_200_answer_that_is_not_received_is_sent_again():
    """The design's answer is {"status": "received", ...}: a 200 naming another status did not
    take the batch, so it is sent again (as a 5xx is), and the cause says what the client said."""
    with WebhookServer(SECRET, busy_times=2) as hook:
        async with httpx.AsyncClient() as c:
            d = await sender(c).deliver(hook.url, b'{"batch_id": "t_batch_001"}', "t_batch_001")
    assert d.ok and d.attempts == 3 and d.next_batch_allowed
    assert [(r.status, r.answer) for r in hook.all()] == [
        (200, "busy"),
        (200, "busy"),
        (200, "received"),
    ]
    with WebhookServer(SECRET, busy_times=10) as hook:
        async with httpx.AsyncClient() as c:
            d = await sender(c, max_attempts=2).deliver(hook.url, b"{}", "k1")
    assert not d.ok and d.attempts == 2
    assert d.cause == "gave up after 2 attempts: client answered status 'busy': try later"


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
            sender(c, max_attempts=0, backoff_max_s=0.05).deliver(url, b"{}", "k1")
        )
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


# --- SSRF: the connection goes to the address that was checked ------------------------------
def fake_dns(monkeypatch, answers: dict[str, list[list[str]]]) -> list[str]:
    """Make libs.webhooks.resolve answer from `answers` (host -> successive answers; the last
    repeats) instead of DNS; returns the hosts looked up. The names do not exist in real DNS,
    so any lookup other than this one fails."""
    asked: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        seq = answers[host]
        return seq[min(len([h for h in asked if h == host]), len(seq)) - 1]

    monkeypatch.setattr(webhooks, "resolve", resolve)
    return asked


async def test_a_name_resolving_to_a_private_address_is_refused_at_send_time(monkeypatch):
    """DNS rebinding: public when the task was created, private when the batch is sent."""
    fake_dns(monkeypatch, {"hook.rebind.test": [["93.184.216.34"], ["127.0.0.1"]]})
    with WebhookServer(SECRET) as hook:
        url = f"http://hook.rebind.test:{hook.port}/hook"
        assert check_url(url)  # what the gateway checked at creation
        async with httpx.AsyncClient() as c:
            d = await sender(c, allow_hosts="").deliver(url, b"{}", "k1")
    assert not d.ok and d.attempts == 1 and d.cause.startswith("refused webhook URL")
    assert "127.0.0.1" in d.cause
    assert hook.all() == []  # nothing reached the private address


async def test_dns_failing_at_send_time_is_retried_not_dead_lettered(monkeypatch):
    """A name that does not resolve for a while (DNS down) is looked up again with backoff,
    and the report goes out once it resolves; only task creation treats it as a bad URL."""
    lookups: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        lookups.append(host)
        if len(lookups) <= 3:
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return ["127.0.0.1"]

    monkeypatch.setattr(webhooks, "resolve", resolve)
    with WebhookServer(SECRET) as hook:
        async with httpx.AsyncClient() as c:
            d = await sender(c, max_attempts=0).deliver(
                f"http://hook.flaky-dns.test:{hook.port}/hook", b"{}", "k1"
            )
    assert d.ok and d.attempts == 4 and len(lookups) == 4
    assert len(hook.accepted()) == 1


async def test_localhost_by_name_is_refused_without_the_allow_list():
    with WebhookServer(SECRET) as hook:
        async with httpx.AsyncClient() as c:
            d = await sender(c, allow_hosts="").deliver(
                f"http://localhost:{hook.port}/hook", b"{}", "k1"
            )
    assert not d.ok and "non-public" in d.cause and hook.all() == []


async def test_delivery_connects_to_the_checked_ip_and_keeps_the_host(monkeypatch):
    asked = fake_dns(monkeypatch, {"hook.pinned.test": [["127.0.0.1"]]})
    with WebhookServer(SECRET, fail_times=1) as hook:
        async with httpx.AsyncClient() as c:
            d = await sender(c, allow_hosts="127.0.0.0/8").deliver(
                f"http://hook.pinned.test:{hook.port}/hook", b"{}", "k1"
            )
    assert d.ok and d.attempts == 2
    assert asked == ["hook.pinned.test"] * 2  # one lookup per attempt, the checked one
    assert [r.host for r in hook.all()] == [f"hook.pinned.test:{hook.port}"] * 2


def tls_for(name: str, tmp_path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A self-signed certificate for `name`: (server context, client context trusting it)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    client = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
    return server, client


async def test_https_to_the_checked_ip_verifies_the_certificate_of_the_name(monkeypatch, tmp_path):
    fake_dns(monkeypatch, {"hook.tls.test": [["127.0.0.1"]], "evil.tls.test": [["127.0.0.1"]]})
    server_ctx, client_ctx = tls_for("hook.tls.test", tmp_path)
    with WebhookServer(SECRET, tls=server_ctx) as hook:
        async with httpx.AsyncClient(verify=client_ctx) as c:
            ok = await sender(c, allow_hosts="127.0.0.1/32").deliver(
                f"https://hook.tls.test:{hook.port}/hook", b"{}", "k1"
            )
            # the same server under a name its certificate does not carry: refused by TLS
            wrong = await sender(c, allow_hosts="127.0.0.1/32", max_attempts=1).deliver(
                f"https://evil.tls.test:{hook.port}/hook", b"{}", "k2"
            )
    assert ok.ok, ok.cause
    assert [r.host for r in hook.all()] == [f"hook.tls.test:{hook.port}"]
    assert not wrong.ok and "CERTIFICATE_VERIFY_FAILED" in wrong.cause, wrong.cause
