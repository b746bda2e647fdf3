"""503 instead of 500 when a dependency is down: one set of exception handlers on the app.

A request that fails because ClickHouse, the broker, the object store or another HTTP service
cannot be reached (connection refused, reset, timed out, DNS) is answered 503 with a
`Retry-After` header (XGET_API_RETRY_AFTER_S) and the reason; the client tries again later.
Any other exception stays a 500. The classification looks through the exception's causes, so
a library that wraps a socket error is recognised too.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Iterator
from typing import TypeVar

import httpx
import urllib3.exceptions
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from clickhouse_connect.driver.exceptions import OperationalError as ClickHouseOperationalError
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from minio.error import ServerError as MinioServerError

from libs.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


class DependencyUnavailable(Exception):
    """Raised by gateway code that knows which dependency failed (e.g. a broker send that
    was not acknowledged in time)."""

    def __init__(self, dependency: str, reason: str, detail: str | None = None):
        """`reason` goes to the client; `detail` (default: the reason) only to the log."""
        super().__init__(f"{dependency} unavailable: {detail or reason}")
        self.dependency = dependency
        self.reason = reason
        self.detail = detail or reason


# (exception class, dependency name); the first match along the cause chain wins.
_KNOWN: tuple[tuple[type[BaseException], str], ...] = (
    (ClickHouseOperationalError, "clickhouse"),
    (KafkaConnectionError, "kafka"),
    (KafkaTimeoutError, "kafka"),
    (MinioServerError, "object store"),
    (urllib3.exceptions.HTTPError, "object store"),  # minio's transport (and only its)
    (httpx.TransportError, "http"),
    (ConnectionError, "network"),
    (TimeoutError, "network"),
    (socket.gaierror, "network"),  # DNS
)
# Classes the app registers a handler for: every exception above, and the library bases they
# may be wrapped in (an unrecognised one of those is still a 500).
HANDLED: tuple[type[BaseException], ...] = (
    DependencyUnavailable, ClickHouseOperationalError, KafkaError, MinioServerError,
    urllib3.exceptions.HTTPError, httpx.TransportError, OSError)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def classify(exc: BaseException) -> tuple[str, str, str] | None:
    """(dependency, reason for the client, full reason for the log) when `exc` means a
    dependency is unreachable, else None. The client's reason names the failure only (the
    library's message holds internal host names and query parameters)."""
    for e in _chain(exc):
        if isinstance(e, DependencyUnavailable):
            return e.dependency, e.reason, e.detail
        if isinstance(e, KafkaError) and getattr(e, "retriable", False):
            return "kafka", type(e).__name__, f"{type(e).__name__}: {e}"
        for cls, dependency in _KNOWN:
            if isinstance(e, cls):
                cause = root_cause(e)
                return dependency, type(cause).__name__, f"{type(e).__name__}: {e}"[:500]
    return None


def root_cause(exc: BaseException) -> BaseException:
    """The innermost cause (e.g. ConnectionRefusedError under clickhouse-connect's error)."""
    *_, last = _chain(exc)
    return last


def install(app: FastAPI, settings: Settings) -> None:
    """Register the handlers: 503 + Retry-After for a dependency failure, 500 otherwise."""

    async def handler(request: Request, exc: Exception) -> JSONResponse:
        found = classify(exc)
        if found is None:
            log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
            return JSONResponse({"status": "error", "detail": "internal error"}, 500)
        dependency, reason, full = found
        log.warning("%s %s: %s unavailable (%s)", request.method, request.url.path,
                    dependency, full)
        return JSONResponse(
            {"status": "unavailable", "dependency": dependency,
             "detail": f"{dependency} is unreachable, try again later: {reason}"},
            503, headers={"Retry-After": str(settings.api_retry_after_s)})

    for cls in HANDLED:
        app.add_exception_handler(cls, handler)


async def within(settings: Settings, dependency: str, what: Awaitable[T]) -> T:
    """Await `what` for at most XGET_API_DEPENDENCY_TIMEOUT_S; then the dependency counts as
    unavailable (a producer keeps retrying a down broker far longer than a client waits)."""
    try:
        return await asyncio.wait_for(what, settings.api_dependency_timeout_s)
    except asyncio.TimeoutError:
        raise DependencyUnavailable(
            dependency, f"no answer within {settings.api_dependency_timeout_s:g} s") from None

