"""Which failures are a dependency's, not a record's, and how long to wait before trying again.

A record is dead-lettered only when it is at fault: it cannot be decoded, or it fails
validation. Everything else that can go wrong while handling it — ClickHouse, the object
store, the broker, DNS, an HTTP server answering 5xx, a timeout — is a dependency failing,
and the same record handled a little later succeeds. `dependency_of` tells the two apart by
the exception (and what caused it), and names the dependency for readiness, metrics and logs.

The rule of thumb: an error that names a network or a server in trouble is a dependency's;
an error the server gives about the request itself (a type mismatch, a 4xx, a record too
large) is the record's, because sending it again gives the same answer.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from .retry import Backoff  # the dependency waits back off by the one retry policy

T = TypeVar("T")

log = logging.getLogger(__name__)

# ClickHouse error codes that say the server (or its cluster) is in trouble, not the query:
# TIMEOUT_EXCEEDED, READONLY, TOO_MANY_SIMULTANEOUS_QUERIES, NO_FREE_CONNECTION,
# DNS_ERROR, SOCKET_TIMEOUT, NETWORK_ERROR, ABORTED, MEMORY_LIMIT_EXCEEDED,
# TABLE_IS_READ_ONLY, TOO_MANY_PARTS, TOO_FEW_LIVE_REPLICAS, UNKNOWN_STATUS_OF_INSERT,
# SESSION_IS_LOCKED, QUERY_WAS_CANCELLED, CANNOT_SCHEDULE_TASK, SYSTEM_ERROR,
# ALL_CONNECTION_TRIES_FAILED, KEEPER_EXCEPTION, POCO_EXCEPTION.
CLICKHOUSE_TRANSIENT_CODES = frozenset(
    {
        159,
        164,
        202,
        203,
        198,
        209,
        210,
        236,
        241,
        242,
        252,
        285,
        319,
        373,
        394,
        439,
        425,
        279,
        999,
        1000,
    }
)

# S3 error codes that a healthy retry fixes (AWS's and MinIO's names).
S3_TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "XMinioServerNotInitialized",
        "XMinioStorageFull",
        "OperationAborted",
    }
)


class DependencyError(Exception):
    """Raised by code that knows a dependency failed (for a failure no library class names).

    `dependency` names it: "clickhouse", "object-store", "kafka", "http", "network", "x"."""

    def __init__(self, dependency: str, message: str):
        super().__init__(f"{dependency}: {message}")
        self.dependency = dependency


def cause_chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, then what caused it (explicitly or while handling), without loops."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def dependency_of(exc: BaseException) -> str | None:
    """The dependency whose failure `exc` is, or None when the record itself is at fault.

    The whole cause chain is read, outermost first: the first link that is classified either
    way decides (a ValueError raised while handling a connection error is the record's)."""
    for e in cause_chain(exc):
        verdict = _classify(e)
        if verdict is not None:
            return verdict or None
    return None


def _classify(e: BaseException) -> str | None:
    """A dependency name, "" for "the record's fault", None for "unknown: look at the cause"."""
    if isinstance(e, DependencyError):
        return e.dependency
    mod = type(e).__module__ or ""
    if mod.startswith("clickhouse_connect"):
        return _clickhouse(e)
    if mod.startswith("aiokafka") or mod.startswith("kafka"):
        return _kafka(e)
    if mod.startswith("minio"):
        return _minio(e)
    if mod.startswith("urllib3"):
        return _urllib3(e)
    if mod.startswith("httpx"):
        return _httpx(e)
    if mod.startswith("aiohttp"):
        return _aiohttp(e)
    if isinstance(e, (ConnectionError, TimeoutError, socket.gaierror, socket.timeout)):
        return "network"
    return None


def _clickhouse(e: BaseException) -> str | None:
    from clickhouse_connect.driver import exceptions as ch

    if isinstance(e, (ch.StreamFailureError,)):
        return "clickhouse"
    if isinstance(e, ch.DatabaseError):
        code = getattr(e, "code", None)
        if code is not None:
            return "clickhouse" if code in CLICKHOUSE_TRANSIENT_CODES else ""
        if isinstance(e, ch.OperationalError):
            return "clickhouse"  # connection refused/reset, server gone mid-answer
        text = str(e)
        if "HTTP status 50" in text or "HTTP status 429" in text:
            return "clickhouse"  # a proxy or load balancer in front of the server
        return None  # look at the cause (a connection error wrapped by the driver)
    return None


def _kafka(e: BaseException) -> str | None:
    from aiokafka import errors as ke

    if isinstance(
        e,
        (
            ke.MessageSizeTooLargeError,
            ke.RecordTooLargeError,
            ke.InvalidTopicError,
            ke.TopicAuthorizationFailedError,
            ke.UnsupportedVersionError,
        ),
    ):
        return ""
    if isinstance(e, (ke.KafkaError, ke.IllegalStateError)):
        return "kafka"
    return None


def _minio(e: BaseException) -> str | None:
    from minio import error as me

    if isinstance(e, me.ServerError):
        return "object-store"
    if isinstance(e, me.S3Error):
        return "object-store" if e.code in S3_TRANSIENT_CODES else ""
    if isinstance(e, me.InvalidResponseError):
        return "object-store"  # a proxy's HTML error page, a server restarting
    return None


def _urllib3(e: BaseException) -> str | None:
    from urllib3 import exceptions as ue

    if isinstance(e, (ue.HTTPError, ue.PoolError)):
        return "network"
    return None


def _httpx(e: BaseException) -> str | None:
    import httpx

    if isinstance(e, httpx.TransportError):
        return "network"
    if isinstance(e, httpx.HTTPStatusError):
        status = e.response.status_code
        return "http" if status >= 500 or status in (408, 429) else ""
    return None


def _aiohttp(e: BaseException) -> str | None:
    import aiohttp

    if isinstance(e, aiohttp.ClientResponseError):
        return "http" if e.status >= 500 or e.status in (408, 429) else ""
    if isinstance(e, (aiohttp.ClientConnectionError, aiohttp.ServerTimeoutError)):
        return "network"
    return None


class DependencyWatch:
    """What a service shows while it waits out a dependency's failure: not ready with the
    cause (/readyz), `xget_dependency_down` 1 and `xget_dependency_failures_total` counting the
    attempts; `failed` answers how long to wait before the next one (the shared backoff).
    The first success (`recovered`) clears it all and resets the backoff."""

    def __init__(self, service: str, component: str, backoff: Backoff):
        self.service = service
        self.component = component
        self.backoff = backoff
        self.dependency: str | None = None

    def failed(self, dependency: str, error: BaseException) -> float:
        from .metrics import DEPENDENCY_DOWN, DEPENDENCY_FAILURES
        from .ops_server import HEALTH

        delay = self.backoff.next_delay()
        if self.dependency not in (None, dependency):
            DEPENDENCY_DOWN.labels(self.service, self.dependency).set(0)
        self.dependency = dependency
        DEPENDENCY_FAILURES.labels(self.service, dependency).inc()
        DEPENDENCY_DOWN.labels(self.service, dependency).set(1)
        cause = f"{dependency} ({type(error).__name__}: {str(error)[:300]})"
        HEALTH.waiting(self.component, cause)
        log.warning(
            "%s: %s failed; retry %d in %.1fs, nothing committed: %s",
            self.service,
            dependency,
            self.backoff.attempts,
            delay,
            cause,
        )
        return delay

    def recovered(self) -> None:
        if self.dependency is None:
            return
        from .metrics import DEPENDENCY_DOWN
        from .ops_server import HEALTH

        log.info(
            "%s: %s is back after %d attempt(s)",
            self.service,
            self.dependency,
            self.backoff.attempts,
        )
        DEPENDENCY_DOWN.labels(self.service, self.dependency).set(0)
        HEALTH.waiting(self.component, None)
        self.dependency = None
        self.backoff.reset()


async def until_available(
    what: str,
    op: Callable[[], Awaitable[T]],
    *,
    service: str = "startup",
    base_s: float = 0.5,
    cap_s: float = 30.0,
) -> T:
    """Run `op` until it succeeds, waiting out a dependency's failure with the shared backoff
    (and showing it: not ready, metric); any other error is raised. For start-up and recovery
    paths, where no batch is in hand to hand back: a service started while ClickHouse or the
    bucket is down waits for it instead of exiting."""
    watch = DependencyWatch(service, f"{service}: {what}", Backoff(base_s, cap_s))
    try:
        while True:
            try:
                result = await op()
            except Exception as e:
                dependency = dependency_of(e)
                if dependency is None:
                    raise
                await asyncio.sleep(watch.failed(dependency, e))
                continue
            return result
    finally:
        watch.recovered()
