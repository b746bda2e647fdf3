"""Pipeline throughput with tracing and metrics on, divided by the same pipeline with them off.

    PYTHONPATH=. python bench/telemetry.py [--posts N] [--rounds R]

One noida-db broker and one X simulator serve every run. Each run gets a fresh topic prefix
and chdb directory and starts the same three service processes as bench/pipeline.py
(task-gateway+scraper+account-manager, parser, dedup-counter), submits one on-demand task of N
posts and times it from submit until the gateway says `completed`.

  off: XGET_TRACE_EXPORTER=none, XGET_METRICS_PORT=0 (no spans, no endpoint; the in-memory
       counters cannot be switched off and are updated in both modes)
  on:  XGET_TRACE_EXPORTER=file (a span per record, W3C context in every Kafka record,
       JSON lines written), /metrics on each process, scraped every second.

Modes alternate (off, on, off, on, …) so machine noise hits both alike; each mode's rate is
the median of its runs (the machine is shared: single runs swing by ±30%). The CPU seconds the
three service processes used per 1,000 posts are printed too: less sensitive to other load
than wall time, they show the cost directly. The last line is
`ratio: <median on posts/s ÷ median off posts/s>` (target ≥ 0.9).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
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

DENSITY_PER_HOUR = 60.0  # simulator default
WINDOW_END = datetime(2026, 10, 1, tzinfo=UTC)
PROCESSES = {
    "gateway+scraper": ["task-gateway", "scraper", "account-manager"],
    "parser": ["parser"],
    "dedup-counter": ["dedup-counter"],
}


def services_cpu(services: list[ServiceProcess]) -> float:
    """CPU seconds of every running service process together."""
    return sum(cpu_seconds(svc.pid) for svc in services if svc.proc is not None)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its reaped children (clock ticks → s)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def one_run(mode: str, broker: str, xsim: str, tmp: Path, n_posts: int) -> tuple[float, float, int]:
    run_dir = tmp / f"{mode}-{uuid.uuid4().hex[:6]}"
    run_dir.mkdir()
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    local.create_topics_sync(broker, prefix, CATALOGUE)
    base = Settings(
        _env_file=None,
        kafka_bootstrap=broker,
        kafka_group_mode="assign",
        kafka_empty_fetch_backoff_ms=50,
        topic_prefix=prefix,
        clickhouse_dsn=f"chdb://{run_dir / 'chdb'}",
        object_store_url=f"file://{run_dir / 'obj'}",
        data_dir=str(run_dir / "xget"),
        x_graphql_url=f"{xsim}/i/api/graphql",
        x_transaction_id="static",
        x_accounts="a1:t1:c1,a2:t2:c2,a3:t3:c3",
        account_key="bench-account-key",
        account_admin_port=local.free_port(),
        gateway_host="127.0.0.1",
        gateway_port=local.free_port(),
        api_token="bench-token",
        log_level="WARNING",
        metrics_port=0,
        trace_exporter="none",
    )
    ports = {}
    services = []
    for name, names in PROCESSES.items():
        s = base
        if mode == "on":
            ports[name] = local.free_port()
            s = base.model_copy(
                update={
                    "metrics_port": ports[name],
                    "trace_exporter": "file",
                    "trace_file": str(run_dir / f"{name}.spans.jsonl"),
                }
            )
        services.append(ServiceProcess(name, names, s, run_dir).start())
    scraping = threading.Event()

    def scrape() -> None:  # what Prometheus would do, a little more often
        while not scraping.wait(1.0):
            for port in ports.values():
                try:
                    httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
                except httpx.HTTPError:
                    pass

    scraper = threading.Thread(target=scrape, daemon=True)
    try:
        gw = gateway_client(base)
        wait_until(
            lambda: all_alive(services) and gw.get("/health").status_code == 200,
            90,
            "the gateway to answer",
        )
        time.sleep(3)  # parser and dedup-counter finish starting (assignment, migrations)
        all_alive(services)
        scraper.start()
        cpu0 = services_cpu(services)
        hours = math.ceil(n_posts / DENSITY_PER_HOUR * 1.25) + 2
        start = WINDOW_END - timedelta(hours=hours)
        t0 = time.perf_counter()
        r = gw.post(
            "/api/v1/tasks/ondemand",
            json={
                "keyword": f"tel{uuid.uuid4().hex[:6]}",
                "priority": 3,
                "required_count": n_posts,
                "start_time": start.isoformat().replace("+00:00", "Z"),
                "end_time": WINDOW_END.isoformat().replace("+00:00", "Z"),
            },
        )
        r.raise_for_status()
        task_id = r.json()["task_id"]
        deadline = time.monotonic() + max(300, n_posts / 10)
        while True:
            status = gw.get(f"/api/v1/tasks/{task_id}/status").json()
            if status.get("status") == "completed":
                elapsed = time.perf_counter() - t0
                cpu = services_cpu(services) - cpu0
                break
            all_alive(services)
            if time.monotonic() > deadline:
                raise RuntimeError(f"{mode}: not completed in time: {status}")
            time.sleep(0.05)
        collected = int(status["progress"]["collected"])
    finally:
        scraping.set()
        for svc in services:
            svc.stop()
    spans = sum(1 for f in run_dir.glob("*.spans.jsonl") for _ in f.open())
    if mode == "on" and spans == 0:
        raise RuntimeError("tracing was on but no span was written")
    return collected / elapsed, cpu * 1000 / collected, spans


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--posts", type=int, default=3_000, help="required_count of each task")
    ap.add_argument("--rounds", type=int, default=3, help="off/on pairs")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="xget-bench-tel-"))
    handles = []
    try:
        broker = local.start_noida(tmp / "noida", log_dir=tmp, timeout=60)
        handles.append(broker)
        xsim = local.start_xsim(log_dir=tmp, timeout=60)
        handles.append(xsim)
        httpx.post(
            f"{xsim.address}/_sim/config",
            json={"limits": {"SearchTimeline": 1_000_000}},
            timeout=10,
        ).raise_for_status()
        rates: dict[str, list[float]] = {"off": [], "on": []}
        cpus: dict[str, list[float]] = {"off": [], "on": []}
        for i in range(args.rounds):
            for mode in ("off", "on"):
                rate, cpu, spans = one_run(mode, broker.address, xsim.address, tmp, args.posts)
                rates[mode].append(rate)
                cpus[mode].append(cpu)
                extra = f", {spans} spans written" if mode == "on" else ""
                print(
                    f"round {i + 1} {mode:>3}: {args.posts} posts at {rate:,.1f} posts/s, "
                    f"{cpu:.2f} CPU s per 1k posts{extra}",
                    flush=True,
                )
        off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
        cpu_off, cpu_on = statistics.median(cpus["off"]), statistics.median(cpus["on"])
        print(
            f"median off: {off:,.1f} posts/s, {cpu_off:.2f} CPU s/1k posts; median on "
            f"(tracing + metrics): {on:,.1f} posts/s, {cpu_on:.2f} CPU s/1k posts "
            f"(CPU ratio off/on {cpu_off / cpu_on:.3f})"
        )
        print(f"ratio: {on / off:.3f}")
    finally:
        for h in reversed(handles):
            h.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
