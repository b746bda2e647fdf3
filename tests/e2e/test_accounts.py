"""The account pool end to end: real broker, simulator (login page, bans, limits), Chromium,
local proxies, services as OS processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections import defaultdict
from pathlib import Path

import httpx
import pytest

from infra import local
from infra.service_process import REPO, ServiceProcess, settings_env, wait_until
from libs.kafka import scan_partition
from libs.records.accounts import LeaseGrant
from libs.topics import LEASE_GRANTS

from .harness import Gateway, Simulator
from .test_pipeline import pipeline_settings, stored

pytestmark = pytest.mark.e2e

START, END = "2026-08-01T00:00:00Z", "2026-08-03T00:00:00Z"  # 2,880 posts at 60/h


class Admin:
    """The account-manager's admin API."""

    def __init__(self, settings):
        self.client = httpx.Client(
            base_url=f"http://{settings.account_admin_host}:{settings.account_admin_port}",
            timeout=120,
            headers={"Authorization": f"Bearer {settings.api_token.get_secret_value()}"},
        )

    def ready(self) -> bool:
        return self.client.get("/health").status_code == 200

    def add(self, **body) -> dict:
        r = self.client.post("/api/v1/admin/accounts", json=body)
        assert r.status_code == 201, r.text
        return r.json()

    def account(self, account_id: str) -> dict:
        r = self.client.get(f"/api/v1/admin/accounts/{account_id}")
        r.raise_for_status()
        return r.json()


