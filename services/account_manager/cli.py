"""`xget accounts …` and `xget proxies …`: operator commands through Kafka.

  xget accounts add NAME (--cookies 'auth_token=…; ct0=…' | --auth-token T --ct0 C
                          | --password P [--email E --email-password EP --totp-secret S])
  xget accounts import FILE      username:password:email:email_password lines, JSON or CSV
  xget accounts login ID         log in again through the login page (password accounts)
  xget accounts list [--json]
  xget accounts test ID          one search with the account; prints the outcome
  xget accounts remove ID
  xget accounts disable ID [--reason TEXT]   no more leases; the account keeps its state
  xget accounts enable ID [--reason TEXT]
  xget accounts set ID [--priority high|normal|low|backup] [--tags a,b]
                       [--daily-cap OP=N …] [--hourly-cap OP=N …]
  xget proxies add URL [--region R --provider P --cost-per-gb N --expires-at T]
  xget proxies import FILE | list [--json] | test ID | remove ID | enable ID | disable ID

Secrets are sealed with XGET_ACCOUNT_KEY before they leave this process and never printed.
Passwords may come from the environment instead of the command line: --password-env VAR.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from libs.kafka import Producer
from libs.secretbox import SecretKeyError
from libs.settings import Settings

from .admin import (
    REVOKING,
    STILL_HELD,
    InputError,
    PoolAdmin,
    account_view,
    creds_from,
    parse_caps,
    parse_cookie_string,
    parse_import,
    proxy_fields,
    proxy_view,
)

WAIT_S = 20.0
LOGIN_WAIT_S = 120.0


def add_parsers(sub) -> None:
    acc = sub.add_parser("accounts", help="the X account pool")
    a = acc.add_subparsers(dest="action", required=True)
    add = a.add_parser("add", help="add or update an account")
    add.add_argument("name", help="X user name")
    add.add_argument("--cookies", help="cookie header text: 'auth_token=…; ct0=…; …'")
    add.add_argument("--auth-token")
    add.add_argument("--ct0")
    add.add_argument("--password")
    add.add_argument("--password-env", help="read the password from this environment variable")
    add.add_argument("--email")
    add.add_argument("--email-password")
    add.add_argument("--totp-secret")
    imp = a.add_parser("import", help="bulk import from a file")
    imp.add_argument("file", type=Path)
    for name in ("login", "test", "remove"):
        a.add_parser(name).add_argument("id")
    for name in ("disable", "enable"):
        p_ = a.add_parser(name)
        p_.add_argument("id")
        p_.add_argument("--reason", help="why (shown with the account)")
    st = a.add_parser("set", help="priority, tags and caps of an account")
    st.add_argument("id")
    st.add_argument("--priority", choices=["high", "normal", "low", "backup"])
    st.add_argument("--tags", help="comma-separated; replaces the account's tags ('' clears)")
    st.add_argument(
        "--daily-cap", action="append", metavar="OP=N", help="requests per UTC day (repeatable)"
    )
    st.add_argument(
        "--hourly-cap", action="append", metavar="OP=N", help="requests per UTC hour (repeatable)"
    )
    ls = a.add_parser("list")
    ls.add_argument("--json", action="store_true")

    prx = sub.add_parser("proxies", help="the proxy pool")
    p = prx.add_subparsers(dest="action", required=True)
    padd = p.add_parser("add", help="add or update a proxy")
    padd.add_argument("url", help="scheme://[user:pass@]host:port (http, https, socks4, socks5)")
    padd.add_argument("--region", help="where it exits: us, eu, asia, global…")
    padd.add_argument("--provider", help="who sells it")
    padd.add_argument("--cost-per-gb", type=float, help="USD per GB")
    padd.add_argument("--expires-at", help="ISO time its subscription ends")
    p.add_parser("import", help="one proxy URL per line").add_argument("file", type=Path)
    for name in ("test", "remove", "enable"):
        p.add_parser(name).add_argument("id")
    pdis = p.add_parser("disable", help="no request goes through it; its accounts move")
    pdis.add_argument("id")
    pdis.add_argument("--reason")
    pls = p.add_parser("list")
    pls.add_argument("--json", action="store_true")


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        return asyncio.run(_run(args, settings))
    except (InputError, SecretKeyError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    producer = await Producer(settings, "xget-cli").start()
    admin = PoolAdmin(settings, producer)
    try:
        await admin.start()
        if args.cmd == "accounts":
            return await _accounts(admin, args)
        return await _proxies(admin, args)
    finally:
        await admin.stop()
        await producer.stop()


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


async def _accounts(admin: PoolAdmin, args) -> int:
    if args.action == "add":
        entry = {
            "username": args.name,
            "auth_token": args.auth_token,
            "ct0": args.ct0,
            "password": os.environ.get(args.password_env) if args.password_env else args.password,
            "email": args.email,
            "email_password": args.email_password,
            "totp_secret": args.totp_secret,
        }
        if args.cookies:
            entry["cookies"] = parse_cookie_string(args.cookies)
        name, creds = creds_from(entry)
        cid = await admin.add_account(name, creds)
        a = await admin.wait_account(name, cid, WAIT_S)
        if a is None:
            print("queued; the account-manager has not applied it yet (is it running?)")
            return 1
        print(f"{a.account_id}: {a.status}" + (f" ({a.status_reason})" if a.status_reason else ""))
        return 0
    if args.action == "import":
        entries = parse_import(args.file.read_text(encoding="utf-8"))
        for name, creds in entries:
            await admin.add_account(name, creds)
        print(f"queued {len(entries)} account(s): " + ", ".join(n for n, _ in entries))
        return 0
    if args.action == "list":
        rows = [account_view(a, admin.settings.x_rate_window_s) for a in admin.list_accounts()]
        if args.json:
            _print_json(rows)
            return 0
        print(
            f"{'ID':<24} {'STATUS':<13} {'ON':<3} {'PRIO':<7} {'HEALTH':>6} {'REQS':>6} "
            f"{'PROXY':<28} REASON"
        )
        for r in rows:
            reason = r["reason"] or ""
            if not r["enabled"]:
                reason = f"disabled: {r['disabled_reason']}" + (f"; {reason}" if reason else "")
            print(
                f"{r['id']:<24} {r['status']:<13} {'yes' if r['enabled'] else 'no':<3} "
                f"{r['priority']:<7} {r['health']:>6.2f} {r['counts']['requests']:>6} "
                f"{r['proxy'] or '-':<28} {reason}"
            )
        return 0
    if args.action in ("disable", "enable", "set"):
        kw: dict = {}
        if args.action == "set":
            kw = {
                "priority": args.priority,
                "tags": [t for t in args.tags.split(",")] if args.tags is not None else None,
                "daily_caps": parse_caps(args.daily_cap),
                "hourly_caps": parse_caps(args.hourly_cap),
            }
            kw = {k: v for k, v in kw.items() if v is not None}
            if not kw:
                raise InputError("nothing to set: give --priority, --tags or a cap")
        else:
            kw = {"reason": args.reason}
        cid = await admin.account_action(args.action, args.id, **kw)
        a = await admin.wait_account(args.id, cid, WAIT_S)
        if a is None:
            print("queued; the account-manager has not applied it yet (is it running?)")
            return 1
        if args.action in REVOKING:
            # Done once the revoked leases are back: nothing is sent with it from then on
            # (disable), or nothing under its old tags and caps (set).
            back = await admin.wait_leases_back(args.id, WAIT_S)
            if back is None:
                print(f"{REVOKING[args.action]}; {STILL_HELD}")
            a = back or a
        v = account_view(a, admin.settings.x_rate_window_s)
        state = "enabled" if v["enabled"] else f"disabled ({v['disabled_reason']})"
        print(
            f"{a.account_id}: {state}, status {a.status}, priority {a.priority}, "
            f"tags {','.join(a.tags) or '-'}, daily caps {a.daily_caps or '-'}, "
            f"hourly caps {a.hourly_caps or '-'}"
        )
        return 0
    if args.action == "remove":
        await admin.account_action("remove", args.id)
        print(f"removed {args.id.lower()}")
        return 0
    if args.action == "test":
        cid = await admin.account_action("test", args.id)
        a = await admin.wait_account(args.id, cid, WAIT_S + 30)
        if a is None:
            print("no test result in time (is the account-manager running?)")
            return 1
        print(f"{a.account_id}: {a.last_test} (status {a.status})")
        return 0 if (a.last_test or "").startswith("ok") else 1
    if args.action == "login":
        cid = await admin.account_action("login", args.id)
        a = await admin.wait_account(args.id, cid, LOGIN_WAIT_S)
        if a is None:
            print("the login did not finish in time")
            return 1
        print(
            f"{a.account_id}: {a.status}"
            + (f" ({a.last_error})" if a.status != "active" else f", logins {a.logins}")
        )
        return 0 if a.status == "active" else 1
    return 2


async def _proxies(admin: PoolAdmin, args) -> int:
    if args.action in ("add", "import"):
        urls = (
            [args.url]
            if args.action == "add"
            else [
                ln.strip()
                for ln in args.file.read_text().splitlines()
                if ln.strip() and not ln.startswith("#")
            ]
        )
        fields = (
            proxy_fields(
                {
                    "region": args.region,
                    "provider": args.provider,
                    "cost_per_gb": args.cost_per_gb,
                    "expires_at": args.expires_at,
                }
            )
            if args.action == "add"
            else {}
        )
        for url in urls:
            pid, _ = await admin.add_proxy(url, **fields)
            print(f"added {pid}")
        return 0
    if args.action in ("enable", "disable"):
        cid = await admin.proxy_action(args.action, args.id, getattr(args, "reason", None))
        p = await admin.wait_proxy(args.id, cid, WAIT_S)
        if p is None:
            print("the account-manager did not apply the command in time")
            return 1
        print(f"{p.proxy_id}: {'disabled' if p.disabled else 'enabled'}")
        return 0
    if args.action == "list":
        rows = [proxy_view(p) for p in admin.list_proxies()]
        if args.json:
            _print_json(rows)
            return 0
        print(
            f"{'ID':<32} {'STATUS':<10} {'OK%':>5} {'MS':>7} {'REQS':>7} {'REQ OK%':>7} "
            f"{'REGION':<8} {'PROVIDER':<12} LAST ERROR"
        )
        for r in rows:
            ms = f"{r['latency_ms']:.0f}" if r["latency_ms"] is not None else "-"
            rok = r["request_success_rate"]
            print(
                f"{r['id']:<32} {r['status']:<10} {100 * r['success_rate']:>5.0f} {ms:>7} "
                f"{r['requests']:>7} {'-' if rok is None else f'{100 * rok:.0f}':>7} "
                f"{r['region']:<8} {r['provider']:<12} {r['last_error'] or ''}"
            )
        return 0
    if args.action == "remove":
        await admin.proxy_action("remove", args.id)
        print(f"removed {args.id}")
        return 0
    if args.action == "test":
        before = admin.proxy(args.id)
        if before is None:
            raise InputError(f"no proxy {args.id}")
        cid = await admin.proxy_action("test", args.id)
        p = await admin.wait_proxy(
            args.id, cid, WAIT_S + 15, also=lambda p: p.checks > before.checks
        )
        if p is None:
            print("no check result in time")
            return 1
        print(
            f"{p.proxy_id}: {p.status}"
            + (f" ({p.last_error})" if p.last_error else f", {p.latency_ms:.0f} ms")
        )
        return 0 if p.status == "healthy" else 1
    return 2
