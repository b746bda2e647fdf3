"""Page-level X client (search, Following, Retweeters, UserByScreenName) on twscrape 0.20.1's building blocks.

XGet's scraper persists every page before asking for the next and resumes from a stored
cursor, so it needs one request -> one classified page, not twscrape's generator. This module
reuses twscrape's bearer token, request headers (as `Account.make_client` builds them),
GQL_FEATURES, `encode_params`, the variables of `API.search_raw`, its entry filter
(`API._gql_entries`), cursor lookup (`API._get_cursor`) and the error classification of
`QueueClient._check_rep`, and sends with one keep-alive aiohttp session per account.

Why aiohttp and not twscrape's httpx for the requests: a search page costs the scraper about
2.8 ms of CPU through httpx (its pure-Python URL validation of the 2.7 KB query, h11's header
parsing, cookie plumbing) and about 1.0 ms through aiohttp's C parser, measured side by side
against the simulator; the scraper spends more CPU on this than on anything else. Account
proxies: http(s):// through aiohttp itself, socks5:// and socks5h:// through aiohttp-socks.

Cookies and tokens are never logged and never shown in reprs.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode, urlparse

import aiohttp
import aiohttp_socks
import certifi
import orjson
import python_socks
from aiohttp.helpers import get_env_proxy_for_url
from twscrape.account import TOKEN
from twscrape.api import GQL_FEATURES
from twscrape.utils import encode_params, find_obj, get_by_path
from yarl import URL

from libs import metrics, tracing
from libs.settings import Settings
from libs.x_page_summary import SKIP_ENTRY_PREFIXES, summarize

log = logging.getLogger(__name__)

Outcome = Literal[
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

USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
# A plausible x-client-transaction-id (94 base64 chars, like X's web client sends).
STATIC_TRANSACTION_ID = (
    "9q2mLyViqx8ZDvgNqw2uy9cbq3Y3nRTB1obxzBTRJXUxKYAZ2qZ1f8QxhQxvwSBOR0DaQ5ar0PmG65qfoGcuMrk1omI9yw"
)


@dataclass(frozen=True)
class XAccount:
    name: str
    auth_token: str = field(repr=False)
    ct0: str = field(repr=False)
    proxy: str | None = field(default=None, repr=False)

    @property
    def cookies(self) -> dict[str, str]:
        return {"auth_token": self.auth_token, "ct0": self.ct0}


@dataclass
class PageResult:
    outcome: Outcome
    http_status: int | None
    body: str | None  # verbatim response text
    entries: int  # content entries (twscrape's _gql_entries filter)
    cursor_out: str | None  # Bottom cursor (twscrape's _get_cursor)
    exhausted: bool  # ok and entries == 0 and (cursor_out is None or == cursor_in)
    rate_limit_limit: int | None
    rate_limit_remaining: int | None
    rate_limit_reset: int | None
    error: str | None
    elapsed_ms: float

    def __repr__(self) -> str:  # keep the body out of logs
        return (
            f"PageResult(outcome={self.outcome!r}, http_status={self.http_status}, "
            f"entries={self.entries}, cursor_out={self.cursor_out!r}, "
            f"exhausted={self.exhausted}, remaining={self.rate_limit_remaining}, "
            f"error={self.error!r}, elapsed_ms={self.elapsed_ms:.1f})"
        )


# --- twscrape's parsing helpers, as module functions (API's are instance methods) -------------


def _search_instructions(obj: dict) -> list | None:
    """SearchTimeline's instructions by their known path; None for any other shape.

    twscrape's helpers search the whole document recursively (find_obj, get_by_path), which
    was the scraper's largest cost per page; the direct path gives the same answers."""
    try:
        insts = obj["data"]["search_by_raw_query"]["search_timeline"]["timeline"]["instructions"]
    except (KeyError, TypeError):
        return None
    return insts if isinstance(insts, list) else None


