"""Broker drills, as an operator meets them: every service its own supervised OS process, a real
noida-db that is SIGKILLed and restarted on its data dir (losing what it acknowledged since its
last snapshot) or frozen 30 s, ClickHouse over HTTP (infra/chdb_http), S3 on moto, the client's
webhook a real HTTP server, X the simulator answering slowly.

Each drill runs one on-demand task over a window of a few thousand posts (all of them:
required_count 0) and strikes mid-task. It must end as an undisturbed run would: every post of
the window stored once, the monthly count exact, every post in exactly one delivered batch, no
dead letter, at most one page per slice asked of X again (the one in flight at the fault), and
no process that had to be restarted (its supervisor would have)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime

import pytest

from infra import local
from infra.service_process import ServiceProcess, wait_until
from libs.storage.clickhouse import ClickHouseStore
from libs.storage.objects import open_object_store
from services.task_gateway.scheduler import search_query
from tests.integration.kafka_helpers import dead_letters
from tests.webhook_server import WebhookServer

from .harness import Gateway, Simulator
from .test_pipeline import _dt
from .test_reports import SECRET, assert_reports_consistent, report_settings

pytestmark = pytest.mark.e2e

START, END = "2026-08-01T00:00:00Z", "2026-08-03T00:00:00Z"  # 2,880 posts at 60/h
PAGE_DELAY_S = 0.4  # the simulator's `slow` fault: every X page takes this long
STRIKE_AT = 800  # posts collected when the broker is struck
SERVICES = [
    "task-gateway",
    "scraper",
    "parser",
    "dedup-counter",
    "media-downloader",
    "reporter",
    "account-manager",
    "kol-worker",
]


class _Kafka:
    """What pipeline_settings needs of a broker fixture, for a broker of the test's own."""

    def __init__(self, broker: local.RestartableNoida):
        self.bootstrap = broker.address

    def settings(self, **overrides):
        from tests.conftest import make_settings

        base = dict(
            kafka_bootstrap=self.bootstrap,
            kafka_group_mode="assign",
            kafka_empty_fetch_backoff_ms=50,
        )
        base.update(overrides)
        return make_settings(**base)


@pytest.fixture
def clickhouse(tmp_path):
    """A ClickHouse HTTP server of the drill's own; its DSN."""
    h = local.start_chdb_http(tmp_path / "chdb", log_dir=tmp_path)
    try:
        yield f"http://default:@{h.address.removeprefix('http://')}/default"
    finally:
        h.stop()


