"""Accounts and proxies through the gateway: `/api/v1/admin/accounts…` and
`/api/v1/admin/proxies…` are forwarded, by path, to the account-manager's admin API
(services/account_manager/admin_api.py, at XGET_ACCOUNT_ADMIN_URL or
account_admin_host:account_admin_port) with the API token, so an endpoint added there (enable,
disable, tags, …) works here without a change.

The role is the gateway's (console_auth: reads viewer+, changes operator+). Secrets are
write-only: an account or proxy may be added with cookies, passwords or a proxy URL with
credentials, but no answer carries one back. Every JSON answer is cleaned (`strip_secrets`),
an answer that is not JSON is refused (502) rather than passed on unread, and the upstream's
Set-Cookie and other headers are dropped (but a list's X-Total-Count).
"""

from __future__ import annotations

import re
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpx
from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse

from libs.settings import Settings

from .api_models import AccountOut, ProxyOut
from .paging import PAGE_HEADERS_DOC, TOTAL_HEADER
from .unavailable import DependencyUnavailable

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
PREFIXES = ("accounts", "proxies")
# The design's lists (List[AccountResponse], List[ProxyResponse]), documented here as the
# account-manager answers them; the answer itself is passed on, not re-validated.
LIST_MODELS: dict[str, Any] = {"accounts": list[AccountOut], "proxies": list[ProxyOut]}
# A key that names a secret (cookies, passwords, tokens, TOTP seeds, proxy URLs, keys).
SECRET_KEY = re.compile(
    r"(password|passwd|secret|token|cookie|ct0|totp|api_?key|authorization|proxy_url|credential)",
    re.I,
)
_URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.I)
FORWARDED_REQUEST_HEADERS = ("content-type", "accept")
# The one answer header passed back: a list's length (the upstream's other headers stay there).
FORWARDED_RESPONSE_HEADERS = ("x-total-count",)


def strip_secrets(value: Any) -> Any:
    """The value without any key that names a secret (a boolean such as `has_password` says
    whether there is one and stays), and with credentials cut out of URLs in strings."""
    if isinstance(value, dict):
        return {
            k: strip_secrets(v)
            for k, v in value.items()
            if not (SECRET_KEY.search(str(k)) and not isinstance(v, bool))
        }
    if isinstance(value, list):
        return [strip_secrets(v) for v in value]
    if isinstance(value, str):
        return cut_url_credentials(value)
    return value


def cut_url_credentials(text: str) -> str:
    """`scheme://user:password@host` -> `scheme://host`, wherever it occurs in `text`."""
    return _URL_USERINFO.sub(lambda m: m["scheme"], text) if "@" in text else text


def admin_base_url(settings: Settings) -> str:
    """The account-manager's admin API (the one place its address is worked out)."""
    url = settings.account_admin_url or (
        f"http://{settings.account_admin_host}:{settings.account_admin_port}"
    )
    return url.rstrip("/")


def create_router(settings: Settings) -> APIRouter:
    r = APIRouter(tags=["accounts and proxies"])
    base = admin_base_url(settings)
    token = settings.api_token.get_secret_value()
    # A test or refresh waits for X (a login can take a minute and a half upstream).
    # One client serves every caller, so it keeps no cookie: one the upstream set would
    # otherwise be sent back with everyone's later requests (a policy that allows no domain).
    client = httpx.AsyncClient(
        timeout=httpx.Timeout(120.0, connect=5.0),
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
    )

    async def forward(request: Request) -> JSONResponse:
        # The query string goes on verbatim: the account-manager declares and checks it.
        url = base + request.url.path + (f"?{request.url.query}" if request.url.query else "")
        headers = {h: request.headers[h] for h in FORWARDED_REQUEST_HEADERS if h in request.headers}
        headers["authorization"] = f"Bearer {token}"
        try:
            up = await client.request(
                request.method, url, content=await request.body(), headers=headers
            )
        except httpx.HTTPError as e:
            raise DependencyUnavailable(
                "account-manager", type(e).__name__, f"{type(e).__name__}: {e}"
            ) from e
        if up.status_code == 401:  # the token is the gateway's, not the caller's
            raise DependencyUnavailable(
                "account-manager", "it refused the gateway's token (XGET_API_TOKEN differs)"
            )
        try:
            body = up.json() if up.content else None
        except ValueError:
            return JSONResponse(
                {
                    "status": "error",
                    "detail": f"the account-manager answered {up.status_code} with a body that "
                    "is not JSON; not passed on",
                },
                502,
            )
        passed = {h: up.headers[h] for h in FORWARDED_RESPONSE_HEADERS if h in up.headers}
        return JSONResponse(strip_secrets(body), up.status_code, headers=passed)

    async def forward_sub(
        request: Request, rest: str = Path(max_length=settings.api_max_string_length)
    ) -> JSONResponse:
        return await forward(request)

    for prefix in PREFIXES:
        for path in (f"/api/v1/admin/{prefix}", f"/api/v1/admin/{prefix}/{{rest:path}}"):
            for method in METHODS:
                sub = "rest" in path
                listing = not sub and method == "GET"
                r.add_api_route(
                    path,
                    forward_sub if sub else forward,
                    methods=[method],
                    name=f"forward_{prefix}{'_sub' if sub else ''}_{method.lower()}",
                    summary=f"{prefix} (forwarded to the account-manager's admin API)",
                    description="Forwarded by path with the API token; GET needs viewer, any "
                    "other method operator. Answers never carry a secret (cookies, passwords, "
                    "tokens, proxy credentials).",
                    openapi_extra={"x-xget-forwarded": True},
                    responses=(
                        {
                            200: {
                                "model": LIST_MODELS[prefix],
                                "description": f"The design's {prefix} list (bare), with "
                                "its length in X-Total-Count.",
                                "headers": {TOTAL_HEADER: PAGE_HEADERS_DOC[TOTAL_HEADER]},
                            }
                        }
                        if listing
                        else None
                    ),
                )
    return r
