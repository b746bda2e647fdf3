"""Who may call what: the bearer token, console sessions, CSRF, and the role policy.

Every API route of the gateway runs `Authorizer.__call__` (installed as an app-wide
dependency, so a route added later is covered without naming it):

1. Who: `Authorization: Bearer XGET_API_TOKEN` (machine clients: full access, as before), else
   the `xget_session` cookie of a console sign-in, else 401.
2. CSRF: a state-changing request (not GET/HEAD/OPTIONS) authenticated by the cookie must
   carry `X-CSRF-Token` equal to its session's token, else 403. A bearer request needs none:
   a browser never adds that header by itself.
3. The role the route needs (`required_role`): an explicit per-route override first
   (`openapi_extra={"x-xget-role": ...}` on the route, or ROUTE_ROLES), then admin for user
   management and settings, viewer for reads, operator for every other method. Too low: 403.

A session is a signed cookie, not a server-side row, so any replica accepts it at once:
`v1.<session id>.<user>.<issued>.<expires>.<HMAC-SHA256>`, the key derived from
XGET_API_TOKEN (every replica has it; rotating the token signs everyone out). The user's
record (console-users) is read on every request: a disabled or deleted user, a password reset
(sessions issued before it) and a sign-out (the session id on the revoked list) end a session
on every replica; the role is the record's current one. The CSRF token is an HMAC of the
session id, so it needs no storage either.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import HTTPException, Request
from fastapi.security import HTTPBearer

from libs.settings import Settings

from .console_users import RANK, ConsoleUsers

COOKIE = "xget_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ROLE_KEY = "x-xget-role"  # per-route override in openapi_extra: a role or "public"

# Explicit overrides by (method, route template); "*" matches any method. Routes owned by
# other modules are named here rather than edited there.
ROUTE_ROLES: dict[tuple[str, str], str] = {
    ("GET", "/health"): "public",
    ("GET", "/api/v1/admin/health"): "public",  # the design: health needs no sign-in
    ("GET", "/api/v1/admin/audit"): "operator",
    ("GET", "/api/v1/admin/logs"): "operator",
}
ADMIN_PREFIXES = ("/api/v1/admin/users", "/api/v1/admin/settings")


def required_role(
    method: str, path: str, override: str | None = None, concrete: str | None = None
) -> str:
    """The role a route needs: "public", "viewer", "operator" or "admin". `path` is the
    route's template, `concrete` the request's own path (checked too, so a template that
    lacks a prefix never escapes the admin rule)."""
    if override:
        return override
    for p in (path, concrete or path):
        for key in ((method, p), ("*", p)):
            if key in ROUTE_ROLES:
                return ROUTE_ROLES[key]
    for p in (path, concrete or path):
        if any(p == a or p.startswith(a + "/") for a in ADMIN_PREFIXES):
            return "admin"
    return "viewer" if method in SAFE_METHODS else "operator"


def route_template(scope) -> str:
    """The matched route's path template with every prefix (FastAPI keeps the effective
    route of an included router in its own scope entry), else the request path."""
    ctx = (scope.get("fastapi") or {}).get("effective_route_context")
    return getattr(ctx, "path", None) or getattr(scope.get("route"), "path", None) or scope["path"]


@dataclass(frozen=True)
class Principal:
    name: str
    role: str
    via: str  # "session" or "token"
    session_id: str | None = None
    expires: datetime | None = None


@dataclass(frozen=True)
class Session:
    session_id: str
    username: str
    issued: int
    expires: int


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class Sessions:
    """Signs and checks session cookies and CSRF tokens."""

    def __init__(self, settings: Settings):
        token = settings.api_token.get_secret_value().encode()
        # A key of its own (not the token itself), so a cookie never carries a token's HMAC.
        self._key = hmac.new(token, b"xget-console-session/v1", hashlib.sha256).digest()
        self.ttl_s = settings.console_session_ttl_s

    def _sig(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def issue(self, username: str) -> tuple[str, Session]:
        now = int(datetime.now(UTC).timestamp())
        s = Session(secrets.token_urlsafe(18), username, now, now + self.ttl_s)
        payload = f"v1.{s.session_id}.{_b64(username.encode())}.{s.issued}.{s.expires}"
        return f"{payload}.{self._sig(payload)}", s

    def read(self, cookie: str) -> Session | None:
        """The session of a well-signed, unexpired cookie, else None."""
        payload, _, sig = cookie.rpartition(".")
        if not payload or not hmac.compare_digest(sig, self._sig(payload)):
            return None
        try:
            version, sid, user, issued, expires = payload.split(".")
            s = Session(sid, _unb64(user).decode(), int(issued), int(expires))
        except (ValueError, UnicodeDecodeError):
            return None
        if version != "v1" or s.expires <= datetime.now(UTC).timestamp():
            return None
        return s

    def csrf(self, session_id: str) -> str:
        return self._sig(f"csrf.{session_id}")[:32]


class Authorizer:
    """The app-wide dependency (see the module doc). Sets request.state.principal."""

    def __init__(self, settings: Settings, users: ConsoleUsers | None):
        self.token = settings.api_token.get_secret_value()
        self.users = users
        self.sessions = Sessions(settings)
        self._bearer = HTTPBearer(auto_error=False)

    def session_principal(self, request: Request) -> Principal | None:
        """The signed-in console user of this request's cookie, if the session still holds."""
        cookie = request.cookies.get(COOKIE)
        if not cookie or self.users is None:
            return None
        s = self.sessions.read(cookie)
        if s is None:
            return None
        u = self.users.get(s.username)
        if u is None or u.disabled or s.session_id in u.revoked_sessions:
            return None
        if u.sessions_valid_after and s.issued < u.sessions_valid_after.timestamp():
            return None
        return Principal(
            u.username, u.role, "session", s.session_id, datetime.fromtimestamp(s.expires, UTC)
        )

    async def __call__(self, request: Request) -> Principal | None:
        route = request.scope.get("route")
        extra = getattr(route, "openapi_extra", None) or {}
        need = required_role(
            request.method, route_template(request.scope), extra.get(ROLE_KEY), request.url.path
        )
        creds = await self._bearer(request)
        principal: Principal | None = None
        if creds is not None:
            if not self.token or not secrets.compare_digest(
                creds.credentials.encode(), self.token.encode()
            ):
                if need == "public":
                    return None
                raise HTTPException(
                    401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
                )
            principal = Principal("api-token", "admin", "token")
        else:
            principal = self.session_principal(request)
        request.state.principal = principal
        if need == "public":
            return principal
        if principal is None:
            raise HTTPException(
                401,
                "sign in (POST /api/v1/auth/login) or send the bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if principal.via == "session" and request.method not in SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER, "")
            if not sent or not hmac.compare_digest(
                sent, self.sessions.csrf(principal.session_id or "")
            ):
                raise HTTPException(403, f"missing or wrong {CSRF_HEADER} header")
        if RANK[principal.role] < RANK[need]:
            raise HTTPException(
                403, f"role {principal.role} may not do this: {need} or above is required"
            )
        return principal


def document_roles(app) -> None:
    """Every operation of the OpenAPI document says the role it needs (`x-xget-role`), from
    the same policy the requests meet, so clients (the console) and readers of /docs see it."""
    generate = app.openapi

    def openapi() -> dict:
        fresh = app.openapi_schema is None
        doc = generate()
        if fresh:
            for path, ops in doc.get("paths", {}).items():
                for method, op in ops.items():
                    if isinstance(op, dict):
                        op[ROLE_KEY] = required_role(method.upper(), path, op.get(ROLE_KEY))
        return doc

    app.openapi = openapi
