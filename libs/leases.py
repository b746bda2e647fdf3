"""Account leases for any X-facing service (the scraper, list fetchers): the account-manager's
client side.

`acquire(op)` returns an account the caller may send one request of `op` with; `release()`
reports that request's outcome on account-events and tells the lease what X said. A lease
(from the manager) allows `budget` requests until `expires_at`; it is shared by the replica's
concurrent slices, given back when its budget is spent, when X refuses the account (rate
limit, auth, suspension, block, proxy failure), before it expires, or after sitting idle — so
another replica can use the account. When no lease can be had the caller waits; the manager
queues the request and answers the moment an account frees up.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from libs.kafka import Outgoing, Producer, decode, follow_from_end
from libs.records.accounts import (
    AccountEvent,
    LeaseGrant,
    LeaseRelease,
    LeaseRequest,
    LeaseRevoke,
    LeaseWait,
)
from libs.secretbox import SecretBox
from libs.settings import Settings
from libs.topics import ACCOUNT_EVENTS, LEASE_GRANTS, LEASE_REQUESTS
from libs.xclient import PageResult, XAccount

log = logging.getLogger(__name__)

EXPIRY_MARGIN_S = 1.0  # stop using a lease this long before it expires, and give it back
ACCOUNT_REFUSED = {"rate_limited", "auth_failed", "suspended", "blocked", "proxy_error"}


def effective_priority(priority: int, since: float, now: float, aging_s: float) -> float:
    """A waiter's rank (lower is served first): its priority (1 highest) improved by one level
    per `aging_s` waited, so low priorities are never starved. The scrapers rank their own
    waiters and the account-manager ranks the replicas' lease requests with it."""
    return priority - (now - since) / aging_s


def event_for(
    account_id: str,
    operation: str,
    r: PageResult | None,
    lease_id: str | None,
    requester: str,
    proxy_id: str | None,
    task_id: str | None = None,
) -> AccountEvent:
    """The account-events record for one X request's result."""
    now = datetime.now(UTC)
    if r is None:
        return AccountEvent(
            event_id=uuid.uuid4().hex,
            account_id=account_id,
            lease_id=lease_id,
            operation=operation,
            outcome="network_error",
            error="request aborted",
            requester=requester,
            proxy_id=proxy_id,
            task_id=task_id,
            at=now,
        )
    return AccountEvent(
        event_id=uuid.uuid4().hex,
        account_id=account_id,
        lease_id=lease_id,
        operation=operation,
        outcome=r.outcome,
        http_status=r.http_status,
        error=r.error[:500] if r.error else None,
        rate_limit_limit=r.rate_limit_limit,
        rate_limit_remaining=r.rate_limit_remaining,
        rate_limit_reset=r.rate_limit_reset,
        proxy_id=proxy_id,
        requester=requester,
        at=now,
        elapsed_ms=r.elapsed_ms,
        task_id=task_id,
    )


@dataclass
class Lease:
    grant: LeaseGrant
    account: XAccount = field(repr=False)
    used: int = 0
    in_flight: int = 0
    done: bool = False  # X refused the account or its budget is spent: no more requests
    last_used: float = 0.0
    reset_at: float | None = None  # x-rate-limit-reset seen on this lease

    def fits(self, tag: str | None) -> bool:
        """The lease's account may serve a caller that asks for `tag` (None: any account)."""
        return tag is None or tag in self.grant.tags

    def usable(self, now: float) -> bool:
        end = self.grant.expires_at.timestamp()
        if self.reset_at is not None:
            end = min(end, self.reset_at)
        return not self.done and self.used < self.grant.budget and now < end - EXPIRY_MARGIN_S


