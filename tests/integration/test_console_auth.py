"""Console sign-in, roles, CSRF, lockout and the audit log, against the real broker.

Each test builds the gateway app on a fresh topic namespace of the session's noida-db; a
"restart" or a second replica is another app built from the same topics (all console state is
on them). The role walk reads the app's own OpenAPI document, so a route another engineer adds
is covered without naming it here.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx
import pytest

from infra.local import REPO_ROOT
from libs.kafka import Producer
from libs.settings import Settings
from services.task_gateway.api import create_app
from services.task_gateway.console_auth import ROLE_KEY, required_role
from services.task_gateway.console_users import ConsoleUsers
from services.task_gateway.kol_tasks import KolTaskView
from services.task_gateway.task_view import TaskView
from services.task_gateway.users_cli import ensure_first_admin
from tests.e2e.harness import fresh_prefix

TOKEN = "console-test-token-0123456789abcdef"
PASSWORDS = {"root": "root-password-1", "op": "operator-password-1", "view": "viewer-password-1"}
ROLES = {"root": "admin", "op": "operator", "view": "viewer"}
WINDOW = {"start_time": "2026-10-01T00:00:00Z", "end_time": "2026-10-02T00:00:00Z"}
STATE_CHANGING = ("post", "put", "patch", "delete")


async def eventually(check, within_s: float, what: str, interval: float = 0.2) -> None:
    """Await `check()` until it is true; fail naming `what` at the deadline."""
    deadline = asyncio.get_running_loop().time() + within_s
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out: {what}"
        await asyncio.sleep(interval)


class Gateway:
    """One gateway replica's app and the parts it reads, on the test's topics."""

    def __init__(self, settings: Settings):
        self.settings = settings

    async def start(self) -> Gateway:
        self.producer = await Producer(self.settings).start()
        self.view, self.kol_view = TaskView(self.settings), KolTaskView(self.settings)
        await self.view.start()
        await self.kol_view.start()
        self.users = await ConsoleUsers(self.settings, self.producer).start()

        async def no_store():
            raise AssertionError("these tests do not reach ClickHouse")

        self.app = create_app(
            self.settings, self.producer, self.view, no_store, self.kol_view, self.users
        )
        return self

    async def stop(self) -> None:
        await self.users.stop()
        await self.kol_view.stop()
        await self.view.stop()
        await self.producer.stop()

    def client(self, scheme: str = "http", **kw) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url=f"{scheme}://gw", **kw
        )

    @asynccontextmanager
    async def signed_in(self, name: str) -> AsyncIterator[httpx.AsyncClient]:
        async with self.client() as c:
            r = await c.post(
                "/api/v1/auth/login", json={"username": name, "password": PASSWORDS[name]}
            )
            assert r.status_code == 200, r.text
            c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
            yield c


def _settings(noida, **kw) -> Settings:
    return noida.settings(
        topic_prefix=fresh_prefix(noida.bootstrap),
        api_token=TOKEN,
        console_lockout_failures=3,
        console_lockout_s=3,
        account_admin_url="http://127.0.0.1:9",  # overridden where forwarding is tested
        **kw,
    )


@pytest.fixture
async def gw(noida) -> AsyncIterator[Gateway]:
    g = await Gateway(_settings(noida)).start()
    for name, role in ROLES.items():
        await g.users.add(name, role, PASSWORDS[name])
    try:
        yield g
    finally:
        await g.stop()


async def _audit(c: httpx.AsyncClient, limit: int = 200) -> list[dict]:
    r = await c.get("/api/v1/admin/audit", params={"limit": limit})
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def test_login_me_logout_and_cookie_attributes(gw: Gateway):
    async with gw.client() as c:
        assert (await c.get("/api/v1/auth/me")).status_code == 401
        r = await c.post("/api/v1/auth/login", json={"username": "op", "password": "op-wrong-pw"})
        assert r.status_code == 401
        r = await c.post("/api/v1/auth/login", json={"username": "op", "password": PASSWORDS["op"]})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["username"] == "op" and body["role"] == "operator" and body["csrf_token"]
        cookie = r.headers["set-cookie"]
        assert cookie.startswith("xget_session=")
        attrs = {a.strip().split("=")[0].lower() for a in cookie.split(";")}
        assert {"httponly", "max-age", "path", "expires"} <= attrs
        assert "samesite=strict" in cookie.lower()
        assert "secure" not in attrs  # plain http: a Secure cookie would never come back
        assert re.search(r"Max-Age=28800", cookie)
        me = (await c.get("/api/v1/auth/me")).json()
        assert me == {**body, "expires_at": me["expires_at"]}
        # A session reads what its role allows.
        assert (await c.get("/api/v1/tasks")).status_code != 401
        r = await c.post("/api/v1/auth/logout", headers={"X-CSRF-Token": body["csrf_token"]})
        assert r.status_code == 200
        assert (await c.get("/api/v1/auth/me")).status_code == 401
    # Over https the cookie is Secure.
    async with gw.client("https") as c:
        r = await c.post("/api/v1/auth/login", json={"username": "op", "password": PASSWORDS["op"]})
        assert "secure" in {a.strip().lower() for a in r.headers["set-cookie"].split(";")}


async def test_signed_out_cookie_is_refused_by_every_replica(gw: Gateway):
    other = await Gateway(gw.settings).start()  # a second replica on the same topics
    try:
        async with gw.signed_in("view") as c:
            cookie = c.cookies["xget_session"]
            async with other.client(cookies={"xget_session": cookie}) as c2:
                assert (await c2.get("/api/v1/auth/me")).json()["username"] == "view"
                assert (await c.post("/api/v1/auth/logout")).status_code == 200

                async def refused() -> bool:
                    return (await c2.get("/api/v1/auth/me")).status_code == 401

                await eventually(refused, 20, "the other replica refusing the session")
    finally:
        await other.stop()


async def test_bearer_token_keeps_full_access(gw: Gateway):
    async with gw.client(headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        r = await c.post("/api/v1/tasks/ondemand", json={"keyword": "bearer", **WINDOW})
        assert r.status_code == 200, r.text
        assert (await c.get("/api/v1/admin/users")).status_code == 200
    async with gw.client(headers={"Authorization": "Bearer wrong"}) as c:
        assert (await c.get("/api/v1/admin/users")).status_code == 401


async def test_csrf_header_required_for_session_changes(gw: Gateway):
    async with gw.signed_in("op") as c:
        token = c.headers.pop("X-CSRF-Token")
        body = {"keyword": "csrf", **WINDOW}
        r = await c.post("/api/v1/tasks/ondemand", json=body)
        assert r.status_code == 403 and "X-CSRF-Token" in r.text
        r = await c.post("/api/v1/tasks/ondemand", json=body, headers={"X-CSRF-Token": "x" * 32})
        assert r.status_code == 403
        r = await c.post("/api/v1/tasks/ondemand", json=body, headers={"X-CSRF-Token": token})
        assert r.status_code == 200, r.text
        entries = await _audit(c)
    csrf = [e for e in entries if e["action"] == "POST /api/v1/tasks/ondemand"]
    assert [e["result"] for e in csrf] == ["done", "refused", "refused"]  # newest first
    assert all(e["actor"] == "op" for e in csrf)


async def test_lockout_refuses_even_the_right_password_until_it_ends(gw: Gateway):
    async with gw.client() as c:

        async def login(pw: str) -> httpx.Response:
            return await c.post("/api/v1/auth/login", json={"username": "view", "password": pw})

        assert (await login("wrong-password-1")).status_code == 401
        assert (await login("wrong-password-2")).status_code == 401
        r = await login("wrong-password-3")  # the 3rd (console_lockout_failures) locks
        assert r.status_code == 429
        r = await login(PASSWORDS["view"])
        assert r.status_code == 429, r.text
        assert "locked until" in r.json()["detail"] and int(r.headers["Retry-After"]) >= 1
        locked_at = datetime.now(UTC)

        async def signed_in() -> bool:
            return (await login(PASSWORDS["view"])).status_code == 200

        await eventually(signed_in, 30, "the lock to end", interval=0.5)
        assert (datetime.now(UTC) - locked_at).total_seconds() >= 2  # lock period 3 s


async def test_viewer_gets_403_on_every_state_changing_route(gw: Gateway):
    """Every route of the OpenAPI document with a state-changing method, called with a viewer
    session (and its CSRF token), is refused with 403, and audited as refused."""
    async with gw.client() as c:
        doc = (await c.get("/openapi.json")).json()
    calls = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if method not in STATE_CHANGING:
                continue
            if required_role(method.upper(), path, op.get(ROLE_KEY)) in ("public", "viewer"):
                continue  # sign-in and sign-out
            url = re.sub(r"\{([^}:]+)(:path)?\}", lambda m: f"walk-{m[1]}", path)
            calls.append((method.upper(), url))
    assert len(calls) >= 15, calls  # tasks, users, accounts, proxies at least
    async with gw.signed_in("view") as c:
        for method, url in calls:
            r = await c.request(method, url, json={})
            assert r.status_code == 403, (method, url, r.status_code, r.text)
            assert "role viewer" in r.text
    async with gw.signed_in("root") as c:
        refused = {
            (e["method"], e["path"])
            for e in await _audit(c, 500)
            if e["actor"] == "view" and e["result"] == "refused"
        }
    assert refused >= set(calls)


async def test_audit_of_done_and_refused_actions_survives_a_restart(noida):
    settings = _settings(noida)
    first = await Gateway(settings).start()
    try:
        await first.users.add("root", "admin", PASSWORDS["root"])
        async with first.signed_in("root") as c:
            r = await c.post(
                "/api/v1/admin/users",
                json={"username": "view", "role": "viewer", "password": PASSWORDS["view"]},
            )
            assert r.status_code == 201, r.text
        async with first.signed_in("view") as c:
            r = await c.post(
                "/api/v1/admin/users",
                json={"username": "sneaky", "role": "admin", "password": "sneaky-password"},
            )
            assert r.status_code == 403
            r = await c.delete("/api/v1/admin/users/root")
            assert r.status_code == 403
    finally:
        await first.stop()
    second = await Gateway(settings).start()  # a new gateway: only the topics remain
    try:
        async with second.signed_in("root") as c:  # the user made on the first one
            entries = await _audit(c)
            users = (await c.get("/api/v1/admin/users")).json()["users"]
    finally:
        await second.stop()
    assert [u["username"] for u in users] == ["root", "view"]  # no "sneaky"
    mine = [(e["actor"], e["action"], e["target"], e["result"], e["status"]) for e in entries]
    assert ("root", "POST /api/v1/admin/users", "", "done", 201) in mine
    assert ("view", "POST /api/v1/admin/users", "", "refused", 403) in mine
    assert ("view", "DELETE /api/v1/admin/users/{username}", "username=root", "refused", 403) in (
        mine
    )
    assert ("view", "POST /api/v1/auth/login", "", "done", 200) in mine
    assert not any(
        e["actor"] == "view" and e["result"] == "done" and "users" in e["action"] for e in entries
    )
    assert all(e["at"] for e in entries)


async def test_user_management_api(gw: Gateway):
    async with gw.signed_in("root") as c:
        r = await c.post(
            "/api/v1/admin/users", json={"username": "new", "role": "x", "password": "p"}
        )
        assert r.status_code == 422
        r = await c.post(
            "/api/v1/admin/users", json={"username": "new", "role": "viewer", "password": "short"}
        )
        assert r.status_code == 422 and r.json()["detail"][0]["field"] == "password"
        r = await c.post(
            "/api/v1/admin/users",
            json={"username": "new", "role": "viewer", "password": "new-password-1"},
        )
        assert r.status_code == 201 and "password_hash" not in r.text
        r = await c.patch("/api/v1/admin/users/new", json={"role": "operator"})
        assert r.json()["role"] == "operator"
        async with gw.client() as other:
            r = await other.post(
                "/api/v1/auth/login", json={"username": "new", "password": "new-password-1"}
            )
            assert r.json()["role"] == "operator"
            r = await c.patch("/api/v1/admin/users/new", json={"password": "reset-password-2"})
            assert r.status_code == 200
            assert (await other.get("/api/v1/auth/me")).status_code == 401  # reset signs out
        r = await c.patch("/api/v1/admin/users/new", json={"disabled": True})
        assert r.json()["disabled"] is True
        async with gw.client() as other:
            r = await other.post(
                "/api/v1/auth/login", json={"username": "new", "password": "reset-password-2"}
            )
            assert r.status_code == 401
        assert (await c.delete("/api/v1/admin/users/new")).status_code == 200
        assert (await c.delete("/api/v1/admin/users/new")).status_code == 404
        assert (await c.delete("/api/v1/admin/users/root")).status_code == 422  # not oneself
    async with gw.signed_in("op") as c:  # operators: no users, no settings
        assert (await c.get("/api/v1/admin/users")).status_code == 403
        assert (await c.get("/api/v1/admin/settings")).status_code == 403
        assert (await c.get("/api/v1/admin/audit")).status_code == 200
    async with gw.signed_in("view") as c:
        assert (await c.get("/api/v1/admin/audit")).status_code == 403


async def test_settings_view_masks_secrets(gw: Gateway):
    async with gw.signed_in("root") as c:
        r = await c.get("/api/v1/admin/settings")
    assert r.status_code == 200
    values = {s["name"]: s for s in r.json()["settings"]}
    assert values["api_token"]["value"] == "********" and values["api_token"]["secret"]
    assert TOKEN not in r.text
    assert values["gateway_port"]["value"] == gw.settings.gateway_port


def test_users_cli_add_and_list(noida):
    settings = _settings(noida)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "XGET_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "XGET_TOPIC_PREFIX": settings.topic_prefix,
    }

    def xget(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "services.cli", "users", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO_ROOT,
            timeout=120,
        )

    r = xget("add", "Carol", "--role", "operator", "--password-stdin", stdin="carol-password-1\n")
    assert r.returncode == 0, r.stderr
    assert "added carol (operator)" in r.stdout
    r = xget("add", "carol", "--role", "viewer", "--password-stdin", stdin="another-password\n")
    assert r.returncode == 2 and "exists" in r.stderr
    r = xget("add", "dave", "--role", "boss", "--password-stdin", stdin="dave-password-1\n")
    assert r.returncode != 0 and "invalid choice" in r.stderr
    r = xget("add", "erin", "--role", "viewer", "--password-stdin", stdin="short\n")
    assert r.returncode == 2 and "at least 10" in r.stderr
    r = xget("list")
    assert r.returncode == 0
    assert re.search(r"^carol\s+operator\s+active$", r.stdout, re.M), r.stdout
    assert "erin" not in r.stdout

    async def sign_in() -> int:
        g = await Gateway(settings).start()
        try:
            async with g.client() as c:
                r = await c.post(
                    "/api/v1/auth/login",
                    json={"username": "carol", "password": "carol-password-1"},
                )
                return r.status_code
        finally:
            await g.stop()

    assert asyncio.run(sign_in()) == 200


async def test_first_admin_is_created_once(noida):
    settings = _settings(noida)
    password = await ensure_first_admin(settings)
    assert password and len(password) >= 20
    assert await ensure_first_admin(settings) is None  # printed once: not again
    g = await Gateway(settings).start()
    try:
        async with g.client() as c:
            r = await c.post("/api/v1/auth/login", json={"username": "admin", "password": password})
            assert r.status_code == 200 and r.json()["role"] == "admin"
    finally:
        await g.stop()


def test_stack_up_prints_first_admin(noida, tmp_path):
    """What `make up` runs after creating the topics (infra/stack.py): the password is
    printed on the first run only."""
    settings = _settings(noida)
    code = (
        "from infra import stack; from libs.settings import Settings; "
        f"stack._first_admin(Settings(), {settings.kafka_bootstrap!r})"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "XGET_TOPIC_PREFIX": settings.topic_prefix}

    def up() -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=120,
        )

    out = up()
    assert out.returncode == 0, out.stderr
    found = re.search(r"first admin created: user 'admin' password '([^']{20,})'", out.stdout)
    assert found, out.stdout
    again = up()
    assert again.returncode == 0 and "first admin" not in again.stdout


async def test_a_route_added_later_without_auth_is_still_enforced(gw: Gateway):
    """Another module's router that names no auth dependency gets the central policy."""
    from fastapi import APIRouter

    r = APIRouter()

    @r.post("/api/v1/tasks/{task_id}/something-new")
    async def something_new(task_id: str):
        return {"done": task_id}

    @r.get("/api/v1/something/report")
    async def report():
        return {"ok": True}

    @r.post("/api/v1/something/export")
    async def export():
        from fastapi.responses import StreamingResponse

        async def rows():
            for i in range(3):
                yield f"row{i}\n".encode()

        return StreamingResponse(rows(), media_type="text/csv")

    gw.app.include_router(r, prefix="")
    async with gw.client() as c:
        assert (await c.get("/api/v1/something/report")).status_code == 401
        assert (await c.post("/api/v1/tasks/t1/something-new")).status_code == 401
    async with gw.signed_in("view") as c:
        assert (await c.get("/api/v1/something/report")).status_code == 200
        assert (await c.post("/api/v1/tasks/t1/something-new")).status_code == 403
    async with gw.signed_in("op") as c:
        r2 = await c.post("/api/v1/tasks/t1/something-new")
        assert r2.status_code == 200 and r2.json() == {"done": "t1"}
        # A streamed answer passes through whole (recorded at its first chunk, not held).
        r3 = await c.post("/api/v1/something/export")
        assert r3.status_code == 200 and r3.text == "row0\nrow1\nrow2\n"
        actions = {(e["actor"], e["action"], e["result"]) for e in await _audit(c)}
    assert ("op", "POST /api/v1/something/export", "done") in actions
    assert ("op", "POST /api/v1/tasks/{task_id}/something-new", "done") in actions
    assert ("view", "POST /api/v1/tasks/{task_id}/something-new", "refused") in actions
    assert ("anonymous", "POST /api/v1/tasks/{task_id}/something-new", "refused") in actions
