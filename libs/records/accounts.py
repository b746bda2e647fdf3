"""The account and proxy pool on Kafka: commands, pool state, leases and request outcomes.

The account-manager is the only writer of pool state (`account-state`, `proxy-state`, both
compacted). Operators change the pool with commands (`account-commands`); scrapers ask for
leases (`account-lease-requests`), get answers (`account-lease-grants`) and report every X
request's outcome (`account-events`). Secrets (cookies, passwords, TOTP secrets, proxy
credentials) only ever travel and rest inside `secrets` fields: Fernet tokens made with the
XGET_ACCOUNT_KEY (libs/secretbox.py), never plaintext.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from .base import Record

AccountStatus = Literal[
    "active",
    "cooling_down",
    "rate_limited",
    "needs_login",
    "suspended",
    "banned",
    "disabled",
]
ProxyStatus = Literal["unchecked", "healthy", "dead"]
# Request outcomes that are the proxy's fault, not the account's (per-proxy success rate).
PROXY_FAULTS = ("proxy_error", "network_error", "blocked")
# The design's account priorities: leases go to `high` accounts first, `backup` ones only when
# no other account can serve.
AccountPriority = Literal["high", "normal", "low", "backup"]
PRIORITY_ORDER = {"high": 0, "normal": 1, "low": 2, "backup": 3}
EventOutcome = Literal[
    "ok",
    "rate_limited",
    "auth_failed",
    "suspended",
    "blocked",
    "server_error",
    "malformed",
    "network_error",
    "proxy_error",
]


class AccountCommand(Record):
    """An operator's change to an account (CLI `xget accounts …` or the admin API)."""

    schema_name = "xget.AccountCommand"

    command_id: str = Field(description="Unique; the state record names the last one applied.")
    action: Literal["add", "remove", "disable", "enable", "login", "test", "set"]
    account_id: str = Field(description="Lower-case X user name.")
    reason: str | None = Field(None, description="Why (disable, enable): shown with the account.")
    priority: AccountPriority | None = Field(None, description="New priority (set).")
    tags: list[str] | None = Field(None, description="New tags, replacing the old ones (set).")
    daily_caps: dict[str, int] | None = Field(
        None, description="Requests per UTC day per X operation, on top of X's limits (set)."
    )
    hourly_caps: dict[str, int] | None = Field(
        None, description="Requests per UTC hour per X operation, on top of X's limits (set)."
    )
    name: str = Field("", description="X user name as given (add).")
    secrets: str | None = Field(
        None,
        description="Fernet token of {auth_token, ct0, cookies, password, email, "
        "email_password, totp_secret} (add).",
    )
    has_password: bool = Field(False, description="The secrets hold a password (add).")
    requested_at: datetime


class ProxyCommand(Record):
    """An operator's change to the proxy pool."""

    schema_name = "xget.ProxyCommand"

    command_id: str
    action: Literal["add", "remove", "test", "enable", "disable"]
    proxy_id: str = Field(description="scheme-host-port, without credentials.")
    display: str = Field("", description="scheme://host:port, without credentials (add).")
    secrets: str | None = Field(None, description="Fernet token of the full proxy URL (add).")
    region: str | None = Field(None, description="Where the proxy exits (add; us, eu, asia…).")
    provider: str | None = Field(None, description="Who sells it (add).")
    cost_per_gb: float | None = Field(None, ge=0, description="USD per GB (add).")
    expires_at: datetime | None = Field(
        None, description="When the proxy's lease with its provider ends (add)."
    )
    reason: str | None = Field(None, description="Why it was disabled (disable).")
    requested_at: datetime


