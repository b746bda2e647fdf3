"""The X account pool: which account may send the next request of an X operation.

`LocalAccountPool` is the in-process pool built from `XGET_X_ACCOUNTS`, used by the KOL job
when `XGET_KOL_X_ACCOUNTS=local`: it honours X's rate-limit headers (an account that hit its
window waits for the reset), parks accounts whose auth failed or that were suspended, and cools
an account down after a Cloudflare block. Everything else (the scrapers, the KOL worker by
default) leases accounts from the account-manager's shared pool (libs/leases.py), behind the
same `AccountSource` interface.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Protocol

from libs.xclient import PageResult, XAccount

log = logging.getLogger(__name__)

DEFAULT_WINDOW_S = 15 * 60
BLOCK_COOLDOWN_S = 60


class AccountSource(Protocol):
    """Hands out an account for one request of an operation and learns from its outcome."""

    async def acquire(self, op: str) -> XAccount: ...

    # The local pool learns at once (None); a leased pool reports on Kafka (an awaitable).
    def release(
        self, account: XAccount, op: str, result: PageResult | None
    ) -> Awaitable[None] | None: ...


class NoUsableAccountError(RuntimeError):
    """Every account is disabled (auth failed, suspended): waiting cannot help."""


def parse_accounts(spec: str) -> list[XAccount]:
    """'name:auth_token:ct0[,name:auth_token:ct0…]' → accounts (whitespace ignored)."""
    out = []
    for raw in filter(None, (p.strip() for p in spec.split(","))):
        parts = raw.split(":")
        if len(parts) != 3 or not all(parts):
            raise ValueError(
                "each account must be 'name:auth_token:ct0' (got an entry with "
                f"{len(parts)} field(s))"
            )
        out.append(XAccount(name=parts[0], auth_token=parts[1], ct0=parts[2]))
    return out


@dataclass
class _State:
    account: XAccount
    blocked_until: dict[str, float] = field(default_factory=dict)
    disabled: str | None = None
    last_used: float = 0.0
    in_use: int = 0


class LocalAccountPool:
    def __init__(self, accounts: list[XAccount]):
        if not accounts:
            raise ValueError("no X accounts configured (XGET_X_ACCOUNTS)")
        self._states = {a.name: _State(a) for a in accounts}
        self._changed = asyncio.Event()

    def usable(self, op: str, now: float | None = None) -> list[_State]:
        now = time.time() if now is None else now
        return [
            s
            for s in self._states.values()
            if s.disabled is None and s.blocked_until.get(op, 0) <= now
        ]

    async def acquire(self, op: str) -> XAccount:
        """The least recently used account free for `op`; waits for the earliest reset."""
        while True:
            now = time.time()
            free = self.usable(op, now)
            if free:
                st = min(free, key=lambda s: (s.in_use, s.last_used))
                st.last_used = now
                st.in_use += 1
                return st.account
            alive = [s for s in self._states.values() if s.disabled is None]
            if not alive:
                raise NoUsableAccountError(
                    "every account is disabled: "
                    + "; ".join(f"{s.account.name}: {s.disabled}" for s in self._states.values())
                )
            wake = min(s.blocked_until.get(op, now) for s in alive)
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), max(0.05, wake - now))
            except TimeoutError:
                pass

    def release(self, account: XAccount, op: str, result: PageResult | None) -> None:
        st = self._states[account.name]
        st.in_use = max(0, st.in_use - 1)
        if result is not None:
            self._apply(st, op, result)
        self._changed.set()

    def _apply(self, st: _State, op: str, r: PageResult) -> None:
        now = time.time()
        if r.outcome == "rate_limited":
            until = r.rate_limit_reset if r.rate_limit_reset else now + DEFAULT_WINDOW_S
            st.blocked_until[op] = float(until)
            log.info("account %s rate-limited on %s until %s", st.account.name, op, until)
        elif r.outcome in ("auth_failed", "suspended"):
            st.disabled = f"{r.outcome}: {r.error or r.http_status}"
            log.warning("account %s disabled: %s", st.account.name, st.disabled)
        elif r.outcome == "blocked":
            st.blocked_until[op] = now + BLOCK_COOLDOWN_S
        elif r.outcome == "ok" and r.rate_limit_remaining == 0 and r.rate_limit_reset:
            st.blocked_until[op] = float(r.rate_limit_reset)
