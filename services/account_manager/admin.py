"""Operator actions on the pool, shared by `xget accounts|proxies` and the admin HTTP API.

Each action is a command on account-commands (secrets sealed before they leave this process);
the account-manager applies it and its state record names the command, which is how callers
wait for the effect. Views never contain a secret: `account_view` / `proxy_view` list what
may be shown.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime
from typing import cast
from urllib.parse import urlparse

from libs.kafka import Outgoing, Producer
from libs.records.accounts import AccountCommand, AccountState, ProxyCommand, ProxyState
from libs.secretbox import SecretBox
from libs.settings import Settings
from libs.topic_table import TopicTable
from libs.topics import ACCOUNT_COMMANDS, ACCOUNT_STATE, PROXY_STATE

SECRET_KEYS = ("auth_token", "ct0", "cookies", "password", "email", "email_password", "totp_secret")


PROXY_SCHEMES = ("http", "https", "socks4", "socks5", "socks5h")

# Commands that end the account's leases: the CLI and the API answer them once those leases
# are back (wait_leases_back), naming what was done, or say this when a holder keeps one.
REVOKING = {"disable": "disabled", "set": "applied"}
STILL_HELD = "a scraper still holds a lease granted before it (it ends by itself)"


class InputError(ValueError):
    """Operator input that cannot be used, with the reason."""


# --- parsing ---------------------------------------------------------------------------------


def parse_cookie_entries(spec: str) -> list[tuple[str, dict]]:
    """'name:auth_token:ct0[,…]' (XGET_X_ACCOUNTS) → [(name, {auth_token, ct0})]."""
    out = []
    for raw in filter(None, (p.strip() for p in spec.split(","))):
        parts = raw.split(":")
        if len(parts) != 3 or not all(parts):
            raise InputError(
                "each account must be 'name:auth_token:ct0' (got an entry with "
                f"{len(parts)} field(s))"
            )
        out.append((parts[0], {"auth_token": parts[1], "ct0": parts[2]}))
    return out


def parse_cookie_string(text: str) -> dict[str, str]:
    """'auth_token=…; ct0=…; …' (a browser's Cookie header) → {name: value}."""
    jar = {}
    for part in text.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name:
            jar[name.strip()] = value.strip()
    return jar


def creds_from(entry: dict) -> tuple[str, dict]:
    """One account from an import/API entry → (name, credentials). Raises InputError."""
    name = str(entry.get("username") or entry.get("name") or "").strip().lstrip("@")
    if not name:
        raise InputError("an account needs a username")
    creds: dict = {k: entry[k] for k in SECRET_KEYS if entry.get(k)}
    cookies = entry.get("cookies")
    if isinstance(cookies, str):
        cookies = parse_cookie_string(cookies) if "=" in cookies else None
    if isinstance(cookies, list):  # a browser export: [{"name":…, "value":…}, …]
        cookies = {c["name"]: c["value"] for c in cookies if isinstance(c, dict) and "name" in c}
    if isinstance(cookies, dict) and cookies:
        creds["cookies"] = cookies
        creds.setdefault("auth_token", cookies.get("auth_token"))
        creds.setdefault("ct0", cookies.get("ct0"))
    creds = {k: v for k, v in creds.items() if v}
    has_cookies = bool(creds.get("auth_token") and creds.get("ct0"))
    if not has_cookies and not creds.get("password"):
        raise InputError(f"account {name}: give cookies (auth_token and ct0) or a password")
    return name, creds


def parse_import(text: str) -> list[tuple[str, dict]]:
    """A bulk import file: JSON (a list of accounts), CSV with a header row, or lines of
    'username:password:email:email_password[:totp_secret]'."""
    stripped = text.strip()
    if not stripped:
        return []
    if stripped[0] in "[{":
        try:
            doc = json.loads(stripped)
        except json.JSONDecodeError as e:
            raise InputError(f"not valid JSON: {e}") from e
        items = doc if isinstance(doc, list) else doc.get("accounts", [doc])
        return [creds_from(i) for i in items]
    first = stripped.splitlines()[0].lower()
    if "," in first and ("username" in first or "name" in first):
        return [creds_from(row) for row in csv.DictReader(io.StringIO(stripped))]
    out = []
    for n, line in enumerate(stripped.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) < 2:
            raise InputError(f"line {n}: expected username:password:email:email_password")
        keys = ("username", "password", "email", "email_password", "totp_secret")
        out.append(creds_from(dict(zip(keys, parts, strict=False))))
    return out


def proxy_identity(url: str) -> tuple[str, str]:
    """A proxy URL → (proxy_id, display), neither holding its credentials."""
    u = urlparse(url.strip())
    if u.scheme not in PROXY_SCHEMES or not u.hostname or not u.port:
        raise InputError(
            "a proxy is scheme://[user:pass@]host:port with scheme " + ", ".join(PROXY_SCHEMES)
        )
    return f"{u.scheme}-{u.hostname}-{u.port}", f"{u.scheme}://{u.hostname}:{u.port}"


def parse_caps(items: list[str] | None) -> dict[str, int] | None:
    """['SearchTimeline=100', …] (CLI) → {op: n}. Raises InputError naming the bad item."""
    if items is None:
        return None
    caps = {}
    for item in items:
        op, sep, n = item.partition("=")
        if not sep or not op.strip() or not n.strip().isdigit():
            raise InputError(f"a cap is OPERATION=REQUESTS, e.g. SearchTimeline=200 (got {item!r})")
        caps[op.strip()] = int(n)
    return caps


# --- views -----------------------------------------------------------------------------------


def account_view(a: AccountState, window_s: int) -> dict:
    """The operator's view of an account: the design's AccountResponse fields first, then ours.

    `window_s` is X's rate-limit window (settings.x_rate_window_s): an operation without a
    daily cap may make at most `limit` requests in each window of the day."""
    ops = {}
    for op, w in a.ops.items():
        ops[op] = {
            "used": w.used,
            "limit": w.limit,
            "window_reset": w.window_reset,
            "rate_limited_until": w.blocked_until,
            "today": w.day_used,
            "this_hour": w.hour_used,
            "daily_cap": a.daily_caps.get(op),
            "hourly_cap": a.hourly_caps.get(op),
            "leased": w.lease_id is not None,
        }
    windows_a_day = max(1, 86_400 // window_s)
    return {
        # The design's AccountResponse (xget-design.md "系统管理API"): its success rate is 1.0
        # before any request, as its AccountMetrics computes it; today's use and the day's
        # limit are summed over the X operations the account has served.
        "account_id": a.account_id,
        "username": a.name,
        "health_score": a.health,
        "success_rate": round(a.successes / a.requests, 4) if a.requests else 1.0,
        "daily_used": sum(w.day_used for w in a.ops.values()),
        "daily_limit": sum(
            a.daily_caps.get(op, w.limit * windows_a_day) for op, w in a.ops.items()
        ),
        "last_used": a.last_used_at,
        "id": a.account_id,
        "name": a.name,
        "status": a.status,
        "reason": a.status_reason,
        "until": a.status_until,
        "enabled": not a.disabled,
        "disabled_reason": a.disabled_reason,
        "disabled_at": a.disabled_at,
        "priority": a.priority,
        "tags": a.tags,
        "daily_caps": a.daily_caps,
        "hourly_caps": a.hourly_caps,
        "counts": {
            "requests": a.requests,
            "successes": a.successes,
            "errors": a.errors,
            "last_used_at": a.last_used_at,
        },
        "last_checked_at": a.last_checked_at,
        "cookies_expire_at": a.cookies_expire_at,
        "health": a.health,
        "proxy": a.proxy_id,
        "has_password": a.has_password,
        "logins": a.logins,
        "last_login_at": a.last_login_at,
        "last_error": a.last_error,
        "last_used_at": a.last_used_at,
        "last_test": a.last_test,
        "operations": ops,
        "added_at": a.added_at,
        "updated_at": a.updated_at,
    }


def proxy_view(p: ProxyState) -> dict:
    """The design's ProxyResponse fields first, then ours. `latency_ms` is null until a check
    has measured one."""
    u = urlparse(p.display)
    return {
        "proxy_id": p.proxy_id,
        "host": u.hostname,
        "port": u.port,
        "type": u.scheme,
        "location": p.region,
        "id": p.proxy_id,
        "proxy": p.display,
        "status": "disabled" if p.disabled else p.status,
        "enabled": not p.disabled,
        "disabled_reason": p.disabled_reason,
        "region": p.region,
        "provider": p.provider,
        "cost_per_gb": p.cost_per_gb,
        "expires_at": p.expires_at,
        "expired": p.expires_at is not None and p.expires_at <= datetime.now(UTC),
        "checks": p.checks,
        "success_rate": p.success_rate,
        "latency_ms": round(p.latency_ms) if p.latency_ms is not None else None,
        "failures_in_row": p.failures_in_row,
        "last_check_at": p.last_check_at,
        "last_error": p.last_error,
        # X requests through the proxy (reported by the scrapers on account-events)
        "requests": p.requests,
        "request_failures": p.request_failures,
        "request_success_rate": (
            round(1 - p.request_failures / p.requests, 4) if p.requests else None
        ),
        "request_latency_ms": p.request_latency_ms,
        "last_used_at": p.last_used_at,
        "updated_at": p.updated_at,
    }


def proxy_fields(entry: dict) -> dict:
    """The operator's description of a proxy (add): region, provider, cost_per_gb,
    expires_at. Raises InputError naming a bad field."""
    out: dict = {}
    for name in ("region", "provider"):
        v = entry.get(name)
        if v is not None:
            if not isinstance(v, str) or not 0 < len(v) <= 64:
                raise InputError(f"{name}: a name of 1-64 characters")
            out[name] = v
    if entry.get("cost_per_gb") is not None:
        try:
            out["cost_per_gb"] = float(entry["cost_per_gb"])
        except (TypeError, ValueError):
            raise InputError("cost_per_gb: a number of USD per GB") from None
        if not 0 <= out["cost_per_gb"] < 1e6:
            raise InputError("cost_per_gb: a number of USD per GB between 0 and 1,000,000")
    if entry.get("expires_at") is not None:
        try:
            t = datetime.fromisoformat(str(entry["expires_at"]).replace("Z", "+00:00"))
        except ValueError:
            raise InputError("expires_at: an ISO time, e.g. 2027-01-01T00:00:00Z") from None
        out["expires_at"] = t if t.tzinfo else t.replace(tzinfo=UTC)
    return out


# --- the admin -------------------------------------------------------------------------------


class PoolAdmin:
    """Publishes commands and follows the pool state (both tables from their beginning)."""

    def __init__(self, settings: Settings, producer: Producer, box: SecretBox | None = None):
        self.settings = settings
        self.producer = producer
        self.box = box or SecretBox.from_settings(settings)
        self.accounts = TopicTable(settings, ACCOUNT_STATE)
        self.proxies = TopicTable(settings, PROXY_STATE)

    async def start(self) -> PoolAdmin:
        await self.accounts.start()
        await self.proxies.start()
        await self.accounts.wait_caught_up()
        await self.proxies.wait_caught_up()
        return self

    async def stop(self) -> None:
        await self.accounts.stop()
        await self.proxies.stop()

    def account(self, account_id: str) -> AccountState | None:
        a = self.accounts.rows.get(account_id.lower())
        return a if isinstance(a, AccountState) and not a.removed else None

    def proxy(self, proxy_id: str) -> ProxyState | None:
        p = self.proxies.rows.get(proxy_id)
        return p if isinstance(p, ProxyState) and not p.removed else None

    def list_accounts(self) -> list[AccountState]:
        return sorted(
            (
                a
                for a in self.accounts.rows.values()
                if isinstance(a, AccountState) and not a.removed
            ),
            key=lambda a: a.account_id,
        )

    def list_proxies(self) -> list[ProxyState]:
        return sorted(
            (p for p in self.proxies.rows.values() if isinstance(p, ProxyState) and not p.removed),
            key=lambda p: p.proxy_id,
        )

    async def _account_cmd(self, action: str, account_id: str, **kw) -> str:
        cid = uuid.uuid4().hex
        cmd = AccountCommand(
            command_id=cid,
            action=action,
            account_id=account_id.lower(),
            requested_at=datetime.now(UTC),
            **kw,
        )
        await self.producer.send_and_wait(Outgoing(ACCOUNT_COMMANDS, cmd.account_id, cmd))
        return cid

    async def add_account(self, name: str, creds: dict) -> str:
        return await self._account_cmd(
            "add",
            name,
            name=name,
            secrets=self.box.seal(creds),
            has_password=bool(creds.get("password")),
        )

    async def account_action(self, action: str, account_id: str, **kw) -> str:
        """A command on a known account (`reason` for enable/disable; priority, tags and caps
        for `set`)."""
        if self.account(account_id) is None:
            raise InputError(f"no account {account_id}")
        return await self._account_cmd(action, account_id, **kw)

    async def add_proxy(self, url: str, **fields) -> tuple[str, str]:
        """Add (or update) a proxy; `fields` as proxy_fields() returns them."""
        pid, display = proxy_identity(url)
        cid = uuid.uuid4().hex
        cmd = ProxyCommand(
            command_id=cid,
            action="add",
            proxy_id=pid,
            display=display,
            secrets=self.box.seal(url.strip()),
            requested_at=datetime.now(UTC),
            **fields,
        )
        await self.producer.send_and_wait(Outgoing(ACCOUNT_COMMANDS, pid, cmd))
        return pid, cid

    async def proxy_action(self, action: str, proxy_id: str, reason: str | None = None) -> str:
        if self.proxy(proxy_id) is None:
            raise InputError(f"no proxy {proxy_id}")
        cid = uuid.uuid4().hex
        cmd = ProxyCommand(
            command_id=cid,
            action=action,
            proxy_id=proxy_id,
            reason=reason,
            requested_at=datetime.now(UTC),
        )
        await self.producer.send_and_wait(Outgoing(ACCOUNT_COMMANDS, proxy_id, cmd))
        return cid

    async def wait_account(
        self, account_id: str, command_id: str, timeout: float, also=lambda a: True
    ) -> AccountState | None:
        """The account's state once the manager applied `command_id` (None on timeout)."""

        def done() -> bool:
            a = self.accounts.rows.get(account_id.lower())
            return isinstance(a, AccountState) and a.last_command_id == command_id and also(a)

        if await self.accounts.wait_for(done, timeout):
            return cast(AccountState, self.accounts.rows[account_id.lower()])
        return None

    async def wait_leases_back(self, account_id: str, within_s: float) -> AccountState | None:
        """The account's state once every lease the manager revoked is back (after a disable,
        no request is sent with it any more; after a change of its tags or caps, none under
        the old ones); None on timeout. Leases granted since, under the new settings, are not
        waited for."""

        def back() -> bool:
            a = self.accounts.rows.get(account_id.lower())
            return isinstance(a, AccountState) and not any(w.lease_revoked for w in a.ops.values())

        if await self.accounts.wait_for(back, within_s):
            return cast(AccountState, self.accounts.rows[account_id.lower()])
        return None

    async def wait_proxy(
        self, proxy_id: str, command_id: str, timeout: float, also=lambda p: True
    ) -> ProxyState | None:
        def done() -> bool:
            p = self.proxies.rows.get(proxy_id)
            return isinstance(p, ProxyState) and p.last_command_id == command_id and also(p)

        if await self.proxies.wait_for(done, timeout):
            return cast(ProxyState, self.proxies.rows[proxy_id])
        return None
