"""Fail closed: no service starts with an empty or well-known secret unless a developer says
so; `make up` generates its own secrets into the data dir instead."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import httpx
import pytest

from infra import stack
from infra.service_process import REPO
from libs.fail_closed import InsecureSecrets, check_secrets
from libs.settings import Settings
from services.task_gateway.api import create_app

SECRETS = ("XGET_API_TOKEN", "XGET_WEBHOOK_SECRET", "XGET_ACCOUNT_KEY")


def bare(**overrides) -> Settings:
    """Settings as a fresh deployment has them: no secrets at all."""
    env = {k: v for k, v in os.environ.items() if k in SECRETS}
    assert not env, f"the test environment sets {sorted(env)}"
    return Settings(_env_file=None, **overrides)


@pytest.mark.parametrize(
    "service, variables",
    [
        ("task-gateway", ["XGET_API_TOKEN"]),
        ("reporter", ["XGET_WEBHOOK_SECRET"]),
        ("scraper", ["XGET_ACCOUNT_KEY"]),
        ("account-manager", ["XGET_API_TOKEN", "XGET_ACCOUNT_KEY"]),
    ],
)
def test_a_service_refuses_to_start_naming_each_missing_secret(service, variables):
    with pytest.raises(InsecureSecrets) as e:
        check_secrets(bare(), [service])
    for v in variables:
        assert v in str(e.value)
    assert "XGET_INSECURE_DEV_DEFAULTS" in str(e.value)


@pytest.mark.parametrize("value", ["change-me", "CHANGE-ME", "change-me-too", "  ", ""])
def test_old_defaults_and_placeholders_count_as_no_secret(value):
    with pytest.raises(InsecureSecrets, match="XGET_API_TOKEN"):
        check_secrets(bare(api_token=value), ["task-gateway"])


def test_services_start_with_real_secrets_or_in_explicit_dev_mode():
    check_secrets(
        bare(api_token="x" * 32, webhook_secret="y" * 32, account_key="z" * 32),
        ["task-gateway", "reporter", "scraper", "account-manager"],
    )
    check_secrets(bare(insecure_dev_defaults=True), ["task-gateway", "reporter"])
    check_secrets(bare(), ["parser", "dedup-counter", "media-downloader"])  # use none


def test_kol_worker_needs_the_account_key_only_when_it_leases_x_accounts():
    check_secrets(bare(kol_source="api"), ["kol-worker"])
    with pytest.raises(InsecureSecrets, match="XGET_ACCOUNT_KEY"):
        check_secrets(bare(kol_source="x", kol_x_accounts="manager"), ["kol-worker"])


def test_xget_run_exits_with_the_message_before_starting_anything(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("XGET_")}
    env.update(PYTHONPATH=str(REPO), XGET_API_TOKEN="change-me")
    r = subprocess.run(
        [sys.executable, "-m", "services.cli", "run", "task-gateway", "reporter"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1
    assert "refusing to start task-gateway, reporter" in r.stderr
    assert "XGET_API_TOKEN" in r.stderr and "XGET_WEBHOOK_SECRET" in r.stderr
    assert "Traceback" not in r.stderr


async def test_the_gateway_accepts_nobody_with_an_empty_token():
    app = create_app(bare(insecure_dev_defaults=True), None, None)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        for header in ("Bearer ", "Bearer change-me", "Bearer x"):
            r = await c.get("/api/v1/tasks", headers={"Authorization": header})
            assert r.status_code == 401, header


def test_make_up_generates_secrets_into_the_data_dir_once(tmp_path, capsys):
    settings = bare(data_dir=str(tmp_path / "data"))
    env = stack._child_env(settings, 9092, None)
    files = {
        "XGET_API_TOKEN": "api.token",
        "XGET_WEBHOOK_SECRET": "webhook.secret",
        "XGET_ACCOUNT_KEY": "account.key",
    }
    for var, name in files.items():
        path = tmp_path / "data" / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert env[var] == path.read_text().strip() and len(env[var]) >= 32
    check_secrets(
        Settings(_env_file=None, **{v[5:].lower(): env[v] for v in files}),
        ["task-gateway", "reporter", "account-manager"],
    )
    assert stack._child_env(settings, 9092, None) == env  # the same on the next `make up`
    assert env["XGET_API_TOKEN"] != env["XGET_WEBHOOK_SECRET"]

    stack._print_local_secrets(settings)
    out = capsys.readouterr().out
    for var, name in files.items():
        assert f"{var} generated into {tmp_path / 'data' / name}" in out
    assert env["XGET_API_TOKEN"] not in out  # where, never what


def test_make_up_passes_an_operators_own_secret_through(tmp_path):
    settings = bare(data_dir=str(tmp_path), api_token="operator-chosen-token-0123456789")
    env = stack._child_env(settings, 9092, None)
    assert "XGET_API_TOKEN" not in env  # the services read the operator's own
    assert not (tmp_path / "api.token").exists()
