"""The x source through the account pool, and the gateway's kol-followings task type."""

from __future__ import annotations

import uuid

import httpx

from infra import local
from infra.service_process import ServiceProcess, wait_until
from libs.topics import CATALOGUE

from .test_kol_recovery import _result


def test_x_source_through_the_account_pool_gives_the_same_rows_as_the_api(kol_env, noida, tmp_path):
    env = kol_env
    handles = env.handles[:4]
    kols = env.write_kols(handles)
    assert env.cli("kol", "import", str(kols))[0] == 0
    assert env.cli("kol-followings")[0] == 0

    prefix = f"k{uuid.uuid4().hex[:8]}-"
    local.create_topics_sync(noida.bootstrap, prefix, CATALOGUE)
    (tmp_path / "x").mkdir()
    xs = env.settings.model_copy(
        update={
            "topic_prefix": prefix,
            "clickhouse_dsn": f"chdb://{tmp_path / 'x'}",
            "kol_source": "x",
            "kol_api_key": "",
            "kol_x_accounts": "manager",
            "account_key": "kol-account-key",
            "account_admin_port": local.free_port(),
        }
    )
    since = env.log_seq()
    assert env.cli("kol", "import", str(kols), settings=xs)[0] == 0
    # The accounts are the account-manager's pool (it imports XGET_X_ACCOUNTS at start); the
    # job leases them like any scraper.
    manager = ServiceProcess("account-manager", ["account-manager"], xs, tmp_path).start()
    try:
        code, out = env.cli("kol-followings", settings=xs)
    finally:
        manager.stop()
    assert code == 0, out + manager.tail()
    assert "4 of 4 KOLs complete" in out and "estimated cost $0.0000" in out

    got, want = _result(env, xs), _result(env)
    assert got[1] == want[1] and len(got[1]) == 4 * 50
    assert got[0] == want[0]
    # X was asked through the pool's accounts: lookups, then Following pages
    x_calls = env.calls(since, op="Following")
    first = env.settings.topic_prefix  # the fixture's accounts: {prefix}tok-a, {prefix}tok-b
    tokens = {f"{first}tok-a", f"{first}tok-b"}
    assert x_calls and {c["account"] for c in x_calls} <= tokens
    assert len(env.calls(since, op="UserByScreenName")) == 4
    assert env.calls(since) == []  # no paid API call


