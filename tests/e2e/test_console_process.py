"""The console backend in a real gateway process (`xget run task-gateway`): the first admin of
a fresh system signs in, the audit log of done and refused actions and the process's own
warnings (shipped to service-logs) survive a SIGKILL and restart, and the session does too."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from infra.local import free_port
from infra.service_process import ServiceProcess, wait_until
from services.task_gateway.users_cli import ensure_first_admin

from .harness import fresh_prefix

pytestmark = pytest.mark.e2e


def test_audit_and_logs_survive_a_gateway_kill(noida, tmp_path):
    settings = noida.settings(
        topic_prefix=fresh_prefix(noida.bootstrap),
        api_token="console-e2e-token-0123456789",
        gateway_port=free_port(),
        account_admin_url=f"http://127.0.0.1:{free_port()}",  # no account-manager runs
        data_dir=str(tmp_path / "xget"),
        clickhouse_dsn=f"chdb://{tmp_path / 'chdb'}",
    )
    password = asyncio.run(ensure_first_admin(settings))
    assert password
    base = f"http://127.0.0.1:{settings.gateway_port}"
    gw = ServiceProcess("gateway", ["task-gateway"], settings, tmp_path)

    def ready() -> bool:
        try:
            return httpx.get(f"{base}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    gw.start()
    try:
        wait_until(ready, 60, "the gateway")
        admin = httpx.Client(base_url=base, timeout=30)
        r = admin.post("/api/v1/auth/login", json={"username": "admin", "password": password})
        assert r.status_code == 200, r.text
        admin.headers["X-CSRF-Token"] = r.json()["csrf_token"]
        r = admin.post(
            "/api/v1/admin/users",
            json={"username": "vic", "role": "viewer", "password": "vic-password-1"},
        )
        assert r.status_code == 201, r.text
        viewer = httpx.Client(base_url=base, timeout=30)
        r = viewer.post(
            "/api/v1/auth/login", json={"username": "vic", "password": "vic-password-1"}
        )
        viewer.headers["X-CSRF-Token"] = r.json()["csrf_token"]
        r = viewer.delete("/api/v1/admin/users/admin")
        assert r.status_code == 403
        # The account-manager is down: a 503, and the gateway's warning about it is shipped
        # (within about a second: the shipper flushes once a second).
        r = admin.get("/api/v1/admin/accounts")
        assert r.status_code == 503

        def shipped_warning() -> list[dict]:
            items = admin.get("/api/v1/admin/logs", params={"limit": 100}).json()["items"]
            return [
                i
                for i in items
                if i["process"] == "xget:task-gateway" and "account-manager" in i["message"]
            ]

        wait_until(shipped_warning, 30, "the gateway's warning on service-logs")

        gw.kill()  # SIGKILL: nothing is flushed on the way out
        gw.start()
        wait_until(ready, 60, "the gateway after the kill")
        # The same session cookie works on the new process (signed, state on the broker).
        assert admin.get("/api/v1/auth/me").json()["username"] == "admin"
        entries = admin.get("/api/v1/admin/audit", params={"limit": 100}).json()["items"]
        seen = {(e["actor"], e["action"], e["result"]) for e in entries}
        assert ("admin", "POST /api/v1/admin/users", "done") in seen
        assert ("vic", "DELETE /api/v1/admin/users/{username}", "refused") in seen
        assert not any(
            e["actor"] == "vic" and e["result"] == "done"
            for e in entries
            if e["action"] != "POST /api/v1/auth/login"
        )
        found = shipped_warning()  # still there after the restart
        assert found and found[0]["level"] == "WARNING"
    finally:
        if not gw.stop():
            print(gw.tail())
