"""Console users: roles, argon2 password hashes, sign-in with lockout, kept on `console-users`.

The topic is compacted and keyed by user name, so every gateway replica (and `xget users`)
rebuilds the same users from it; a change is written there and applied locally at once
(read-your-writes), other replicas see it within a poll. Passwords are hashed with argon2id
(argon2-cffi's defaults, RFC 9106's second recommended profile); a hash is checked in a worker
thread, it costs tens of milliseconds on purpose.

Lockout: `console_lockout_failures` wrong passwords in a row lock the user for
`console_lockout_s`; until then even the right password is refused (LockedOut, HTTP 429). The
count lives on the user's record, so every replica counts the same failures.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from libs.kafka import Outgoing, Producer
from libs.records.console import ConsoleRole, ConsoleUser
from libs.settings import Settings
from libs.topic_table import TopicTable
from libs.topics import CONSOLE_USERS

ROLES: tuple[ConsoleRole, ...] = ("viewer", "operator", "admin")
RANK = {r: i for i, r in enumerate(ROLES)}
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # argon2 hashes any length; a bound keeps a request from costing more

_hasher = PasswordHasher()
# Checked when the user name is unknown, so a sign-in costs the same whether or not it exists.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class UserError(ValueError):
    """Bad input for a user change; `field` names what is wrong."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


class LockedOut(Exception):
    def __init__(self, until: datetime):
        super().__init__(f"locked until {until.isoformat()}")
        self.until = until


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError("password", f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise UserError("password", f"a password has at most {MAX_PASSWORD} characters")


def check_username(username: str) -> str:
    if not USERNAME.match(username):
        raise UserError(
            "username",
            "1-64 letters, digits, '_', '.' or '-', starting with a letter or digit",
        )
    return username.lower()


def public_view(u: ConsoleUser) -> dict:
    """What the API shows of a user (never the hash or the session ids)."""
    now = datetime.now(UTC)
    return {
        "username": u.username,
        "role": u.role,
        "disabled": u.disabled,
        "locked_until": u.locked_until if u.locked_until and u.locked_until > now else None,
        "failed_logins": u.failed_logins,
        "created_at": u.created_at,
        "updated_at": u.updated_at,
    }


class ConsoleUsers:
    """The users table plus the writes to it. `producer` may be shared with the gateway."""

    def __init__(self, settings: Settings, producer: Producer):
        self.settings = settings
        self.producer = producer
        self.table = TopicTable(settings, CONSOLE_USERS)
        self._lock = asyncio.Lock()  # read-modify-write of one record at a time per replica

    async def start(self) -> ConsoleUsers:
        await self.table.start()
        await self.table.wait_caught_up()
        return self

    async def stop(self) -> None:
        await self.table.stop()

    def get(self, username: str) -> ConsoleUser | None:
        u = self.table.rows.get(username.lower())
        return u if isinstance(u, ConsoleUser) and not u.deleted else None

    def all(self) -> list[ConsoleUser]:
        return sorted(
            (u for u in self.table.rows.values() if isinstance(u, ConsoleUser) and not u.deleted),
            key=lambda u: u.username,
        )

    async def _write(self, user: ConsoleUser) -> ConsoleUser:
        await self.producer.send_and_wait(Outgoing(CONSOLE_USERS, user.username, user))
        self.table.rows[user.username] = user  # read-your-writes before the table catches up
        return user

    async def add(self, username: str, role: str, password: str) -> ConsoleUser:
        name = check_username(username)
        if role not in RANK:
            raise UserError("role", f"role must be one of {', '.join(ROLES)}")
        check_password(password)
        pw_hash = await asyncio.to_thread(_hasher.hash, password)
        async with self._lock:
            if self.get(name) is not None:
                raise UserError("username", f"user {name} exists")
            now = datetime.now(UTC)
            return await self._write(
                ConsoleUser(
                    username=name,
                    role=role,  # type: ignore[arg-type]
                    password_hash=pw_hash,
                    created_at=now,
                    updated_at=now,
                )
            )

    async def update(
        self,
        username: str,
        *,
        role: str | None = None,
        password: str | None = None,
        disabled: bool | None = None,
        unlock: bool = False,
    ) -> ConsoleUser | None:
        """Change a user; a new password also voids the user's sessions. None: no such user."""
        if role is not None and role not in RANK:
            raise UserError("role", f"role must be one of {', '.join(ROLES)}")
        if password is not None:
            check_password(password)
        pw_hash = await asyncio.to_thread(_hasher.hash, password) if password else None
        async with self._lock:
            u = self.get(username)
            if u is None:
                return None
            now = datetime.now(UTC)
            changes: dict = {"updated_at": now}
            if role is not None:
                changes["role"] = role
            if disabled is not None:
                changes["disabled"] = disabled
            if pw_hash is not None:
                changes |= {
                    "password_hash": pw_hash,
                    "sessions_valid_after": now,
                    "failed_logins": 0,
                    "locked_until": None,
                }
            if unlock:
                changes |= {"failed_logins": 0, "locked_until": None}
            return await self._write(u.model_copy(update=changes))

    async def delete(self, username: str) -> bool:
        async with self._lock:
            u = self.get(username)
            if u is None:
                return False
            now = datetime.now(UTC)
            await self._write(
                u.model_copy(
                    update={"deleted": True, "updated_at": now, "sessions_valid_after": now}
                )
            )
            return True

    async def authenticate(self, username: str, password: str) -> ConsoleUser | None:
        """The user when the password is right; None when the name or password is wrong or
        the user is disabled; raises LockedOut while locked (whatever the password)."""
        u = self.get(username) if USERNAME.match(username) else None
        if u is None:
            await asyncio.to_thread(_verify, _DUMMY_HASH, password)
            return None
        now = datetime.now(UTC)
        if u.locked_until is not None and u.locked_until > now:
            raise LockedOut(u.locked_until)
        ok = await asyncio.to_thread(_verify, u.password_hash, password)
        async with self._lock:
            u = self.get(username) or u  # the latest record (another request may have written)
            if u.locked_until is not None and u.locked_until > now:
                raise LockedOut(u.locked_until)
            if not ok:
                failed = u.failed_logins + 1
                locked = None
                if failed >= self.settings.console_lockout_failures:
                    locked, failed = now + timedelta(seconds=self.settings.console_lockout_s), 0
                await self._write(
                    u.model_copy(
                        update={"failed_logins": failed, "locked_until": locked, "updated_at": now}
                    )
                )
                if locked is not None:
                    raise LockedOut(locked)
                return None
            if u.disabled:
                return None
            if u.failed_logins or u.locked_until is not None:
                u = await self._write(
                    u.model_copy(
                        update={"failed_logins": 0, "locked_until": None, "updated_at": now}
                    )
                )
            return u

    async def revoke_session(self, username: str, session_id: str, expires: datetime) -> None:
        """Sign-out: the session id is refused until it would have expired anyway."""
        async with self._lock:
            u = self.get(username)
            if u is None:
                return
            now = datetime.now(UTC)
            kept = {s: t for s, t in u.revoked_sessions.items() if t > now}
            kept[session_id] = expires
            await self._write(u.model_copy(update={"revoked_sessions": kept, "updated_at": now}))


def _verify(pw_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(pw_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def generate_password() -> str:
    return secrets.token_urlsafe(18)