def cli(settings, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **settings_env(settings), "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def requests_by(sim: Simulator, account: str) -> list[dict]:
    return [
        e
        for e in sim.log()
        if e.get("operation") == "SearchTimeline" and e.get("account") == account
    ]


def test_ban_and_expired_cookies_never_stop_a_task(noida, xsim, tmp_path, chdb_path):
    """4 accounts: one is suspended mid-task, one's cookies expire mid-task; 2,000 posts are
    collected, the banned account ends suspended with the reason, the expired one is logged
    in again through the simulator's login page in Chromium; no secret in clear on disk."""
    uid = uuid.uuid4().hex[:6]
    sim = Simulator(xsim)
    sim.configure(limits={"SearchTimeline": 40}, window_seconds=900)
    dave, dave_pw = f"dave{uid}", f"pw-{uuid.uuid4().hex}"
    sim.client.post(
        "/_sim/accounts", json={"username": dave, "password": dave_pw}
    ).raise_for_status()
    tokens = {n: f"tok-{n}-{uuid.uuid4().hex}" for n in ("ann", "bob", "cat")}
    sim.client.post(
        "/_sim/faults", json={"kind": "suspended", "account": tokens["cat"], "after": 10}
    ).raise_for_status()
    settings = pipeline_settings(
        noida,
        xsim,
        tmp_path,
        chdb_path,
        x_accounts="",
        x_rate_limits="SearchTimeline:40",
        x_login_url=f"{xsim}/i/flow/login",
    )
    keyword = f"accounts{uid}"
    proc = ServiceProcess("xget-all", ["all"], settings, tmp_path).start()
    gw, admin = Gateway(settings), Admin(settings)
    try:
        wait_until(
            lambda: proc.alive() and gw.ready() and admin.ready(),
            60,
            f"gateway and admin API\n{proc.tail()}",
        )
        for n in ("ann", "bob", "cat"):
            admin.add(username=f"{n}{uid}", auth_token=tokens[n], ct0=f"ct0-{n}")
        added = admin.add(username=dave, password=dave_pw, email=f"{dave}@mail.test")
        assert added["has_password"] and dave_pw not in json.dumps(added)
        wait_until(
            lambda: admin.account(dave)["status"] == "active",
            90,
            f"{dave} to be logged in through Chromium\n{proc.tail()}",
        )

        # Once dave has served two pages, his cookies expire. ann, bob and cat (suspended after
        # 10) can serve 90 of the task's 100 pages, so dave must come back after a new login.
        sim.client.post(f"/_sim/accounts/{dave}/expire", params={"after": 2}).raise_for_status()
        r = gw.submit(keyword=keyword, required_count=2000, start_time=START, end_time=END)
        assert r.status_code == 200, r.text
        task_id = r.json()["task_id"]

        final = wait_until(
            lambda: (s := gw.status(task_id))["status"] == "completed" and s,
            240,
            f"the task to complete\n{proc.tail()}",
        )
        assert final["progress"]["collected"] == 2000

        cat = admin.account(f"cat{uid}")
        assert cat["status"] == "suspended"
        assert "suspended" in cat["reason"]
        d = admin.account(dave)
        assert d["status"] == "active" and d["logins"] == 2
        sim_dave = next(a for a in sim.client.get("/_sim/accounts").json() if a["username"] == dave)
        assert sim_dave["logins"] == 2 and sim_dave["expired_sessions"] == 1
        statuses = [e["status"] for e in requests_by(sim, dave)]
        assert 401 in statuses  # refused with the expired cookies
        assert 200 in statuses[statuses.index(401) :]  # then served again after the login
    finally:
        sim.client.delete("/_sim/faults")
        sim.configure(limits={"SearchTimeline": 50})
        proc.stop()

    got = stored(chdb_path, task_id)
    assert got["task_posts"] == got["posts_final"] == 2000

    # No secret in clear: neither in the broker's files (where the account store lives) nor
    # in the service log. The account names are there in clear, proving the files are readable.
    secrets = [dave_pw.encode(), *(t.encode() for t in tokens.values())]

    def broker_files() -> bytes:
        """noida-db's snapshot: JSON whose record batches are arrays of byte values. Batches are
        zstd-compressed, so the records are read back through Kafka's batch format: keys,
        values and headers as the broker keeps them, decompressed."""
        out = []
        for f in Path(noida.data_dir).rglob("*.json"):
            for _name, topic in json.loads(f.read_text()).get("topics", []):
                for _p, part in topic["partitions"]:
                    for _off, batch in part["record_batches"]:
                        out.extend(record_bytes(bytes(batch)))
        return b"".join(out)

    wait_until(lambda: dave.encode() in broker_files(), 30, "the broker to save its data")
    data = broker_files()
    assert not [s for s in secrets if s in data]
    log_text = proc.log_path.read_bytes()
    assert not [s for s in secrets if s in log_text]


def record_bytes(batch: bytes) -> list[bytes]:
    """Every key, value and header value of a Kafka record batch, decompressed."""
    from aiokafka.record.memory_records import MemoryRecords

    records, out = MemoryRecords(batch), []
    while (b := records.next_batch()) is not None:
        for r in b:
            out += [r.key or b"", r.value or b"", *(v for _k, v in r.headers)]
    return out


def test_two_scrapers_never_exceed_an_account_limit(noida, xsim, tmp_path, chdb_path):
    """Two scraper replicas, 3 accounts, SearchTimeline 5 per (short) window: no account gets
    a 6th request in a window, and work resumes right at each reset by itself."""
    uid = uuid.uuid4().hex[:6]
    window = 8
    sim = Simulator(xsim)
    sim.configure(limits={"SearchTimeline": 5}, window_seconds=window)
    names = [f"lim{i}{uid}" for i in range(3)]
    tokens = {n: f"tok-{n}" for n in names}
    settings = pipeline_settings(
        noida,
        xsim,
        tmp_path,
        chdb_path,
        kafka_group_mode="members",
        x_accounts=",".join(f"{n}:{tokens[n]}:ct0-{n}" for n in names),
        x_rate_limits="SearchTimeline:5",
        x_rate_window_s=window,
    )
    core = ServiceProcess(
        "core", ["task-gateway", "parser", "dedup-counter", "account-manager"], settings, tmp_path
    )
    ports = [local.free_port(), local.free_port()]
    scrapers = [
        ServiceProcess(
            f"scraper{i}", ["scraper"], settings.model_copy(update={"metrics_port": port}), tmp_path
        )
        for i, port in zip((1, 2), ports, strict=False)
    ]
    gw = Gateway(settings)
    seen_waiting = []
    try:
        core.start()
        for s in scrapers:
            s.start()
        wait_until(lambda: core.alive() and gw.ready(), 60, f"the gateway\n{core.tail()}")
        # Both replicas hold search-jobs partitions (the second one's join has rebalanced the
        # group) before any work exists, so neither can have taken all of it alone.
        wait_until(
            lambda: all(_ready(p) for p in ports),
            60,
            "both scrapers to hold partitions\n" + "\n".join(s.tail(20) for s in scrapers),
        )
        # Three tasks whose slices land in both halves and both parities of the partitions:
        # each replica gets work whether the group assigns ranges or round-robin.
        task_ids = _tasks_spread_over_partitions(uid, 3)
        for i, task_id in enumerate(task_ids):
            r = gw.submit(
                task_id=task_id,
                keyword=f"limits{uid}{i}",
                required_count=300,
                start_time=START,
                end_time=END,
            )
            assert r.status_code == 200, r.text

        def all_done() -> bool:
            states = [gw.status(t) for t in task_ids]
            seen_waiting.extend(
                s["waiting_for_accounts"] for s in states if "waiting_for_accounts" in s
            )
            return all(s["status"] == "completed" for s in states)

        wait_until(
            all_done,
            240,
            "the tasks to complete\n" + "\n".join(p.tail(20) for p in [core, *scrapers]),
        )
    finally:
        sim.configure(limits={"SearchTimeline": 50}, window_seconds=900)
        for p in [*scrapers, core]:
            p.stop()

    log = [
        e
        for e in sim.log()
        if e.get("operation") == "SearchTimeline" and e.get("account") in tokens.values()
    ]
    assert log and not [e for e in log if e["status"] == 429], "an account got a 6th request"
    by_account: dict[str, list[float]] = defaultdict(list)
    for e in log:
        # when it came in: the simulator picks the rate-limit window by arrival
        by_account[e["account"]].append(e["received"])
    gaps = []
    for times in by_account.values():
        times.sort()
        start, count = int(times[0]), 0  # the simulator's windows start on a whole second
        for t in times:
            if t >= start + window:
                gaps.append(t - (start + window))  # first request after a reset
                start, count = int(t), 0
            count += 1
            assert count <= 5
    # 45 pages at 15 per window: at least two resets, each served without a human, promptly.
    assert len(gaps) >= 2
    t0 = min(e["received"] for e in log)
    assert max(gaps) < 2.5, (
        gaps,
        {a[-8:]: [round(t - t0, 2) for t in sorted(ts)] for a, ts in by_account.items()},
    )
    assert seen_waiting and seen_waiting[0]["until"]

    # Both replicas held leases.
    async def requesters() -> set[str]:
        out = set()
        async for _m, rec in scan_partition(settings, LEASE_GRANTS, 0, 0):
            if isinstance(rec, LeaseGrant):
                out.add(rec.requester)
        return out

    assert len(local.run_sync(requesters)) == 2


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _tasks_spread_over_partitions(uid: str, n: int) -> list[str]:
    """n task ids whose day slices (search-jobs keys task/slice) fall on partitions of every
    (half, parity) class of the topic's partitions."""
    from datetime import datetime

    from libs.kafka import partition_for_key
    from libs.topics import SEARCH_JOBS
    from services.task_gateway.scheduler import day_slices

    days = day_slices(
        datetime.fromisoformat(START.replace("Z", "+00:00")),
        datetime.fromisoformat(END.replace("Z", "+00:00")),
    )
    half = SEARCH_JOBS.partitions // 2
    for attempt in range(10_000):
        ids = [f"lim-{uid}-{attempt}-{i}" for i in range(n)]
        parts = {
            partition_for_key(f"{t}/d{d:%Y%m%dT%H%M%S}", range(SEARCH_JOBS.partitions))
            for t in ids
            for d, _ in days
        }
        if {(p < half, p % 2) for p in parts} == {(a, b) for a in (True, False) for b in (0, 1)}:
            return ids
    raise AssertionError("no task ids spread over the partitions")


def test_dead_proxy_is_replaced_and_the_account_keeps_the_new_one(noida, xsim, tmp_path, chdb_path):
    uid = uuid.uuid4().hex[:6]
    sim = Simulator(xsim)
    sim.configure(limits={"SearchTimeline": 100_000})
    proxies = [local.start_proxy(log_dir=tmp_path, name=f"proxy{i}") for i in (1, 2)]
    settings = pipeline_settings(
        noida,
        xsim,
        tmp_path,
        chdb_path,
        x_accounts="",
        proxy_check_url=f"{xsim}/_sim/health",
        proxy_check_interval_s=1.0,
        proxy_dead_after=2,
    )
    proc = ServiceProcess("xget-all", ["all"], settings, tmp_path).start()
    gw, admin = Gateway(settings), Admin(settings)
    name = f"prox{uid}"
    try:
        wait_until(lambda: proc.alive() and gw.ready() and admin.ready(), 60, "the services")
        for p in proxies:
            out = cli(settings, "proxies", "add", p.address)
            assert out.returncode == 0, out.stderr
        wait_until(
            lambda: all(
                p["status"] == "healthy"
                for p in json.loads(cli(settings, "proxies", "list", "--json").stdout)
            ),
            30,
            "both proxies healthy",
        )
        out = cli(
            settings, "accounts", "add", name, "--auth-token", f"tok-{name}", "--ct0", "ct0-x"
        )
        assert out.returncode == 0 and "active" in out.stdout, out.stdout + out.stderr
        # The CLI's command reaches the manager through Kafka: wait until it has the account
        # with a proxy assigned.
        first = wait_until(lambda: admin.account(name)["proxy"], 30, "the account's proxy")
        dead = next(p for p in proxies if f"-{p.port}" in first)
        alive = next(p for p in proxies if p is not dead)
        dead.stop()
        wait_until(lambda: admin.account(name)["proxy"] != first, 30, "the proxy to be replaced")
        second = admin.account(name)["proxy"]
        assert f"-{alive.port}" in second

        r = gw.submit(keyword=f"proxied{uid}", required_count=200, start_time=START, end_time=END)
        task_id = r.json()["task_id"]
        wait_until(
            lambda: gw.status(task_id)["status"] == "completed", 120, f"the task\n{proc.tail()}"
        )
        assert "SearchTimeline" in alive.log_tail(200)  # X was reached through the new proxy

        # The old proxy comes back healthy; the account stays where it is.
        back = local.start_proxy(dead.port, log_dir=tmp_path, name="proxy-back")
        proxies.append(back)
        wait_until(
            lambda: (
                next(
                    p
                    for p in json.loads(cli(settings, "proxies", "list", "--json").stdout)
                    if p["id"] == first
                )["status"]
                == "healthy"
            ),
            30,
            "the old proxy to be healthy again",
        )
        assert admin.account(name)["proxy"] == second
        listed = cli(settings, "accounts", "list")
        assert name in listed.stdout and f"tok-{name}" not in listed.stdout
    finally:
        proc.stop()
        for p in proxies:
            p.stop()
