"""Task submissions per second and latency of `POST /api/v1/tasks/ondemand`, next to a bare
FastAPI endpoint that does nothing, measured side by side in one run.

    PYTHONPATH=. python bench/gateway.py [--requests N] [--concurrency C]

Starts a fresh noida-db and the task-gateway (API + scheduler) as a process, and the bare
endpoint (bench/bare_api.py) under the same uvicorn. For each: a closed loop of C concurrent
clients sends N requests (every gateway request is a new task: validated, written to
task-commands and acknowledged by the broker), giving the maximum rate and p50/p99. Then an
open loop at half the gateway's maximum rate for a few seconds gives p99 at a sustainable rate
(target < 50 ms). The last line is `ratio: <gateway rate ÷ bare rate>` (target ≥ 0.5).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httpx

from infra import local
from infra.service_process import ServiceProcess, wait_until
from libs.settings import Settings
from libs.topics import CATALOGUE

TOKEN = "bench-token"
WINDOW = {"start_time": "2026-10-01T00:00:00Z", "end_time": "2026-10-02T00:00:00Z"}


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))] * 1000


async def closed_loop(url: str, n: int, conc: int, headers: dict) -> tuple[float, list[float]]:
    lat: list[float] = []
    left = n

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            body = {
                "task_id": f"b-{uuid.uuid4().hex}",
                "keyword": "bench",
                "required_count": 10,
                **WINDOW,
            }
            t = time.perf_counter()
            r = await client.post(url, json=body, headers=headers)
            lat.append(time.perf_counter() - t)
            if r.status_code != 200:
                raise RuntimeError(f"{url}: HTTP {r.status_code} {r.text[:200]}")

    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(conc)))
        elapsed = time.perf_counter() - t0
    return n / elapsed, lat


async def open_loop(url: str, rate: float, seconds: float, headers: dict) -> list[float]:
    lat: list[float] = []
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=200), timeout=30) as c:

        async def one() -> None:
            body = {
                "task_id": f"o-{uuid.uuid4().hex}",
                "keyword": "bench",
                "required_count": 10,
                **WINDOW,
            }
            t = time.perf_counter()
            r = await c.post(url, json=body, headers=headers)
            lat.append(time.perf_counter() - t)
            r.raise_for_status()

        tasks = []
        t0 = time.perf_counter()
        i = 0
        while (now := time.perf_counter() - t0) < seconds:
            due = i / rate
            if now < due:
                await asyncio.sleep(due - now)
            tasks.append(asyncio.create_task(one()))
            i += 1
        await asyncio.gather(*tasks)
    return lat


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--open-seconds", type=float, default=5.0)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="xget-bench-gw-"))
    handles, procs = [], []
    try:
        broker = local.start_noida(tmp / "noida", log_dir=tmp, timeout=60)
        handles.append(broker)
        prefix = f"g{uuid.uuid4().hex[:8]}-"
        local.create_topics_sync(broker.address, prefix, CATALOGUE)
        port, bare_port = local.free_port(), local.free_port()
        settings = Settings(
            _env_file=None,
            kafka_bootstrap=broker.address,
            kafka_group_mode="assign",
            kafka_empty_fetch_backoff_ms=50,
            topic_prefix=prefix,
            gateway_port=port,
            api_token=TOKEN,
            data_dir=str(tmp / "xget"),
            clickhouse_dsn=f"chdb://{tmp / 'ch'}",
            log_level="WARNING",
        )
        procs.append(ServiceProcess("task-gateway", ["task-gateway"], settings, tmp).start())
        bare = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "bench.bare_api:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(bare_port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        gw_url = f"http://127.0.0.1:{port}/api/v1/tasks/ondemand"
        bare_url = f"http://127.0.0.1:{bare_port}/bare"
        auth = {"Authorization": f"Bearer {TOKEN}"}
        wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200,
            90,
            "the gateway",
        )
        wait_until(
            lambda: httpx.post(bare_url, json={"keyword": "x"}).status_code == 200,
            60,
            "the bare endpoint",
        )

        # Warm both (connections, first-request imports), then measure alternately.
        asyncio.run(closed_loop(gw_url, 200, args.concurrency, auth))
        asyncio.run(closed_loop(bare_url, 200, args.concurrency, {}))
        gw_rate, gw_lat = asyncio.run(closed_loop(gw_url, args.requests, args.concurrency, auth))
        bare_rate, bare_lat = asyncio.run(
            closed_loop(bare_url, args.requests, args.concurrency, {})
        )
        sustain = gw_rate / 2
        open_lat = asyncio.run(open_loop(gw_url, sustain, args.open_seconds, auth))

        print(f"requests per side: {args.requests}, concurrency {args.concurrency}")
        print(
            f"gateway POST /api/v1/tasks/ondemand: {gw_rate:,.0f} req/s  "
            f"p50 {pct(gw_lat, 50):.1f} ms  p99 {pct(gw_lat, 99):.1f} ms"
        )
        print(
            f"bare FastAPI endpoint:               {bare_rate:,.0f} req/s  "
            f"p50 {pct(bare_lat, 50):.1f} ms  p99 {pct(bare_lat, 99):.1f} ms"
        )
        print(
            f"gateway at a sustainable {sustain:,.0f} req/s (half its max), open loop "
            f"{args.open_seconds:.0f} s: p50 {pct(open_lat, 50):.1f} ms  "
            f"p99 {pct(open_lat, 99):.1f} ms  (mean {statistics.mean(open_lat) * 1000:.1f} ms,"
            f" target p99 < 50 ms)"
        )
        print(f"ratio: {gw_rate / bare_rate:.3f}")
        return 0
    finally:
        for p in procs:
            p.stop()
        try:
            bare.terminate()
            bare.wait(10)
        except Exception:  # noqa: BLE001 - teardown of a process that may be gone already
            pass
        for h in reversed(handles):
            h.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
