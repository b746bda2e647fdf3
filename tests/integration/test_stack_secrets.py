"""`make up` on a fresh machine: no secret set anywhere, yet every service starts, with an API
token, webhook secret and account key generated into the data dir; the client uses the token
from there, and the old default token is refused."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import httpx

from infra import local


def test_make_up_generates_the_secrets_the_services_require(tmp_path):
    data = tmp_path / "x"
    gateway = local.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("XGET_")}
    env.update(
        {
            "PYTHONPATH": str(local.REPO_ROOT),
            "XGET_KAFKA_PORT": str(local.free_port()),
            "XGET_DATA_DIR": str(data),
            "XGET_CLICKHOUSE_DSN": f"chdb://{data / 'ch'}",
            "XGET_OBJECT_STORE_URL": f"file://{data / 'objects'}",
            "XGET_GATEWAY_PORT": str(gateway),
            "XGET_ACCOUNT_ADMIN_PORT": str(local.free_port()),
            "XGET_METRICS_PORT": "0",
        }
    )

    def stack(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "infra.stack", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )

    try:
        r = stack("up", "--no-xsim")
        assert r.returncode == 0, r.stdout + r.stderr + local.tail(data / "logs/services.log", 40)
        assert "services  started" in r.stdout, r.stdout
        for var, name in (
            ("XGET_API_TOKEN", "api.token"),
            ("XGET_WEBHOOK_SECRET", "webhook.secret"),
            ("XGET_ACCOUNT_KEY", "account.key"),
        ):
            path = data / name
            assert f"{var} generated into {path}" in r.stdout
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert path.read_text().strip() not in r.stdout
        token = (data / "api.token").read_text().strip()
        base = f"http://127.0.0.1:{gateway}/api/v1/tasks"
        ok = httpx.get(base, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert ok.status_code == 200, ok.text
        old = httpx.get(base, headers={"Authorization": "Bearer change-me"}, timeout=30)
        assert old.status_code == 401
    finally:
        r = stack("down")
    assert "services  stopped" in r.stdout, r.stdout + r.stderr
