"""What the gateway serves for the console: /docs without internet, the built console with its
SPA fallback, and accounts/proxies forwarded to the account-manager with secrets stripped."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator

import pytest
import uvicorn
from fastapi import FastAPI, Request

from tests.integration.test_console_auth import PASSWORDS, ROLES, TOKEN, Gateway, _settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeAccountManager:
    """An admin API that answers with every kind of secret, and records what it was sent."""

    def __init__(self) -> None:
        self.seen: list[dict] = []
        self.port = _free_port()
        app = FastAPI()

        @app.api_route("/api/v1/admin/{rest:path}", methods=["GET", "POST", "PATCH", "DELETE"])
        async def any_route(rest: str, request: Request):
            self.seen.append(
                {
                    "method": request.method,
                    "path": request.url.path,
                    "query": request.url.query,
                    "auth": request.headers.get("authorization"),
                    "body": (await request.body()).decode(),
                    "cookie": request.headers.get("cookie"),
                    "csrf": request.headers.get("x-csrf-token"),
                }
            )
            if rest == "proxies/p1/plain":
                from fastapi.responses import PlainTextResponse

                return PlainTextResponse("http://user:pw@proxy:1", 200)
            account = {
                "id": "acc1",
                "status": "active",
                "has_password": True,
                "cookies": "auth_token=SECRET1; ct0=SECRET2",
                "password": "SECRET3",
                "auth_token": "SECRET4",
                "ct0": "SECRET5",
                "totp_secret": "SECRET6",
                "email_password": "SECRET7",
                "secrets": "gAAAAA-SECRET8",
                "proxy": "http://puser:SECRET9@10.0.0.1:8080",
                "tags": ["a", "b"],
            }
            if rest == "accounts":  # the list: bare, its length in a header (and a cookie)
                from fastapi.responses import JSONResponse

                return JSONResponse(
                    [account], headers={"X-Total-Count": "1", "Set-Cookie": "upstream=1"}
                )
            return {**account, "nested": {"api_key": "SECRET10", "ok": 1}}

        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.server.install_signal_handlers = lambda: None

    async def __aenter__(self) -> FakeAccountManager:
        self.task = asyncio.create_task(self.server.serve())
        for _ in range(600):  # 30 s
            if self.server.started:
                return self
            await asyncio.sleep(0.05)
        raise AssertionError("the fake account-manager did not start in 30 s")

    async def __aexit__(self, *exc) -> None:
        self.server.should_exit = True
        await self.task


@pytest.fixture
async def forwarding(noida) -> AsyncIterator[tuple[Gateway, FakeAccountManager]]:
    async with FakeAccountManager() as upstream:
        settings = _settings(noida).model_copy(
            update={"account_admin_url": f"http://127.0.0.1:{upstream.port}"}
        )
        g = await Gateway(settings).start()
        for name, role in ROLES.items():
            await g.users.add(name, role, PASSWORDS[name])
        try:
            yield g, upstream
        finally:
            await g.stop()


async def test_forwarding_by_path_strips_secrets_and_enforces_roles(forwarding):
    g, upstream = forwarding
    async with g.signed_in("op") as c:
        r = await c.get("/api/v1/admin/accounts", params={"status": "active"})
        assert r.status_code == 200
        text = r.text
        assert not re.search(r"SECRET\d", text), text
        [acc] = r.json()
        assert acc["has_password"] is True and acc["tags"] == ["a", "b"]
        assert acc["proxy"] == "http://10.0.0.1:8080"
        # the list's length comes along; the upstream's other headers do not
        assert r.headers["X-Total-Count"] == "1" and "set-cookie" not in r.headers
        # An endpoint the gateway does not know (added upstream later) is forwarded by path.
        r = await c.post("/api/v1/admin/accounts/acc1/enable", json={"reason": "x"})
        assert r.status_code == 200 and "SECRET" not in r.text
        assert r.json()["nested"] == {"ok": 1}
        r = await c.patch("/api/v1/admin/proxies/p1", json={"tags": ["eu"]})
        assert r.status_code == 200
        # Not JSON: refused rather than passed on unread.
        r = await c.get("/api/v1/admin/proxies/p1/plain")
        assert r.status_code == 502 and "pw@" not in r.text
    seen = upstream.seen
    assert [(s["method"], s["path"], s["query"]) for s in seen] == [
        ("GET", "/api/v1/admin/accounts", "status=active"),
        ("POST", "/api/v1/admin/accounts/acc1/enable", ""),
        ("PATCH", "/api/v1/admin/proxies/p1", ""),
        ("GET", "/api/v1/admin/proxies/p1/plain", ""),
    ]
    assert all(s["auth"] == f"Bearer {TOKEN}" for s in seen)  # the gateway's token
    # the session stays here, and the cookie the upstream set (the list) is never sent back
    assert all(s["cookie"] is None and s["csrf"] is None for s in seen)
    assert seen[1]["body"] == '{"reason":"x"}'
    # A viewer reads but never changes; the refusal is the gateway's (upstream sees nothing).
    async with g.signed_in("view") as c:
        assert (await c.get("/api/v1/admin/proxies")).status_code == 200
        for method, url in [
            ("POST", "/api/v1/admin/accounts"),
            ("DELETE", "/api/v1/admin/accounts/acc1"),
            ("POST", "/api/v1/admin/proxies/p1/test"),
        ]:
            assert (await c.request(method, url, json={})).status_code == 403
    assert len(upstream.seen) == 5


async def test_forwarding_to_a_down_account_manager_is_503(noida):
    settings = _settings(noida).model_copy(
        update={"account_admin_url": f"http://127.0.0.1:{_free_port()}"}
    )
    g = await Gateway(settings).start()
    try:
        async with g.client(headers={"Authorization": f"Bearer {TOKEN}"}) as c:
            r = await c.get("/api/v1/admin/accounts")
        assert r.status_code == 503 and r.json()["dependency"] == "account-manager"
    finally:
        await g.stop()


async def test_docs_load_from_local_assets_only(noida):
    g = await Gateway(_settings(noida)).start()
    try:
        async with g.client() as c:
            page = await c.get("/docs")
            assert page.status_code == 200
            refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", page.text)
            refs += re.findall(r"""url:\s*['"]([^'"]+)['"]""", page.text)
            assert refs, page.text
            assert not [u for u in refs if re.match(r"(https?:)?//", u)], refs
            assert '"validatorUrl": null' in page.text  # no badge from validator.swagger.io
            for u in refs:
                r = await c.get(u)
                assert r.status_code == 200 and r.content, u
            js = await c.get("/docs/assets/swagger-ui-bundle.js")
            assert b"SwaggerUIBundle" in js.content
            doc = (await c.get("/openapi.json")).json()
            assert doc["openapi"].startswith("3.1")  # Swagger UI 5 renders 3.1
            assert "/api/v1/admin/analytics/summary" in doc["paths"]
            assert "/api/v1/auth/login" in doc["paths"]
            roles = {
                (m.upper(), p): op["x-xget-role"]
                for p, ops in doc["paths"].items()
                for m, op in ops.items()
            }
            assert roles[("POST", "/api/v1/auth/login")] == "public"
            assert roles[("GET", "/api/v1/admin/users")] == "admin"
            assert roles[("POST", "/api/v1/tasks/ondemand")] == "operator"
            assert roles[("GET", "/api/v1/admin/analytics/summary")] == "viewer"
            assert roles[("GET", "/api/v1/admin/audit")] == "operator"
    finally:
        await g.stop()


async def test_console_is_served_with_spa_fallback(noida, tmp_path):
    dist = tmp_path / "dist"
    settings = _settings(noida).model_copy(update={"console_dist_dir": str(dist)})
    g = await Gateway(settings).start()
    try:
        async with g.client() as c:
            r = await c.get("/console/")
            assert r.status_code == 503 and "not built" in r.text and "make setup" in r.text
            (dist / "assets").mkdir(parents=True)
            (dist / "index.html").write_text("<!doctype html><div id=app>XGET-INDEX</div>")
            (dist / "assets" / "index-abc123.js").write_text("console.log('xget')")
            r = await c.get("/console")
            assert r.status_code == 308 and r.headers["location"] == "/console/"
            for path in ("/console/", "/console/tasks/od-1", "/console/data/tweets?q=x"):
                r = await c.get(path)
                assert r.status_code == 200 and "XGET-INDEX" in r.text, path
            r = await c.get("/console/assets/index-abc123.js")
            assert r.status_code == 200 and "xget" in r.text
            assert "immutable" in r.headers["cache-control"]
            assert (await c.get("/console/assets/missing.js")).status_code == 404
            r = await c.get("/console/../../etc/passwd")
            assert "root:" not in r.text
    finally:
        await g.stop()
