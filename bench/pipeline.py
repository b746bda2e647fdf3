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

The last line is `ratio: <end-to-end posts/s ÷ bare parse posts/s>`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import shutil
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("TWS_TELEMETRY", "0")

import httpx  # noqa: E402

from bench.bare_parse import bare_parse_rate  # noqa: E402
from infra import local  # noqa: E402
from libs.topics import CATALOGUE, RAW_PAGES, topic_name  # noqa: E402

PAGE_SIZE = 20
DENSITY_PER_HOUR = 60.0  # simulator default
WINDOW_END = datetime(2026, 10, 1, tzinfo=timezone.utc)
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


def sample_rss(pids: dict[str, int]) -> dict[str, float]:
    kids = _children_map()
    return {name: tree_rss_mb(pid, kids) for name, pid in pids.items()}


# --- service processes ---------------------------------------------------------------------------
class Service:
    def __init__(self, name: str, services: list[str], env: dict[str, str], log_dir: Path):
        self.name, self.services, self.env = name, services, env
        self.log_path = log_dir / f"{name}.log"
        self.proc = None

    def start(self) -> "Service":
        import subprocess

        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "run", *self.services],
                cwd=REPO, env={**os.environ, **self.env, "PYTHONPATH": str(REPO)},
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        finally:
            log.close()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            local.stop_pid(self.proc.pid, group=True, timeout=20, proc=self.proc)
            try:
                self.proc.wait(timeout=2)
            except Exception:  # noqa: BLE001
                pass

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


def wait_until(pred, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # noqa: BLE001
            last = e
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what}"
                       + (f" (last error: {last!r})" if last else ""))


# --- raw pages read-back -------------------------------------------------------------------------
async def _read_raw_pages(bootstrap: str, topic: str, task_id: str) -> list:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from libs.records.pages import RawPage

    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                         auto_offset_reset="earliest", max_partition_fetch_bytes=16 << 20,
                         fetch_max_bytes=64 << 20)
    await c.start()
    try:
        parts = [TopicPartition(topic, p) for p in (c.partitions_for_topic(topic) or ())]
        if not parts:
            await c.force_metadata_update() if hasattr(c, "force_metadata_update") else None
            parts = [TopicPartition(topic, p) for p in (c.partitions_for_topic(topic) or ())]
        c.assign(parts)
        await c.seek_to_beginning(*parts)
        ends = await c.end_offsets(parts)
        todo = {tp for tp in parts if ends[tp] > 0}
        pages = []
        while todo:
            batch = await c.getmany(timeout_ms=1000, max_records=2000)
            for tp, msgs in batch.items():
                for m in msgs:
                    rp = RawPage.decode(m.value)
                    if rp.task_id == task_id and rp.response and rp.outcome == "ok":
                        pages.append(rp)
                if tp in todo and await c.position(tp) >= ends[tp]:
                    todo.discard(tp)
            for tp in list(todo):
                if await c.position(tp) >= ends[tp]:
                    todo.discard(tp)
        return pages
    finally:
        await c.stop()


