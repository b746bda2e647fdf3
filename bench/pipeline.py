"""End-to-end pipeline throughput vs the bare parse rate, on the same X simulator pages.

    PYTHONPATH=. python bench/pipeline.py [--posts N]

Starts a fresh noida-db broker (temp data dir) as make up runs it — topics' retention from its
memory budget (`--broker-mb`, 512 MiB here), the retention guard and the scraper waiting for
the parser beyond 500 unread raw pages — and the X simulator
(denser beyond 60 days' worth of posts, so a 1M-post task fits the API's window), runs three
service processes (task-gateway+scraper, parser, dedup-counter; temp chdb, objects in a temp
dir), submits one on-demand task with required_count=N and times it from submit until the
gateway says `completed`. RSS (VmRSS, process + descendants) of each service process and the
broker is sampled every second; at 10% each process's highest sample over the task's first
tenth is reported and at 100% its highest over as long up to the end (noida-db's RSS swings
~2x with its snapshot every 1-2 s, the dedup-counter's with chdb's merges), and the peaks.
`--warm N` first runs a task of N posts of another keyword over 200 day slices, so that every
partition of the broker's topics holds its retention, as on a machine in service.

Then the stack is stopped and the raw pages the parser archived (raw_data/, in the temp object
dir) are streamed back 100 at a time — never all in memory, so `--posts 1000000` works in one
task — and ceil(N / page size) of them are parsed bare with `bench.bare_parse.bare_parse_rate`
(json.loads + twscrape parse_tweets; each chunk's best of 3 up to 5,000 pages, one pass
beyond). Both rates count TOP-LEVEL POSTS: end-to-end the task's
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

`--bare-sample N` measures the bare rate as bench/scale.py does instead: an evenly spaced sample
of N of the task's pages, best of 7 passes. The broker's bytes per topic (DescribeLogDirs) at 10%
and 100% of the task are printed beside the RSS: the broker's RSS follows them.

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
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("TWS_TELEMETRY", "0")

import httpx

from bench.bare_parse import bare_parse_rate
from infra import local
from infra.retention_guard import RetentionGuard
from infra.service_process import ServiceProcess, all_alive, gateway_client, wait_until
from libs import log_dirs
from libs.records.pages import RawPage
from libs.settings import Settings
from libs.storage.objects import FileObjectStore
from libs.storage.raw_archive import ArchivedPage, ArchiveObject, RawArchive
from libs.topics import CATALOGUE, RAW_PAGES, parser_lag_bytes

PAGE_SIZE = 20
DENSITY_PER_HOUR = 60.0  # simulator default
MAX_WINDOW_HOURS = 60 * 24  # larger tasks get a denser simulator, not a window past the limits
BROKER_LABEL = "noida-db (broker)"
# The broker's memory budget here, smaller than make up's 1024 MiB so that a run reaches it.
BENCH_BROKER_MB = 512
# RSS at 10% and at 100% of a task: each process's highest once-a-second sample over the first
# tenth of the task (at least 10 s), and over an equally long stretch up to its end. Peaks, not
# instants: noida-db's RSS swings ~2x with its snapshot (a copy of every record and its JSON,
# every 1-2 s) and the dedup-counter's by ~250 MiB with chdb's merges of `posts`, so one
# instant's sample, or a 10 s window, measured where in those cycles it fell (a 1M-post run
# compared a 10 s window without a merge, 673 MiB, with one that held one, 887).
RSS_WINDOW_S = 10.0
# Warming the stack first (--warm N): a task of N posts of another keyword spread over
# WARM_DAYS day slices. The broker keeps retention.bytes per partition, and one task's pages
# reach raw-pages' 12 partitions only slice by slice (keyed by slice: ~8 of them by 10% of a
# 60-day 1M-post task), so on a fresh broker its RSS rises until every partition has held its
# retention once (+54% from 10% to 100% of a 1M-post run), then stays there: what a machine in
# service has reached long ago. 200 day slices give every partition ~17 slices.
WARM_DAYS = 200
MAX_PARSER_LAG_PAGES = 500  # XGET_SCRAPER_MAX_PARSER_LAG_PAGES as make up sets it


def density_for(n_posts: int) -> float:
    """Simulator posts per hour for a task of `n_posts`: the default up to 60 days' worth,
    denser beyond (1M posts: 868/h over 60 days, within the API's 366-day window)."""
    return max(DENSITY_PER_HOUR, n_posts * 1.25 / MAX_WINDOW_HOURS)


WINDOW_END = datetime(2026, 10, 1, tzinfo=UTC)
API_TOKEN = "bench-token"


# --- RSS and CPU ----------------------------------------------------------------------------
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
    return {name: sum(_cpu_s(p) for p in local.process_tree(pid)) for name, pid in pids.items()}


def sample_rss(pids: dict[str, int]) -> dict[str, float]:
    """VmRSS of each process and its descendants, in MiB."""
    return {name: local.tree_rss_mb(pid) for name, pid in pids.items()}


def topic_bytes(bootstrap: str, prefix: str) -> dict[str, int]:
    """Bytes each topic holds on the broker (DescribeLogDirs), by catalogue name: what the
    broker's RSS follows (libs/topics.py: ~8 bytes of RSS per byte retained)."""
    held = local.run_sync(lambda: log_dirs.partition_bytes(bootstrap))
    out: dict[str, int] = {}
    for tp, n in held.items():
        name = tp.topic.removeprefix(prefix)
        out[name] = out.get(name, 0) + n
    return out


# --- raw pages, streamed back from the archive ------------------------------------------------
def archived_pages(objects_dir: Path, task_id: str, since: datetime) -> Iterator[RawPage]:
    """The task's successful raw pages, read back verbatim from the raw_data/ archive the
    parser wrote, one object at a time (a page once, however often it was archived)."""
    archive = RawArchive(FileObjectStore(objects_dir))
    seen: set[tuple[str, int]] = set()
    for obj in local.run_sync(lambda: archive.objects(since)):

        async def pages_of(o: ArchiveObject = obj) -> list[ArchivedPage]:
            return await archive.pages(o)

        for a in local.run_sync(pages_of):
            p = a.page
            if p.task_id != task_id or not p.response or p.outcome != "ok":
                continue
            if (p.slice_id, p.page_no) not in seen:
                seen.add((p.slice_id, p.page_no))
                yield p


def streamed_bare_rate(
    pages: Iterator[RawPage], want_pages: int, repeat: int | None = None, chunk: int = 100
) -> dict:
    """The bare parse rate over up to `want_pages` pages, streamed `chunk` pages at a time
    (never all of them in memory): each chunk parsed `repeat` times, its best time counted
    (the bare rate is the ceiling: other load must not lower it). `repeat` None: 3 for small
    runs, 1 beyond 5,000 pages, where one pass already takes minutes."""
    if repeat is None:
        repeat = 3 if want_pages <= 5_000 else 1
    n_pages = top_level = tws_tweets = 0
    seconds = 0.0
    bodies: list[bytes] = []
    warm = False

    def parse(batch: list[bytes]) -> None:
        nonlocal tws_tweets, seconds
        tweets, best = min((bare_parse_rate(batch) for _ in range(repeat)), key=lambda r: r[1])
        tws_tweets += tweets
        seconds += best

    for page in pages:
        if n_pages >= want_pages:
            break
        if page.response is None:  # only pages X answered are archived
            continue
        body = page.response.encode()
        if not warm:
            bare_parse_rate([body])  # warm-up
            warm = True
        bodies.append(body)
        n_pages += 1
        top_level += page.entries
        if len(bodies) >= chunk:
            parse(bodies)
            bodies = []
    if bodies:
        parse(bodies)
    return {
        "pages": n_pages,
        "top_level": top_level,
        "tws_tweets": tws_tweets,
        "seconds": seconds,
        "repeat": repeat,
    }


def sample_pages(pages: Iterator[RawPage], total: int, size: int) -> list[tuple[bytes, int]]:
    """An evenly spaced sample of about `size` of the `total` pages `pages` yields (every
    total/size-th, from the first): each page's body and its top-level posts. Only the sample
    is held, so it works at any task size."""
    step = max(1, total // size)
    out: list[tuple[bytes, int]] = []
    for i, page in enumerate(pages):
        if i >= step * size:
            break
        if i % step == 0 and page.response is not None:
            out.append((page.response.encode(), page.entries))
    return out


def alternating_bare_rates(samples: list[list[tuple[bytes, int]]], rounds: int) -> list[dict]:
    """The bare parse rate (top-level posts/s) of each sample of pages, measured alternately:
    `rounds` rounds, each parsing every sample once in turn, each sample's fastest round
    counted. On a shared host the load drifts over minutes; taking turns puts every sample
    under the same load, and the fastest round is the least disturbed one (the bare rate is a
    ceiling: other load must not lower it)."""
    if samples and samples[0]:
        bare_parse_rate([samples[0][0][0]])  # warm-up
    best = [math.inf] * len(samples)
    tweets = [0] * len(samples)
    for _ in range(rounds):
        for i, sample in enumerate(samples):
            tweets[i], seconds = bare_parse_rate([body for body, _ in sample])
            best[i] = min(best[i], seconds)
    out = []
    for sample, tws, seconds in zip(samples, tweets, best, strict=True):
        top_level = sum(n for _, n in sample)
        out.append(
            {
                "pages": len(sample),
                "top_level": top_level,
                "tws_tweets": tws,
                "seconds": seconds,
                "rate": top_level / seconds,
                "rounds": rounds,
            }
        )
    return out


def submit_task(gw, keyword: str, required_count: int, start: datetime) -> str:
    """Submit an on-demand task for `keyword` from `start` to WINDOW_END; its id."""

    def z(t: datetime) -> str:
        return t.isoformat().replace("+00:00", "Z")

    r = gw.post(
        "/api/v1/tasks/ondemand",
        json={
            "keyword": keyword,
            "priority": 3,
            "required_count": required_count,
            "start_time": z(start),
            "end_time": z(WINDOW_END),
        },
    )
    if r.status_code != 200:
        raise RuntimeError(f"submit failed: {r.status_code} {r.text}")
    return r.json()["task_id"]


# --- warming the stack ------------------------------------------------------------------------
def warm_stack(gw, sim_url: str, settings: Settings, broker_mb: int, n_posts: int) -> None:
    """Bring the stack to where a machine in service stands before the measured task: one
    task collecting every post of another keyword, `n_posts` spread over WARM_DAYS day slices
    (so raw-pages' partitions each get ~17 slices), waited on until completed, then until the
    retention guard has lowered whatever it raised meanwhile (30 s after the consumers caught
    up). Prints how long it took and how many of raw-pages' partitions hold their retention."""
    keyword = f"warm{uuid.uuid4().hex[:6]}"
    httpx.post(
        f"{sim_url}/_sim/config",
        json={"densities": {keyword: n_posts / (WARM_DAYS * 24)}},
        timeout=10,
    ).raise_for_status()
    t0 = time.perf_counter()
    # every post of the window
    task_id = submit_task(gw, keyword, 0, WINDOW_END - timedelta(days=WARM_DAYS))
    status: dict = {}

    def done() -> bool:
        nonlocal status
        status = gw.get(f"/api/v1/tasks/{task_id}/status").json()
        if status.get("status") == "failed":
            raise RuntimeError(f"warm-up task failed: {status}")
        return status.get("status") == "completed"

    wait_until(done, max(300, n_posts / 100), "the warm-up task to complete")
    guard = RetentionGuard(settings, broker_mb)
    budget = {name: base for name, (_spec, base) in guard.topics.items()}
    wait_until(
        lambda: local.run_sync(guard.read_current) == budget,
        120,
        "the retention guard to lower what it raised during the warm-up",
    )
    keep = budget[RAW_PAGES.name]
    held = local.run_sync(lambda: log_dirs.partition_bytes(settings.kafka_bootstrap))
    raw = [n for tp, n in held.items() if tp.topic == settings.topic_prefix + RAW_PAGES.name]
    print(
        f"warm-up: {status['progress']['collected']} posts of {keyword} over {WARM_DAYS} days in "
        f"{time.perf_counter() - t0:.1f}s; raw-pages partitions holding their retention.bytes "
        f"({keep / 1e6:.2f} MB): {sum(n >= keep for n in raw)} of {len(raw)}",
        flush=True,
    )


# --- one task --------------------------------------------------------------------------------------
def _run_task(
    gw,
    services: list[ServiceProcess],
    pids: dict[str, int],
    cpu_pids: dict[str, int],
    n_posts: int,
    topics_now: Callable[[], dict[str, int]],
) -> dict:
    """Submit one on-demand task for n_posts and wait until the gateway says completed: its
    time, RSS and the broker's bytes per topic (`topics_now`) at 10% and 100%, and CPU of
    every process from submit to completed."""
    hours = math.ceil(n_posts / density_for(n_posts) * 1.25) + 2
    start = WINDOW_END - timedelta(hours=hours)
    keyword = f"bench{uuid.uuid4().hex[:6]}"

    cpu0 = sample_cpu(cpu_pids)
    t0 = time.perf_counter()
    task_id = submit_task(gw, keyword, n_posts, start)

    rss: dict[str, dict[str, float]] = {}
    held: dict[str, dict[str, int]] = {}  # the broker's bytes per topic
    samples: list[tuple[float, dict[str, float]]] = []  # (monotonic time, RSS of each process)
    status: dict = {}
    t_submit = time.monotonic()
    deadline = t_submit + max(300, n_posts / 10)
    next_sample = 0.0
    first_tenth = RSS_WINDOW_S  # how long the first tenth of the task took (at least 10 s)

    def peak_since(since: float) -> dict[str, float]:
        """Each process's highest RSS sampled since `since`, this instant's included."""
        samples.append((time.monotonic(), sample_rss(pids)))
        return {n: max(s[n] for t, s in samples if t >= since) for n in pids}

    while True:
        status = gw.get(f"/api/v1/tasks/{task_id}/status").json()
        prog = status.get("progress") or {}
        pct = prog.get("percentage") or 0.0
        if time.monotonic() >= next_sample:  # every process's RSS, once a second
            next_sample = time.monotonic() + 1
            samples.append((time.monotonic(), sample_rss(pids)))
        if "10%" not in rss and pct >= 10.0:
            first_tenth = max(RSS_WINDOW_S, time.monotonic() - t_submit)
            rss["10%"] = peak_since(t_submit)
            held["10%"] = topics_now()
        if status.get("status") == "completed":
            elapsed = time.perf_counter() - t0
            rss["100%"] = peak_since(time.monotonic() - first_tenth)
            cpu1 = sample_cpu(cpu_pids)
            held["100%"] = topics_now()
            rss.setdefault("10%", rss["100%"])
            held.setdefault("10%", held["100%"])
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
        "held": held,
        "peak": {n: max(s[n] for _, s in samples) for n in pids},
        "cpu0": cpu0,
        "cpu1": cpu1,
    }


def print_topic_bytes(held: dict[str, dict[str, int]], min_bytes: int = 50_000) -> None:
    """The broker's bytes per topic at 10% and 100% of the task (topics holding any)."""
    names = [n for n in held["100%"] if max(held["10%"].get(n, 0), held["100%"][n]) >= min_bytes]
    names.sort(key=lambda n: -held["100%"][n])
    print(
        "broker's topics, MB held at 10% -> 100% (DescribeLogDirs): "
        + ", ".join(
            f"{n} {held['10%'].get(n, 0) / 1e6:.2f} -> {held['100%'][n] / 1e6:.2f}" for n in names
        )
        + f"; all {sum(held['10%'].values()) / 1e6:.1f} -> {sum(held['100%'].values()) / 1e6:.1f}"
    )


# --- main ------------------------------------------------------------------------------------------
def run(
    n_posts: int,
    keep: bool = False,
    parsers: int = 1,
    runs: int = 1,
    broker_mb: int = BENCH_BROKER_MB,
    bare_repeat: int | None = None,
    bare_sample: int = 0,
    bare_rounds: int = 7,
    warm_posts: int = 0,
) -> dict:
    """One stack, `runs` tasks of `n_posts`; prints the tables and returns the figures
    (ratio, rates, RSS at 10%/100% and peaks of the first task). `bare_sample` > 0: the bare
    rate from an evenly spaced sample of that many of the task's pages, best of `bare_rounds`
    passes (returned as "sample" too, for bench/scale.py to measure again beside another
    run's), instead of one streamed pass over all of them. `warm_posts` > 0: warm_stack() with
    that many posts first."""
    tmp = Path(tempfile.mkdtemp(prefix="xget-bench-"))
    logs = tmp / "logs"
    logs.mkdir()
    handles: list = []
    services: list[ServiceProcess] = []

    def stop_all() -> None:
        for s in services:
            try:
                s.stop()
            except Exception as e:  # noqa: BLE001 - teardown goes on; the failure is printed
                print(f"stopping {s.name}: {e!r}", file=sys.stderr)
        for h in reversed(handles):
            try:
                h.stop()
            except Exception as e:  # noqa: BLE001 - teardown goes on; the failure is printed
                print(f"stopping {h.name}: {e!r}", file=sys.stderr)

    try:
        broker = local.start_noida(tmp / "noida", log_dir=logs, timeout=60)
        handles.append(broker)
        xsim = local.start_xsim(log_dir=logs, timeout=60)
        handles.append(xsim)
        prefix = f"b{uuid.uuid4().hex[:8]}-"
        # The embedded broker as make up runs it: retention from its memory budget, and the
        # retention guard that keeps it from deleting what a consumer has not read.
        local.create_topics_sync(broker.address, prefix, CATALOGUE, broker_max_mb=broker_mb)
        handles.append(
            local.start_process(
                "retention-guard",
                [sys.executable, "-m", "infra.retention_guard", "--budget-mb", str(broker_mb)],
                lambda: True,
                log_dir=logs,
                env={
                    "PYTHONPATH": str(REPO),
                    "XGET_KAFKA_BOOTSTRAP": broker.address,
                    "XGET_TOPIC_PREFIX": prefix,
                },
            )
        )
        httpx.post(
            f"{xsim.address}/_sim/config",
            json={"limits": {"SearchTimeline": 1_000_000}, "default_density": density_for(n_posts)},
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
            scraper_max_parser_lag_bytes=parser_lag_bytes(broker_mb),  # as make up sets both
            scraper_max_parser_lag_pages=MAX_PARSER_LAG_PAGES,  # as make up: the broker's memory
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
        if warm_posts:
            warm_stack(gw, xsim.address, settings, broker_mb, warm_posts)
        # What the idle stack costs (consumers polling, timers), for reading the CPU table.
        idle_pids = {s.name: s.pid for s in services} | {BROKER_LABEL: broker.pid}
        idle0, idle_t0 = sample_cpu(idle_pids), time.perf_counter()
        time.sleep(2)
        idle1, idle_s = sample_cpu(idle_pids), time.perf_counter() - idle_t0

        pids = {s.name: s.pid for s in services} | {BROKER_LABEL: broker.pid}
        cpu_pids = pids | {"x simulator": xsim.pid}
        results = [
            _run_task(
                gw,
                services,
                pids,
                cpu_pids,
                n_posts,
                lambda: topic_bytes(broker.address, prefix),
            )
            for _ in range(runs)
        ]
        first = results[0]
        task_id, keyword, hours = first["task_id"], first["keyword"], first["hours"]
        collected, elapsed, rss = first["collected"], first["elapsed"], first["rss"]
        cpu0, cpu1 = first["cpu0"], first["cpu1"]
        e2e_rate = collected / elapsed

        # Parse on a quiet machine: nothing of the stack runs during the bare measurement.
        stop_all()
        # Same pages the pipeline fetched, streamed back verbatim from the parser's archive.
        want_pages = math.ceil(n_posts / PAGE_SIZE)
        logging.disable(logging.WARNING)
        since = datetime.now(UTC) - timedelta(seconds=elapsed + 600)
        pages = archived_pages(tmp / "objects", task_id, since)
        sample: list[tuple[bytes, int]] = []
        if bare_sample:
            sample = sample_pages(pages, want_pages, bare_sample)
            bare = alternating_bare_rates([sample], bare_rounds)[0]
            how = f"best of {bare_rounds} passes over an evenly spaced sample of the task's pages"
        else:
            bare = streamed_bare_rate(pages, want_pages, bare_repeat)
            how = "best of 3 per chunk" if bare["repeat"] > 1 else "one pass"
            how += ", streamed from the raw_data/ archive 100 pages at a time"
        if not bare["pages"]:
            raise RuntimeError("no raw pages of the task in the raw_data/ archive")
        bare_rate = bare["top_level"] / bare["seconds"]

        print(
            f"posts requested: {n_posts}; collected: {collected}; keyword {keyword}; "
            f"window {hours} h at {density_for(n_posts):.0f} posts/h"
        )
        print(
            f"end-to-end: {collected} posts in {elapsed:.2f}s = {e2e_rate:,.1f} posts/s "
            f"(submit -> status completed)"
        )
        print(
            f"bare parse (json.loads + twscrape parse_tweets, 1 core, {how}, read back from "
            f"the raw_data/ archive): {bare['pages']} pages, "
            f"{bare['top_level']} top-level posts ({bare['tws_tweets']} twscrape tweets incl. "
            f"quoted) in {bare['seconds']:.3f}s = {bare_rate:,.1f} posts/s (top-level posts)"
        )
        print("RSS MiB (VmRSS incl. children):")
        names = list(pids)
        w = max(len(n) for n in names)
        print(f"  {'process':<{w}}  {'@10%':>8}  {'@100%':>8}")
        for n in names:
            print(f"  {n:<{w}}  {rss['10%'][n]:>8.1f}  {rss['100%'][n]:>8.1f}")
        tot10, tot100 = sum(rss["10%"].values()), sum(rss["100%"].values())
        print(f"  {'total':<{w}}  {tot10:>8.1f}  {tot100:>8.1f}")
        grew = {n: rss["100%"][n] / rss["10%"][n] - 1 for n in names if rss["10%"][n] > 0}
        print(
            "RSS growth 10% -> 100%: "
            + ", ".join(f"{n} {g * 100:+.0f}%" for n, g in grew.items())
            + f"; broker peak {first['peak'][BROKER_LABEL]:.0f} MiB of its {broker_mb} MiB budget"
        )
        print_topic_bytes(first["held"])
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
        return {
            "ratio": ratio,
            "e2e_rate": e2e_rate,
            "bare_rate": bare_rate,
            "collected": collected,
            "elapsed": elapsed,
            "rss": rss,
            "held": first["held"],
            "peak": first["peak"],
            "broker_mb": broker_mb,
            "broker": BROKER_LABEL,
            "sample": sample,
        }
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
        "--broker-mb",
        type=int,
        default=BENCH_BROKER_MB,
        help="the broker's memory budget (XGET_EMBEDDED_BROKER_MAX_MB); half of make up's "
        "default, so that a run reaches it",
    )
    ap.add_argument(
        "--runs",
        type=int,
        default=1,
        help="tasks run one after another on the same stack; the last line is then "
        "the median ratio (a shared host's noise moves single runs)",
    )
    ap.add_argument(
        "--bare-sample",
        type=int,
        default=0,
        help="the bare rate from an evenly spaced sample of this many of the task's pages, "
        "best of 7 passes (bench/scale.py's way), instead of a streamed pass over all of them",
    )
    ap.add_argument(
        "--warm",
        type=int,
        default=0,
        help="warm the stack first with a task of this many posts of another keyword over "
        f"{WARM_DAYS} days, so every partition of the broker's topics holds its retention",
    )
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    run(
        args.posts,
        keep=args.keep,
        parsers=args.parsers,
        runs=args.runs,
        broker_mb=args.broker_mb,
        bare_sample=args.bare_sample,
        warm_posts=args.warm,
    )


if __name__ == "__main__":
    main()
