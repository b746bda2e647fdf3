"""account-manager: owns the account and proxy pool, grants leases, reacts to outcomes.

Inputs (one partition each, so one active instance owns them all; a second replica in a
consumer group is a hot standby): account-commands, account-events, account-lease-requests.
Outputs: account-state and proxy-state (compacted: the store that survives a restart),
account-lease-grants, task-account-waits. On taking the inputs over it rebuilds the pool
from the compacted topics; a clock tick expires leases and serves queued requests the
moment an account frees up. Logins (Playwright), account tests and proxy checks run beside.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import urlparse

import aiohttp
import aiohttp_socks

from libs.kafka import ConsumerLoop, Incoming, Outgoing, Producer
from libs.leases import event_for
from libs.metrics import observe_accounts, observe_proxies
from libs.records.accounts import AccountCommand, AccountEvent, AccountState, ProxyState
from libs.secretbox import SecretBox
from libs.settings import Settings
from libs.topic_table import TopicTable
from libs.topics import ACCOUNT_COMMANDS, ACCOUNT_STATE, PROXY_STATE
from libs.xclient import XAccount, XClient

from . import login as login_flow
from .declaration import POOL
from .pool import CHECK_OPERATION, AccountPool

log = logging.getLogger(__name__)

SERVICE = POOL.name
TICK_S = 0.05


async def check_through(proxy_url: str, url: str) -> int:
    """GET `url` through the proxy the way X requests go (aiohttp; aiohttp-socks for
    socks4/socks5/socks5h, which httpx cannot do for socks4): the HTTP status."""
    scheme = urlparse(proxy_url).scheme.lower()
    timeout = aiohttp.ClientTimeout(total=10.0)
    if scheme.startswith("socks"):
        fixed = f"socks5{proxy_url[len(scheme) :]}" if scheme == "socks5h" else proxy_url
        connector = aiohttp_socks.ProxyConnector.from_url(fixed, rdns=scheme == "socks5h")
        async with (
            aiohttp.ClientSession(connector=connector, timeout=timeout) as c,
            c.get(url) as r,
        ):
            return r.status
    async with aiohttp.ClientSession(timeout=timeout) as c, c.get(url, proxy=proxy_url) as r:
        return r.status


class AccountManager:
    def __init__(self, settings: Settings, producer: Producer):
        self.settings = settings
        self.producer = producer
        self.box = SecretBox.from_settings(settings)
        self.pool = AccountPool(settings, self.box)
        self.owner = False
        self.loop = ConsumerLoop(
            settings,
            POOL.name,
            POOL.inputs,
            self._handle,
            producer,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            batch_timeout_ms=50,
        )
        self._stop = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._proxy_checks_due = 0.0

    def stop(self) -> None:
        self._stop.set()
        self.loop.stop()

    # --- ownership ----------------------------------------------------------------------------

    async def _on_assign(self, tps) -> None:
        accounts = TopicTable(self.settings, ACCOUNT_STATE)
        proxies = TopicTable(self.settings, PROXY_STATE)
        try:
            await accounts.start()
            await proxies.start()
            await accounts.wait_caught_up()
            await proxies.wait_caught_up()
        finally:
            await accounts.stop()
            await proxies.stop()
        self.pool = AccountPool(self.settings, self.box)
        self.pool.load(
            [a for a in accounts.rows.values() if isinstance(a, AccountState)],
            [p for p in proxies.rows.values() if isinstance(p, ProxyState)],
        )
        self.owner = True
        log.info(
            "account-manager owns the pool: %d accounts, %d proxies",
            len(self.pool.accounts),
            len(self.pool.proxies),
        )
        await self._bootstrap_accounts()

    async def _on_revoke(self, tps) -> None:
        self.owner = False

    async def _bootstrap_accounts(self) -> None:
        """XGET_X_ACCOUNTS entries the pool does not know yet become `add` commands."""
        from .admin import parse_cookie_entries

        spec = self.settings.x_accounts.get_secret_value()
        if not spec:
            return
        now = datetime.now(UTC)
        outs = []
        for name, creds in parse_cookie_entries(spec):
            aid = name.lower()
            if aid in self.pool.accounts:
                continue
            outs.append(
                Outgoing(
                    ACCOUNT_COMMANDS,
                    aid,
                    AccountCommand(
                        command_id=uuid.uuid4().hex,
                        action="add",
                        account_id=aid,
                        name=name,
                        secrets=self.box.seal(creds),
                        requested_at=now,
                    ),
                )
            )
        if outs:
            await self.producer.send_all(outs)
            log.info("bootstrap: %d account(s) from XGET_X_ACCOUNTS", len(outs))

    # --- the pool's inputs ----------------------------------------------------------------------

    async def _handle(self, batch: list[Incoming]) -> list[Outgoing]:
        if not self.owner:
            return []
        return self.pool.handle([i.record for i in batch])

    async def _send(self, outs: list[Outgoing]) -> None:
        if outs:
            async with self._send_lock:
                await self.producer.send_all(outs)

    async def _ticker(self) -> None:
        while not self._stop.is_set():
            if self.owner:
                try:
                    await self._send(self.pool.tick())
                    observe_accounts(self.pool.accounts.values())
                    observe_proxies(self.pool.proxies.values())
                except Exception:
                    log.exception("tick failed")
            await asyncio.sleep(TICK_S)

    # --- slow work ------------------------------------------------------------------------------

    async def _worker(self) -> None:
        while not self._stop.is_set():
            try:
                await self._work_once()
            except Exception:
                log.exception("account-manager work failed")
            await asyncio.sleep(0.2)

    async def _work_once(self) -> None:
        if not self.owner:
            return
        w = self.pool.work
        self.pool.due_logins(time.time())
        for aid in self.pool.due_checks(time.time()):
            if self.owner and aid in self.pool.accounts:
                event = await self._check_account(aid)
                await self._send(self.pool.checked(aid, event))
        if time.time() >= self._proxy_checks_due:
            self._proxy_checks_due = time.time() + self.settings.proxy_check_interval_s
            # A disabled proxy carries nothing, checks included, until it is enabled.
            w.proxy_checks.update(pid for pid, p in self.pool.proxies.items() if not p.disabled)
        if w.proxy_checks:
            ids, w.proxy_checks = list(w.proxy_checks), set()
            results = await asyncio.gather(*(self._check_proxy(pid) for pid in ids))
            for pid, (ok, latency, err) in zip(ids, results, strict=False):
                await self._send(self.pool.proxy_checked(pid, ok, latency, err))
        while w.tests:
            aid, command_id = w.tests.pop(0)
            if aid in self.pool.accounts:
                event = await self._test_account(aid)
                await self._send(self.pool.tested(aid, command_id, event))
        if w.logins:
            aid = sorted(w.logins)[0]
            w.logins.discard(aid)
            if aid in self.pool.accounts:
                await self._login(aid)

    async def _check_proxy(self, proxy_id: str) -> tuple[bool, float | None, str | None]:
        p = self.pool.proxies.get(proxy_id)
        if p is None or not p.secrets:
            return False, None, "no such proxy"
        url = self.box.open(p.secrets)
        t0 = time.perf_counter()
        try:
            status = await check_through(url, self.settings.proxy_check_url)
            ok = status < 500
            return ok, (time.perf_counter() - t0) * 1000, None if ok else f"HTTP {status}"
        except Exception as e:  # noqa: BLE001 - any failure is a failed check
            return False, None, f"{type(e).__name__}: {e}"[:300]

    async def _test_account(self, account_id: str) -> AccountEvent:
        creds, proxy_url = self.pool.credentials(account_id)
        now = datetime.now(UTC)
        if not creds.get("auth_token"):
            return AccountEvent(
                event_id=uuid.uuid4().hex,
                account_id=account_id,
                operation="SearchTimeline",
                outcome="auth_failed",
                error="no cookies",
                at=now,
                requester=SERVICE,
            )
        client = XClient(self.settings)
        try:
            r = await client.search_page(
                XAccount(account_id, creds["auth_token"], creds["ct0"], proxy_url),
                self.settings.account_test_query,
                None,
                count=1,
            )
        finally:
            await client.aclose()
        return event_for(
            account_id, "SearchTimeline", r, None, SERVICE, self.pool.accounts[account_id].proxy_id
        )

    async def _check_account(self, account_id: str) -> AccountEvent:
        """The scheduled check of an idle account: its own profile (pool.CHECK_OPERATION)."""
        creds, proxy_url = self.pool.credentials(account_id)
        a = self.pool.accounts[account_id]
        client = XClient(self.settings)
        try:
            r = await client.user_by_screen_name(
                XAccount(
                    account_id, creds.get("auth_token") or "", creds.get("ct0") or "", proxy_url
                ),
                a.name,
            )
        finally:
            await client.aclose()
        return event_for(account_id, CHECK_OPERATION, r, None, SERVICE, a.proxy_id)

    async def _login(self, account_id: str) -> None:
        creds, proxy_url = self.pool.credentials(account_id)
        name = self.pool.accounts[account_id].name
        log.info("logging %s in through %s", account_id, self.settings.x_login_url)
        try:
            cookies, expires_at = await login_flow.login(self.settings, name, creds, proxy_url)
            outs = self.pool.logged_in(account_id, cookies, None, expires_at)
        except Exception as e:  # noqa: BLE001 - every failure is reported on the account
            outs = self.pool.logged_in(account_id, None, f"{type(e).__name__}: {e}"[:300])
        await self._send(outs)

    # --- run ------------------------------------------------------------------------------------

    async def run(self) -> None:
        from .admin_api import AdminServer

        admin = AdminServer(self.settings, self.producer, self.box)
        await admin.start()
        tasks = [
            asyncio.create_task(self._ticker(), name="am-ticker"),
            asyncio.create_task(self._worker(), name="am-worker"),
        ]
        try:
            await self.loop.run()
        finally:
            self._stop.set()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await admin.stop()
