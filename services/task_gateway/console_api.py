"""Console API: sign-in, users (admin), the audit log, the effective settings and service logs.

POST   /api/v1/auth/login            {username, password} -> cookie + {username, role, csrf_token}
GET    /api/v1/auth/me               {username, role, csrf_token} (401 without a session)
POST   /api/v1/auth/logout           ends the session (any replica refuses it afterwards)
GET    /api/v1/admin/users           admin
POST   /api/v1/admin/users           admin {username, role, password}
PATCH  /api/v1/admin/users/{name}    admin {role?, password?, disabled?, unlock?}
DELETE /api/v1/admin/users/{name}    admin
GET    /api/v1/admin/audit           operator+ ?limit&offset, newest first
GET    /api/v1/admin/settings        admin: effective configuration, secrets masked
GET    /api/v1/admin/logs            operator+ ?limit&offset: WARNING+ of every service
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from libs.records.console import AuditEntry, ServiceLog
from libs.settings import Settings
from libs.topics import CONSOLE_AUDIT, SERVICE_LOGS

from .audit import read_newest
from .console_auth import COOKIE, ROLE_KEY, Authorizer
from .console_users import ConsoleUsers, LockedOut, UserError, public_view

Role = Literal["admin", "operator", "viewer"]
MASK = "********"
_URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.I)


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(max_length=64)
    password: str = Field(max_length=1024)


class SessionInfo(BaseModel):
    username: str
    role: Role
    csrf_token: str = Field(description="Send as X-CSRF-Token on every state-changing request.")
    expires_at: datetime


class UserOut(BaseModel):
    username: str
    role: Role
    disabled: bool
    locked_until: datetime | None
    failed_logins: int
    created_at: datetime
    updated_at: datetime


class UserList(BaseModel):
    users: list[UserOut]


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(max_length=64)
    role: Role
    password: str = Field(max_length=1024, description="At least 10 characters.")


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role | None = None
    password: str | None = Field(None, max_length=1024, description="Reset: signs the user out.")
    disabled: bool | None = None
    unlock: bool = Field(False, description="End a lockout after wrong passwords now.")


class AuditPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[AuditEntry]


class LogPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[ServiceLog]


class SettingItem(BaseModel):
    name: str
    env: str
    value: object
    secret: bool
    description: str | None


class SettingsView(BaseModel):
    settings: list[SettingItem]


def _user_error(e: UserError) -> JSONResponse:
    return JSONResponse(
        {"status": "rejected", "detail": [{"field": e.field, "message": e.message}]},
        status_code=422,
    )


def masked_settings(settings: Settings) -> list[dict]:
    """Every setting with its effective value; secrets and URL credentials masked."""
    out = []
    for name, field in Settings.model_fields.items():
        value = getattr(settings, name)
        secret = isinstance(value, SecretStr)
        if secret:
            value = MASK if value.get_secret_value() else ""
        elif isinstance(value, str):
            value = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", value)
        elif isinstance(value, datetime):
            value = value.isoformat()
        out.append(
            {
                "name": name,
                "env": f"XGET_{name.upper()}",
                "value": value,
                "secret": secret,
                "description": field.description,
            }
        )
    return out


def create_router(settings: Settings, users: ConsoleUsers, authorizer: Authorizer) -> APIRouter:
    r = APIRouter()
    sessions = authorizer.sessions
    public = {ROLE_KEY: "public"}

    def session_info(name: str, role: str, session_id: str, expires: datetime) -> dict:
        return {
            "username": name,
            "role": role,
            "csrf_token": sessions.csrf(session_id),
            "expires_at": expires,
        }

    @r.post(
        "/api/v1/auth/login",
        response_model=SessionInfo,
        tags=["console"],
        openapi_extra=public,
        responses={
            401: {"description": "wrong user name or password"},
            429: {"description": "locked"},
        },
    )
    async def login(body: LoginRequest, request: Request, response: Response):
        """Sign in: sets the HttpOnly, SameSite=Strict `xget_session` cookie (Secure over
        https). After `console_lockout_failures` wrong passwords in a row the user is locked
        for `console_lockout_s`: 429, even with the right password, until then."""
        request.state.audit_actor = body.username[:64]
        try:
            u = await users.authenticate(body.username, body.password)
        except LockedOut as e:
            wait = max(1, int((e.until - datetime.now(UTC)).total_seconds()))
            raise HTTPException(
                429,
                f"too many wrong passwords: {body.username} is locked until "
                f"{e.until.isoformat(timespec='seconds')} (in {wait} s)",
                headers={"Retry-After": str(wait)},
            ) from None
        if u is None:
            raise HTTPException(401, "wrong user name or password (or the user is disabled)")
        cookie, s = sessions.issue(u.username)
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=sessions.ttl_s,
            expires=sessions.ttl_s,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return session_info(
            u.username, u.role, s.session_id, datetime.fromtimestamp(s.expires, UTC)
        )

    @r.get("/api/v1/auth/me", response_model=SessionInfo, tags=["console"], openapi_extra=public)
    async def me(request: Request):
        """The signed-in console user, or 401."""
        p = authorizer.session_principal(request)
        if p is None or p.session_id is None or p.expires is None:
            raise HTTPException(401, "not signed in")
        return session_info(p.name, p.role, p.session_id, p.expires)

    @r.post("/api/v1/auth/logout", tags=["console"], openapi_extra={ROLE_KEY: "viewer"})
    async def logout(request: Request, response: Response):
        """End this session on every replica (with its X-CSRF-Token, like every POST)."""
        p = request.state.principal
        if p is not None and p.via == "session" and p.session_id and p.expires:
            await users.revoke_session(p.name, p.session_id, p.expires)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return {"status": "signed out"}

    name_param = Path(max_length=64)

    @r.get("/api/v1/admin/users", response_model=UserList, tags=["console"])
    async def list_users():
        return {"users": [public_view(u) for u in users.all()]}

    @r.post("/api/v1/admin/users", response_model=UserOut, status_code=201, tags=["console"])
    async def add_user(body: UserCreate):
        try:
            return public_view(await users.add(body.username, body.role, body.password))
        except UserError as e:
            return _user_error(e)

    @r.patch("/api/v1/admin/users/{username}", response_model=UserOut, tags=["console"])
    async def patch_user(body: UserPatch, request: Request, username: str = name_param):
        p = request.state.principal
        if p is not None and p.name == username.lower() and body.role not in (None, "admin"):
            return _user_error(UserError("role", "an admin cannot lower their own role"))
        if p is not None and p.name == username.lower() and body.disabled:
            return _user_error(UserError("disabled", "an admin cannot disable themselves"))
        try:
            u = await users.update(
                username,
                role=body.role,
                password=body.password,
                disabled=body.disabled,
                unlock=body.unlock,
            )
        except UserError as e:
            return _user_error(e)
        if u is None:
            raise HTTPException(404, f"no user {username}")
        return public_view(u)

    @r.delete("/api/v1/admin/users/{username}", tags=["console"])
    async def delete_user(request: Request, username: str = name_param):
        p = request.state.principal
        if p is not None and p.name == username.lower():
            return _user_error(UserError("username", "an admin cannot delete themselves"))
        if not await users.delete(username):
            raise HTTPException(404, f"no user {username}")
        return {"deleted": username.lower()}

    @r.get("/api/v1/admin/audit", response_model=AuditPage, tags=["console"])
    async def audit(
        limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0, le=10_000_000)
    ):
        """Every state-changing request, newest first: who, what, target, when, result
        (done, refused, failed)."""
        total, items = await read_newest(settings, CONSOLE_AUDIT, limit, offset)
        return {"total": total, "limit": limit, "offset": offset, "items": items}

    @r.get("/api/v1/admin/settings", response_model=SettingsView, tags=["console"])
    async def effective_settings():
        """The gateway's effective configuration; secrets and URL credentials masked."""
        return {"settings": masked_settings(settings)}

    @r.get("/api/v1/admin/logs", response_model=LogPage, tags=["console"])
    async def service_logs(
        limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0, le=10_000_000)
    ):
        """Recent warnings and errors of every service process, newest first."""
        total, items = await read_newest(settings, SERVICE_LOGS, limit, offset)
        return {"total": total, "limit": limit, "offset": offset, "items": items}

    return r