class OpWindow(BaseModel):
    """Requests of one X operation in the account's current rate-limit window and day."""

    limit: int = Field(
        ge=0, description="Requests allowed per window (setting or x-rate-limit-limit)."
    )
    used: int = Field(0, ge=0, description="Requests made in the current window.")
    window_reset: datetime | None = Field(None, description="When the current window ends.")
    blocked_until: datetime | None = Field(None, description="Rate-limited until (429 / reset).")
    day: str = Field("", description="UTC date of day_used (YYYY-MM-DD).")
    day_used: int = Field(0, ge=0)
    hour: str = Field("", description="UTC hour of hour_used (YYYY-MM-DDTHH).")
    hour_used: int = Field(0, ge=0)
    lease_id: str | None = Field(None, description="The lease holding this operation, if any.")
    lease_holder: str | None = None
    lease_budget: int = Field(0, ge=0, description="Requests the lease may make.")
    lease_used_before: int = Field(0, ge=0, description="`used` when the lease was granted.")
    lease_day_before: int = Field(0, ge=0, description="`day_used` when the lease was granted.")
    lease_hour_before: int = Field(0, ge=0, description="`hour_used` when it was granted.")
    lease_granted_at: datetime | None = None
    lease_expires: datetime | None = None
    lease_revoked: bool = Field(
        False,
        description="The lease was revoked (the account was disabled or its settings changed) "
        "and its holder has not given it back yet: it may still send requests with it.",
    )


class AccountState(Record):
    """Everything the manager knows of one account. No field holds a secret in clear."""

    schema_name = "xget.AccountState"

    account_id: str
    name: str
    status: AccountStatus
    status_reason: str | None = Field(None, description="Why the account is not active.")
    status_until: datetime | None = Field(None, description="End of a cooldown.")
    health: float = Field(1.0, ge=0, le=1, description="Moving average of request success.")
    ops: dict[str, OpWindow] = Field(default_factory=dict, description="Per X operation.")
    proxy_id: str | None = Field(None, description="Sticky proxy (replaced only when it dies).")
    has_password: bool = Field(False, description="Can be (re)logged in by the manager.")
    secrets: str | None = Field(None, description="Fernet token of the credentials.")
    logins: int = Field(0, ge=0, description="Successful logins by the manager.")
    last_login_at: datetime | None = None
    last_error: str | None = None
    last_used_at: datetime | None = None
    last_test: str | None = Field(None, description="Outcome of the last `test`.")
    last_command_id: str | None = None
    added_at: datetime
    updated_at: datetime
    removed: bool = Field(False, description="Removed by an operator (compaction keeps the last).")
    disabled: bool = Field(
        False, description="Disabled by an operator: no lease; the status and windows are kept."
    )
    disabled_reason: str | None = None
    disabled_at: datetime | None = None
    priority: AccountPriority = "normal"
    tags: list[str] = Field(default_factory=list, description="Tasks may ask for a tag.")
    daily_caps: dict[str, int] = Field(
        default_factory=dict, description="Requests per UTC day per operation (operator's cap)."
    )
    hourly_caps: dict[str, int] = Field(
        default_factory=dict, description="Requests per UTC hour per operation (operator's cap)."
    )
    requests: int = Field(0, ge=0, description="X requests reported since it was added.")
    successes: int = Field(0, ge=0, description="Of those, answered ok.")
    errors: dict[str, int] = Field(default_factory=dict, description="Failed requests by kind.")
    last_checked_at: datetime | None = Field(
        None, description="Last scheduled check of the idle account (a cheap request)."
    )
    cookies_expire_at: datetime | None = Field(
        None, description="When the cookies of the manager's last login expire (password accounts)."
    )


class ProxyState(Record):
    schema_name = "xget.ProxyState"

    proxy_id: str
    display: str = Field(description="scheme://host:port (no credentials).")
    secrets: str | None = Field(None, description="Fernet token of the full proxy URL.")
    status: ProxyStatus = "unchecked"
    checks: int = Field(0, ge=0)
    successes: int = Field(0, ge=0)
    failures_in_row: int = Field(0, ge=0)
    success_rate: float = Field(1.0, ge=0, le=1, description="Moving average of check success.")
    latency_ms: float | None = Field(None, description="Latency of the last good check.")
    last_check_at: datetime | None = None
    last_error: str | None = None
    last_command_id: str | None = None
    added_at: datetime
    updated_at: datetime
    removed: bool = False
    region: str = Field("global", description="Where the proxy exits (us, eu, asia, global…).")
    provider: str = Field("unknown", description="Who sells it.")
    cost_per_gb: float = Field(0.0, ge=0, description="USD per GB.")
    expires_at: datetime | None = Field(None, description="No account uses it after this.")
    disabled: bool = Field(False, description="Disabled by an operator: carries no request.")
    disabled_reason: str | None = None
    requests: int = Field(0, ge=0, description="X requests made through it (account-events).")
    request_failures: int = Field(
        0, ge=0, description="Of those, failed because of the proxy or the network."
    )
    request_latency_ms: float | None = Field(
        None, description="Moving average of its X requests' latency."
    )
    last_used_at: datetime | None = None

    def usable(self, now: float) -> bool:
        """May carry requests: alive, not disabled by an operator, not expired."""
        return (
            not self.removed
            and self.status != "dead"
            and not self.disabled
            and (self.expires_at is None or self.expires_at.timestamp() > now)
        )


