"""Account utilisation: collected posts per minute against the accounts' theoretical maximum.

    PYTHONPATH=. python bench/accounts.py [--accounts K] [--limit L] [--window W] [--windows N]

Starts a fresh noida-db and the X simulator with a SearchTimeline limit of L requests per
account per W-second window, runs the account-manager (with gateway, parser and counter) and
TWO scraper replicas as separate processes (consumer group "members" mode), registers K
accounts, and submits more work than the accounts can serve (several tasks, so both replicas
page). Measured from the simulator's own request log over N whole windows, starting at the
second the first request was made (the simulator's windows start on whole seconds):

  collected = successful SearchTimeline pages × posts per page (20)
  maximum   = K × L × posts per page × N      (every account spends its whole limit every window)

Posts per minute of both are printed; the last line is `ratio: <collected ÷ maximum>`.
A request refused with 429 (an account asked beyond its limit) is counted and reported.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("TWS_TELEMETRY", "0")

import httpx  # noqa: E402

from infra import local  # noqa: E402
from infra.service_process import ServiceProcess, all_alive, gateway_client, wait_until  # noqa: E402
from libs.settings import Settings  # noqa: E402
from libs.topics import CATALOGUE  # noqa: E402

PAGE_SIZE = 20
API_TOKEN = "bench-token"


def run(k: int, limit: int, window: int, n_windows: int, keep: bool = False) -> float:
    tmp = Path(tempfile.mkdtemp(prefix="xget-bench-accounts-"))
    logs = tmp / "logs"
    logs.mkdir()
    broker = xsim = None
    services: list[ServiceProcess] = []

    def stop_all() -> None:
        for s in services:
            s.stop()
        for h in (xsim, broker):
            if h is not None:
                h.stop()

    try:
        broker = local.start_noida(tmp / "kafka", log_dir=logs)
        xsim = local.start_xsim(log_dir=logs)
        prefix = f"b{uuid.uuid4().hex[:6]}-"
        local.create_topics_sync(broker.address, prefix, CATALOGUE)
        sim = httpx.Client(base_url=xsim.address, timeout=30)
        sim.post(
            "/_sim/config", json={"limits": {"SearchTimeline": limit}, "window_seconds": window}
        ).raise_for_status()
        names = [f"bench{i}" for i in range(k)]
        tokens = {n: f"tok-{n}-{uuid.uuid4().hex[:8]}" for n in names}
        settings = Settings(
            _env_file=None,
            kafka_bootstrap=broker.address,
            kafka_group_mode="members",
            kafka_empty_fetch_backoff_ms=50,
            topic_prefix=prefix,
            clickhouse_dsn=f"chdb://{tmp / 'chdb'}",
            object_store_url=f"file://{tmp / 'objects'}",
            data_dir=str(tmp / "xget"),
            x_graphql_url=f"{xsim.address}/i/api/graphql",
            x_transaction_id="static",
            x_accounts=",".join(f"{n}:{tokens[n]}:ct0-{n}" for n in names),
            x_rate_limits=f"SearchTimeline:{limit}",
            x_rate_window_s=window,
            account_key="bench-account-key",
            account_admin_port=local.free_port(),
            gateway_port=local.free_port(),
            api_token=API_TOKEN,
            log_level="WARNING",
        )
        services = [
            ServiceProcess(
                "core",
                ["task-gateway", "parser", "dedup-counter", "account-manager"],
                settings,
                logs,
            ).start(),
            ServiceProcess("scraper1", ["scraper"], settings, logs).start(),
            ServiceProcess("scraper2", ["scraper"], settings, logs).start(),
        ]
        gw = gateway_client(settings)

        wait_until(
            lambda: all_alive(services) and gw.get("/health").status_code == 200,
            90,
            "the gateway to answer",
        )
        # More work than the accounts can serve in the measured windows, over 6 tasks.
        per_task = (k * limit * PAGE_SIZE * (n_windows + 2)) // 6 + PAGE_SIZE
        for _ in range(6):
            r = gw.post(
                "/api/v1/tasks/ondemand",
                json={
                    "keyword": f"bench{uuid.uuid4().hex[:6]}",
                    "required_count": per_task,
                    "start_time": "2026-01-01T00:00:00Z",
                    "end_time": "2026-03-01T00:00:00Z",
                },
            )
            if r.status_code != 200:
                raise RuntimeError(f"submit failed: {r.status_code} {r.text}")

        ours = set(tokens.values())

        def requests() -> list[dict]:
            return [
                e
                for e in sim.get("/_sim/log").json()
                if e.get("operation") == "SearchTimeline" and e.get("account") in ours
            ]

        first = wait_until(lambda: requests(), 120, "the first request to X")
        t0 = float(int(min(e["ts"] for e in first)))
        t_end = t0 + n_windows * window
        while time.time() < t_end + 1.0:
            all_alive(services)
            time.sleep(0.5)
        log = [e for e in requests() if t0 <= e["ts"] < t_end]
        ok = sum(1 for e in log if e["status"] == 200)
        refused = sum(1 for e in log if e["status"] == 429)
        minutes = n_windows * window / 60
        collected = ok * PAGE_SIZE
        maximum = k * limit * PAGE_SIZE * n_windows
        per_account = {
            n: sum(1 for e in log if e["account"] == tokens[n] and e["status"] == 200)
            for n in names
        }
        print(
            f"accounts: {k}; SearchTimeline limit {limit} per {window}s window; "
            f"2 scraper replicas; measured {n_windows} windows ({minutes * 60:.0f}s)"
        )
        print(f"pages per account: {per_account}; refused (429): {refused}")
        print(f"collected: {collected} posts = {collected / minutes:,.1f} posts/min")
        print(
            f"maximum:   {maximum} posts = {maximum / minutes:,.1f} posts/min "
            f"(K x limit x {PAGE_SIZE} posts/page per window)"
        )
        ratio = collected / maximum
        print(f"ratio: {ratio:.3f}")
        return ratio
    finally:
        stop_all()
        if keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", type=int, default=3)
    ap.add_argument("--limit", type=int, default=5, help="SearchTimeline requests per window")
    ap.add_argument("--window", type=int, default=10, help="window length in seconds")
    ap.add_argument("--windows", type=int, default=6, help="windows measured")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, data)")
    a = ap.parse_args()
    run(a.accounts, a.limit, a.window, a.windows, keep=a.keep)


if __name__ == "__main__":
    main()
