"""The console's export at 100,000 stored posts: CSV rows/s through the gateway against a bare
clickhouse-connect query of the same rows, and the gateway's memory while it streams them.

    PYTHONPATH=. python bench/console.py [--posts 100000]

Fills an embedded ClickHouse (chdb) with synthetic posts (bench/query_data.py), times a bare
clickhouse-connect query of the rows and columns the export writes (every column but raw_data,
FINAL, newest first) in this process, then starts a noida-db broker and the task-gateway on
that data and streams `GET /api/v1/data/tweets/export?format=csv`, counting the CSV rows while
sampling the gateway's RSS every 50 ms. Targets: ratio ≥ 0.5, RSS during the export within
+50 MB of before it.

The console's own figures (JavaScript shipped for the first page, time to its `load` event in
Chromium) are measured by `console_page_figures` below (bench/console_web.py); the last line
stays `ratio: X` = gateway rows/s ÷ bare rows/s.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httpx

from bench.query_data import fill
from infra import local
from infra.service_process import ServiceProcess, wait_until
from libs.settings import Settings
from libs.storage.clickhouse import ClickHouseStore
from libs.storage.migrate import apply_migrations
from libs.topics import CATALOGUE
from services.task_gateway.export import EXPORT_COLUMNS

TOKEN = "bench-token"


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def bare_rows_per_s(ch_dir: Path, posts: int) -> float:
    store = ClickHouseStore(f"chdb://{ch_dir}")
    try:
        apply_migrations(store)
        print(f"filling {posts:,} posts …")
        fill(store, posts, batch=25_000)
        sql = f"SELECT {', '.join(EXPORT_COLUMNS)} FROM posts FINAL ORDER BY post_time DESC, post_id DESC"
        store.query_rows_sync(sql + " LIMIT 1000")  # warm
        t = time.perf_counter()
        n = len(store.query_rows_sync(sql))
        dt = time.perf_counter() - t
        assert n == posts, (n, posts)
        print(f"bare clickhouse-connect query: {n:,} rows in {dt:.2f} s = {n / dt:,.0f} rows/s")
        return n / dt
    finally:
        store.close()


def console_page_figures() -> None:
    """JavaScript shipped for the console's first page (target ≤ 500 KB gzipped) and the time
    to its `load` event in Chromium (bench/console_web.py: web/dist served at /console/)."""
    from bench.console_web import report

    report()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--posts", type=int, default=100_000)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="xget-bench-console-"))
    ch_dir = tmp / "ch"
    handles, procs = [], []
    try:
        bare = bare_rows_per_s(ch_dir, args.posts)
        broker = local.start_noida(tmp / "noida", log_dir=tmp, timeout=60)
        handles.append(broker)
        prefix = f"c{uuid.uuid4().hex[:8]}-"
        local.create_topics_sync(broker.address, prefix, CATALOGUE)
        port = local.free_port()
        settings = Settings(
            _env_file=None,
            kafka_bootstrap=broker.address,
            kafka_group_mode="assign",
            topic_prefix=prefix,
            gateway_port=port,
            api_token=TOKEN,
            data_dir=str(tmp / "xget"),
            clickhouse_dsn=f"chdb://{ch_dir}",
            log_level="WARNING",
        )
        gw = ServiceProcess("task-gateway", ["task-gateway"], settings, tmp).start()
        procs.append(gw)
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: httpx.get(f"{base}/health").status_code == 200, 120, "the gateway")
        auth = {"Authorization": f"Bearer {TOKEN}"}
        url = f"{base}/api/v1/data/tweets/export"
        with httpx.Client(headers=auth, timeout=300) as client:
            # warm: ClickHouse opened, first-request imports, an export of a few thousand rows
            # through (the engine's caches of the columns): "before" is the idle gateway
            r = client.get(f"{base}/api/v1/data/tweets/search", params={"limit": 50})
            r.raise_for_status()
            total = int(r.headers["X-Total-Count"])
            client.get(url, params={"format": "csv", "min_likes": 100_000}).raise_for_status()
            time.sleep(2)
            before = rss_mb(gw.pid)
            peak = [before]
            done = threading.Event()

            def sample() -> None:
                while not done.is_set():
                    peak[0] = max(peak[0], rss_mb(gw.pid))
                    time.sleep(0.05)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            t = time.perf_counter()
            with client.stream("GET", url, params={"format": "csv"}) as resp:
                resp.raise_for_status()
                rows = sum(1 for _ in csv.reader(resp.iter_lines())) - 1
            dt = time.perf_counter() - t
            done.set()
            sampler.join()
        assert rows == total == args.posts, (rows, total, args.posts)
        gw_rate = rows / dt
        print(f"gateway CSV export: {rows:,} rows in {dt:.2f} s = {gw_rate:,.0f} rows/s")
        print(
            f"gateway RSS: {before:.0f} MB before, {peak[0]:.0f} MB at most during the export "
            f"(+{peak[0] - before:.0f} MB; target ≤ +50 MB)"
        )
        console_page_figures()
        print(f"ratio: {gw_rate / bare:.3f}")
        return 0
    finally:
        for p in procs:
            p.stop()
        for h in reversed(handles):
            h.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
