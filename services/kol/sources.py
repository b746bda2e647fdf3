"""Where followings come from: X's Following operation (account pool) or a paid REST API.

A source makes one call and classifies the answer; it never parses users (that happens only
after the answer is in the cache). `fatal` outcomes (a wrong API key, no credit left) stop
the whole run: retrying cannot help and would only spend.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlencode

import httpx
import orjson

from libs.account_pool import AccountSource
from libs.kafka import Producer
from libs.leases import LeaseClient
from libs.settings import Settings
from libs.xclient import PageResult, XAccount, XClient

FATAL = {"auth_failed", "payment_required"}
X_FOLLOWING = "Following"
X_LOOKUP = "UserByScreenName"


@dataclass
class Answer:
    outcome: str
    http_status: int | None
    body: str | None
    error: str | None
    elapsed_ms: float
    account: str | None = None


class SourceError(RuntimeError):
    """The source cannot be used at all (no API key, no accounts)."""


class FollowingsSource(Protocol):
    name: str
    billed: bool  # calls cost money (estimated cost is shown)

    async def followings(self, kol_id: str, user_name: str, cursor: str | None) -> Answer: ...

    async def lookup(self, user_name: str) -> Answer: ...

    def describe(self, kol_id: str, user_name: str, cursor: str | None) -> str: ...

    async def aclose(self) -> None: ...


class ApiSource:
    """twitterapi.io style: GET {base}/twitter/user/followings?userName=&cursor=&pageSize=,
    header X-API-Key; calls are spaced by `kol_api_interval_s` across the whole run."""

    name = "api"
    billed = True

    def __init__(self, settings: Settings, api_key: str):
        if not api_key:
            raise SourceError("the api source needs an API key: --api-key KEY or XGET_KOL_API_KEY")
        self.base = settings.kol_api_base_url.rstrip("/")
        self.page_size = settings.kol_api_page_size
        self.interval = settings.kol_api_interval_s
        t = settings.x_request_timeout_s
        self._http = httpx.AsyncClient(
            base_url=self.base,
            headers={"X-API-Key": api_key, "accept": "application/json"},
            timeout=httpx.Timeout(t, connect=min(t, 10.0)),
            follow_redirects=False,
        )
        self._lock = asyncio.Lock()
        self._next_at = 0.0

    def _params(self, user_name: str, cursor: str | None) -> dict:
        p = {"userName": user_name, "pageSize": self.page_size}
        if cursor:
            p["cursor"] = cursor
        return p

    def describe(self, kol_id: str, user_name: str, cursor: str | None) -> str:
        return (
            f"GET {self.base}/twitter/user/followings?{urlencode(self._params(user_name, cursor))}"
        )

    async def followings(self, kol_id: str, user_name: str, cursor: str | None) -> Answer:
        return await self._get(
            "/twitter/user/followings", self._params(user_name, cursor), "followings"
        )

    async def lookup(self, user_name: str) -> Answer:
        return await self._get("/twitter/user/info", {"userName": user_name}, "data")

    async def _get(self, path: str, params: dict, want: str) -> Answer:
        async with self._lock:  # one spacing for the whole run, whatever the concurrency
            wait = self._next_at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._next_at = time.monotonic() + self.interval
        t0 = time.perf_counter()
        try:
            rep = await self._http.get(path, params=params)
        except httpx.HTTPError as e:
            return Answer(
                "network_error",
                None,
                None,
                f"{type(e).__name__}: {e}",
                (time.perf_counter() - t0) * 1000,
            )
        ms = (time.perf_counter() - t0) * 1000
        text = rep.text
        outcome, error = classify_api(rep.status_code, text, want)
        return Answer(outcome, rep.status_code, text, error, ms)

    async def aclose(self) -> None:
        await self._http.aclose()


def classify_api(status: int, text: str, want: str) -> tuple[str, str | None]:
    def message() -> str:
        try:
            doc = orjson.loads(text)
            return str(doc.get("message") or doc.get("msg") or doc.get("error") or "")[:300]
        except (orjson.JSONDecodeError, AttributeError):
            return text[:200]

    if status in (401, 403):
        return "auth_failed", f"HTTP {status}: {message() or 'API key rejected'}"
    if status == 402:
        return "payment_required", f"HTTP 402: {message() or 'no credit left'}"
    if status == 429:
        return "rate_limited", f"HTTP 429: {message()}"
    if status >= 500:
        return "server_error", f"HTTP {status}: {message()}"
    if status != 200:
        return "rejected", f"HTTP {status}: {message()}"
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        return "malformed", "answer is not JSON"
    if not isinstance(doc, dict) or doc.get("status") == "error":
        return "rejected", message() or "error status"
    if want == "followings" and not isinstance(doc.get("followings"), list):
        return "malformed", "no followings list"
    if want == "data" and not isinstance(doc.get("data"), dict):
        return "rejected", message() or "no user"
    return "ok", None


class XSource:
    """X's Following GraphQL operation with accounts from an AccountSource (the local pool
    today; the account-manager's leases can replace it without touching this class)."""

    name = "x"
    billed = False

    def __init__(self, settings: Settings, accounts: AccountSource, xclient: XClient):
        self.accounts = accounts
        self.xclient = xclient
        self.page_size = settings.kol_x_page_size
        self.op = settings.x_op_following

    def describe(self, kol_id: str, user_name: str, cursor: str | None) -> str:
        return f"X {self.op} userId={kol_id or '(lookup @' + user_name + ' first)'}" + (
            f" cursor={cursor}" if cursor else ""
        )

    async def followings(self, kol_id: str, user_name: str, cursor: str | None) -> Answer:
        account = await self.accounts.acquire(X_FOLLOWING)
        res = None
        try:
            res = await self.xclient.following_page(account, kol_id, cursor, self.page_size)
        finally:
            await _released(self.accounts.release(account, X_FOLLOWING, res))
        return Answer(
            res.outcome, res.http_status, res.body, res.error, res.elapsed_ms, account.name
        )

    async def lookup(self, user_name: str) -> Answer:
        account = await self.accounts.acquire(X_LOOKUP)
        res = None
        try:
            res = await self.xclient.user_by_screen_name(account, user_name)
        finally:
            await _released(self.accounts.release(account, X_LOOKUP, res))
        return Answer(
            res.outcome, res.http_status, res.body, res.error, res.elapsed_ms, account.name
        )

    async def aclose(self) -> None:
        await self.xclient.aclose()
        closer = getattr(self.accounts, "aclose", None)
        if closer is not None:
            await closer()


