"""End-to-end pipeline throughput vs the bare parse rate, on the same X simulator pages.

    PYTHONPATH=. python bench/pipeline.py [--posts N]

Starts a fresh noida-db broker (temp data dir) and the X simulator, creates the topics, runs
three service processes (task-gateway+scraper, parser, dedup-counter; temp chdb), submits one
on-demand task with required_count=N and times it from submit until the gateway says
`completed`. RSS (VmRSS, process + descendants) of each service process and the broker is
sampled when progress crosses 10% and at 100%.

Then the raw pages the scraper stored are read back from the raw-pages topic and the same
number of pages (ceil(N / page size)) is parsed bare with `bench.bare_parse.bare_parse_rate`
(json.loads + twscrape parse_tweets). Both rates count TOP-LEVEL POSTS: end-to-end the task's
collected posts, bare the post entries X returned on those pages (RawPage.entries, 20 a page);
twscrape's own tweet count (which adds quoted originals) is printed for reference.

Also printed: the CPU seconds every process (broker and simulator included) used from submit
to completed, and what the idle stack costs per second before the task, so a change of the
ratio can be traced to a process. `--parsers N` runs N parser replicas (members mode).
`--runs N` runs N tasks one after another on the same stack, prints each one's rate, CPU,
ratio and RSS at its end (whether memory levels off across tasks), and ends with the median
ratio. Later tasks also pay for a fuller stack (noida-db's
periodic snapshot grows with the data it holds, chdb merges bigger parts), so the first task is
the one to compare with single runs.

The last line is `ratio: <end-to-end posts/s ÷ bare parse posts/s>`.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("TWS_TELEMETRY", "0")

import httpx  # noqa: E402

from bench.bare_parse import bare_parse_rate  # noqa: E402
from infra import local  # noqa: E402
from infra.service_process import ServiceProcess, all_alive, gateway_client, wait_until  # noqa: E402
from libs.kafka import scan_partition  # noqa: E402
from libs.records.pages import RawPage  # noqa: E402
from libs.settings import Settings  # noqa: E402
from libs.topics import CATALOGUE, RAW_PAGES  # noqa: E402

PAGE_SIZE = 20
DENSITY_PER_HOUR = 60.0  # simulator default
WINDOW_END = datetime(2026, 10, 1, tzinfo=UTC)
API_TOKEN = "bench-token"


# --- RSS ------------------------------------------------------------------------------------------
def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def _vmrss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_mb(pid: int, kids: dict[int, list[int]] | None = None) -> float:
    """VmRSS of `pid` and all its descendants, in MiB."""
    kids = kids if kids is not None else _children_map()
    total, stack, seen = 0, [pid], set()
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.add(p)
        total += _vmrss_kb(p)
        stack.extend(kids.get(p, ()))
    return total / 1024


def _cpu_s(pid: int) -> float:
    """utime + stime of one process, in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def sample_cpu(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far by each process and its descendants."""
    kids = _children_map()
    out = {}
    for name, pid in pids.items():
        total, stack, seen = 0.0, [pid], set()
        while stack:
            p = stack.pop()
            if p not in seen:
                seen.add(p)
                total += _cpu_s(p)
                stack.extend(kids.get(p, ()))
        out[name] = total
    return out


def sample_rss(pids: dict[str, int]) -> dict[str, float]:
    kids = _children_map()
    return {name: tree_rss_mb(pid, kids) for name, pid in pids.items()}


# --- service processes ---------------------------------------------------------------------------
# --- raw pages read-back -------------------------------------------------------------------------
async def _read_raw_pages(settings: Settings, task_id: str) -> list[RawPage]:
    """The task's successful raw pages, read back verbatim from every raw-pages partition."""
    pages = []
    for partition in range(RAW_PAGES.partitions):
        async for _msg, rec in scan_partition(settings, RAW_PAGES, partition, 0):
            if (
                isinstance(rec, RawPage)
                and rec.task_id == task_id
                and rec.response
                and rec.outcome == "ok"
            ):
                pages.append(rec)
    return pages


# --- one task --------------------------------------------------------------------------------------
def _run_task(
    gw, services: list[ServiceProcess], pids: dict[str, int], cpu_pids: dict[str, int], n_posts: int
) -> dict:
    """Submit one on-demand task for n_posts and wait until the gateway says completed: its
    time, RSS at 10% and 100%, and CPU of every process from submit to completed."""
    hours = math.ceil(n_posts / DENSITY_PER_HOUR * 1.25) + 2
    start = WINDOW_END - timedelta(hours=hours)
    keyword = f"bench{uuid.uuid4().hex[:6]}"

    cpu0 = sample_cpu(cpu_pids)
    t0 = time.perf_counter()
    r = gw.post(
        "/api/v1/tasks/ondemand",
        json={
            "keyword": keyword,
            "priority": 3,
            "required_count": n_posts,
            "start_time": start.isoformat().replace("+00:00", "Z"),
            "end_time": WINDOW_END.isoformat().replace("+00:00", "Z"),
        },
    )
    if r.status_code != 200:
        raise RuntimeError(f"submit failed: {r.status_code} {r.text}")
    task_id = r.json()["task_id"]

    rss: dict[str, dict[str, float]] = {}
    status: dict = {}
    deadline = time.monotonic() + max(300, n_posts / 10)
    while True:
        status = gw.get(f"/api/v1/tasks/{task_id}/status").json()
        prog = status.get("progress") or {}
        pct = prog.get("percentage") or 0.0
        if "10%" not in rss and pct >= 10.0:
            rss["10%"] = sample_rss(pids)
        if status.get("status") == "completed":
            elapsed = time.perf_counter() - t0
            rss["100%"] = sample_rss(pids)
            cpu1 = sample_cpu(cpu_pids)
            rss.setdefault("10%", rss["100%"])
            break
        if status.get("status") == "failed":
            raise RuntimeError(f"task failed: {status}")
        all_alive(services)
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"task not completed in time: {status}\n" + "\n".join(s.tail(15) for s in services)
            )
        time.sleep(0.1)
    return {
        "task_id": task_id,
        "keyword": keyword,
        "hours": hours,
        "elapsed": elapsed,
        "collected": int(status["progress"]["collected"]),
        "rss": rss,
        "cpu0": cpu0,
        "cpu1": cpu1,
    }