# --- main ------------------------------------------------------------------------------------------
def run(n_posts: int, keep: bool = False) -> float:
    tmp = Path(tempfile.mkdtemp(prefix="xget-bench-"))
    logs = tmp / "logs"
    logs.mkdir()
    handles: list = []
    services: list[Service] = []

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
        httpx.post(f"{xsim.address}/_sim/config",
                   json={"limits": {"SearchTimeline": 1_000_000}}, timeout=10).raise_for_status()

        gw_port = local.free_port()
        env = {
            "XGET_KAFKA_BOOTSTRAP": broker.address,
            "XGET_KAFKA_GROUP_MODE": "assign",
            "XGET_KAFKA_EMPTY_FETCH_BACKOFF_MS": "50",  # noida answers empty fetches at once
            "XGET_TOPIC_PREFIX": prefix,
            "XGET_CLICKHOUSE_DSN": f"chdb://{tmp / 'chdb'}",
            "XGET_OBJECT_STORE_URL": f"file://{tmp / 'objects'}",
            "XGET_DATA_DIR": str(tmp / "xget"),
            "XGET_X_GRAPHQL_URL": f"{xsim.address}/i/api/graphql",
            "XGET_X_TRANSACTION_ID": "static",
            "XGET_X_ACCOUNTS": "a1:t1:c1,a2:t2:c2,a3:t3:c3",
            "XGET_GATEWAY_HOST": "127.0.0.1",
            "XGET_GATEWAY_PORT": str(gw_port),
            "XGET_API_TOKEN": API_TOKEN,
            "XGET_LOG_LEVEL": "WARNING",
        }
        services = [
            Service("gateway+scraper", ["task-gateway", "scraper"], env, logs).start(),
            Service("parser", ["parser"], env, logs).start(),
            Service("dedup-counter", ["dedup-counter"], env, logs).start(),
        ]
        gw = httpx.Client(base_url=f"http://127.0.0.1:{gw_port}", timeout=10,
                          headers={"Authorization": f"Bearer {API_TOKEN}"})

        def all_alive() -> bool:
            for s in services:
                if not s.alive():
                    raise RuntimeError(f"{s.name} exited:\n{s.tail()}")
            return True

        wait_until(lambda: all_alive() and gw.get("/health").status_code == 200, 90,
                   "the gateway to answer")
        # Let the parser and dedup-counter finish starting (consumers assigned, migrations).
        time.sleep(3)
        all_alive()

        hours = math.ceil(n_posts / DENSITY_PER_HOUR * 1.25) + 2
        start = WINDOW_END - timedelta(hours=hours)
        keyword = f"bench{uuid.uuid4().hex[:6]}"
        pids = {s.name: s.proc.pid for s in services} | {"noida-db (broker)": broker.pid}

        t0 = time.perf_counter()
        r = gw.post("/api/v1/tasks/ondemand", json={
            "keyword": keyword, "priority": 3, "required_count": n_posts,
            "start_time": start.isoformat().replace("+00:00", "Z"),
            "end_time": WINDOW_END.isoformat().replace("+00:00", "Z")})
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
                rss.setdefault("10%", rss["100%"])
                break
            if status.get("status") == "failed":
                raise RuntimeError(f"task failed: {status}")
            all_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"task not completed in time: {status}\n"
                                   + "\n".join(s.tail(15) for s in services))
            time.sleep(0.1)
        collected = int(status["progress"]["collected"])
        e2e_rate = collected / elapsed

        # Same pages the pipeline fetched, read back verbatim from raw-pages.
        raw = local.run_sync(lambda: _read_raw_pages(
            broker.address, topic_name(RAW_PAGES, prefix), task_id))
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

        print(f"posts requested: {n_posts}; collected: {collected}; keyword {keyword}; "
              f"window {hours} h")
        print(f"raw pages on raw-pages for the task: {len(raw)} "
              f"({sum(p.entries for p in raw)} post entries)")
        print(f"end-to-end: {collected} posts in {elapsed:.2f}s = {e2e_rate:,.1f} posts/s "
              f"(submit -> status completed)")
        print(f"bare parse (json.loads + twscrape parse_tweets, 1 core, best of 3): "
              f"{len(pages)} pages, "
              f"{top_level} top-level posts ({tws_tweets} twscrape tweets incl. quoted) in "
              f"{bare_s:.3f}s = {bare_rate:,.1f} posts/s (top-level posts)")
        print("RSS MiB (VmRSS incl. children):")
        names = list(pids)
        w = max(len(n) for n in names)
        print(f"  {'process':<{w}}  {'@10%':>8}  {'@100%':>8}")
        for n in names:
            print(f"  {n:<{w}}  {rss['10%'][n]:>8.1f}  {rss['100%'][n]:>8.1f}")
        tot10, tot100 = sum(rss["10%"].values()), sum(rss["100%"].values())
        print(f"  {'total':<{w}}  {tot10:>8.1f}  {tot100:>8.1f}")
        ratio = e2e_rate / bare_rate
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
    args = ap.parse_args()
    run(args.posts, keep=args.keep)


if __name__ == "__main__":
    main()
