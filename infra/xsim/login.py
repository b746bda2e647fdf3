"""X's web login, simulated: accounts with passwords, a login page that hands out cookies,
sessions the simulator can expire.

Screens, as X's web flow names its fields: user name (`input[name=text]`, "Next"), password
(`input[name=password]`, "Log in"), and for accounts with a TOTP secret a code
(`input[data-testid=ocfEnterTextTextInput]`, "Next"). Success sets `auth_token`, `ct0` and
`twid` cookies and redirects to /home. Errors show in `[data-testid=error]`.

Requests whose `auth_token` was issued here are counted, rate-limited and faulted under the
account's user name; an expired session answers 401 code 32 like X. Tokens the simulator did
not issue are accepted as they are (the cookie-import path), keyed by the token.
"""

from __future__ import annotations

import html
import secrets
import time
from dataclasses import asdict, dataclass, field
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response


@dataclass
class SimAccount:
    username: str
    password: str
    email: str | None = None
    totp_secret: str | None = None
    suspended: bool = False
    logins: int = 0
    login_failures: int = 0
    expired_sessions: int = 0
    # > 0: each session (its cookies) expires this long after the login, as X's do; the
    # cookies carry that max-age, so a client can see when to log in again.
    session_ttl_s: float = 0.0

    def public(self) -> dict:
        d = asdict(self)
        d.pop("password")
        d.pop("totp_secret")
        return d


@dataclass
class Sessions:
    accounts: dict[str, SimAccount] = field(default_factory=dict)  # lower-case name -> account
    tokens: dict[str, str] = field(default_factory=dict)  # live auth_token -> name
    expired: dict[str, str] = field(default_factory=dict)  # expired auth_token -> name
    flows: dict[str, tuple[str, float]] = field(default_factory=dict)  # flow id -> (name, ts)
    # name -> requests its live sessions may still make before they expire (cookies that die
    # mid-task at a known point, so a test need not race a poll against a fast pipeline)
    expire_after: dict[str, int] = field(default_factory=dict)
    issued_at: dict[str, float] = field(default_factory=dict)  # live auth_token -> login time

    def register(self, spec: dict) -> SimAccount:
        name = str(spec.get("username") or "").strip()
        if not name or not spec.get("password"):
            raise ValueError("username and password are required")
        acc = SimAccount(
            name,
            str(spec["password"]),
            spec.get("email"),
            spec.get("totp_secret"),
            session_ttl_s=float(spec.get("session_ttl_s") or 0.0),
        )
        self.accounts[name.lower()] = acc
        return acc

    def account_key(self, token: str) -> tuple[str, bool]:
        """(rate-limit/fault key, session expired?) for a request's auth_token."""
        name = self.tokens.get(token)
        if name is not None:
            acc = self.accounts.get(name)
            if acc is not None and acc.session_ttl_s > 0:
                if time.time() - self.issued_at.get(token, time.time()) > acc.session_ttl_s:
                    del self.tokens[token]
                    self.expired[token] = name
                    acc.expired_sessions += 1
                    return name, True
            left = self.expire_after.get(name)
            if left is None:
                return name, False
            if left > 0:
                self.expire_after[name] = left - 1
                return name, False
            del self.expire_after[name]
            self.expire(name)
            return name, True
        name = self.expired.get(token)
        if name is not None:
            return name, True
        return token, False

    def expire_later(self, username: str, after: int) -> None:
        """The account's live sessions serve `after` more requests, then expire."""
        self.expire_after[username.lower()] = after

    def expire_token(self, token: str) -> None:
        """An imported token (or an issued one) is no longer accepted."""
        name = self.tokens.pop(token, None)
        self.expired[token] = name or token

    def expire(self, username: str) -> int:
        name = username.lower()
        gone = [t for t, n in self.tokens.items() if n == name]
        for t in gone:
            del self.tokens[t]
            self.expired[t] = name
        if name in self.accounts:
            self.accounts[name].expired_sessions += len(gone)
        return len(gone)

    def issue(self, acc: SimAccount) -> tuple[str, str]:
        token = secrets.token_hex(20)
        self.tokens[token] = acc.username.lower()
        self.issued_at[token] = time.time()
        acc.logins += 1
        return token, secrets.token_hex(32)


