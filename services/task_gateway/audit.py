"""The audit log: every state-changing API request (who, what, target, when, result).

An ASGI middleware around the whole app records each request whose method is not
GET/HEAD/OPTIONS, after the app answered and before the answer leaves: the response is held
until its entry is on `console-audit`, so an action the client saw succeed is in the log (a
streamed answer is recorded at its first chunk and not held).
Result: `done` (2xx/3xx), `refused` (401, 403, 429: not signed in, CSRF, role, lockout), or
`failed` (any other error, e.g. a 422 or a 503). A refused request is never recorded as done.
If the broker does not take the entry, the answer still goes out and the loss is logged.

The log is read back by offset (one partition, newest first) by `read_audit`, so paging costs
what the page holds, and every replica sees the same log.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from aiokafka import TopicPartition
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from libs.kafka import Outgoing, consumer_for, scan_partition
from libs.records.console import AuditEntry
from libs.settings import Settings
from libs.topics import CONSOLE_AUDIT, TopicSpec, topic_name

from .console_auth import SAFE_METHODS, route_template

log = logging.getLogger(__name__)
REFUSED = frozenset({401, 403, 429})


def result_of(status: int) -> str:
    if status in REFUSED:
        return "refused"
    return "done" if status < 400 else "failed"


class AuditMiddleware:
    def __init__(self, app: ASGIApp, publish: Callable[[Outgoing], Awaitable[object]]):
        self.app = app
        self.publish = publish

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        held: list[Message] = []
        status = 500
        recorded = False

        async def hold(message: Message) -> None:
            # Held until the whole answer is there, then recorded, then sent. A streamed
            # answer (more bodies to come) is recorded at its first body and then passes
            # through, so an export is never held in memory.
            nonlocal status, recorded
            if recorded:
                await send(message)
                return
            if message["type"] == "http.response.start":
                status = message["status"]
            held.append(message)
            if message["type"] == "http.response.body" and message.get("more_body", False):
                recorded = True
                await self._record(scope, status, held)
                for m in held:
                    await send(m)
                held.clear()

        try:
            await self.app(scope, receive, hold)
        finally:
            if not recorded:
                await self._record(scope, status, held)
                for m in held:
                    await send(m)

    async def _record(self, scope: Scope, status: int, held: list[Message]) -> None:
        state = scope.get("state") or {}
        p = state.get("principal")
        template = route_template(scope)
        params = scope.get("path_params") or {}
        detail = ""
        if status >= 400:
            body = b"".join(m.get("body", b"") for m in held if m["type"] == "http.response.body")
            detail = body[:500].decode("utf-8", errors="replace")
        entry = AuditEntry(
            entry_id=uuid.uuid4().hex,
            at=datetime.now(UTC),
            actor=p.name if p is not None else state.get("audit_actor", "anonymous"),
            role=p.role if p is not None else None,
            via=p.via if p is not None else "none",
            method=scope["method"],
            path=scope["path"],
            action=f"{scope['method']} {template}",
            target=", ".join(f"{k}={v}" for k, v in params.items()),
            status=status,
            result=result_of(status),  # type: ignore[arg-type]
            detail=detail,
        )
        try:
            await self.publish(Outgoing(CONSOLE_AUDIT, entry.entry_id, entry))
        except Exception:  # the answer goes out; the loss is logged
            log.exception("audit entry not written: %s %s", entry.action, entry.result)


async def bounds(settings: Settings, spec: TopicSpec) -> tuple[int, int]:
    """(first offset held, end offset) of a one-partition topic."""
    tp = TopicPartition(topic_name(spec, settings.topic_prefix), 0)
    c = consumer_for(settings, None, "xget-console-read")
    await c.start()
    try:
        lo = (await c.beginning_offsets([tp]))[tp]
        hi = (await c.end_offsets([tp]))[tp]
        return lo, hi
    finally:
        await c.stop()


async def read_newest(
    settings: Settings, spec: TopicSpec, limit: int, offset: int
) -> tuple[int, list]:
    """(records held, the page of records `offset` back from the newest, newest first)."""
    lo, hi = await bounds(settings, spec)
    total = max(0, hi - lo)
    stop = hi - offset
    start = max(lo, stop - limit)
    if stop <= start:
        return total, []
    out = [
        rec
        async for _, rec in scan_partition(settings, spec, 0, start, end_offset=stop, deadline_s=20)
        if rec is not None
    ]
    return total, out[::-1]