def gql_entries(obj: Any) -> list:
    """twscrape API._gql_entries: entries minus cursors and non-content modules."""
    if not isinstance(obj, dict):
        return []
    insts = _search_instructions(obj)
    els = None
    if insts is not None:
        els = next(
            (
                i["entries"]
                for i in insts
                if isinstance(i, dict) and isinstance(i.get("entries"), list)
            ),
            None,
        )
    if els is None:
        els = get_by_path(obj, "entries") or get_by_path(obj, "items_results") or []
    if els and isinstance(els[0], dict) and "entryId" in els[0]:
        els = [x for x in els if not str(x.get("entryId", "")).startswith(SKIP_ENTRY_PREFIXES)]
    return els


def get_cursor(obj: Any, cursor_type: str = "Bottom") -> str | None:
    """twscrape API._get_cursor."""
    if not isinstance(obj, dict):
        return None
    insts = _search_instructions(obj)
    if insts is not None:
        for inst in insts:
            if not isinstance(inst, dict):
                continue
            entries = inst.get("entries") or ([inst["entry"]] if "entry" in inst else [])
            for e in entries:
                content = e.get("content") if isinstance(e, dict) else None
                if isinstance(content, dict) and content.get("cursorType") == cursor_type:
                    value = content.get("value")
                    return value if isinstance(value, str) else None
    cur = find_obj(obj, lambda x: x.get("cursorType") == cursor_type)
    value = cur.get("value") if cur else get_by_path(obj, "next_cursor")
    return value if isinstance(value, str) else None


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    v = headers.get(name)
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


def _errors(res: Any) -> list[tuple[int, str]]:
    if not isinstance(res, dict) or not isinstance(res.get("errors"), list):
        return []
    out = []
    for e in res["errors"]:
        if isinstance(e, dict):
            try:
                code = int(e.get("code", -1))
            except (TypeError, ValueError):
                code = -1
            out.append((code, str(e.get("message", ""))))
    return out


def has_data(res: Any) -> bool:
    data = res.get("data") if isinstance(res, dict) else None
    return isinstance(data, dict) and any(v is not None for v in data.values())


def classify(status: int, headers: Mapping[str, str], text: str, cursor_in: str | None) -> dict:
    """QueueClient._check_rep's decisions, as an outcome instead of pool side effects."""
    out: dict[str, Any] = {"entries": 0, "cursor_out": None, "exhausted": False, "error": None}
    ctype = headers.get("content-type", "")
    remaining = _int_header(headers, "x-rate-limit-remaining")
    reset = _int_header(headers, "x-rate-limit-reset")

    if "text/html" in ctype and status >= 400:
        src = "Cloudflare" if "cf-ray" in headers else "HTML"
        return {**out, "outcome": "blocked", "error": f"blocked by {src}: HTTP {status}"}

    # The common case, a SearchTimeline page, is read through a skeleton (see
    # libs/x_page_summary); anything it cannot answer exactly goes the generic way.
    summary = summarize(text) if status == 200 and text else None
    if summary is not None:
        res, parsed, data = None, True, True
        errors = summary.errors
    else:
        try:
            res = orjson.loads(text) if text else None
            parsed = True
        except orjson.JSONDecodeError:
            res, parsed = None, False
        errors = _errors(res)
        data = has_data(res)
    codes = {c for c, _ in errors}
    err_msg = "; ".join(f"({c}) {m}" for c, m in errors) or None

    if status == 429 or (88 in codes and not data):
        return {**out, "outcome": "rate_limited", "error": err_msg or f"HTTP {status} rate limited"}
    if remaining == 0 and reset is not None and reset > 0 and status != 200:
        return {**out, "outcome": "rate_limited", "error": err_msg or "rate limit exhausted"}
    if 64 in codes or 326 in codes:
        return {**out, "outcome": "suspended", "error": err_msg}
    if 32 in codes or status == 401:
        return {**out, "outcome": "auth_failed", "error": err_msg or f"HTTP {status}"}
    if status == 403:
        # twscrape: "Session expired or banned"
        return {**out, "outcome": "auth_failed", "error": err_msg or "HTTP 403 without errors"}
    if status >= 500:
        return {**out, "outcome": "server_error", "error": err_msg or f"HTTP {status}"}
    if status != 200:
        return {**out, "outcome": "server_error", "error": err_msg or f"HTTP {status}"}
    if summary is not None:
        entries, cursor_out = summary.entries, summary.cursor
    else:
        if not parsed or not isinstance(res, dict):
            return {**out, "outcome": "malformed", "error": "response is not a JSON object"}
        if not data:
            if any(c == -1 or "LoadShed" in m for c, m in errors):
                return {**out, "outcome": "server_error", "error": err_msg}
            return {**out, "outcome": "malformed", "error": err_msg or "response has no data"}
        entries = len(gql_entries(res))
        cursor_out = get_cursor(res, "Bottom")
    exhausted = entries == 0 and (cursor_out is None or cursor_out == cursor_in)
    return {
        "outcome": "ok",
        "entries": entries,
        "cursor_out": cursor_out,
        "exhausted": exhausted,
        "error": err_msg,
    }


