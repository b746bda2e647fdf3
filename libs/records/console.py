"""The web console's state on Kafka: its users, the audit log and the services' warning log.

Every gateway replica rebuilds the users from `console-users` (compacted, one record per user
name) and reads the audit log and the service log from their topics on request, so no replica
holds state another lacks and a restart loses nothing. A password is stored only as its argon2
hash; a session is a signed cookie (services/task_gateway/console_auth.py), revoked here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from .base import Record

ConsoleRole = Literal["admin", "operator", "viewer"]
AuditResult = Literal["done", "refused", "failed"]


class ConsoleUser(Record):
    """One console user (latest per user name; `deleted` keeps the name's last word)."""

    schema_name = "xget.ConsoleUser"

    username: str
    role: ConsoleRole
    password_hash: str = Field(description="argon2id hash (argon2-cffi); never the password.")
    disabled: bool = False
    deleted: bool = False
    failed_logins: int = Field(0, ge=0, description="Wrong passwords since the last success.")
    locked_until: datetime | None = Field(None, description="Sign-in refused until then.")
    sessions_valid_after: datetime | None = Field(
        None, description="Sessions issued before this (a password reset) are void."
    )
    revoked_sessions: dict[str, datetime] = Field(
        default_factory=dict, description="Signed-out session ids -> their expiry (pruned)."
    )
    created_at: datetime
    updated_at: datetime


class AuditEntry(Record):
    """One state-changing request: who, what, on what, when, and how it ended."""

    schema_name = "xget.AuditEntry"

    entry_id: str
    at: datetime
    actor: str = Field(description="Console user name, 'api-token', or 'anonymous'.")
    role: str | None = None
    via: Literal["session", "token", "none"] = "none"
    method: str
    path: str
    action: str = Field(description="METHOD and route template, e.g. 'POST /api/v1/tasks/...'.")
    target: str = Field("", description="The route's path parameters, e.g. 'task_id=od-1'.")
    status: int
    result: AuditResult
    detail: str = Field("", description="Why it was refused or failed (truncated).")


class ServiceLog(Record):
    """A WARNING or worse log record of a service process (libs/log_shipper.py)."""

    schema_name = "xget.ServiceLog"

    at: datetime
    process: str = Field(description="The services the process runs, e.g. 'xget:scraper'.")
    host: str
    pid: int
    level: str
    logger: str
    message: str = Field(description="Formatted message with exception text, truncated.")
    dropped_before: int = Field(0, ge=0, description="Records this process dropped (bounds).")