@pytest.mark.parametrize("fault", ["sigkill-restart", "sigstop-30s"])
def test_broker_fault_mid_task_loses_and_duplicates_nothing(
    fault, restartable_noida, clickhouse, xsim, s3, tmp_path
):
    broker = restartable_noida
    kafka = _Kafka(restartable_noida)
    settings = report_settings(kafka, xsim, tmp_path, clickhouse, s3)
    # (report_settings → pipeline_settings gave a fresh prefix on this broker)
    sim = Simulator(xsim)
    sim.configure(limits={"SearchTimeline": 100_000})
    keyword = f"drill{uuid.uuid4().hex[:6]}"
    corpus = set(sim.corpus_ids(search_query(keyword, _dt(START), _dt(END))))
    procs = [ServiceProcess(name, [name], settings, tmp_path, supervised=True) for name in SERVICES]
    gw = Gateway(settings)
    sim.client.post(
        "/_sim/faults", json={"kind": "slow", "delay_s": PAGE_DELAY_S}
    ).raise_for_status()
    try:
        with WebhookServer(SECRET) as hook:
            for p in procs:
                p.start()
            wait_until(lambda: gw.ready(), 90, "the gateway to answer")
            r = gw.submit(
                keyword=keyword,
                required_count=0,
                start_time=START,
                end_time=END,
                callback_url=hook.url,
            )
            assert r.status_code == 200, r.text
            task_id = r.json()["task_id"]

            def collected() -> int:
                return gw.status(task_id)["progress"]["collected"]

            wait_until(lambda: collected() >= STRIKE_AT, 240, f"{STRIKE_AT} posts collected")
            struck_at = len(sim.search_requests(keyword))
            if fault == "sigkill-restart":
                broker.sigkill()
                assert_consistent_cut(broker.snapshot())
                broker.start()
            else:
                broker.freeze()
                try:
                    _sleep_watching(procs, 30)
                finally:
                    broker.thaw()
            assert gw.status(task_id)["status"] != "completed", "the fault came too late"

            final = wait_until(
                lambda: (s := gw.status(task_id))["status"] == "completed" and s,
                600,
                "the task to complete\n" + "\n".join(p.tail(15) for p in procs),
            )
            wait_until(
                lambda: any(
                    x.body.get("task_id") == task_id
                    and x.body.get("completion_status") == "completed"
                    for x in hook.accepted()
                ),
                240,
                "the completed report",
            )
            month = datetime.now(UTC)
            stats = gw.client.get(
                "/api/v1/statistics/monthly",
                params={"year": month.year, "month": month.month, "keyword": keyword},
            ).json()
            restarts = {p.name: p.restarts() for p in procs}
            alive = {p.name: p.alive() for p in procs}
            requests = [e for e in sim.search_requests(keyword) if e.get("status") == 200]
            accepted = [x for x in hook.accepted() if x.body.get("task_id") == task_id]
            hook.requests = _first_of_each_batch(hook.requests)
            bodies_check = (hook, task_id)
    finally:
        sim.client.delete("/_sim/faults")
        for p in procs:
            p.stop()

    # Every post of the window stored once; counts exact.
    got = _stored(clickhouse, task_id)
    assert got["ids"] == corpus, (len(got["ids"]), len(corpus))
    assert (
        got["count_final"] == got["uniq"] == got["task_posts"] == got["billing"] == len(corpus)
    ), got
    assert final["progress"]["collected"] == len(corpus)
    assert [s["unique_posts_count"] for s in stats["statistics"]] == [len(corpus)], stats
    # Every post in exactly one delivered batch (a batch re-sent after a fault has its id and
    # its posts: the client's idempotency key).
    by_key: dict[str, dict] = {}
    for x in accepted:
        assert by_key.setdefault(x.idempotency_key, x.body) == x.body, "a batch id changed"
    assert_reports_consistent(*bodies_check, corpus, open_object_store(settings))
    # No dead letter: nothing was a bad record.
    letters = asyncio.run(dead_letters(settings))
    assert not letters, [(getattr(d, "service", None), getattr(d, "error", d)) for d in letters[:5]]
    # X asked again for at most one page per slice, the one in flight at the fault, and only
    # right after its first answer (nothing later of that slice came in between).
    asked = Counter((e["raw_query"], e.get("cursor")) for e in requests)
    again = {k: n for k, n in asked.items() if n > 1}
    assert all(n == 2 for n in again.values()), again
    assert len({q for q, _ in again}) == len(again), f"two pages of one slice again: {again}"
    for query, cursor in again:
        mine = [e.get("cursor") for e in requests if e["raw_query"] == query]
        assert mine[mine.index(cursor) + 1] == cursor, (query, cursor)
    # No process died because of the broker: none had to be restarted by its supervisor.
    assert restarts == {p.name: 0 for p in procs} and all(alive.values()), (restarts, alive)
    print(
        f"{fault}: {len(corpus)} posts, {len(requests)} X pages ({struck_at} before the "
        f"fault), {len(again)} asked again, {len(by_key)} batches"
    )


def _sleep_watching(procs: list[ServiceProcess], seconds: float) -> None:
    """Wait out a frozen broker; no process may die meanwhile."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        dead = [p.name for p in procs if p.restarts()]
        assert not dead, f"{dead} died while the broker was frozen"
        time.sleep(1.0)


def _first_of_each_batch(received: list) -> list:
    """Requests with a batch id seen before (re-sent after a fault) left out."""
    seen, out = set(), []
    for r in received:
        if r.status == 200 and r.idempotency_key in seen:
            continue
        if r.status == 200:
            seen.add(r.idempotency_key)
        out.append(r)
    return out


def _stored(dsn: str, task_id: str) -> dict:
    with ClickHouseStore(dsn) as ch:
        ids = {
            r[0]
            for r in ch.query_rows_sync(
                "SELECT post_id FROM posts FINAL WHERE task_id = {t:String}", {"t": task_id}
            )
        }
        row = ch.query_rows_sync(
            "SELECT (SELECT count() FROM posts FINAL WHERE task_id = {t:String}), "
            "(SELECT uniqExact(post_id) FROM posts WHERE task_id = {t:String}), "
            "(SELECT uniqExact(post_id) FROM task_posts WHERE task_id = {t:String}), "
            "(SELECT uniqExact(post_id) FROM keyword_month_posts WHERE task_id = {t:String})",
            {"t": task_id},
        )[0]
    return {
        "ids": ids,
        "count_final": row[0],
        "uniq": row[1],
        "task_posts": row[2],
        "billing": row[3],
    }


def assert_consistent_cut(snapshot: dict) -> None:
    """What a SIGKILLed broker comes back with — its last snapshot, one JSON document — is a
    consistent cut: no consumer group's committed offset is past the end of the log it read
    (a commit made after its records were read is saved with them or not at all)."""
    ends = {
        (name, p): part["high_watermark"]
        for name, t in snapshot["topics"]
        for p, part in t["partitions"]
    }
    commits = snapshot["committed_offsets"]
    assert commits, "no commit in the snapshot: the drill struck too early"
    bad = [
        (group, topic, p, offset, ends.get((topic, p)))
        for (group, topic, p), offset in commits
        if offset > ends.get((topic, p), -1)
    ]
    assert not bad, f"commits past their log's end in the snapshot: {bad}"
