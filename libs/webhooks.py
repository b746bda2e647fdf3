"""Client webhooks: which URLs may be called, how a body is signed, and one delivery with
retries.

URL policy (checked when a task is created and again before every delivery, since DNS may have
changed): http or https only; every address the host resolves to must be globally routable
(``is_public``: ``ipaddress``'s ``is_global`` plus the IANA special-purpose blocks the standard
library's table misses, and the IPv4 address embedded in IPv4-mapped, 6to4, Teredo and NAT64
addresses must be global too) unless the host, or a network containing the address, is named in
``webhook_allow_hosts``. A delivery connects to the very address that was checked: the host is
resolved once per attempt, checked, and the request goes to that IP with the original Host
header and TLS server name (SNI and certificate checked for the host), so DNS answering
differently a moment later (rebinding) cannot send it elsewhere.

Signature: ``X-XGet-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``.
The client recomputes it over the raw body and rejects stale timestamps (replay protection).
``Idempotency-Key`` is the batch id: a re-sent batch (after a crash, or a replay) carries the
same key, so the client can drop the copy.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import ipaddress
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from . import metrics, tracing
from .retry import RetryPolicy, retry_after_seconds

SIGNATURE_HEADER = "X-XGet-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"


class WebhookUrlError(ValueError):
    """A callback URL the policy refuses; the message says why."""


class WebhookDnsError(WebhookUrlError):
    """The host did not resolve. At task creation that is a bad URL (422); when a report is
    sent it may be DNS failing for a while, so the delivery is retried like a refused
    connection."""


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


# Not globally routable although this Python's `is_global` may say so (its table predates
# them, or they are deprecated): IANA's special-purpose registry.
_NOT_GLOBAL = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "100.64.0.0/10",
        "192.0.0.0/24",
        "192.88.99.0/24",
        "198.18.0.0/15",
        "::/96",
        "64:ff9b:1::/48",
        "100::/64",
        "2001::/23",
        "2001:db8::/32",
        "fec0::/10",
    )
)
# ... except these, which IANA marks globally reachable (PCP and TURN anycast).
_GLOBAL_IN_NOT_GLOBAL = tuple(ipaddress.ip_network(n) for n in ("192.0.0.9/32", "192.0.0.10/32"))
NAT64 = ipaddress.ip_network("64:ff9b::/96")


def embedded_ipv4(ip: ipaddress._BaseAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries: IPv4-mapped, 6to4 (2002::/16), Teredo
    (2001::/32: the client's address) or NAT64 (64:ff9b::/96). None for any other."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True only for a globally routable address (and a global embedded IPv4, if any)."""
    inner = embedded_ipv4(ip)
    if inner is not None and not is_public(inner):
        return False
    if ip.is_multicast or ip.is_unspecified or ip.is_loopback or ip.is_link_local:
        return False
    if any(ip in n for n in _GLOBAL_IN_NOT_GLOBAL):
        return True
    return ip.is_global and not any(ip in n for n in _NOT_GLOBAL)


@dataclass(frozen=True)
class Target:
    """A callback URL that passed the policy, and the address a request must connect to."""

    url: str
    ip: str | None  # None: an allowed host name, connected to as usual

    def request_url(self) -> httpx.URL:
        """The URL with the checked IP as its host (the Host header keeps the name)."""
        u = httpx.URL(self.url)
        return u if self.ip is None else u.copy_with(host=self.ip)

    def host_header(self) -> str:
        return httpx.URL(self.url).netloc.decode("ascii")

    def server_name(self) -> str:
        return httpx.URL(self.url).raw_host.decode("ascii")


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (the one DNS lookup of a check)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))


def check_url(url: str, allow_hosts: str = "") -> str:
    """Return the URL if the policy allows it, else raise WebhookUrlError. Resolves DNS."""
    return check_target(url, allow_hosts).url