class AccountEvent(Record):
    """One X request's outcome, reported by the scraper that made it."""

    schema_name = "xget.AccountEvent"

    event_id: str = Field(
        "",
        description="Unique per request (a uuid), so a request is metered once wherever a "
        "broker puts its record; empty from older scrapers (their place on the topic identifies "
        "those).",
    )
    account_id: str
    lease_id: str | None = None
    operation: str
    outcome: EventOutcome
    http_status: int | None = None
    error: str | None = Field(None, description="X's error text (never request secrets).")
    rate_limit_limit: int | None = None
    rate_limit_remaining: int | None = None
    rate_limit_reset: int | None = Field(None, description="x-rate-limit-reset, unix seconds.")
    proxy_id: str | None = None
    requester: str = ""
    at: datetime
    elapsed_ms: float | None = Field(None, ge=0, description="How long the request took.")
    task_id: str | None = Field(
        None, description="The task the request was made for (its actual cost per task)."
    )


class LeaseRequest(Record):
    """A scraper replica asks for an account for one X operation."""

    schema_name = "xget.LeaseRequest"

    request_id: str
    requester: str = Field(description="The scraper replica (answers are keyed by it).")
    operation: str
    task_id: str | None = Field(None, description="For 'waiting for accounts' in task status.")
    account_tag: str | None = Field(None, description="Only accounts with this tag may serve.")
    requested_at: datetime
    valid_until: datetime = Field(description="The requester stops waiting for an answer then.")
    priority: int = Field(
        5,
        ge=1,
        le=10,
        description="Priority of the best task the requester "
        "has waiting (1 highest): the manager serves its queue by it.",
    )
    waiting_since: datetime | None = Field(
        None,
        description="Since when that task waits (aging: one priority level per "
        "task_priority_aging_s); requested_at when absent.",
    )


class LeaseRelease(Record):
    """A scraper gives a lease back, saying how many requests it made with it."""

    schema_name = "xget.LeaseRelease"

    lease_id: str
    account_id: str
    operation: str
    used: int = Field(ge=0)
    requester: str
    reason: str = ""
    released_at: datetime


class LeaseGrant(Record):
    """An account for one operation: at most `budget` requests until `expires_at`."""

    schema_name = "xget.LeaseGrant"

    request_id: str
    requester: str
    lease_id: str
    account_id: str
    operation: str
    budget: int = Field(ge=1)
    expires_at: datetime
    proxy_id: str | None = None
    secrets: str = Field(description="Fernet token of {auth_token, ct0, proxy_url}.")
    granted_at: datetime
    tags: list[str] = Field(default_factory=list, description="The account's tags.")


class LeaseRevoke(Record):
    """The manager ends a lease early (the account was disabled or removed): the holder sends
    no more requests with it and gives it back."""

    schema_name = "xget.LeaseRevoke"

    requester: str
    lease_id: str
    account_id: str
    operation: str
    reason: str


class LeaseWait(Record):
    """No account can serve the request now: it stays queued until `valid_until`."""

    schema_name = "xget.LeaseWait"

    request_id: str
    requester: str
    operation: str
    earliest_free_at: datetime | None = Field(None, description="None: no account may ever serve.")
    reason: str


class TaskAccountWait(Record):
    """Whether a task's scraping waits for an account (shown in the task status)."""

    schema_name = "xget.TaskAccountWait"

    task_id: str
    waiting: bool
    operation: str = "SearchTimeline"
    earliest_free_at: datetime | None = None
    reason: str = ""
    updated_at: datetime