def test_gateway_task_runs_on_the_kol_worker_with_status(kol_env, tmp_path):
    env = kol_env
    port = local.free_port()
    settings = env.settings.model_copy(update={"gateway_port": port, "log_level": "INFO"})
    proc = ServiceProcess("kol", ["task-gateway", "kol-worker"], settings, tmp_path).start()
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {settings.api_token.get_secret_value()}"}
    try:
        wait_until(
            lambda: local.tcp_ready("127.0.0.1", port) or not proc.alive(), 60, "the gateway"
        )
        assert proc.alive(), proc.tail()
        bad = httpx.post(
            f"{base}/api/v1/tasks/kol-followings", headers=auth, json={"handles": ["not a handle"]}
        )
        assert bad.status_code == 422 and "handle" in bad.text
        r = httpx.post(
            f"{base}/api/v1/tasks/kol-followings", headers=auth, json={"handles": env.handles[:3]}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "success" and body["next_execution"]
        tid = body["task_id"]

        def status():
            s = httpx.get(f"{base}/api/v1/tasks/{tid}/status", headers=auth).json()
            return s if s["status"] in ("completed", "failed") else None

        final = wait_until(status, 120, "the task to finish")
        assert final["status"] == "completed", (final, proc.tail())
        assert final["progress"] == {"collected": 3, "target": 3, "percentage": 100.0}
        assert final["details"]["api_calls"] == 3 * 3 + 3  # pages + id lookups
        # listed and read like any task, in the design's task fields
        listed = httpx.get(
            f"{base}/api/v1/tasks", headers=auth, params={"type": "kol_followings"}
        ).json()
        assert [t["task_id"] for t in listed] == [tid]
        task = httpx.get(f"{base}/api/v1/tasks/{tid}", headers=auth).json()
        assert (task["type"], task["mode"], task["status"]) == (
            "kol_followings",
            "kol",
            "completed",
        )
        assert task["progress"] == {
            "collected": 3,
            "target": 3,
            "percentage": 100.0,
            "total": 3,
            "failed": 0,
        }
        assert task["parameters"]["handles"] == env.handles[:3]
        assert task["created_at"] <= task["started_at"] <= task["completed_at"], task
        assert task["error_message"] is None
    finally:
        assert proc.stop(), proc.tail()
    _users, edges = _result(env)
    assert edges == {(h, uid) for h in env.handles[:3] for uid in env.expected(h)}


def test_kol_worker_waits_out_a_clickhouse_outage_and_pays_no_call_twice(kol_env, tmp_path):
    """ClickHouse (over HTTP) is SIGKILLed while the worker fetches: the task is not failed,
    it shows what it waits for, and once ClickHouse is back it completes from the cache with
    no API call made twice."""
    env = kol_env
    ch_data, ch_port = tmp_path / "ch", local.free_port()
    clickhouse = local.start_chdb_http(ch_data, ch_port, log_dir=tmp_path)
    port = local.free_port()
    settings = env.settings.model_copy(
        update={
            "gateway_port": port,
            "clickhouse_dsn": f"http://default:@127.0.0.1:{ch_port}/default",
            "dependency_retry_base_s": 0.2,
            "dependency_retry_max_s": 2.0,
        }
    )
    env.settings = settings  # _result reads the stored rows through it
    proc = ServiceProcess("kol", ["task-gateway", "kol-worker"], settings, tmp_path).start()
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {settings.api_token.get_secret_value()}"}
    since = env.log_seq()
    # Hold the first call at the simulator and take ClickHouse away meanwhile.
    env.admin.post("/_sim/faults", json={"kind": "hold", "operation": "api.info", "count": 1})
    try:
        wait_until(
            lambda: local.tcp_ready("127.0.0.1", port) or not proc.alive(), 60, "the gateway"
        )
        r = httpx.post(
            f"{base}/api/v1/tasks/kol-followings", headers=auth, json={"handles": env.handles[:3]}
        )
        assert r.status_code == 200, r.text
        tid = r.json()["task_id"]
        wait_until(
            lambda: env.admin.get("/_sim/faults").json()[0]["fired"] == 1,
            60,
            "the first call to reach the simulator",
        )
        clickhouse.proc.kill()
        clickhouse.proc.wait(10)
        env.admin.delete("/_sim/faults")  # releases the held call

        def status() -> dict:
            return httpx.get(f"{base}/api/v1/tasks/{tid}/status", headers=auth).json()

        waiting = wait_until(
            lambda: (
                "waiting for ClickHouse" in ((s := status()).get("details", {}).get("error") or "")
                and s
            ),
            90,
            f"the task to wait for ClickHouse\n{proc.tail()}",
        )
        assert waiting["status"] == "running", waiting
        calls_while_down = len(env.calls(since))
        assert calls_while_down == 3 * 3  # every page fetched once and kept in the cache

        clickhouse = local.start_chdb_http(ch_data, ch_port, log_dir=tmp_path)
        final = wait_until(
            lambda: (s := status())["status"] in ("completed", "failed") and s,
            120,
            f"the task to finish\n{proc.tail()}",
        )
        assert final["status"] == "completed", (final, proc.tail())
        assert final["progress"] == {"collected": 3, "target": 3, "percentage": 100.0}
    finally:
        env.admin.delete("/_sim/faults")
        assert proc.stop(), proc.tail()
    assert len(env.calls(since)) == 3 * 3  # no followings page bought twice
    try:
        _users, edges = _result(env)
        assert edges == {(h, uid) for h in env.handles[:3] for uid in env.expected(h)}
    finally:
        clickhouse.stop()