def observe_x_request(operation: str, outcome: str, seconds: float) -> None:
    metrics.X_REQUESTS.labels(operation, outcome).inc()
    metrics.X_REQUEST_SECONDS.labels(operation).observe(seconds)


def _decode_body(raw: bytes, charset: str | None) -> str:
    """The response text as httpx gives it: the declared charset, else UTF-8; bad bytes are
    replaced, never an exception."""
    try:
        return raw.decode(charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return raw.decode("utf-8", errors="replace")


# "The proxy failed", not X: aiohttp's own, aiohttp-socks' and python-socks' (from deeper down)
PROXY_ERRORS: tuple[type[BaseException], ...] = (
    aiohttp.ClientProxyConnectionError,
    aiohttp.ClientHttpProxyError,
    aiohttp_socks.ProxyError,
    aiohttp_socks.ProxyConnectionError,
    aiohttp_socks.ProxyTimeoutError,
    python_socks.ProxyError,
    python_socks.ProxyConnectionError,
    python_socks.ProxyTimeoutError,
)


def _env_proxy(url: str) -> URL | None:
    """The proxy HTTP(S)_PROXY/NO_PROXY (and ~/.netrc for its credentials) give for `url`,
    as httpx's trust_env would use it when an account has no proxy of its own."""
    try:
        proxy, auth = get_env_proxy_for_url(URL(url))
    except LookupError:
        return None
    # credentials back into the URL, the way an account's own proxy carries them
    return proxy if auth is None else proxy.with_user(auth.login).with_password(auth.password)


class XClient:
    def __init__(self, settings: Settings, *, method: Literal["GET", "POST"] = "GET"):
        self.settings = settings
        self.method = method.upper()
        self.base_url = settings.x_graphql_url.rstrip("/")
        self.op = settings.x_op_search_timeline.strip("/")
        self.url = f"{self.base_url}/{self.op}"
        self.path = urlparse(self.url).path or "/"
        self._sessions: dict[tuple[str, str, str | None], aiohttp.ClientSession] = {}
        self._lock = asyncio.Lock()
        self._ssl: ssl.SSLContext | None = None

    # --- plumbing -----------------------------------------------------------------------------

    def _headers(self, account: XAccount) -> dict[str, str]:
        # as twscrape Account.make_client builds them
        return {
            "user-agent": USER_AGENT,
            "content-type": "application/json",
            "authorization": TOKEN,
            "x-twitter-active-user": "yes",
            "x-twitter-client-language": "en",
            "x-csrf-token": account.ct0,
        }

    def _ssl_context(self) -> ssl.SSLContext:
        # One context for every account (loading the CA bundle costs ~20 ms), with the same
        # CA bundle httpx uses.
        if self._ssl is None:
            self._ssl = ssl.create_default_context(cafile=certifi.where())
        return self._ssl

    def _new_session(self, account: XAccount) -> aiohttp.ClientSession:
        t = self.settings.x_request_timeout_s
        proxy = account.proxy
        scheme = urlparse(proxy).scheme.lower() if proxy else ""
        session_proxy: str | URL | None = None
        if proxy and scheme.startswith("socks"):
            # socks5h: the proxy resolves X's host name (rdns), as httpx/socksio does;
            # aiohttp-socks knows the scheme only as socks5 with rdns=True.
            url = f"socks5{proxy[len(scheme) :]}" if scheme == "socks5h" else proxy
            connector: aiohttp.BaseConnector = aiohttp_socks.ProxyConnector.from_url(
                url, rdns=scheme == "socks5h", ssl=self._ssl_context(), limit=16
            )
        else:
            connector = aiohttp.TCPConnector(
                ssl=self._ssl_context(), limit=16, keepalive_timeout=5.0
            )
            session_proxy = proxy or _env_proxy(self.base_url)
        return aiohttp.ClientSession(
            headers=self._headers(account),
            cookies=account.cookies,
            # unsafe: keep cookies for IP-address hosts too (a simulator, a test server)
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            connector=connector,
            proxy=session_proxy,
            timeout=aiohttp.ClientTimeout(total=t, sock_connect=min(t, 10.0)),
            auto_decompress=True,
            # Not trust_env: aiohttp would read the environment and ~/.netrc again on every
            # request, in two thread-pool hops (about 1 ms of CPU a page in bench/pipeline).
            # The environment's proxy is resolved once, above, instead.
            trust_env=False,
        )

    async def _client(self, account: XAccount) -> aiohttp.ClientSession:
        key = (account.name, account.auth_token, account.proxy)
        session = self._sessions.get(key)
        if session is None:
            async with self._lock:
                session = self._sessions.get(key)
                if session is None:
                    session = self._sessions[key] = self._new_session(account)
        return session

    async def _transaction_id(self, account: XAccount, method: str, path: str) -> str:
        if self.settings.x_transaction_id == "static":
            return STATIC_TRANSACTION_ID
        from twscrape.queue_client import XClIdGenStore

        gen = await XClIdGenStore.get(account.name, proxy=account.proxy, cookies=account.cookies)
        return gen.calc(method, path)

    def _params(self, query: str, cursor: str | None, product: str, count: int | None) -> dict:
        variables: dict[str, Any] = {
            "rawQuery": query,
            "count": count or self.settings.x_page_size,
            "product": product,
            "querySource": "typed_query",
        }
        if cursor is not None:
            variables["cursor"] = cursor
        return {
            "variables": variables,
            "features": dict(GQL_FEATURES),
            "fieldToggles": {"withArticleRichContentState": False},
        }

    # --- API ----------------------------------------------------------------------------------

    async def search_page(
        self,
        account: XAccount,
        query: str,
        cursor: str | None,
        product: str = "Latest",
        count: int | None = None,
    ) -> PageResult:
        params = self._params(query, cursor, product, count)
        return await self._page(account, self.op, params, cursor, self.method)

    async def following_page(
        self, account: XAccount, user_id: str, cursor: str | None, count: int = 20
    ) -> PageResult:
        """One page of the users `user_id` follows (variables as twscrape's following_raw)."""
        return await self._list_page(
            account,
            self.settings.x_op_following,
            {"userId": str(user_id), "count": count, "includePromotedContent": False},
            cursor,
        )

    async def retweeters_page(
        self, account: XAccount, tweet_id: str, cursor: str | None, count: int = 20
    ) -> PageResult:
        """One page of the accounts that retweeted `tweet_id` (variables as twscrape's
        retweeters_raw)."""
        return await self._list_page(
            account,
            self.settings.x_op_retweeters,
            {"tweetId": str(tweet_id), "count": count, "includePromotedContent": True},
            cursor,
        )

    async def _list_page(
        self, account: XAccount, op: str, variables: dict[str, Any], cursor: str | None
    ) -> PageResult:
        """One page of a user list operation (GET, paged by the Bottom cursor)."""
        if cursor is not None:
            variables = {**variables, "cursor": cursor}
        params = {"variables": variables, "features": dict(GQL_FEATURES)}
        return await self._page(account, op.strip("/"), params, cursor, "GET")

    async def user_by_screen_name(self, account: XAccount, screen_name: str) -> PageResult:
        params = {
            "variables": {"screen_name": screen_name, "withSafetyModeUserFields": True},
            "features": dict(GQL_FEATURES),
        }
        return await self._page(
            account, self.settings.x_op_user_by_screen_name.strip("/"), params, None, "GET"
        )

    async def _page(
        self, account: XAccount, op: str, params: dict, cursor: str | None, method: str
    ) -> PageResult:
        """Send one GraphQL request and classify X's answer (in a span of its own)."""
        with tracing.span(
            f"X {op.rsplit('/', 1)[-1]}",
            **{"xget.account": account.name, "http.request.method": method},
        ) as sp:
            result = await self._page_untraced(account, op, params, cursor, method)
            sp.set_attribute("xget.outcome", result.outcome)
            sp.set_attribute("xget.entries", result.entries)
            if result.http_status is not None:
                sp.set_attribute("http.response.status_code", result.http_status)
            return result

    async def _page_untraced(
        self, account: XAccount, op: str, params: dict, cursor: str | None, method: str
    ) -> PageResult:
        t0 = time.perf_counter()
        url = f"{self.base_url}/{op}"
        name = op.rsplit("/", 1)[-1]

        def fail(outcome: Outcome, error: str, status: int | None = None) -> PageResult:
            observe_x_request(name, outcome, time.perf_counter() - t0)
            return PageResult(
                outcome,
                status,
                None,
                0,
                None,
                False,
                None,
                None,
                None,
                error,
                (time.perf_counter() - t0) * 1000,
            )

        try:
            session = await self._client(account)
            tx = await self._transaction_id(account, method, urlparse(url).path or "/")
            hdr = {"x-client-transaction-id": tx}
            if method == "GET":
                # Encoded once here; yarl takes it as is (encoded=True) instead of re-parsing.
                target = URL(f"{url}?{urlencode(encode_params(params))}", encoded=True)
                request = session.get(target, headers=hdr, allow_redirects=False)
            else:
                body = {**params, "queryId": op.split("/")[0]}
                request = session.post(
                    url, data=orjson.dumps(body), headers=hdr, allow_redirects=False
                )
            async with request as rep:
                raw = await rep.read()
                status, headers = rep.status, rep.headers
                text = _decode_body(raw, rep.charset)
        except TimeoutError as e:
            return fail("network_error", f"timeout: {type(e).__name__}")
        except PROXY_ERRORS as e:
            return fail("proxy_error", f"{type(e).__name__}: {e}")
        except aiohttp.ClientError as e:
            # Through a proxy, failing to connect is the proxy's fault.
            if account.proxy and isinstance(e, aiohttp.ClientConnectorError):
                return fail("proxy_error", f"{type(e).__name__}: {e}")
            return fail("network_error", f"{type(e).__name__}: {e}")
        except Exception as e:  # noqa: BLE001 - transaction-id generation (XClIdGen) and the like: the account's request failed, the slice goes on
            log.warning("x request failed for account %s: %s", account.name, type(e).__name__)
            return fail("network_error", f"{type(e).__name__}: {e}")

        c = classify(status, headers, text, cursor)
        observe_x_request(name, c["outcome"], time.perf_counter() - t0)
        if c["outcome"] != "ok":
            log.info(
                "x %s account=%s status=%s outcome=%s",
                op.rsplit("/", 1)[-1],
                account.name,
                status,
                c["outcome"],
            )
        return PageResult(
            outcome=c["outcome"],
            http_status=status,
            body=text,
            entries=c["entries"],
            cursor_out=c["cursor_out"],
            exhausted=c["exhausted"],
            rate_limit_limit=_int_header(headers, "x-rate-limit-limit"),
            rate_limit_remaining=_int_header(headers, "x-rate-limit-remaining"),
            rate_limit_reset=_int_header(headers, "x-rate-limit-reset"),
            error=c["error"],
            elapsed_ms=(time.perf_counter() - t0) * 1000,
        )

    async def aclose(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()