# --- main ------------------------------------------------------------------------------------------
def run(n_posts: int, keep: bool = False, parsers: int = 1, runs: int = 1) -> float:
    tmp = Path(tempfile.mkdtemp(prefix="xget-bench-"))
    logs = tmp / "logs"
    logs.mkdir()
    handles: list = []
    services: list[ServiceProcess] = []

    def stop_all() -> None:
        for s in services:
            try:
                s.stop()
            except Exception as e:  # noqa: BLE001
                print(f"stopping {s.name}: {e!r}", file=sys.stderr)
        for h in reversed(handles):
            try:
                h.stop()
            except Exception as e:  # noqa: BLE001
                print(f"stopping {h.name}: {e!r}", file=sys.stderr)

    try:
        broker = local.start_noida(tmp / "noida", log_dir=logs, timeout=60)
        handles.append(broker)
        xsim = local.start_xsim(log_dir=logs, timeout=60)
        handles.append(xsim)
        prefix = f"b{uuid.uuid4().hex[:8]}-"
        local.create_topics_sync(broker.address, prefix, CATALOGUE)
        httpx.post(
            f"{xsim.address}/_sim/config",
            json={"limits": {"SearchTimeline": 1_000_000}},
            timeout=10,
        ).raise_for_status()

        gw_port = local.free_port()
        settings = Settings(
            _env_file=None,
            kafka_bootstrap=broker.address,
            # One instance per service takes every partition ("assign"); parser replicas
            # share raw-pages as a consumer group (members).
            kafka_group_mode="assign" if parsers == 1 else "members",
            kafka_empty_fetch_backoff_ms=50,  # noida answers empty fetches at once
            topic_prefix=prefix,
            clickhouse_dsn=f"chdb://{tmp / 'chdb'}",
            object_store_url=f"file://{tmp / 'objects'}",
            data_dir=str(tmp / "xget"),
            x_graphql_url=f"{xsim.address}/i/api/graphql",
            x_transaction_id="static",
            x_accounts="a1:t1:c1,a2:t2:c2,a3:t3:c3",
            account_key="bench-account-key",
            account_admin_port=local.free_port(),
            gateway_host="127.0.0.1",
            gateway_port=gw_port,
            api_token=API_TOKEN,
            log_level="WARNING",
        )
        services = [
            ServiceProcess(
                "gateway+scraper", ["task-gateway", "scraper", "account-manager"], settings, logs
            ).start(),
            *(
                ServiceProcess(
                    "parser" if parsers == 1 else f"parser{i + 1}", ["parser"], settings, logs
                ).start()
                for i in range(parsers)
            ),
            ServiceProcess("dedup-counter", ["dedup-counter"], settings, logs).start(),
        ]
        gw = gateway_client(settings)

        wait_until(
            lambda: all_alive(services) and gw.get("/health").status_code == 200,
            90,
            "the gateway to answer",
        )
        # Let the parser and dedup-counter finish starting (consumers assigned, migrations).
        time.sleep(3)
        all_alive(services)
        # What the idle stack costs (consumers polling, timers), for reading the CPU table.
        idle_pids = {s.name: s.proc.pid for s in services} | {"noida-db (broker)": broker.pid}
        idle0, idle_t0 = sample_cpu(idle_pids), time.perf_counter()
        time.sleep(2)
        idle1, idle_s = sample_cpu(idle_pids), time.perf_counter() - idle_t0

        pids = {s.name: s.proc.pid for s in services} | {"noida-db (broker)": broker.pid}
        cpu_pids = pids | {"x simulator": xsim.pid}
        results = [_run_task(gw, services, pids, cpu_pids, n_posts) for _ in range(runs)]
        first = results[0]
        task_id, keyword, hours = first["task_id"], first["keyword"], first["hours"]
        collected, elapsed, rss = first["collected"], first["elapsed"], first["rss"]
        cpu0, cpu1 = first["cpu0"], first["cpu1"]
        e2e_rate = collected / elapsed

        # Same pages the pipeline fetched, read back verbatim from raw-pages.
        raw = local.run_sync(lambda: _read_raw_pages(settings, task_id))
        # Parse on a quiet machine: nothing of the stack runs during the bare measurement.
        stop_all()
        raw.sort(key=lambda p: (p.slice_id, p.page_no))
        want_pages = math.ceil(n_posts / PAGE_SIZE)
        pages = raw[:want_pages]
        if not pages:
            raise RuntimeError("no raw pages found on raw-pages")
        bodies = [p.response.encode() for p in pages]
        top_level = sum(p.entries for p in pages)
        logging.disable(logging.WARNING)
        bare_parse_rate(bodies[:5])  # warm-up
        # Best of 3: the bare rate is the ceiling, so noise from other load must not lower it.
        tws_tweets, bare_s = min((bare_parse_rate(bodies) for _ in range(3)), key=lambda r: r[1])
        bare_rate = top_level / bare_s

        print(
            f"posts requested: {n_posts}; collected: {collected}; keyword {keyword}; "
            f"window {hours} h"
        )
        print(
            f"raw pages on raw-pages for the task: {len(raw)} "
            f"({sum(p.entries for p in raw)} post entries)"
        )
        print(
            f"end-to-end: {collected} posts in {elapsed:.2f}s = {e2e_rate:,.1f} posts/s "
            f"(submit -> status completed)"
        )
        print(
            f"bare parse (json.loads + twscrape parse_tweets, 1 core, best of 3): "
            f"{len(pages)} pages, "
            f"{top_level} top-level posts ({tws_tweets} twscrape tweets incl. quoted) in "
            f"{bare_s:.3f}s = {bare_rate:,.1f} posts/s (top-level posts)"
        )
        print("RSS MiB (VmRSS incl. children):")
        names = list(pids)
        w = max(len(n) for n in names)
        print(f"  {'process':<{w}}  {'@10%':>8}  {'@100%':>8}")
        for n in names:
            print(f"  {n:<{w}}  {rss['10%'][n]:>8.1f}  {rss['100%'][n]:>8.1f}")
        tot10, tot100 = sum(rss["10%"].values()), sum(rss["100%"].values())
        print(f"  {'total':<{w}}  {tot10:>8.1f}  {tot100:>8.1f}")
        print(
            f"CPU seconds from submit to completed (wall {elapsed:.2f}s, "
            f"{os.cpu_count()} cores; bare parse of the same posts would take "
            f"{collected / bare_rate:.2f}s):"
        )
        for n in cpu_pids:
            print(f"  {n:<{w}}  {cpu1[n] - cpu0[n]:>8.2f}")
        print(f"  {'total':<{w}}  {sum(cpu1.values()) - sum(cpu0.values()):>8.2f}")
        print(
            "idle stack before the task, CPU seconds per second: "
            + ", ".join(f"{n} {(idle1[n] - idle0[n]) / idle_s:.3f}" for n in idle_pids)
        )
        ratio = e2e_rate / bare_rate
        if runs > 1:
            print(
                f"{runs} tasks one after another on the same stack (the tables above are "
                f"the first's):"
            )
            ratios = []
            for i, res in enumerate(results, 1):
                rate = res["collected"] / res["elapsed"]
                cpu = sum(res["cpu1"].values()) - sum(res["cpu0"].values())
                ratios.append(rate / bare_rate)
                print(
                    f"  task {i}: {res['collected']} posts in {res['elapsed']:.2f}s = "
                    f"{rate:,.1f} posts/s, {cpu:.2f} CPU s, ratio {ratios[-1]:.3f}"
                )
            # memory across tasks: a leak grows with every task, a warm cache levels off
            print("RSS MiB at each task's 100%:")
            print(
                f"  {'process':<{w}}  "
                + "  ".join(f"{'task ' + str(i):>8}" for i in range(1, runs + 1))
            )
            for n in names:
                print(
                    f"  {n:<{w}}  " + "  ".join(f"{res['rss']['100%'][n]:>8.1f}" for res in results)
                )
            ratio = statistics.median(ratios)
            print(f"median of {runs}: {ratio:.3f}")
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
    ap.add_argument("--posts", type=int, default=10_000, help="required_count of the task")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, data)")
    ap.add_argument("--parsers", type=int, default=1, help="parser replicas (processes)")
    ap.add_argument(
        "--runs",
        type=int,
        default=1,
        help="tasks run one after another on the same stack; the last line is then "
        "the median ratio (a shared host's noise moves single runs)",
    )
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    run(args.posts, keep=args.keep, parsers=args.parsers, runs=args.runs)


if __name__ == "__main__":
    main()
