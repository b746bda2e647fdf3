"""The account pool's rules, as plain synchronous code: records in, records out.

Every decision of the account-manager lives here — which account a lease request gets, how an
outcome changes an account, when a lease ends, which proxy an account uses — so it is tested
without a broker, and the service around it (service.py) only moves records and runs the
slow work (Playwright logins, proxy checks, account tests) this pool asks for.

Counting: a window's `used` grows with every reported request (account-events) and, when a
lease comes back, becomes at least what the lease says it made. A lease that expires without
coming back (its scraper died) counts its whole budget as used: the account may then idle
until the window resets, but it can never receive more requests than X allows. Budgets are
capped (XGET_ACCOUNT_LEASE_MAX_BUDGET), so that idling is bounded when limits are large.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from libs.kafka import Outgoing
from libs.leases import effective_priority
from libs.records.accounts import (
    PRIORITY_ORDER,
    PROXY_FAULTS,
    AccountCommand,
    AccountEvent,
    AccountState,
    LeaseGrant,
    LeaseRelease,
    LeaseRequest,
    LeaseRevoke,
    LeaseWait,
    OpWindow,
    ProxyCommand,
    ProxyState,
    TaskAccountWait,
)
from libs.records.base import Record
from libs.secretbox import SecretBox
from libs.settings import Settings
from libs.topics import ACCOUNT_STATE, LEASE_GRANTS, PROXY_STATE, TASK_ACCOUNT_WAITS

from . import windows

log = logging.getLogger(__name__)

HEALTH_ALPHA = 0.1  # weight of the newest outcome in the health score
# The scheduled check of an idle account: one profile lookup of itself, X's cheapest read
# with a generous limit (95 per window), so the check never takes a search from a task.
CHECK_OPERATION = "UserByScreenName"
BAD_FOR_HEALTH = {
    "auth_failed",
    "suspended",
    "blocked",
    "server_error",
    "malformed",
    "network_error",
}


def proxy_usable(p: ProxyState | None, now: float) -> bool:
    return p is not None and p.usable(now)


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _ts(d: datetime | None) -> float | None:
    return d.timestamp() if d is not None else None


@dataclass
class Queued:
    request: LeaseRequest
    since: float


@dataclass
class Work:
    """Slow jobs the service runs outside the pool (each reports back through the pool)."""

    logins: set[str] = field(default_factory=set)
    tests: list[tuple[str, str]] = field(default_factory=list)  # (account_id, command_id)
    proxy_checks: set[str] = field(default_factory=set)


class AccountPool:
    def __init__(self, settings: Settings, box: SecretBox, clock=time.time):
        self.s = settings
        self.box = box
        self.clock = clock
        self.accounts: dict[str, AccountState] = {}
        self.proxies: dict[str, ProxyState] = {}
        self.queue: list[Queued] = []
        self.task_waits: dict[str, TaskAccountWait] = {}
        self.work = Work()
        self.login_commands: dict[str, str] = {}  # account -> `login` command under way
        self._dirty_accounts: set[str] = set()
        self._dirty_proxies: set[str] = set()
        self._out: list[Outgoing] = []

    # --- loading and output -------------------------------------------------------------------

    def load(self, accounts: list[AccountState], proxies: list[ProxyState]) -> None:
        """The state a previous manager left on the compacted topics."""
        for a in accounts:
            if not a.removed:
                self.accounts[a.account_id] = a
                if a.status == "needs_login" and a.has_password:
                    self.work.logins.add(a.account_id)
        for p in proxies:
            if not p.removed:
                self.proxies[p.proxy_id] = p

    def _flush(self) -> list[Outgoing]:
        now = _dt(self.clock())
        out: list[Outgoing] = []
        # State first: a grant is only ever published after the lease it names is stored.
        for pid in sorted(self._dirty_proxies):
            p = self.proxies.get(pid)
            if p is not None:
                p.updated_at = now
                out.append(Outgoing(PROXY_STATE, pid, p.model_copy(deep=True)))
        for aid in sorted(self._dirty_accounts):
            a = self.accounts.get(aid)
            if a is not None:
                a.updated_at = now
                out.append(Outgoing(ACCOUNT_STATE, aid, a.model_copy(deep=True)))
        out.extend(self._out)
        self._dirty_accounts.clear()
        self._dirty_proxies.clear()
        self._out = []
        return out

    def handle(self, records: list[Record]) -> list[Outgoing]:
        """Apply a batch of commands, events, requests and releases, in order."""
        for r in records:
            if isinstance(r, AccountCommand):
                self._account_command(r)
            elif isinstance(r, ProxyCommand):
                self._proxy_command(r)
            elif isinstance(r, AccountEvent):
                self._event(r)
            elif isinstance(r, LeaseRelease):
                self._release(r)
            elif isinstance(r, LeaseRequest):
                self._request(r)
        return self.tick()

    def tick(self) -> list[Outgoing]:
        """Time passing: leases expire, cooldowns and windows end, queued requests get served."""
        now = self.clock()
        for a in self.accounts.values():
            self._refresh(a, now)
        self._serve(now)
        return self._flush()

    def _rank(self, q: Queued, now: float) -> tuple:
        """Best effective priority first, across every scraper replica: the task's priority
        improved by one level per task_priority_aging_s waited (never starved), then FIFO."""
        r = q.request
        since = _ts(r.waiting_since) or _ts(r.requested_at) or q.since
        return (effective_priority(r.priority, since, now, self.s.task_priority_aging_s), q.since)

    def _serve(self, now: float) -> None:
        still: list[Queued] = []
        for q in sorted(self.queue, key=lambda q: self._rank(q, now)):
            if q.request.valid_until.timestamp() <= now:
                continue  # the requester asks again
            if not self._try_grant(q.request, now):
                still.append(q)
        self.queue = still

    # --- commands -----------------------------------------------------------------------------

    def _account_command(self, c: AccountCommand) -> None:
        now = self.clock()
        a = self.accounts.get(c.account_id)
        if c.action == "add":
            creds = self.box.open(c.secrets) if c.secrets else {}
            has_cookies = bool(creds.get("auth_token") and creds.get("ct0"))
            if a is None:
                a = AccountState(
                    account_id=c.account_id,
                    name=c.name or c.account_id,
                    status="active" if has_cookies else "needs_login",
                    added_at=_dt(now),
                    updated_at=_dt(now),
                )
                self.accounts[c.account_id] = a
            else:
                a.name = c.name or a.name
                if has_cookies and a.status in ("needs_login", "disabled"):
                    a.status, a.status_reason = "active", None
            a.secrets = c.secrets or a.secrets
            a.has_password = c.has_password or a.has_password
            if has_cookies and a.has_password:
                # Imported cookies: their age is unknown, so they count from now.
                a.cookies_expire_at = _dt(now + self.s.account_cookie_max_age_s)
            if not has_cookies and a.has_password:
                a.status, a.status_reason = "needs_login", "added without cookies"
                self.work.logins.add(a.account_id)
            elif not has_cookies:
                a.status, a.status_reason = "needs_login", "no cookies and no password"
            self._assign_proxy(a)
            log.info("account %s added (%s)", a.account_id, a.status)
        elif a is None:
            log.warning("%s for unknown account %s ignored", c.action, c.account_id)
            return
        elif c.action == "remove":
            self._revoke(a, "removed")
            a.removed, a.status, a.status_reason = True, "disabled", "removed"
            self._mark(a)
            a.last_command_id = c.command_id
            self._flush_removed(a)
            return
        elif c.action == "disable":
            # The account keeps its status, windows and counts; it just gets no lease, and the
            # leases it holds end now (their holders send nothing more with them).
            a.disabled, a.disabled_at = True, _dt(now)
            a.disabled_reason = c.reason or "disabled by an operator"
            self._revoke(a, f"disabled: {a.disabled_reason}")
            log.info("account %s disabled: %s", a.account_id, a.disabled_reason)
        elif c.action == "enable":
            a.disabled, a.disabled_reason, a.disabled_at = False, None, None
            if a.status in ("disabled", "suspended", "banned", "cooling_down"):
                a.status, a.status_reason, a.status_until = "active", None, None
                a.health = max(a.health, self.s.account_min_health + 0.2)
            log.info("account %s enabled%s", a.account_id, f": {c.reason}" if c.reason else "")
        elif c.action == "set":
            # Leases granted under the old tags or caps end: the new ones hold from now.
            self._revoke(a, "the account's settings changed")
            if c.priority is not None:
                a.priority = c.priority
            if c.tags is not None:
                a.tags = sorted({t.strip() for t in c.tags if t.strip()})
            if c.daily_caps is not None:
                a.daily_caps = {op: n for op, n in c.daily_caps.items() if n >= 0}
            if c.hourly_caps is not None:
                a.hourly_caps = {op: n for op, n in c.hourly_caps.items() if n >= 0}
        elif c.action == "login":
            if a.has_password:
                self.work.logins.add(a.account_id)
                self.login_commands[a.account_id] = c.command_id
                return  # the command is marked applied when the login ends
            a.last_error = "login asked, but the account has no password"
        elif c.action == "test":
            self.work.tests.append((a.account_id, c.command_id))
            return  # marked applied with the test's outcome
        a.last_command_id = c.command_id
        self._mark(a)

    def _revoke(self, a: AccountState, reason: str) -> None:
        """End the account's leases early: the holder stops using them and gives them back
        (their requests are counted when they come back, or in full when they expire).

        Until the holder reads the revoke it may go on using the lease, with the budget it was
        granted under the old settings; the lease is marked revoked until it is back, so the
        operator's command is answered only then (admin.wait_leases_back): from that answer
        on, nothing is sent with the account under the old settings."""
        for op, w in a.ops.items():
            if w.lease_id is not None and w.lease_holder is not None:
                w.lease_revoked = True
                self._mark(a)
                self._out.append(
                    Outgoing(
                        LEASE_GRANTS,
                        w.lease_holder,
                        LeaseRevoke(
                            requester=w.lease_holder,
                            lease_id=w.lease_id,
                            account_id=a.account_id,
                            operation=op,
                            reason=reason,
                        ),
                    )
                )

    def _flush_removed(self, a: AccountState) -> None:
        # Keep the tombstone-like record on the topic, drop it from the live pool.
        self._out.append(Outgoing(ACCOUNT_STATE, a.account_id, a.model_copy(deep=True)))
        self._dirty_accounts.discard(a.account_id)
        del self.accounts[a.account_id]

    def _proxy_command(self, c: ProxyCommand) -> None:
        now = _dt(self.clock())
        p = self.proxies.get(c.proxy_id)
        if c.action == "add":
            if p is None:
                p = ProxyState(
                    proxy_id=c.proxy_id,
                    display=c.display,
                    secrets=c.secrets,
                    added_at=now,
                    updated_at=now,
                )
                self.proxies[c.proxy_id] = p
            else:
                p.secrets = c.secrets or p.secrets
            # Re-adding a proxy updates what the operator says of it.
            p.region = c.region or p.region
            p.provider = c.provider or p.provider
            p.cost_per_gb = c.cost_per_gb if c.cost_per_gb is not None else p.cost_per_gb
            p.expires_at = c.expires_at or p.expires_at
            self.work.proxy_checks.add(c.proxy_id)
        elif p is None:
            return
        elif c.action in ("disable", "enable"):
            p.disabled = c.action == "disable"
            p.disabled_reason = (c.reason or "disabled by an operator") if p.disabled else None
            log.info("proxy %s %sd", p.proxy_id, c.action)
            # Accounts on a disabled proxy move to another now; an enabled one takes new
            # accounts (and those left without a proxy) again.
            for a in self.accounts.values():
                self._assign_proxy(a)
        elif c.action == "remove":
            p.removed = True
            p.last_command_id = c.command_id
            self._out.append(Outgoing(PROXY_STATE, p.proxy_id, p.model_copy(deep=True)))
            del self.proxies[p.proxy_id]
            for a in self.accounts.values():
                if a.proxy_id == c.proxy_id:
                    self._assign_proxy(a)
            return
        elif c.action == "test":
            self.work.proxy_checks.add(c.proxy_id)
        p.last_command_id = c.command_id
        self._dirty_proxies.add(p.proxy_id)

    # --- outcomes -----------------------------------------------------------------------------

    def _window(self, a: AccountState, op: str) -> OpWindow:
        w = a.ops.get(op)
        if w is None:
            w = a.ops[op] = OpWindow(limit=self.s.rate_limit(op))
        return w

    def _event(self, e: AccountEvent) -> None:
        a = self.accounts.get(e.account_id)
        if a is None:
            return
        now = self.clock()
        w = self._window(a, e.operation)
        windows.roll(w, now, self.s.account_reset_margin_s)
        windows.roll_calendar(w, now)
        if e.lease_id is None or e.lease_id == w.lease_id:
            w.used += 1
            w.day_used += 1
            w.hour_used += 1
        # else: the request of a lease that has ended, already counted when it came back (or
        # in full when it expired): counting it again would overstate the window and the
        # operator's caps (a day's cap for the rest of the day).
        a.last_used_at = e.at
        a.requests += 1
        if e.outcome == "ok":
            a.successes += 1
        else:
            a.errors[e.outcome] = a.errors.get(e.outcome, 0) + 1
        if e.rate_limit_limit is not None and e.rate_limit_limit > 0:
            w.limit = e.rate_limit_limit
        if e.rate_limit_reset is not None and e.rate_limit_reset > now:
            if w.window_reset is None or e.rate_limit_reset > w.window_reset.timestamp() + 1:
                # X's window is not the one we were counting in: its numbers are the truth.
                w.used = 0
            w.window_reset = _dt(e.rate_limit_reset)
            if e.rate_limit_remaining is not None:
                w.used = max(w.used, w.limit - e.rate_limit_remaining)

        if e.outcome != "rate_limited":
            ok = 0.0 if e.outcome in BAD_FOR_HEALTH else 1.0
            a.health = round((1 - HEALTH_ALPHA) * a.health + HEALTH_ALPHA * ok, 4)
        if e.outcome == "ok":
            pass
        elif e.outcome == "rate_limited":
            reset = (
                e.rate_limit_reset
                if e.rate_limit_reset and e.rate_limit_reset > now
                else now + self.s.x_rate_window_s
            )
            w.blocked_until = _dt(reset)
            w.window_reset = _dt(reset)
            w.used = max(w.used, w.limit)
            if a.status == "active":
                a.status, a.status_until = "rate_limited", _dt(reset)
                a.status_reason = f"{e.operation} rate-limited until {_dt(reset).isoformat()}"
        elif e.outcome == "auth_failed":
            a.status, a.status_reason = "needs_login", f"auth failed: {e.error or e.http_status}"
            if a.has_password:
                self.work.logins.add(a.account_id)
        elif e.outcome == "suspended":
            a.status, a.status_reason = "suspended", e.error or f"HTTP {e.http_status}"
            a.status_until = None
        elif e.outcome == "blocked":
            self._cool(a, now, f"blocked: {e.error}")
            if a.proxy_id:
                self.work.proxy_checks.add(a.proxy_id)
        self._proxy_request(e)
        if e.outcome == "proxy_error" and a.proxy_id in self.proxies:
            p = self.proxies[a.proxy_id]
            p.failures_in_row += 1
            p.last_error = e.error
            if p.failures_in_row >= self.s.proxy_dead_after:
                self._proxy_dead(p)
            self.work.proxy_checks.add(p.proxy_id)
            self._dirty_proxies.add(p.proxy_id)
        if e.outcome != "ok":
            a.last_error = f"{e.outcome}: {e.error or e.http_status}"[:500]
        if a.status == "active" and a.health < self.s.account_min_health:
            self._cool(a, now, f"health {a.health:.2f} below {self.s.account_min_health}")
        self._mark(a)

    def _proxy_request(self, e: AccountEvent) -> None:
        """Per-proxy request counts and latency, from the outcome of each X request made
        through it. Only the proxy's own failures (its errors, the network, a block of its
        address) count against it; X refusing the account does not."""
        p = self.proxies.get(e.proxy_id) if e.proxy_id else None
        if p is None:
            return
        p.requests += 1
        if e.outcome in PROXY_FAULTS:
            p.request_failures += 1
        if e.elapsed_ms is not None:
            p.request_latency_ms = (
                e.elapsed_ms
                if p.request_latency_ms is None
                else round(
                    (1 - HEALTH_ALPHA) * p.request_latency_ms + HEALTH_ALPHA * e.elapsed_ms, 3
                )
            )
        p.last_used_at = e.at
        self._dirty_proxies.add(p.proxy_id)

    def _cool(self, a: AccountState, now: float, reason: str) -> None:
        if a.status in ("active", "rate_limited", "cooling_down"):
            a.status, a.status_reason = "cooling_down", reason
            a.status_until = _dt(now + self.s.account_cooldown_s)

    def _release(self, r: LeaseRelease) -> None:
        a = self.accounts.get(r.account_id)
        if a is None:
            return
        w = a.ops.get(r.operation)
        if w is None or w.lease_id != r.lease_id:
            return  # expired already (counted in full) or a duplicate
        w.used = max(w.used, w.lease_used_before + r.used)
        windows.count_lease(w, r.used, self.clock())
        windows.end_lease(w)
        self._mark(a)

    # --- leases -------------------------------------------------------------------------------

    def _request(self, r: LeaseRequest) -> None:
        now = self.clock()
        if _ts(r.valid_until) <= now:
            return
        if any(q.request.request_id == r.request_id for q in self.queue):
            return  # re-delivered
        # A free account goes to the best request waiting, not to whichever came last.
        self.queue.append(Queued(r, now))
        self._serve(now)
        if not any(q.request.request_id == r.request_id for q in self.queue):
            return  # granted (or already expired)
        earliest = self.earliest_free(r.operation, now, r.account_tag)
        if earliest is not None:
            reason = "waiting for accounts"
        elif r.account_tag:
            reason = f"no usable account with tag {r.account_tag!r}"
        else:
            reason = "no usable account"
        self._out.append(
            Outgoing(
                LEASE_GRANTS,
                r.requester,
                LeaseWait(
                    request_id=r.request_id,
                    requester=r.requester,
                    operation=r.operation,
                    earliest_free_at=_dt(earliest) if earliest else None,
                    reason=reason,
                ),
            )
        )
        if r.task_id:
            prev = self.task_waits.get(r.task_id)
            at = _dt(earliest) if earliest else None
            if prev is None or not prev.waiting or prev.earliest_free_at != at:
                self._task_wait(r.task_id, r.operation, True, at, reason)

    def _task_wait(
        self, task_id: str, op: str, waiting: bool, at: datetime | None, reason: str
    ) -> None:
        tw = TaskAccountWait(
            task_id=task_id,
            waiting=waiting,
            operation=op,
            earliest_free_at=at,
            reason=reason,
            updated_at=_dt(self.clock()),
        )
        self.task_waits[task_id] = tw
        self._out.append(Outgoing(TASK_ACCOUNT_WAITS, task_id, tw))

    def _refresh(self, a: AccountState, now: float) -> None:
        """Apply what time did to an account: ended cooldowns, windows and leases."""
        changed = False
        if (
            a.status in ("cooling_down", "rate_limited")
            and a.status_until is not None
            and now >= a.status_until.timestamp()
        ):
            if a.status == "cooling_down":
                a.health = max(a.health, self.s.account_min_health + 0.2)
            a.status, a.status_reason, a.status_until = "active", None, None
            changed = True
        for w in a.ops.values():
            if (
                w.lease_id is not None
                and w.lease_expires is not None
                and now >= w.lease_expires.timestamp()
            ):
                w.used = max(w.used, w.lease_used_before + w.lease_budget)
                windows.count_lease(w, w.lease_budget, self.clock())
                windows.end_lease(w)
                changed = True
            changed |= windows.roll(w, now, self.s.account_reset_margin_s)
        if changed:
            self._mark(a)

    def _usable(self, a: AccountState, op: str, now: float, tag: str | None = None) -> bool:
        if a.removed or a.disabled or a.status not in ("active", "rate_limited"):
            return False
        if tag is not None and tag not in a.tags:
            return False
        if a.health < self.s.account_min_health:
            return False
        w = self._window(a, op)
        if w.lease_id is not None or w.blocked_until is not None:
            return False
        if windows.left(a, op, w, now) <= 0 or windows.window_ending(w, now):
            return False
        return self._proxy_ok(a)

    def _proxy_ok(self, a: AccountState) -> bool:
        if not self.proxies:
            return a.proxy_id is None or a.proxy_id not in self.proxies
        now = self.clock()
        p = self.proxies.get(a.proxy_id) if a.proxy_id else None
        if not proxy_usable(p, now):
            self._assign_proxy(a)
            p = self.proxies.get(a.proxy_id) if a.proxy_id else None
        return proxy_usable(p, now)

    def _try_grant(self, r: LeaseRequest, now: float) -> bool:
        free = [
            a for a in self.accounts.values() if self._usable(a, r.operation, now, r.account_tag)
        ]
        if not free:
            return False
        # The operator's priority first (backup accounts only when no other can serve), then
        # the healthiest, least used account: health in steps of 0.1 so a tiny difference
        # does not make one account take every lease.
        a = min(
            free,
            key=lambda a: (
                PRIORITY_ORDER[a.priority],
                -round(a.health, 1),
                a.ops[r.operation].used,
                a.ops[r.operation].day_used,
                _ts(a.last_used_at) or 0.0,
            ),
        )
        w = a.ops[r.operation]
        if w.window_reset is None:
            w.window_reset = _dt(now + self.s.x_rate_window_s)  # X's headers will correct it
        expires = min(now + self.s.account_lease_ttl_s, w.window_reset.timestamp())
        lease_id = uuid.uuid4().hex
        w.lease_id, w.lease_holder = lease_id, r.requester
        # Capped: a lease whose scraper dies counts its whole budget as used, so a large limit
        # (from X's headers) must not let one crash idle the account for the whole window.
        w.lease_budget = min(windows.left(a, r.operation, w, now), self.s.account_lease_max_budget)
        w.lease_used_before = w.used
        w.lease_day_before, w.lease_hour_before = w.day_used, w.hour_used
        w.lease_granted_at = _dt(now)
        w.lease_expires = _dt(expires)
        creds, proxy_url = self._opened(a)
        sealed = self.box.seal(
            {"auth_token": creds.get("auth_token"), "ct0": creds.get("ct0"), "proxy_url": proxy_url}
        )
        self._mark(a)
        self._out.append(
            Outgoing(
                LEASE_GRANTS,
                r.requester,
                LeaseGrant(
                    request_id=r.request_id,
                    requester=r.requester,
                    lease_id=lease_id,
                    account_id=a.account_id,
                    operation=r.operation,
                    budget=w.lease_budget,
                    expires_at=_dt(expires),
                    proxy_id=a.proxy_id,
                    secrets=sealed,
                    granted_at=_dt(now),
                    tags=list(a.tags),
                ),
            )
        )
        if r.task_id and (tw := self.task_waits.get(r.task_id)) is not None and tw.waiting:
            self._task_wait(r.task_id, r.operation, False, None, "")
        return True

    def earliest_free(self, op: str, now: float, tag: str | None = None) -> float | None:
        """When an account may next serve `op` (None: none ever will without an operator)."""
        m = self.s.account_reset_margin_s
        times: list[float] = []
        for a in self.accounts.values():
            if a.removed or a.disabled or a.status in ("suspended", "banned", "disabled"):
                continue
            if tag is not None and tag not in a.tags:
                continue
            if a.status == "needs_login":
                if a.has_password:
                    times.append(now + 30.0)  # a login is under way
                continue
            w = self._window(a, op)
            t = now
            if a.status in ("cooling_down",) and a.status_until is not None:
                t = max(t, a.status_until.timestamp())
            if w.blocked_until is not None:
                t = max(t, w.blocked_until.timestamp() + m)
            if w.lease_expires is not None:
                t = max(t, w.lease_expires.timestamp())
            if w.window_reset is not None and (w.used >= w.limit or windows.window_ending(w, t)):
                t = max(t, w.window_reset.timestamp() + m)
            if (capped := windows.cap_ends(a, op, w, now)) is not None:
                t = max(t, capped)
            times.append(t)
        return min(times) if times else None

    # --- proxies ------------------------------------------------------------------------------

    def _assign_proxy(self, a: AccountState) -> None:
        """Sticky: an account keeps its proxy until that proxy dies or is removed."""
        now = self.clock()
        current = self.proxies.get(a.proxy_id) if a.proxy_id else None
        if proxy_usable(current, now):
            return
        alive = [p for p in self.proxies.values() if proxy_usable(p, now)]
        if not alive:
            if a.proxy_id is not None and current is None:
                a.proxy_id = None  # its proxy was removed and none is left
                self._mark(a)
            return
        load = {p.proxy_id: 0 for p in alive}
        for other in self.accounts.values():
            if other.proxy_id in load:
                load[other.proxy_id] += 1
        best = min(
            alive,
            key=lambda p: (p.status != "healthy", load[p.proxy_id], -p.success_rate, p.proxy_id),
        )
        if a.proxy_id != best.proxy_id:
            log.info("account %s: proxy %s -> %s", a.account_id, a.proxy_id, best.proxy_id)
            a.proxy_id = best.proxy_id
            self._mark(a)

    def _proxy_dead(self, p: ProxyState) -> None:
        if p.status != "dead":
            log.warning("proxy %s is dead (%s): replacing it", p.proxy_id, p.last_error)
        p.status = "dead"
        self._dirty_proxies.add(p.proxy_id)
        for a in self.accounts.values():
            if a.proxy_id == p.proxy_id:
                self._assign_proxy(a)

    def proxy_checked(
        self, proxy_id: str, ok: bool, latency_ms: float | None, error: str | None
    ) -> list[Outgoing]:
        p = self.proxies.get(proxy_id)
        if p is None:
            return []
        p.checks += 1
        p.last_check_at = _dt(self.clock())
        p.success_rate = round(
            (1 - HEALTH_ALPHA * 2) * p.success_rate + HEALTH_ALPHA * 2 * (1.0 if ok else 0.0), 4
        )
        if ok:
            p.successes += 1
            p.failures_in_row = 0
            p.latency_ms = latency_ms
            p.last_error = None
            p.status = "healthy"
        else:
            p.failures_in_row += 1
            p.last_error = error
            if p.failures_in_row >= self.s.proxy_dead_after:
                self._proxy_dead(p)
        self._dirty_proxies.add(proxy_id)
        return self.tick()

    # --- slow work reporting back -------------------------------------------------------------

    def logged_in(
        self,
        account_id: str,
        cookies: dict | None,
        error: str | None,
        expires_at: float | None = None,
    ) -> list[Outgoing]:
        a = self.accounts.get(account_id)
        if a is None:
            return []
        now = self.clock()
        if cookies:
            creds = self.box.open(a.secrets) if a.secrets else {}
            creds.update(auth_token=cookies["auth_token"], ct0=cookies["ct0"], cookies=cookies)
            a.secrets = self.box.seal(creds)
            a.logins += 1
            a.last_login_at = _dt(now)
            a.cookies_expire_at = _dt(expires_at or now + self.s.account_cookie_max_age_s)
            a.status, a.status_reason, a.status_until = "active", None, None
            a.health = max(a.health, self.s.account_min_health + 0.2)
            log.info("account %s logged in", account_id)
        else:
            a.last_error = f"login failed: {error}"[:500]
            if error and "suspended" in error.lower():
                a.status, a.status_reason = "suspended", error
            else:
                a.status, a.status_reason = "needs_login", f"login failed: {error}"
            log.warning("account %s login failed: %s", account_id, error)
        if account_id in self.login_commands:
            a.last_command_id = self.login_commands.pop(account_id)
        self._mark(a)
        return self.tick()

    def due_checks(self, now: float) -> list[str]:
        """Idle accounts to check now: active, enabled, holding no lease, and neither used nor
        checked for account_idle_check_s (with room left for the check's request)."""
        idle = self.s.account_idle_check_s
        if idle <= 0:
            return []
        due = []
        for a in self.accounts.values():
            if a.removed or a.disabled or a.status != "active":
                continue
            if any(w.lease_id is not None for w in a.ops.values()):
                continue
            last = max(_ts(a.last_used_at) or _ts(a.added_at) or 0.0, _ts(a.last_checked_at) or 0.0)
            w = self._window(a, CHECK_OPERATION)
            if (
                now - last >= idle
                and w.blocked_until is None
                and windows.left(a, CHECK_OPERATION, w, now) > 0
            ):
                due.append(a.account_id)
        return sorted(due)

    def checked(self, account_id: str, event: AccountEvent) -> list[Outgoing]:
        """A scheduled check's outcome: counted like any request (a dead account is marked
        as a task's request would mark it)."""
        a = self.accounts.get(account_id)
        if a is None:
            return []
        self._event(event)
        a.last_checked_at = _dt(self.clock())
        a.last_test = f"scheduled check: {event.outcome}" + (
            f": {event.error}" if event.error else ""
        )
        self._mark(a)
        return self.tick()

    def due_logins(self, now: float) -> None:
        """Password accounts whose cookies expire within account_cookie_refresh_s log in
        again now, before a task meets the expired cookies."""
        for a in self.accounts.values():
            if (
                a.has_password
                and not a.removed
                and not a.disabled
                and a.status in ("active", "rate_limited")
                and a.cookies_expire_at is not None
                and a.cookies_expire_at.timestamp() - now <= self.s.account_cookie_refresh_s
                # cookies that come back short-lived are not refreshed in a loop
                and now - (_ts(a.last_login_at) or 0.0) >= self.s.account_cooldown_s
            ):
                if a.account_id not in self.work.logins:
                    log.info("account %s: cookies expire soon, logging in again", a.account_id)
                self.work.logins.add(a.account_id)

    def tested(self, account_id: str, command_id: str, event: AccountEvent) -> list[Outgoing]:
        if account_id not in self.accounts:
            return []
        self._event(event)
        a = self.accounts[account_id]
        a.last_test = f"{event.outcome}" + (f": {event.error}" if event.error else "")
        a.last_command_id = command_id
        self._mark(a)
        return self.tick()

    def credentials(self, account_id: str) -> tuple[dict, str | None]:
        """Decrypted credentials and proxy URL, for the service's own logins and tests."""
        return self._opened(self.accounts[account_id])

    def _opened(self, a: AccountState) -> tuple[dict, str | None]:
        creds = self.box.open(a.secrets) if a.secrets else {}
        p = self.proxies.get(a.proxy_id) if a.proxy_id else None
        proxy_url = self.box.open(p.secrets) if p is not None and p.secrets else None
        return creds, proxy_url

    def _mark(self, a: AccountState) -> None:
        self._dirty_accounts.add(a.account_id)