def _page(title: str, body: str, error: str | None = None) -> HTMLResponse:
    err = f'<div data-testid="error" role="alert">{html.escape(error)}</div>' if error else ""
    return HTMLResponse(
        f"<!DOCTYPE html><html><head><title>{html.escape(title)} / X</title></head>"
        f"<body><h1>{html.escape(title)}</h1>{err}{body}</body></html>"
    )


def _username_form(error: str | None = None) -> HTMLResponse:
    return _page(
        "Sign in to X",
        (
            '<form method="post" action="/i/flow/login/username">'
            '<label>Phone, email, or username <input name="text" autocomplete="username"></label>'
            '<button type="submit">Next</button></form>'
        ),
        error,
    )


def _password_form(flow: str, error: str | None = None) -> HTMLResponse:
    return _page(
        "Enter your password",
        (
            '<form method="post" action="/i/flow/login/password">'
            f'<input type="hidden" name="flow" value="{html.escape(flow)}">'
            '<label>Password <input name="password" type="password"></label>'
            '<button type="submit" data-testid="LoginForm_Login_Button">Log in</button></form>'
        ),
        error,
    )


def _code_form(flow: str, error: str | None = None) -> HTMLResponse:
    return _page(
        "Enter your verification code",
        (
            "<p>Use your code generator app to generate a code and enter it below.</p>"
            '<form method="post" action="/i/flow/login/code">'
            f'<input type="hidden" name="flow" value="{html.escape(flow)}">'
            '<input name="code" data-testid="ocfEnterTextTextInput">'
            '<button type="submit">Next</button></form>'
        ),
        error,
    )


async def _form(request: Request) -> dict[str, str]:
    body = (await request.body()).decode(errors="replace")
    return {k: v[0] for k, v in parse_qs(body).items()}


class LoginFlow:
    def __init__(self, sessions: Sessions, log):
        self.sessions = sessions
        self.log = log

    def _flow(self, name: str) -> str:
        fid = secrets.token_hex(12)
        self.sessions.flows[fid] = (name, time.time())
        return fid

    async def start(self, request: Request) -> Response:
        self.log.add("GET", request.url.path, "login", None, None, None, 200)
        return _username_form()

    async def username(self, request: Request) -> Response:
        f = await _form(request)
        name = (f.get("text") or "").strip().lower()
        acc = self.sessions.accounts.get(name)
        self.log.add("POST", request.url.path, "login", name, None, None, 200)
        if acc is None:
            return _username_form("Sorry, we could not find your account.")
        return _password_form(self._flow(name))

    async def password(self, request: Request) -> Response:
        f = await _form(request)
        name, _ = self.sessions.flows.get(f.get("flow") or "", ("", 0.0))
        acc = self.sessions.accounts.get(name)
        self.log.add("POST", request.url.path, "login", name or None, None, None, 200)
        if acc is None:
            return _username_form("Your session expired. Start again.")
        if f.get("password") != acc.password:
            acc.login_failures += 1
            return _password_form(f["flow"], "Wrong password!")
        if acc.suspended:
            return _page("Account suspended", "", "Your account is suspended.")
        if acc.totp_secret:
            return _code_form(f["flow"])
        return self._success(acc)

    async def code(self, request: Request) -> Response:
        import pyotp

        f = await _form(request)
        name, _ = self.sessions.flows.get(f.get("flow") or "", ("", 0.0))
        acc = self.sessions.accounts.get(name)
        self.log.add("POST", request.url.path, "login", name or None, None, None, 200)
        if acc is None or not acc.totp_secret:
            return _username_form("Your session expired. Start again.")
        if not pyotp.TOTP(acc.totp_secret).verify(f.get("code") or "", valid_window=1):
            acc.login_failures += 1
            return _code_form(f["flow"], "Your code was incorrect. Please try again.")
        return self._success(acc)

    def _success(self, acc: SimAccount) -> Response:
        token, ct0 = self.sessions.issue(acc)
        rep = RedirectResponse("/home", status_code=302)
        ttl = int(acc.session_ttl_s) if acc.session_ttl_s > 0 else None
        rep.set_cookie("auth_token", token, httponly=True, path="/", max_age=ttl)
        rep.set_cookie("ct0", ct0, path="/", max_age=ttl)
        rep.set_cookie("twid", f"u%3D{abs(hash(acc.username)) % 10**18}", path="/")
        return rep

    async def home(self, request: Request) -> Response:
        return _page("Home", "<main>Your timeline</main>")
