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
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx
import urllib3.exceptions
from aiokafka.errors import KafkaError
from clickhouse_connect.driver.exceptions import ClickHouseError
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from minio.error import MinioException

from libs.failures import DependencyError, cause_chain, dependency_of
from libs.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


class DependencyUnavailable(DependencyError):
    """Raised by gateway code that knows which dependency failed (e.g. a broker send that
    was not acknowledged in time)."""

    def __init__(self, dependency: str, reason: str, detail: str | None = None):
        """`reason` goes to the client; `detail` (default: the reason) only to the log."""
        super().__init__(dependency, f"unavailable: {detail or reason}")
        self.reason = reason
        self.detail = detail or reason


# Classes the app registers a handler for: the library bases a dependency's failure comes as
# (which of them is one is libs/failures.py's call; anything else of these is still a 500).
HANDLED: tuple[type[Exception], ...] = (
    DependencyError,
    ClickHouseError,
    KafkaError,
    MinioException,
    urllib3.exceptions.HTTPError,
    httpx.HTTPError,
    OSError,
)


def classify(exc: BaseException) -> tuple[str, str, str] | None:
    """(dependency, reason for the client, full reason for the log) when `exc` means a
    dependency failed (libs/failures.py, the same verdict the consumers act on), else None.
    The client's reason names the failure only (the library's message holds internal host
    names and query parameters)."""
    for e in cause_chain(exc):
        if isinstance(e, DependencyUnavailable):
            return e.dependency, e.reason, e.detail
    dependency = dependency_of(exc)
    if dependency is None:
        return None
    return dependency, type(root_cause(exc)).__name__, f"{type(exc).__name__}: {exc}"[:500]


def root_cause(exc: BaseException) -> BaseException:
    """The innermost cause (e.g. ConnectionRefusedError under clickhouse-connect's error)."""
    *_, last = cause_chain(exc)
    return last


def install(app: FastAPI, settings: Settings) -> None:
    """Register the handlers: 503 + Retry-After for a dependency failure, 500 otherwise."""

    async def handler(request: Request, exc: Exception) -> JSONResponse:
        found = classify(exc)
        if found is None:
            log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
            return JSONResponse({"status": "error", "detail": "internal error"}, 500)
        dependency, reason, full = found
        log.warning(
            "%s %s: %s unavailable (%s)", request.method, request.url.path, dependency, full
        )
        return JSONResponse(
            {
                "status": "unavailable",
                "dependency": dependency,
                "detail": f"{dependency} is unreachable, try again later: {reason}",
            },
            503,
            headers={"Retry-After": str(settings.api_retry_after_s)},
        )

    for cls in HANDLED:
        app.add_exception_handler(cls, handler)


async def within(settings: Settings, dependency: str, what: Awaitable[T]) -> T:
    """Await `what` for at most XGET_API_DEPENDENCY_TIMEOUT_S; then the dependency counts as
    unavailable (a producer keeps retrying a down broker far longer than a client waits)."""
    try:
        return await asyncio.wait_for(what, settings.api_dependency_timeout_s)
    except TimeoutError:
        raise DependencyUnavailable(
            dependency, f"no answer within {settings.api_dependency_timeout_s:g} s"
        ) from None


async def opened(dependency: str, open_it: Callable[[], Awaitable[T]]) -> T:
    """The dependency's client (e.g. the ClickHouse store a route opens on first use); any
    failure to open it is that dependency being unavailable (503), whatever it raised."""
    try:
        return await open_it()
    except Exception as e:
        raise DependencyUnavailable(
            dependency, type(root_cause(e)).__name__, f"{type(e).__name__}: {e}"[:500]
        ) from e
