"""Client webhooks: which URLs may be called, how a body is signed, and one delivery with
retries.

URL policy (checked when a task is created and again before every delivery, since DNS may have
changed): http or https only; every address the host resolves to must be public unless the
host, or a network containing the address, is named in ``webhook_allow_hosts``.

Signature: ``X-XGet-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``.
The client recomputes it over the raw body and rejects stale timestamps (replay protection).
``Idempotency-Key`` is the batch id: a re-sent batch (after a crash, or a replay) carries the
same key, so the client can drop the copy.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import hmac
import ipaddress
import random
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import urlsplit

import httpx

from . import metrics, tracing

SIGNATURE_HEADER = "X-XGet-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"


class WebhookUrlError(ValueError):
    """A callback URL the policy refuses; the message says why."""


def parse_allow_list(raw: str) -> tuple[set[str], list[ipaddress._BaseNetwork]]:
    hosts: set[str] = set()
    nets: list[ipaddress._BaseNetwork] = []
    for item in (x.strip() for x in raw.split(",")):
        if not item:
            continue
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            hosts.add(item.lower())
    return hosts, nets


def _public(ip: ipaddress._BaseAddress) -> bool:
    return not (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
                or ip.is_reserved or ip.is_unspecified)


def check_url(url: str, allow_hosts: str = "") -> str:
    """Return the URL if the policy allows it, else raise WebhookUrlError. Resolves DNS."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise WebhookUrlError(f"callback_url must be http(s), not {parts.scheme or 'no scheme'!r}")
    host = (parts.hostname or "").lower()
    if not host:
        raise WebhookUrlError("callback_url has no host")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as e:
        raise WebhookUrlError(f"callback_url has a bad port: {e}") from None
    hosts, nets = parse_allow_list(allow_hosts)
    if host in hosts:
        return url
    try:
        infos = socket.getaddrinfo(host, parts.port or (443 if parts.scheme == "https" else 80),
                                   type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise WebhookUrlError(f"callback_url host {host!r} does not resolve: {e}") from None
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if any(ip in n for n in nets):
            continue
        if not _public(ip):
            raise WebhookUrlError(
                f"callback_url host {host!r} resolves to non-public address {ip}; "
                "name it in XGET_WEBHOOK_ALLOW_HOSTS to allow it")
    return url


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(secret: str, body: bytes, header: str, tolerance_s: int = 300) -> bool:
    """What a client does with X-XGet-Signature (also used by the tests' webhook)."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        t = int(fields["t"])
    except (ValueError, KeyError):
        return False
    if abs(time.time() - t) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, body, t), header)


@dataclass
class Delivery:
    """Outcome of delivering one body: `ok`, or the cause and whether it can be retried."""

    ok: bool
    attempts: int
    status: int | None = None
    cause: str | None = None
    next_batch_allowed: bool = True
    stopped: bool = False  # the service is stopping: neither delivered nor failed


def _retry_after(resp: httpx.Response) -> float | None:
    raw = resp.headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
        return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
    except (TypeError, ValueError):
        return None


def retryable(status: int) -> bool:
    return status in (408, 425, 429) or status >= 500


class WebhookSender:
    """POSTs signed bodies with exponential backoff and full jitter.

    Transient failures (connection errors, timeouts, 408/425/429, 5xx) are retried until
    `give_up_after_s` has passed since the first attempt (and, when `max_attempts` is set, up
    to that many attempts): a client's endpoint down for minutes or hours gets its report when
    it is back, never a dead letter. A Retry-After header sets the wait (capped at
    `backoff_max_s`). Any other 4xx is final at once: the client rejected the body and sending
    it again cannot help.
    """

    def __init__(self, client: httpx.AsyncClient, secret: str, *, allow_hosts: str = "",
                 max_attempts: int = 0, backoff_base_s: float = 0.5,
                 backoff_max_s: float = 60.0, timeout_s: float = 10.0,
                 give_up_after_s: float = 86_400.0):
        self.client = client
        self.secret = secret
        self.allow_hosts = allow_hosts
        self.max_attempts = max_attempts  # 0: no cap on attempts, only on time
        self.give_up_after_s = give_up_after_s
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.timeout_s = timeout_s

    def _delay(self, attempt: int, hint: float | None) -> float:
        if hint is not None:
            return min(hint, self.backoff_max_s)
        return random.uniform(0, min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1)))

    async def deliver(self, url: str, body: bytes, idempotency_key: str,
                      stop: asyncio.Event | None = None, *, trace: Sequence = (),
                      attributes: dict | None = None) -> Delivery:
        """`trace`: the W3C headers of the record whose work this is (the task's trace; the
        current span when empty); `attributes` go on the delivery's span (task id, …)."""
        t0 = time.perf_counter()
        with tracing.span_in(trace, "webhook POST", **{
                "xget.batch_id": idempotency_key, "server.address": urlsplit(url).hostname or "",
                **(attributes or {})}) as sp:
            d = await self._deliver(url, body, idempotency_key, stop)
            sp.set_attribute("xget.attempts", d.attempts)
            sp.set_attribute("xget.result", _result(d))
            if d.status is not None:
                sp.set_attribute("http.response.status_code", d.status)
        metrics.WEBHOOK_SECONDS.observe(time.perf_counter() - t0)
        metrics.WEBHOOK_DELIVERIES.labels(_result(d)).inc()
        if d.attempts > 1:
            metrics.WEBHOOK_DELIVERIES.labels("retry").inc(d.attempts - 1)
        return d

    async def _deliver(self, url: str, body: bytes, idempotency_key: str,
                       stop: asyncio.Event | None) -> Delivery:
        cause = "not attempted"
        status: int | None = None
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                await asyncio.to_thread(check_url, url, self.allow_hosts)
            except WebhookUrlError as e:
                return Delivery(False, attempt, None, f"refused webhook URL: {e}")
            hint = None
            try:
                resp = await self.client.post(url, content=body, timeout=self.timeout_s, headers={
                    "Content-Type": "application/json",
                    SIGNATURE_HEADER: sign(self.secret, body),
                    IDEMPOTENCY_HEADER: idempotency_key,
                    "User-Agent": "XGet-Reporter/1",
                })
                status = resp.status_code
                if 200 <= status < 300:
                    return Delivery(True, attempt, status, None, _next_allowed(resp))
                cause = f"HTTP {status}: {resp.text[:200]}"
                if not retryable(status):
                    return Delivery(False, attempt, status, cause)
                hint = _retry_after(resp)
            except httpx.HTTPError as e:
                status = None
                cause = f"{type(e).__name__}: {e}"[:300] or type(e).__name__
            delay = self._delay(attempt, hint)
            if self.max_attempts and attempt >= self.max_attempts:
                return Delivery(False, attempt, status,
                                f"gave up after {attempt} attempts: {cause}")
            if time.monotonic() - started + delay > self.give_up_after_s:
                return Delivery(False, attempt, status, f"gave up after {attempt} attempts "
                                f"in {time.monotonic() - started:.0f}s: {cause}")
            if stop is None:
                await asyncio.sleep(delay)
            else:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                    return Delivery(False, attempt, status, cause, stopped=True)
                except asyncio.TimeoutError:
                    pass


def _result(d: Delivery) -> str:
    if d.ok:
        return "delivered"
    if d.stopped:
        return "stopped"
    if d.status is None and (d.cause or "").startswith("refused"):
        return "refused"
    if d.status is not None and not retryable(d.status):
        return "rejected"
    return "gave_up"


def _next_allowed(resp: httpx.Response) -> bool:
    """The client's `{"status": "received", "next_batch_allowed": bool}`; anything else = go on."""
    try:
        data = resp.json()
    except ValueError:
        return True
    if isinstance(data, dict) and data.get("next_batch_allowed") is False:
        return False
    return True