async def _released(r) -> None:
    if inspect.isawaitable(r):  # the lease client reports outcomes on Kafka
        await r


class ManagedAccounts:
    """Accounts leased from the account-manager (the pool every X-facing service shares, so
    the KOL job never pushes an account past X's limits while scrapers use it too)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._client: LeaseClient | None = None
        self._producer: Producer | None = None
        self._lock = asyncio.Lock()

    async def _leases(self) -> LeaseClient:
        async with self._lock:
            if self._client is None:
                self._producer = await Producer(self.settings, "kol-leases", linger_ms=0).start()
                self._client = await LeaseClient(self.settings, self._producer).start()
        return self._client

    async def acquire(self, op: str) -> XAccount:
        return await (await self._leases()).acquire(op)

    async def release(self, account: XAccount, op: str, result: PageResult | None) -> None:
        if self._client is not None:
            await self._client.release(account, op, result)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.stop()
        if self._producer is not None:
            await self._producer.stop()
        self._client = self._producer = None


def make_source(
    settings: Settings, api_key: str | None = None, accounts: AccountSource | None = None
) -> FollowingsSource:
    """The source the settings choose; for x, accounts are leased from the account-manager
    (or, with XGET_KOL_X_ACCOUNTS=local, taken straight from XGET_X_ACCOUNTS)."""
    if settings.kol_source == "api":
        return ApiSource(settings, api_key or settings.kol_api_key.get_secret_value())
    if accounts is None and settings.kol_x_accounts == "manager":
        accounts = ManagedAccounts(settings)
    if accounts is None:
        from libs.account_pool import LocalAccountPool, parse_accounts

        try:
            accounts = LocalAccountPool(parse_accounts(settings.x_accounts.get_secret_value()))
        except ValueError as e:
            raise SourceError(f"the x source needs accounts: {e}") from e
    return XSource(settings, accounts, XClient(settings))
