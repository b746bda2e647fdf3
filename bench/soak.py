"""Soak under chaos: tasks keep running while services crash and dependencies go away in turn.

    PYTHONPATH=. python bench/soak.py [--minutes 5] [--fault-s 20] [--task-every 30]
                                      [--no-broker-kill] [--keep]

Starts its own noida-db broker, the X simulator (answering slowly, so tasks last), an S3
server and a webhook receiver, and every XGet service as its own process with ClickHouse over
HTTP (infra/separate_stack.py). For `--minutes`, a new on-demand task (all posts of a
12-hour window, a keyword of its own) is submitted every `--task-every` seconds, while a
chaos loop applies one fault after another, each for `--fault-s` seconds:

  kill      SIGKILL a random service (each runs supervised, as `make up` runs them: it comes
            back by itself)
  clickhouse  the ClickHouse server SIGKILLed, started again on its data
  s3        the object store taken off the network (connections refused and reset)
  broker-stop the broker SIGSTOPped (hung: nothing answers, nothing is refused), then SIGCONT
  broker-kill the broker SIGKILLed and started again on its data directory

After each fault it prints the time to recover: from the fault's end until the stack collects
or reports again. When the time is up the chaos stops, and every task must complete and be
reported. Then, per post the simulator holds for the tasks' windows:

  good = stored in ClickHouse exactly once (one row of `posts FINAL`, in `task_posts`) and
         in exactly one delivered batch

The last line is `ratio: X` with X = good ÷ expected posts (a loss or a duplicate lowers
it; target 1.0). Dead letters and X pages asked twice are printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("TWS_TELEMETRY", "0")

import httpx

from infra import local
from infra.separate_stack import SERVICES, SeparateStack
from infra.service_process import gateway_client, wait_until
from libs.kafka import scan_partition
from libs.settings import Settings
from libs.storage.clickhouse import ClickHouseStore
from libs.topics import CATALOGUE, DEAD_LETTERS
from services.task_gateway.scheduler import search_query
from tests.webhook_server import WebhookServer

SECRET = "soak-secret"
WINDOW = timedelta(hours=12)  # 720 posts at the simulator's 60 an hour
FIRST_WINDOW = datetime(2025, 1, 1, tzinfo=UTC)


class Soak:
    def __init__(self, tmp: Path, fault_s: float, broker_kill: bool):
        self.tmp = tmp
        self.fault_s = fault_s
        self.logs = tmp / "logs"
        self.logs.mkdir()
        self.broker_dir, self.broker_port = tmp / "kafka", local.free_port()
        self.broker = local.start_noida(self.broker_dir, self.broker_port, log_dir=self.logs)
        self.xsim = local.start_xsim(log_dir=self.logs)
        self.s3 = local.start_moto(log_dir=self.logs)
        self.hook = WebhookServer(SECRET).__enter__()
        prefix = f"soak{uuid.uuid4().hex[:6]}-"
        local.create_topics_sync(self.broker.address, prefix, CATALOGUE)
        self.sim = httpx.Client(base_url=self.xsim.address, timeout=30)
        self.sim.post(
            "/_sim/config", json={"limits": {"SearchTimeline": 100_000}}
        ).raise_for_status()
        self.sim.post("/_sim/faults", json={"kind": "slow", "delay_s": 0.3}).raise_for_status()
        settings = Settings(
            _env_file=None,
            kafka_bootstrap=self.broker.address,
            topic_prefix=prefix,
            kafka_group_mode="assign",
            kafka_empty_fetch_backoff_ms=50,
            object_store_url=f"s3://soak-{uuid.uuid4().hex[:8]}",
            s3_access_key="testing",
            s3_secret_key="testing",
            data_dir=str(tmp / "xget"),
            x_graphql_url=f"{self.xsim.address}/i/api/graphql",
            x_media_base=self.xsim.address,
            x_video_base=self.xsim.address,
            x_transaction_id="static",
            x_accounts="s1:tok-s1:ct0-s1,s2:tok-s2:ct0-s2,s3:tok-s3:ct0-s3",
            account_key="soak-account-key",
            account_admin_port=local.free_port(),
            gateway_port=local.free_port(),
            api_token="soak-token",
            webhook_secret=SECRET,
            webhook_url=self.hook.url,
            webhook_allow_hosts="127.0.0.1",
            webhook_backoff_base_s=0.2,
            webhook_backoff_max_s=5.0,
            dependency_retry_base_s=0.5,
            dependency_retry_max_s=5.0,
            report_max_wait_s=2.0,
            report_media_wait_s=60,
            log_level="WARNING",
        )
        self.stack = SeparateStack(settings, self.logs, self.s3.address).start()
        self.gw = gateway_client(self.stack.settings)
        self.tasks: dict[str, tuple[str, datetime, datetime]] = {}
        self.faults = ["kill", "clickhouse", "s3", "broker-stop"]
        if broker_kill:
            self.faults.append("broker-kill")
        self.recoveries: dict[str, list[float]] = {}

    # --- load ---------------------------------------------------------------------------------
    def submit(self) -> None:
        n = len(self.tasks)
        start = FIRST_WINDOW + n * WINDOW
        keyword = f"soak{n}x{uuid.uuid4().hex[:4]}"
        task_id = f"soak-{n:03d}-{keyword}"
        body = {
            "task_id": task_id,
            "keyword": keyword,
            "required_count": 0,
            "start_time": start.isoformat(),
            "end_time": (start + WINDOW).isoformat(),
        }
        # The gateway may be the service just killed: the same task id makes a retry safe.
        wait_until(lambda: self._post(body), 120, f"the gateway to accept {task_id}")
        self.tasks[task_id] = (keyword, start, start + WINDOW)

    def _post(self, body: dict) -> bool:
        try:
            return self.gw.post("/api/v1/tasks/ondemand", json=body).status_code == 200
        except httpx.HTTPError:
            return False

    def activity(self) -> int:
        """Posts counted plus posts reported so far: grows while the stack works."""
        reported = sum(len(r.body.get("post_ids", ())) for r in self.hook.accepted())
        counted = 0
        for task_id in self.tasks:
            try:
                counted += self.gw.get(f"/api/v1/tasks/{task_id}/status").json()["progress"][
                    "collected"
                ]
            except (httpx.HTTPError, KeyError, ValueError):
                pass
        return counted + reported

    def all_done(self) -> bool:
        done = {
            r.body.get("task_id")
            for r in self.hook.accepted()
            if r.body.get("completion_status") == "completed"
        }
        return set(self.tasks) <= done

    # --- chaos --------------------------------------------------------------------------------
    def fault(self, kind: str) -> tuple[str, float]:
        """Apply one fault and heal it; (what it was, how long the part was down)."""
        what, t0 = kind, time.monotonic()
        if kind == "kill":
            # Supervised (as make up runs them): the service comes back by itself.
            victim = random.choice(SERVICES)
            what = f"kill {victim}"
            before = self.stack.procs[victim].restarts()
            self.stack.kill(victim)
            wait_until(
                lambda: self.stack.procs[victim].restarts() > before,
                60,
                f"{victim} to be restarted by its supervisor",
            )
        elif kind == "clickhouse":
            self.stack.clickhouse_down()
            time.sleep(self.fault_s)
            self.stack.clickhouse_up()
        elif kind == "s3":
            self.stack.s3_down()
            time.sleep(self.fault_s)
            self.stack.s3_up()
        elif kind == "broker-stop":
            os.kill(self.broker.pid, signal.SIGSTOP)
            time.sleep(self.fault_s)
            os.kill(self.broker.pid, signal.SIGCONT)
        elif kind == "broker-kill":
            os.kill(self.broker.pid, signal.SIGKILL)
            self.broker.proc.wait(10)
            time.sleep(self.fault_s)
            self.broker = local.start_noida(
                self.broker_dir, self.broker_port, log_dir=self.logs, timeout=120
            )
        return what, time.monotonic() - t0

    def recovered_after(self, kind: str, what: str, down_s: float, deadline_s: float = 300) -> None:
        healed, before = time.monotonic(), self.activity()
        try:
            wait_until(
                lambda: self.activity() > before or self.all_done(),
                deadline_s,
                f"work to go on after {what}",
                interval=0.2,
            )
            took = time.monotonic() - healed
        except AssertionError:
            took = float("inf")
        self.recoveries.setdefault(kind, []).append(took)
        print(f"  {what:28s} {down_s:4.1f}s down, recovered in {took:.1f}s", flush=True)

    # --- the verdict --------------------------------------------------------------------------
    def verdict(self) -> float:
        expected: dict[str, set[str]] = {}
        for task_id, (keyword, start, end) in self.tasks.items():
            ids = self.sim.get(
                "/_sim/corpus", params={"query": search_query(keyword, start, end)}
            ).json()["ids"]
            expected[task_id] = set(ids)
        batches = {r.body["batch_id"]: r.body for r in self.hook.accepted()}
        reported = Counter(pid for b in batches.values() for pid in b.get("post_ids", ()))
        with ClickHouseStore(self.stack.dsn) as ch:
            rows: Counter[str] = Counter()
            in_task: set[tuple[str, str]] = set()
            for task_id in self.tasks:
                for pid, n in ch.query_rows_sync(
                    "SELECT post_id, count() FROM posts FINAL WHERE task_id = {t:String} "
                    "GROUP BY post_id",
                    {"t": task_id},
                ):
                    rows[pid] += n
                in_task |= {
                    (task_id, r[0])
                    for r in ch.query_rows_sync(
                        "SELECT DISTINCT post_id FROM task_posts WHERE task_id = {t:String}",
                        {"t": task_id},
                    )
                }
        total = sum(len(v) for v in expected.values())
        good = sum(
            1
            for t, ids in expected.items()
            for p in ids
            if rows[p] == 1 and (t, p) in in_task and reported[p] == 1
        )
        stray = sum(1 for p in rows if not any(p in ids for ids in expected.values()))
        dead = asyncio.run(_count_dead_letters(self.stack.settings))
        asked = Counter(
            (e.get("raw_query"), e.get("cursor"))
            for e in self.sim.get("/_sim/log").json()
            if e.get("operation") == "SearchTimeline"
            and e.get("status") == 200
            and "soak" in (e.get("raw_query") or "")
        )
        print(
            f"tasks: {len(self.tasks)}; expected posts: {total}; stored rows: "
            f"{sum(rows.values())}; reported: {sum(reported.values())} in {len(batches)} "
            f"batches; posts outside the windows: {stray}"
        )
        print(
            f"lost or duplicated: {total - good}; dead letters: {dead}; X pages asked "
            f"twice: {sum(1 for n in asked.values() if n > 1)}"
        )
        for kind, times in sorted(self.recoveries.items()):
            finite = [t for t in times if t != float("inf")]
            worst = max(times) if times else 0.0
            print(
                f"recovery after {kind:12s}: {len(times)} faults, median "
                f"{sorted(finite)[len(finite) // 2] if finite else float('inf'):.1f}s, "
                f"worst {worst:.1f}s"
            )
        return good / total if total else 0.0

    def close(self) -> None:
        try:
            self.sim.delete("/_sim/faults")
        except httpx.HTTPError:
            pass
        self.stack.stop()
        self.hook.__exit__()
        for h in (self.s3, self.xsim, self.broker):
            h.stop()


async def _count_dead_letters(settings: Settings) -> int:
    n = 0
    for part in range(DEAD_LETTERS.partitions):
        async for _ in scan_partition(settings, DEAD_LETTERS, part, 0, deadline_s=60):
            n += 1
    return n


def run(minutes: float, fault_s: float, task_every: float, broker_kill: bool, keep: bool) -> float:
    tmp = Path(tempfile.mkdtemp(prefix="xget-soak-"))
    soak = None
    try:
        soak = Soak(tmp, fault_s, broker_kill)
        print(
            f"soak for {minutes:g} min; faults in turn: {', '.join(soak.faults)}; "
            f"{fault_s:g}s each; a task every {task_every:g}s",
            flush=True,
        )
        end = time.monotonic() + minutes * 60
        soak.submit()
        next_task = time.monotonic() + task_every
        turn = 0
        while time.monotonic() < end:
            kind = soak.faults[turn % len(soak.faults)]
            turn += 1
            what, down_s = soak.fault(kind)
            soak.recovered_after(kind, what, down_s)
            if time.monotonic() >= next_task and time.monotonic() < end:
                soak.submit()
                next_task = time.monotonic() + task_every
        print("chaos over; waiting for every task to complete and be reported", flush=True)
        try:
            wait_until(soak.all_done, 900, "every task's completed report", interval=1)
        except AssertionError as e:
            print(f"NOT DONE: {e}\n{soak.stack.tails(15)}", flush=True)
        dead = soak.stack.dead()
        if dead:
            print(f"processes down at the end: {dead}")
        print(
            f"restarts by the supervisors: {soak.stack.restarts()} (the kill faults: "
            f"{len(soak.recoveries.get('kill', []))})"
        )
        ratio = soak.verdict()
        print(f"ratio: {ratio:.4f}")
        return ratio
    finally:
        if soak is not None:
            soak.close()
        if keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--fault-s", type=float, default=20.0, help="how long each fault lasts")
    ap.add_argument("--task-every", type=float, default=30.0, help="seconds between tasks")
    ap.add_argument(
        "--no-broker-kill",
        action="store_true",
        help="leave SIGKILL+restart of the broker out of the faults",
    )
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, data)")
    a = ap.parse_args()
    run(a.minutes, a.fault_s, a.task_every, not a.no_broker_kill, a.keep)


if __name__ == "__main__":
    main()