class LeaseClient:
    def __init__(self, settings: Settings, producer: Producer, requester: str | None = None):
        self.settings = settings
        self.producer = producer
        self.box = SecretBox.from_settings(settings)
        self.requester = requester or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.leases: dict[tuple[str, str], Lease] = {}  # (operation, account_id) -> lease
        self.waits: dict[str, LeaseWait] = {}  # operation -> the manager's last "wait" answer
        self.granted = 0
        self._changed = asyncio.Condition()
        self._tickets = itertools.count()
        # ticket -> (op, priority, since, account tag)
        self._waiting: dict[int, tuple[str, int, float, str | None]] = {}
        self._busy: dict[tuple[str, str], tuple[int, float]] = {}  # (op, task) -> (prio, last)
        # Each waiting caller's lease request id -> whether the manager has granted it. A
        # granted request is gone from the manager's queue: its caller, if still without a
        # lease (a sibling took it, or it ended before it could be used), asks again at once.
        self._requests: dict[str, bool] = {}
        self._told_wait: dict[str, LeaseWait] = {}  # request id -> the manager said "wait"
        self._consumer = None
        self._tasks: list[asyncio.Task] = []
        self._closed = False

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> LeaseClient:
        # From the end, resolved now: no answer to our requests is missed.
        c, tps = await follow_from_end(self.settings, LEASE_GRANTS, f"leases-{self.requester}")
        self._consumer = c
        self._tasks = [
            asyncio.create_task(self._follow(tps), name="lease-grants"),
            asyncio.create_task(self._reaper(), name="lease-reaper"),
        ]
        return self

    async def stop(self) -> None:
        self._closed = True  # callers still waiting give up (see _acquire)
        async with self._changed:
            self._changed.notify_all()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for lease in list(self.leases.values()):
            try:
                await self._give_back(lease, "shutdown")
            except KafkaError as e:  # it expires by itself
                log.warning("lease give-back at shutdown failed: %s", e)
        if self._consumer is not None:
            await self._consumer.stop()

    # --- using accounts -------------------------------------------------------------------------

    async def acquire(
        self,
        operation: str,
        task_id: str | None = None,
        priority: int = 5,
        tag: str | None = None,
        on_wait: Callable[[LeaseWait], None] | None = None,
    ) -> XAccount:
        """An account for one request of `operation` (with `tag`, if given). While accounts
        are scarce, waiting callers are served best effective priority first: `priority` (1
        highest) improved by one level per `task_priority_aging_s` waited, so low priorities
        are never starved. `on_wait` is called when the manager answers that no account can
        serve now (the caller's work is then parked: scraper/slice_runner.py)."""
        ticket = next(self._tickets)
        self._waiting[ticket] = (operation, priority, time.time(), tag)
        try:
            account = await self._acquire(operation, task_id, ticket, tag, on_wait)
            # Held "busy" for a moment: a task paging serially is between two requests most
            # of the time, and lower priorities must not take the budget in those gaps.
            self._busy[(operation, task_id or f"#{ticket}")] = (priority, time.time())
            return account
        finally:
            del self._waiting[ticket]
            async with self._changed:
                self._changed.notify_all()  # the next in line may take what is free

    def _first_in_line(self, ticket: int, operation: str, now: float, free: list[Lease]) -> bool:
        aging = self.settings.task_priority_aging_s

        def rank(t: int) -> tuple:
            _, prio, since, _ = self._waiting[t]
            return (effective_priority(prio, since, now, aging), since, t)

        mine = rank(ticket)
        # Only waiters that could take one of these leases are ahead (a tag may rule one out).
        rivals = [
            t
            for t, (op, _, _, tag) in self._waiting.items()
            if op == operation and any(lz.fits(tag) for lz in free)
        ]
        if not all(rank(t) >= mine for t in rivals):
            return False
        hold = self.settings.task_priority_hold_s
        for (op, _key), (prio, last) in list(self._busy.items()):
            if now - last > hold:
                del self._busy[(op, _key)]
            elif op == operation and prio < mine[0]:
                return False  # a better task is mid-flight and will ask again at once
        return True

    def _best_waiting(self, operation: str, tag: str | None, now: float) -> tuple[int, float]:
        """(priority, waiting since) of this replica's best waiter for `operation`: what a
        lease request says, so the manager ranks replicas' requests as this client ranks its
        own waiters (a granted lease goes to the best local waiter anyway)."""
        aging = self.settings.task_priority_aging_s
        waiters = [
            (p, since) for op, p, since, t in self._waiting.values() if op == operation and t == tag
        ]
        if not waiters:
            return 5, now
        return min(waiters, key=lambda w: (effective_priority(w[0], w[1], now, aging), w[1]))

    async def _acquire(
        self,
        operation: str,
        task_id: str | None,
        ticket: int,
        tag: str | None,
        on_wait: Callable[[LeaseWait], None] | None,
    ) -> XAccount:
        asked_until = 0.0
        request_id: str | None = None
        try:
            while True:
                if self._closed:
                    # Stopped: a waiter whose cancellation was lost in a race (asyncio.wait_for
                    # may return instead of raising when both happen at once) ends here.
                    raise asyncio.CancelledError("the lease client stopped")
                now = time.time()
                free = [
                    lz
                    for (op, _), lz in self.leases.items()
                    if op == operation and lz.usable(now) and lz.fits(tag)
                ]
                if free and self._first_in_line(ticket, operation, now, free):
                    lease = max(free, key=lambda lz: lz.grant.budget - lz.used)
                    lease.used += 1
                    lease.in_flight += 1
                    lease.last_used = now
                    return lease.account
                if request_id is not None and (told := self._told_wait.pop(request_id, None)):
                    if on_wait is not None:
                        on_wait(told)
                if request_id is not None and self._requests.get(request_id):
                    del self._requests[request_id]  # answered: no longer queued anywhere
                    request_id, asked_until = None, 0.0
                if not free and now >= asked_until:
                    if request_id is not None:
                        del self._requests[request_id]  # lapsed at the manager
                    request_id = uuid.uuid4().hex
                    self._requests[request_id] = False
                    asked_until = now + self.settings.account_request_wait_s
                    prio, since = self._best_waiting(operation, tag, now)
                    try:
                        await self._ask(
                            request_id, operation, task_id, asked_until, prio, since, tag
                        )
                    except KafkaError as e:
                        # The broker is away: ask again (a new request) in a second.
                        log.warning(
                            "lease request for %s not sent (%s); asking again", operation, e
                        )
                        asked_until = time.time() + 1.0
                async with self._changed:
                    try:
                        await asyncio.wait_for(
                            self._changed.wait(), max(0.05, min(asked_until - now, 1.0))
                        )
                    except TimeoutError:
                        pass
        finally:
            if request_id is not None:
                self._requests.pop(request_id, None)
                self._told_wait.pop(request_id, None)

    async def _ask(
        self,
        request_id: str,
        operation: str,
        task_id: str | None,
        asked_until: float,
        prio: int,
        since: float,
        tag: str | None = None,
    ) -> None:
        await self.producer.send_and_wait(
            Outgoing(
                LEASE_REQUESTS,
                self.requester,
                LeaseRequest(
                    request_id=request_id,
                    requester=self.requester,
                    operation=operation,
                    task_id=task_id,
                    account_tag=tag,
                    requested_at=datetime.now(UTC),
                    valid_until=datetime.fromtimestamp(asked_until, UTC),
                    priority=prio,
                    waiting_since=datetime.fromtimestamp(since, UTC),
                ),
            )
        )

    async def unused(self, account: XAccount, operation: str) -> None:
        """Hand back an acquired request that was not sent (the task was cancelled or paused
        while its caller waited): no outcome to report, the lease's budget is as it was."""
        lease = self.leases.get((operation, account.name))
        if lease is not None:
            lease.used = max(0, lease.used - 1)
            lease.in_flight = max(0, lease.in_flight - 1)
        async with self._changed:
            self._changed.notify_all()

    async def release(
        self,
        account: XAccount,
        operation: str,
        result: PageResult | None,
        task_id: str | None = None,
    ) -> None:
        lease = self.leases.get((operation, account.name))
        lease_id = lease.grant.lease_id if lease else None
        proxy_id = lease.grant.proxy_id if lease else None
        self._report(
            event_for(account.name, operation, result, lease_id, self.requester, proxy_id, task_id)
        )
        if lease is None:
            return
        lease.in_flight = max(0, lease.in_flight - 1)
        if result is None or result.outcome in ACCOUNT_REFUSED:
            lease.done = True
        elif result.rate_limit_reset:
            lease.reset_at = float(result.rate_limit_reset)
            if result.rate_limit_remaining == 0:
                lease.done = True
        if not lease.usable(time.time()) and lease.in_flight == 0:
            try:
                await self._give_back(lease, result.outcome if result else "aborted")
            except KafkaError as e:  # the manager ends the lease at its expiry instead
                log.warning("lease of %s not given back (%s)", account.name, e)

    def _report(self, event: AccountEvent) -> None:
        async def send() -> None:
            try:
                await self.producer.send_and_wait(Outgoing(ACCOUNT_EVENTS, event.account_id, event))
            except Exception as e:  # noqa: BLE001 - an outcome lost costs accuracy, not safety
                log.warning("account event for %s not sent: %s", event.account_id, e)

        asyncio.get_running_loop().create_task(send())

    async def _give_back(self, lease: Lease, reason: str) -> None:
        key = (lease.grant.operation, lease.grant.account_id)
        if self.leases.get(key) is not lease:
            return
        del self.leases[key]
        g = lease.grant
        await self.producer.send_and_wait(
            Outgoing(
                LEASE_REQUESTS,
                self.requester,
                LeaseRelease(
                    lease_id=g.lease_id,
                    account_id=g.account_id,
                    operation=g.operation,
                    used=lease.used,
                    requester=self.requester,
                    reason=reason,
                    released_at=datetime.now(UTC),
                ),
            )
        )

    # --- background -----------------------------------------------------------------------------

    async def _follow(self, tps: list[TopicPartition]) -> None:
        c = self._consumer
        assert c is not None
        while True:
            try:
                batch = await c.getmany(timeout_ms=500)
            except Exception as e:  # noqa: BLE001 - a fetch failure of any kind: log and fetch again
                log.warning("lease grants fetch failed: %s", e)
                await asyncio.sleep(0.5)
                continue
            got = False
            for msgs in batch.values():
                for m in msgs:
                    if m.key is None or m.key.decode() != self.requester:
                        continue
                    try:
                        rec = decode(LEASE_GRANTS, m)
                    except Exception as e:  # noqa: BLE001 - a record no model reads is skipped, never fatal to the client
                        log.warning("undecodable lease answer skipped: %s", e)
                        continue
                    got |= self._answer(rec)
            if got:
                async with self._changed:
                    self._changed.notify_all()

    def _answer(self, rec) -> bool:
        if isinstance(rec, LeaseRevoke):
            lease = self.leases.get((rec.operation, rec.account_id))
            if lease is not None and lease.grant.lease_id == rec.lease_id:
                lease.done = True  # no more requests; the reaper gives it back when idle
                log.info(
                    "lease of %s for %s revoked: %s", rec.account_id, rec.operation, rec.reason
                )
            return False
        if isinstance(rec, LeaseWait):
            self.waits[rec.operation] = rec
            if rec.request_id in self._requests:
                self._told_wait[rec.request_id] = rec
            log.info(
                "waiting for an account for %s (earliest %s): %s",
                rec.operation,
                rec.earliest_free_at,
                rec.reason,
            )
            return True  # the waiting caller learns it is parked
        if not isinstance(rec, LeaseGrant):
            return False
        creds = self.box.open(rec.secrets)
        account = XAccount(
            rec.account_id,
            creds.get("auth_token") or "",
            creds.get("ct0") or "",
            creds.get("proxy_url"),
        )
        self.leases[(rec.operation, rec.account_id)] = Lease(rec, account, last_used=time.time())
        if rec.request_id in self._requests:
            self._requests[rec.request_id] = True
        self.waits.pop(rec.operation, None)
        self.granted += 1
        return True

    async def _reaper(self) -> None:
        """Give back leases that are spent, about to expire, or idle."""
        while True:
            await asyncio.sleep(0.2)
            now = time.time()
            for lease in list(self.leases.values()):
                if lease.in_flight:
                    continue
                idle = now - lease.last_used >= self.settings.account_idle_release_s
                if not lease.usable(now) or idle:
                    try:
                        await self._give_back(lease, "idle" if lease.usable(now) else "spent")
                    except Exception as e:  # noqa: BLE001 - it expires by itself
                        log.warning("lease give-back failed: %s", e)