def check_target(url: str, allow_hosts: str = "") -> Target:
    """The URL and the address to connect to, if the policy allows it; else WebhookUrlError.
    Resolves DNS once; every address must be allowed, the first is the one to use."""
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
        return Target(url, None)
    try:
        addresses = resolve(host, parts.port or (443 if parts.scheme == "https" else 80))
    except socket.gaierror as e:
        raise WebhookDnsError(f"callback_url host {host!r} does not resolve: {e}") from None
    except UnicodeError as e:
        raise WebhookUrlError(f"callback_url host {host!r} is not a valid name: {e}") from None
    if not addresses:
        raise WebhookUrlError(f"callback_url host {host!r} has no address")
    for address in addresses:
        ip = ipaddress.ip_address(address)
        if any(ip in n for n in nets):
            continue
        if not is_public(ip):
            raise WebhookUrlError(
                f"callback_url host {host!r} resolves to non-public address {ip}; "
                "name it in XGET_WEBHOOK_ALLOW_HOSTS to allow it"
            )
    return Target(url, addresses[0])


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

    def __init__(
        self,
        client: httpx.AsyncClient,
        secret: str,
        *,
        allow_hosts: str = "",
        max_attempts: int = 0,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 60.0,
        timeout_s: float = 10.0,
        give_up_after_s: float = 86_400.0,
    ):
        self.client = client
        self.secret = secret
        self.allow_hosts = allow_hosts
        self.max_attempts = max_attempts  # 0: no cap on attempts, only on time
        self.give_up_after_s = give_up_after_s
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.retry = RetryPolicy(backoff_base_s, backoff_max_s, max_retry_after_s=backoff_max_s)
        self.timeout_s = timeout_s

    def _delay(self, attempt: int, hint: float | None) -> float:
        return self.retry.delay(attempt - 1, hint)

    async def deliver(
        self,
        url: str,
        body: bytes,
        idempotency_key: str,
        stop: asyncio.Event | None = None,
        *,
        trace: Sequence = (),
        attributes: dict | None = None,
    ) -> Delivery:
        """`trace`: the W3C headers of the record whose work this is (the task's trace; the
        current span when empty); `attributes` go on the delivery's span (task id, …)."""
        t0 = time.perf_counter()
        with tracing.span_in(
            trace,
            "webhook POST",
            **{
                "xget.batch_id": idempotency_key,
                "server.address": urlsplit(url).hostname or "",
                **(attributes or {}),
            },
        ) as sp:
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

    async def _deliver(
        self, url: str, body: bytes, idempotency_key: str, stop: asyncio.Event | None
    ) -> Delivery:
        cause = "not attempted"
        status: int | None = None
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                target = await asyncio.to_thread(check_target, url, self.allow_hosts)
            except WebhookDnsError as e:
                # DNS failing now is no verdict on the URL: back off, look it up again.
                status, cause, hint = None, str(e), None
            except WebhookUrlError as e:
                return Delivery(False, attempt, None, f"refused webhook URL: {e}")
            else:
                done, status, cause, hint = await self._attempt(target, body, idempotency_key)
                if done is not None:
                    return dataclasses.replace(done, attempts=attempt)
            delay = self._delay(attempt, hint)
            if self.max_attempts and attempt >= self.max_attempts:
                return Delivery(
                    False, attempt, status, f"gave up after {attempt} attempts: {cause}"
                )
            if time.monotonic() - started + delay > self.give_up_after_s:
                return Delivery(
                    False,
                    attempt,
                    status,
                    f"gave up after {attempt} attempts "
                    f"in {time.monotonic() - started:.0f}s: {cause}",
                )
            if stop is None:
                await asyncio.sleep(delay)
            else:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                    return Delivery(False, attempt, status, cause, stopped=True)
                except TimeoutError:
                    pass

    async def _attempt(
        self, target: Target, body: bytes, idempotency_key: str
    ) -> tuple[Delivery | None, int | None, str, float | None]:
        """One POST: (a final Delivery or None to retry, status, cause, Retry-After hint)."""
        try:
            # To the checked IP (no second lookup); Host and TLS name stay the host's.
            resp = await self.client.post(
                target.request_url(),
                content=body,
                timeout=self.timeout_s,
                extensions={"sni_hostname": target.server_name()},
                headers={
                    "Host": target.host_header(),
                    "Content-Type": "application/json",
                    SIGNATURE_HEADER: sign(self.secret, body),
                    IDEMPOTENCY_HEADER: idempotency_key,
                    "User-Agent": "XGet-Reporter/1",
                },
            )
        except httpx.HTTPError as e:
            return None, None, f"{type(e).__name__}: {e}"[:300] or type(e).__name__, None
        status = resp.status_code
        if 200 <= status < 300:
            return Delivery(True, 0, status, None, _next_allowed(resp)), status, "", None
        cause = f"HTTP {status}: {resp.text[:200]}"
        if not retryable(status):
            return Delivery(False, 0, status, cause), status, cause, None
        return None, status, cause, retry_after_seconds(resp.headers.get("retry-after"))


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
