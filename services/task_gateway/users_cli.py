"""`xget users add|list`: console users from the command line, and the first admin.

  xget users add NAME --role ROLE [--password-stdin]   the password is prompted twice, or read
                                                       from standard input (one line)
  xget users list

Both work on the console-users topic directly (the gateway need not run); a running gateway
sees the change within a poll. `ensure_first_admin` is what `make up` calls: on a system with no
console user it adds `admin` with a generated password and returns it, to be printed once.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from libs.settings import Settings
from services.runtime import started_producer

from .console_users import ROLES, ConsoleUsers, UserError, generate_password

FIRST_ADMIN = "admin"


def add_parsers(sub) -> None:
    users = sub.add_parser("users", help="console users (sign-in to /console/)")
    act = users.add_subparsers(dest="users_action", required=True)
    add = act.add_parser("add", help="add a console user")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    act.add_parser("list", help="list console users")


async def _with_users(settings: Settings, fn):
    producer = await started_producer(settings, "xget-users", linger_ms=0)
    users = ConsoleUsers(settings, producer)
    try:
        await users.start()
        return await fn(users)
    finally:
        await users.stop()
        await producer.stop()


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise UserError("password", "the two passwords differ")
    return first


def run(args: argparse.Namespace, settings: Settings) -> int:
    from services.cli import run_loop

    if args.users_action == "list":
        users = run_loop(_with_users(settings, _list), settings)
        print(f"{'USER':<24} {'ROLE':<9} STATE")
        for u in users:
            state = "disabled" if u.disabled else "active"
            print(f"{u.username:<24} {u.role:<9} {state}")
        return 0
    try:
        password = _read_password(args.password_stdin)

        async def add(users: ConsoleUsers):
            return await users.add(args.name, args.role, password)

        u = run_loop(_with_users(settings, add), settings)
    except UserError as e:
        print(f"{e.field}: {e.message}", file=sys.stderr)
        return 2
    print(f"added {u.username} ({u.role})")
    return 0


async def _list(users: ConsoleUsers):
    return users.all()


async def ensure_first_admin(settings: Settings) -> str | None:
    """The generated password of a new `admin` when the system has no console user yet."""

    async def first(users: ConsoleUsers) -> str | None:
        if users.table.rows:  # any user ever (a deleted one too): not a fresh system
            return None
        password = generate_password()
        await users.add(FIRST_ADMIN, "admin", password)
        return password

    return await _with_users(settings, first)
