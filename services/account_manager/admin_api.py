"""Admin HTTP API of the account-manager (bearer XGET_API_TOKEN), on its own port
(XGET_ACCOUNT_ADMIN_PORT): its own router, so a gateway could mount it too.

  GET    /api/v1/admin/accounts                 list (never a secret); ?status=
  POST   /api/v1/admin/accounts                 add one {username, auth_token, ct0 | cookies |
                                                password, email, email_password, totp_secret}
  POST   /api/v1/admin/accounts/import          bulk: the body is an import file (text)
  GET    /api/v1/admin/accounts/{id}
  DELETE /api/v1/admin/accounts/{id}
  POST   /api/v1/admin/accounts/{id}/test       one search with the account; its outcome
  POST   /api/v1/admin/accounts/{id}/refresh    log in again (password accounts)
  POST   /api/v1/admin/accounts/{id}/disable    {reason}: no more leases; its state is kept
  POST   /api/v1/admin/accounts/{id}/enable     {reason}: leases again
  PATCH  /api/v1/admin/accounts/{id}            {priority, tags, daily_caps, hourly_caps}:
                                                answered once the leases granted under the
                                                old settings are back
  GET    /api/v1/admin/proxies                  list with health; ?status=
  POST   /api/v1/admin/proxies                  add {url, region, provider, cost_per_gb,
                                                expires_at}
  GET    /api/v1/admin/proxies/{id}             one, with its X request counts and latency
  DELETE /api/v1/admin/proxies/{id}
  POST   /api/v1/admin/proxies/{id}/test        check it now
  POST   /api/v1/admin/proxies/{id}/enable      carries requests again
  POST   /api/v1/admin/proxies/{id}/disable     {reason}: its accounts move to other proxies

The two lists answer a bare JSON list (the design's List[AccountResponse] and
List[ProxyResponse]) with its length in X-Total-Count, as the gateway's paged lists do.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

import uvicorn
from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from libs.kafka import Producer
from libs.records.accounts import AccountPriority
from libs.secretbox import SecretBox
from libs.settings import Settings
from libs.strict_params import reject_unknown

from .admin import (
    REVOKING,
    SECRET_KEYS,
    STILL_HELD,
    InputError,
    PoolAdmin,
    account_view,
    creds_from,
    parse_import,
    proxy_fields,
    proxy_view,
)

log = logging.getLogger(__name__)
APPLY_TIMEOUT_S = 15.0
LOGIN_TIMEOUT_S = 90.0
LEASES_BACK_TIMEOUT_S = 30.0


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, max_length=500, description="Why; shown with the account.")


class AccountSettings(BaseModel):
    """What an operator sets on an account; a field left out is unchanged."""

    model_config = ConfigDict(extra="forbid")

    priority: AccountPriority | None = Field(
        None, description="high, normal, low, or backup (used only when no other can serve)."
    )
    tags: list[str] | None = Field(None, description="Replaces the tags; tasks ask for one.")
    daily_caps: dict[str, int] | None = Field(
        None, description="Requests per UTC day per X operation, e.g. {'SearchTimeline': 500}."
    )
    hourly_caps: dict[str, int] | None = Field(
        None, description="Requests per UTC hour per X operation."
    )


class DisableProxy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, max_length=500, description="Shown with the proxy.")


# The fields each free-form body may carry (their values are checked by creds_from and
# proxy_fields); any other name is a 422 naming it, never dropped.
ACCOUNT_BODY = frozenset({"username", "name", *SECRET_KEYS})
PROXY_BODY = frozenset({"url", "region", "provider", "cost_per_gb", "expires_at"})


def check_fields(body: dict, allowed: frozenset[str]) -> None:
    unknown = sorted(k for k in body if k not in allowed)
    if unknown:
        raise HTTPException(
            422,
            [
                {
                    "field": k,
                    "message": f"unknown field; this body takes: {', '.join(sorted(allowed))}",
                }
                for k in unknown
            ],
        )


# The design's list filter (账号状态过滤 / 代理状态过滤): the views' `status`, exactly.
STATUS_FILTER = Query(None, min_length=1, max_length=32, description="Only this status.")
TOTAL_HEADER = "X-Total-Count"


def listed(response: Response, rows: list[dict], status: str | None) -> list[dict]:
    """The rows of `status` (all without one), their number in X-Total-Count."""
    rows = [v for v in rows if status is None or v["status"] == status]
    response.headers[TOTAL_HEADER] = str(len(rows))
    return rows


def create_router(admin: PoolAdmin, token: str) -> APIRouter:
    bearer = HTTPBearer(auto_error=False)

    def auth(creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if creds is None or not secrets.compare_digest(creds.credentials.encode(), token.encode()):
            raise HTTPException(
                401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
            )

    r = APIRouter(prefix="/api/v1/admin", dependencies=[Depends(auth)])

    def _account(account_id: str):
        a = admin.account(account_id)
        if a is None:
            raise HTTPException(404, f"no account {account_id}")
        return a

    @r.get("/accounts")
    async def list_accounts(response: Response, status: str | None = STATUS_FILTER):
        return listed(
            response,
            [account_view(a, admin.settings.x_rate_window_s) for a in admin.list_accounts()],
            status,
        )

    @r.post("/accounts", status_code=201)
    async def add_account(body: dict = Body(...)):
        check_fields(body, ACCOUNT_BODY)
        try:
            name, creds = creds_from(body)
        except InputError as e:
            raise HTTPException(422, str(e)) from None
        cid = await admin.add_account(name, creds)
        a = await admin.wait_account(name, cid, APPLY_TIMEOUT_S)
        if a is None:
            raise HTTPException(504, "the account-manager did not apply the command in time")
        return account_view(a, admin.settings.x_rate_window_s)

    @r.post("/accounts/import")
    async def import_accounts(request: Request):
        try:
            entries = parse_import((await request.body()).decode("utf-8", errors="replace"))
        except InputError as e:
            raise HTTPException(422, str(e)) from None
        for name, creds in entries:
            await admin.add_account(name, creds)
        return {"queued": [name.lower() for name, _ in entries]}

    @r.get("/accounts/{account_id}")
    async def get_account(account_id: str):
        return account_view(_account(account_id), admin.settings.x_rate_window_s)

    @r.delete("/accounts/{account_id}")
    async def remove_account(account_id: str):
        _account(account_id)
        await admin.account_action("remove", account_id)
        return {"removed": account_id.lower()}

    @r.post("/accounts/{account_id}/test")
    async def test_account(account_id: str):
        _account(account_id)
        cid = await admin.account_action("test", account_id)
        a = await admin.wait_account(account_id, cid, APPLY_TIMEOUT_S + 30)
        if a is None:
            raise HTTPException(504, "no test result in time")
        return {"id": a.account_id, "result": a.last_test, "status": a.status}

    @r.post("/accounts/{account_id}/refresh")
    async def refresh_account(account_id: str):
        if not _account(account_id).has_password:
            raise HTTPException(409, "the account has no password: add fresh cookies instead")
        cid = await admin.account_action("login", account_id)
        a = await admin.wait_account(account_id, cid, LOGIN_TIMEOUT_S)
        if a is None:
            raise HTTPException(504, "the login did not finish in time")
        return account_view(a, admin.settings.x_rate_window_s)

    async def _apply(account_id: str, action: str, **kw) -> dict:
        _account(account_id)
        cid = await admin.account_action(action, account_id, **kw)
        a = await admin.wait_account(account_id, cid, APPLY_TIMEOUT_S)
        if a is None:
            raise HTTPException(504, "the account-manager did not apply the command in time")
        if action in REVOKING:
            # Answered once the revoked leases are back: from then on nothing is sent with it
            # (disable), or nothing under its old tags and caps (set). Before, a scraper that
            # has not read the revoke yet may still use a lease granted under the old ones.
            back = await admin.wait_leases_back(account_id, LEASES_BACK_TIMEOUT_S)
            if back is None:
                raise HTTPException(504, f"{REVOKING[action]}, but {STILL_HELD}")
            a = back
        return account_view(a, admin.settings.x_rate_window_s)

    @r.post("/accounts/{account_id}/disable")
    async def disable_account(account_id: str, body: Reason | None = None):
        return await _apply(account_id, "disable", reason=body.reason if body else None)

    @r.post("/accounts/{account_id}/enable")
    async def enable_account(account_id: str, body: Reason | None = None):
        return await _apply(account_id, "enable", reason=body.reason if body else None)

    @r.patch("/accounts/{account_id}")
    async def set_account(account_id: str, body: AccountSettings):
        for field, caps in (("daily_caps", body.daily_caps), ("hourly_caps", body.hourly_caps)):
            if any(n < 0 for n in (caps or {}).values()):
                raise HTTPException(422, f"{field}: a cap is a number of requests, 0 or more")
        return await _apply(account_id, "set", **body.model_dump(exclude_none=True))

    @r.get("/proxies")
    async def list_proxies(response: Response, status: str | None = STATUS_FILTER):
        return listed(response, [proxy_view(p) for p in admin.list_proxies()], status)

    @r.post("/proxies", status_code=201)
    async def add_proxy(body: dict = Body(...)):
        check_fields(body, PROXY_BODY)
        try:
            pid, cid = await admin.add_proxy(str(body.get("url") or ""), **proxy_fields(body))
        except InputError as e:
            raise HTTPException(422, str(e)) from None
        p = await admin.wait_proxy(pid, cid, APPLY_TIMEOUT_S)
        if p is None:
            raise HTTPException(504, "the account-manager did not apply the command in time")
        return proxy_view(p)

    @r.get("/proxies/{proxy_id}")
    async def get_proxy(proxy_id: str):
        p = admin.proxy(proxy_id)
        if p is None:
            raise HTTPException(404, f"no proxy {proxy_id}")
        return proxy_view(p)

    async def _switch(proxy_id: str, action: str, reason: str | None) -> dict:
        try:
            cid = await admin.proxy_action(action, proxy_id, reason)
        except InputError as e:
            raise HTTPException(404, str(e)) from None
        p = await admin.wait_proxy(proxy_id, cid, APPLY_TIMEOUT_S)
        if p is None:
            raise HTTPException(504, "the account-manager did not apply the command in time")
        return proxy_view(p)

    @r.post("/proxies/{proxy_id}/enable")
    async def enable_proxy(proxy_id: str):
        return await _switch(proxy_id, "enable", None)

    @r.post("/proxies/{proxy_id}/disable")
    async def disable_proxy(proxy_id: str, body: DisableProxy | None = None):
        return await _switch(proxy_id, "disable", body.reason if body else None)

    @r.delete("/proxies/{proxy_id}")
    async def remove_proxy(proxy_id: str):
        try:
            await admin.proxy_action("remove", proxy_id)
        except InputError as e:
            raise HTTPException(404, str(e)) from None
        return {"removed": proxy_id}

    @r.post("/proxies/{proxy_id}/test")
    async def test_proxy(proxy_id: str):
        before = admin.proxy(proxy_id)
        if before is None:
            raise HTTPException(404, f"no proxy {proxy_id}")
        cid = await admin.proxy_action("test", proxy_id)
        checks = before.checks
        p = await admin.wait_proxy(
            proxy_id, cid, APPLY_TIMEOUT_S + 15, also=lambda p: p.checks > checks
        )
        if p is None:
            raise HTTPException(504, "no check result in time")
        return proxy_view(p)

    return r


class AdminServer:
    def __init__(self, settings: Settings, producer: Producer, box: SecretBox):
        self.settings = settings
        self.admin = PoolAdmin(settings, producer, box)
        # The same rule as the gateway's (which forwards here): unknown names are a 422.
        app = FastAPI(
            title="XGet account-manager admin", version="1", dependencies=[Depends(reject_unknown)]
        )
        app.include_router(create_router(self.admin, settings.api_token.get_secret_value()))
        self.app = app

        @app.get("/health")
        async def health():
            return {"status": "ok"}

        config = uvicorn.Config(
            app,
            host=settings.account_admin_host,
            port=settings.account_admin_port,
            log_level="warning",
            lifespan="off",
        )
        self.server = uvicorn.Server(config)
        # uvicorn's own hook, not in its type stubs: the process owns signals, not the server.
        self.server.install_signal_handlers = lambda: None  # type: ignore[attr-defined]
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        import asyncio

        await self.admin.start()
        self._task = asyncio.create_task(self.server.serve(), name="account-admin-api")
        log.info(
            "account admin API on http://%s:%d",
            self.settings.account_admin_host,
            self.settings.account_admin_port,
        )

    async def stop(self) -> None:
        self.server.should_exit = True
        if self._task is not None:
            try:
                await self._task
            except Exception:  # noqa: BLE001 - stopping: the server's end is logged by uvicorn
                pass
        await self.admin.stop()
