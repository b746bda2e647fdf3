"""Proxies an operator can steer, end to end, through a real SOCKS4 proxy (infra/proxy.py):
per-proxy requests, success and latency in the admin API and on /metrics move with the
requests that went through it; its region, provider, cost and expiry are kept; a disabled
proxy carries no request until it is enabled (API and CLI); a proxy that dies raises the
proxy alerts."""

from __future__ import annotations

import uuid

import pytest

from infra import local
from infra.local import free_port
from infra.service_process import ServiceProcess, wait_until
from tests.webhook_server import WebhookServer

from .harness import Gateway, Simulator
from .test_accounts import Admin, cli
from .test_alerts import delivered
from .test_metrics import scrape, total
from .test_pipeline import pipeline_settings

pytestmark = pytest.mark.e2e

SECRET = "proxy-hook-secret"
START, END = "2026-07-01T00:00:00Z", "2026-07-03T00:00:00Z"


def test_socks4_proxy_metrics_disable_and_alerts(noida, xsim, tmp_path, chdb_path):
    uid = uuid.uuid4().hex[:6]
    sim = Simulator(xsim)
    sim.configure(limits={"SearchTimeline": 100_000})
    proxy = local.start_proxy(log_dir=tmp_path, name="socks4-proxy")
    port = free_port()
    name = f"px{uid}"
    with WebhookServer(SECRET) as hook:
        settings = pipeline_settings(
            noida,
            xsim,
            tmp_path,
            chdb_path,
            x_accounts=f"{name}:tok-{name}:ct0-{name}",
            metrics_port=port,
            proxy_check_url=f"{xsim}/_sim/health",
            proxy_check_interval_s=30,  # the death is found by the requests through it
            proxy_dead_after=2,
            account_lease_ttl_s=10,
            webhook_secret=SECRET,
            alert_webhook_url=hook.url,
            alert_eval_interval_s=1.0,
            alert_for_s=0,
            alert_min_usable_accounts=0,
            alert_error_min_requests=2,
            alert_error_window_s=10,
            alert_proxy_error_rate_max=0.5,
        )
        proc = ServiceProcess("xget-all", ["all"], settings, tmp_path).start()
        gw, admin = Gateway(settings), Admin(settings)

        def view(pid: str) -> dict:
            r = admin.client.get(f"/api/v1/admin/proxies/{pid}")
            r.raise_for_status()
            return r.json()

        def run(keyword: str) -> str:
            r = gw.submit(keyword=keyword, required_count=100, start_time=START, end_time=END)
            assert r.status_code == 200, r.text
            return r.json()["task_id"]

        try:
            wait_until(
                lambda: proc.alive() and gw.ready() and admin.ready(), 60, f"up\n{proc.tail()}"
            )
            r = admin.client.post(
                "/api/v1/admin/proxies",
                json={
                    "url": f"socks4://127.0.0.1:{proxy.port}",
                    "region": "eu",
                    "provider": "local",
                    "cost_per_gb": 1.25,
                    "expires_at": "2030-01-01T00:00:00Z",
                },
            )
            assert r.status_code == 201, r.text
            pid = r.json()["id"]
            assert pid == f"socks4-127.0.0.1-{proxy.port}"
            assert (r.json()["region"], r.json()["provider"], r.json()["cost_per_gb"]) == (
                "eu",
                "local",
                1.25,
            )
            assert r.json()["expires_at"].startswith("2030-01-01")
            bad = admin.client.post(
                "/api/v1/admin/proxies", json={"url": "socks4://127.0.0.1:1", "cost_per_gb": "x"}
            )
            assert bad.status_code == 422 and "cost_per_gb" in bad.text
            wait_until(lambda: view(pid)["status"] == "healthy", 30, "the proxy's first check")

            # 1. A task goes through the SOCKS4 proxy; its counts follow the requests.
            first = f"socks{uid}"
            task = run(first)
            wait_until(lambda: gw.status(task)["status"] == "completed", 120, "the first task")
            n = len(sim.search_requests(first))
            assert "proxy SOCKS4 " in proxy.log_tail(500)
            v = wait_until(lambda: (v := view(pid))["requests"] >= n and v, 30, "the counts")
            assert v["requests"] == n and v["request_failures"] == 0, v
            assert v["request_success_rate"] == 1.0 and v["request_latency_ms"] > 0
            assert admin.account(name)["proxy"] == pid
            m = wait_until(
                lambda: (
                    (s := scrape(f"http://127.0.0.1:{port}"))
                    and total(s, "xget_proxy_requests", proxy=pid, result="ok") == n
                    and s
                ),
                30,
                "xget_proxy_requests on /metrics",
            )
            assert total(m, "xget_proxy_latency_ms", proxy=pid) > 0
            assert total(m, "xget_proxy_usable", proxy=pid) == 1

            # 2. Disabled: no request goes through it (none at all, it is the only proxy),
            # once the lease granted before the disable has ended.
            r = admin.client.post(
                f"/api/v1/admin/proxies/{pid}/disable", json={"reason": "provider maintenance"}
            )
            assert r.status_code == 200 and r.json()["status"] == "disabled", r.text
            assert r.json()["disabled_reason"] == "provider maintenance"
            wait_until(
                lambda: not any(o["leased"] for o in admin.account(name)["operations"].values()),
                60,
                "the lease from before the disable to end",
            )
            lines_before = proxy.log_tail(100_000).count("proxy SOCKS4 ")  # tunnels opened
            second = f"off{uid}"
            task2 = run(second)
            wait_until(
                lambda: (
                    (st := gw.status(task2))["status"] == "waiting_for_accounts"
                    or st.get("waiting_for_accounts")
                ),
                60,
                "the task to wait for a usable proxy",
            )
            assert sim.search_requests(second) == []
            assert proxy.log_tail(100_000).count("proxy SOCKS4 ") == lines_before
            m = scrape(f"http://127.0.0.1:{port}")
            assert total(m, "xget_proxy_usable", proxy=pid) == 0

            # 3. Enabled again (from the CLI this time): the task goes through it.
            out = cli(settings, "proxies", "enable", pid)
            assert out.returncode == 0 and f"{pid}: enabled" in out.stdout, out.stderr
            listed = cli(settings, "proxies", "list")
            assert pid in listed.stdout and "eu" in listed.stdout and "local" in listed.stdout
            wait_until(lambda: gw.status(task2)["status"] == "completed", 120, "the second task")
            # (its connection may be one kept alive from before: count requests, not tunnels)
            n2 = len(sim.search_requests(second))
            wait_until(lambda: view(pid)["requests"] == n + n2, 30, "the second task's requests")

            # 4. The proxy dies under a task: its requests fail, it is dead, the alerts fire.
            proxy.stop()
            run(f"dead{uid}")
            for alert in ("XGetProxyErrorRate", "XGetProxyShortage", "XGetHealthyProxiesLow"):
                wait_until(
                    lambda: delivered(hook, alert, "firing"),
                    60,
                    f"{alert}\n{proc.tail()}",
                )
            assert view(pid)["status"] == "dead" and view(pid)["request_failures"] >= 2
            got = gw.client.get("/api/v1/admin/alerts").json()
            shown = {a["name"] for a in got["firing"] + got["recent"]}
            assert {"XGetProxyShortage", "XGetHealthyProxiesLow"} <= shown
            action = delivered(hook, "XGetProxyShortage", "firing")[0]["annotations"]["action"]
            assert "xget proxies" in action
        finally:
            proc.stop()
            proxy.stop()
