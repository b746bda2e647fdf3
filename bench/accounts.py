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

    PYTHONPATH=. python bench/accounts.py --mixed [--accounts K] [--limit L] [--profile-limit U]
                                          [--window W] [--windows N]

Work that waits for an account must not hold up work of another X operation: one wide search
(a 30-day window, hundreds of pages) spends SearchTimeline on every account and its slices
park, while a stream of user_profile tasks (one UserByScreenName request each, submitted
faster than the accounts allow) runs beside it. Measured from the simulator's log over N whole
windows from the first UserByScreenName request:

  served  = user_profile tasks answered (UserByScreenName 200s; each task is one request)
  maximum = K × U × N                (the pool's UserByScreenName limits)

The last line is `ratio: <served ÷ maximum>` (target ≥ 0.9); the tasks are also checked to
have completed.
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

import httpx

from infra import local
from infra.service_process import ServiceProcess, all_alive, gateway_client, wait_until
from libs.settings import Settings
from libs.topics import CATALOGUE

PAGE_SIZE = 20
API_TOKEN = "bench-token"


class Stack:
    """A fresh noida-db and X simulator (`limits` per account per `window` seconds), the core
    services (gateway, parser, counter, account-manager) and two scraper replicas as separate
    processes, with K accounts; stopped (and its temp dir removed unless `keep`) on exit."""

    def __init__(self, k: int, limits: dict[str, int], window: int, name: str, keep: bool):
        self.k, self.limits, self.window, self.name, self.keep = k, limits, window, name, keep
        self.tmp = Path(tempfile.mkdtemp(prefix=f"xget-bench-{name}-"))
        self.broker: local.ProcessHandle | None = None
        self.xsim: local.ProcessHandle | None = None
        self.services: list[ServiceProcess] = []

    def __enter__(self) -> Stack:
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start(self) -> None:
        logs = self.tmp / "logs"
        logs.mkdir()
        self.broker = local.start_noida(self.tmp / "kafka", log_dir=logs)
        self.xsim = local.start_xsim(log_dir=logs)
        self.prefix = f"b{uuid.uuid4().hex[:6]}-"
        local.create_topics_sync(self.broker.address, self.prefix, CATALOGUE)
        self.sim = httpx.Client(base_url=self.xsim.address, timeout=30)
        self.sim.post(
            "/_sim/config", json={"limits": self.limits, "window_seconds": self.window}
        ).raise_for_status()
        self.names = [f"{self.name}{i}" for i in range(self.k)]
        self.tokens = {n: f"tok-{n}-{uuid.uuid4().hex[:8]}" for n in self.names}
        settings = Settings(
            _env_file=None,
            kafka_bootstrap=self.broker.address,
            kafka_group_mode="members",
            kafka_empty_fetch_backoff_ms=50,
            topic_prefix=self.prefix,
            clickhouse_dsn=f"chdb://{self.tmp / 'chdb'}",
            object_store_url=f"file://{self.tmp / 'objects'}",
            data_dir=str(self.tmp / "xget"),
            x_graphql_url=f"{self.xsim.address}/i/api/graphql",
            x_transaction_id="static",
            x_accounts=",".join(f"{n}:{self.tokens[n]}:ct0-{n}" for n in self.names),
            x_rate_limits=",".join(f"{op}:{n}" for op, n in self.limits.items()),
            x_rate_window_s=self.window,
            account_key="bench-account-key",
            account_admin_port=local.free_port(),
            gateway_port=local.free_port(),
            api_token=API_TOKEN,
            log_level="WARNING",
        )
        self.services = [
            ServiceProcess(
                "core",
                ["task-gateway", "parser", "dedup-counter", "account-manager"],
                settings,
                logs,
            ).start(),
            ServiceProcess("scraper1", ["scraper"], settings, logs).start(),
            ServiceProcess("scraper2", ["scraper"], settings, logs).start(),
        ]
        self.gw = gateway_client(settings)
        wait_until(
            lambda: all_alive(self.services) and self.gw.get("/health").status_code == 200,
            90,
            "the gateway to answer",
        )

    def log_of(self, op: str) -> list[dict]:
        """The simulator's log of `op` requests made with this stack's accounts."""
        ours = set(self.tokens.values())
        return [
            e
            for e in self.sim.get("/_sim/log").json()
            if e.get("operation") == op and e.get("account") in ours
        ]

    def alive(self) -> None:
        all_alive(self.services)

    def __exit__(self, *exc) -> None:
        for svc in self.services:
            svc.stop()
        for h in (self.xsim, self.broker):
            if h is not None:
                h.stop()
        if self.keep:
            print(f"kept {self.tmp}", file=sys.stderr)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def run(k: int, limit: int, window: int, n_windows: int, keep: bool = False) -> float:
    with Stack(k, {"SearchTimeline": limit}, window, "bench", keep) as st:
        gw, tokens, names = st.gw, st.tokens, st.names
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

        def requests() -> list[dict]:
            return st.log_of("SearchTimeline")

        first = wait_until(lambda: requests(), 120, "the first request to X")
        t0 = float(int(min(e["ts"] for e in first)))
        t_end = t0 + n_windows * window
        while time.time() < t_end + 1.0:
            st.alive()
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


def run_mixed(
    k: int, limit: int, profile_limit: int, window: int, n_windows: int, keep: bool = False
) -> float:
    limits = {"SearchTimeline": limit, "UserByScreenName": profile_limit}
    with Stack(k, limits, window, "mixed", keep) as st:
        gw, log_of = st.gw, st.log_of
        # The wide search: 30 day-slices, more than the scrapers' slots, none with a target.
        r = gw.post(
            "/api/v1/tasks/ondemand",
            json={
                "keyword": f"wide{uuid.uuid4().hex[:6]}",
                "start_time": "2026-01-01T00:00:00Z",
                "end_time": "2026-01-31T00:00:00Z",
            },
        )
        r.raise_for_status()
        wait_until(
            lambda: len([e for e in log_of("SearchTimeline") if e["status"] == 200]) >= k * limit,
            120,
            "the wide search to spend SearchTimeline",
        )
        # The stream: 1.5x what the accounts allow, so their limits are what is measured.
        interval = window / (k * profile_limit * 1.5)
        submitted: list[str] = []
        t_stream = time.time()
        t0 = t_end = None
        while t_end is None or time.time() < t_end + 1.0:
            if t_end is None or time.time() < t_end:
                body = {"type": "user_profile", "username": f"p{len(submitted)}x{st.prefix[1:7]}"}
                r = gw.post("/api/v1/tasks/search", json=body)
                r.raise_for_status()
                submitted.append(r.json()["task_id"])
            if t0 is None and (first := log_of("UserByScreenName")):
                t0 = float(int(min(e["ts"] for e in first)))
                t_end = t0 + n_windows * window
            elif t0 is None and time.time() - t_stream > 2 * window:
                # Nothing reached X in two windows (the search holds every slot): measured
                # from the first submission instead.
                t0 = float(int(t_stream))
                t_end = t0 + n_windows * window
            st.alive()
            time.sleep(interval)
        profiles = [e for e in log_of("UserByScreenName") if t0 <= e["ts"] < t_end]
        served = sum(1 for e in profiles if e["status"] == 200)
        refused = sum(1 for e in profiles if e["status"] == 429)
        searches = [e for e in log_of("SearchTimeline") if t0 <= e["ts"] < t_end]
        # Every task X answered completes (the pipeline is not the bottleneck).
        answered = sum(1 for e in log_of("UserByScreenName") if e["status"] == 200)
        wait_until(
            lambda: (
                sum(
                    1
                    for t in submitted
                    if gw.get(f"/api/v1/tasks/{t}/status").json().get("status") == "completed"
                )
                >= answered
            ),
            60,
            "the answered user_profile tasks to complete",
        )
        minutes = n_windows * window / 60
        maximum = k * profile_limit * n_windows
        print(
            f"accounts: {k}; limits per {window}s window: SearchTimeline {limit}, "
            f"UserByScreenName {profile_limit}; 2 scraper replicas; measured {n_windows} "
            f"windows ({minutes * 60:.0f}s)"
        )
        print(
            f"wide search: {len(searches)} SearchTimeline requests in the measured windows "
            f"(it parks between its windows); user_profile tasks submitted: {len(submitted)}; "
            f"refused (429): {refused}; answered tasks completed: {answered}"
        )
        print(f"served:  {served} user_profile tasks = {served / minutes:,.1f}/min")
        print(f"maximum: {maximum} = {maximum / minutes:,.1f}/min (K x UserByScreenName limit)")
        ratio = served / maximum
        print(f"ratio: {ratio:.3f}")
        return ratio


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", type=int, default=3)
    ap.add_argument("--limit", type=int, default=5, help="SearchTimeline requests per window")
    ap.add_argument("--window", type=int, default=10, help="window length in seconds")
    ap.add_argument("--windows", type=int, default=6, help="windows measured")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, data)")
    ap.add_argument(
        "--mixed",
        action="store_true",
        help="a wide search that spends SearchTimeline plus a stream of user_profile tasks",
    )
    ap.add_argument(
        "--profile-limit",
        type=int,
        default=5,
        help="UserByScreenName requests per window (--mixed)",
    )
    a = ap.parse_args()
    if a.mixed:
        run_mixed(a.accounts, a.limit, a.profile_limit, a.window, a.windows, keep=a.keep)
    else:
        run(a.accounts, a.limit, a.window, a.windows, keep=a.keep)


if __name__ == "__main__":
    main()
