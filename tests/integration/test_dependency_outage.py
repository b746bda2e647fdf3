"""The shared consumer loop waits out a dependency's outage: nothing dead-lettered, nothing
committed meanwhile, exact counts after it, and the service says why it is not ready.

Real parts: the noida-db broker, ClickHouse's HTTP interface (infra/chdb_http) SIGKILLed and
restarted on its data directory, and the dedup-counter's own handler and loop."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from datetime import UTC, datetime

from infra import local
from libs.kafka import Outgoing, Producer
from libs.metrics import DEPENDENCY_DOWN, DEPENDENCY_FAILURES
from libs.ops_server import HEALTH
from libs.records.pages import SliceEnd
from libs.records.posts import Post
from libs.records.tasks import TaskProgress
from libs.storage.clickhouse import ClickHouseStore
from libs.topic_table import TopicTable
from libs.topics import POSTS, POSTS_TARGET_HEADER, TASK_PROGRESS
from services.dedup_counter.main import serve as serve_counter
from services.runtime import close_stores
from tests.e2e.harness import fresh_prefix
from tests.integration.kafka_helpers import dead_letters

TASK = "outage-task"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def post(n: int) -> Outgoing:
    p = Post(
        post_url=f"https://x.com/a/status/{n}",
        post_id=str(9_000_000 + n),
        post_type="text",
        author_handle="@a",
        post_time=NOW,
        post_content=f"post {n}",
        keyword="outage",
        task_id=TASK,
        collected_at=NOW,
        raw_data="{}",
    )
    return Outgoing(POSTS, TASK, p, headers=((POSTS_TARGET_HEADER, b"0"),))


def slice_end() -> Outgoing:
    return Outgoing(
        POSTS,
        TASK,
        SliceEnd(task_id=TASK, slice_id="s0", keyword="outage", end_reason="exhausted", pages=5),
    )


async def _until(predicate, timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def counter_settings(noida, dsn: str):
    """A topic namespace of its own, ClickHouse at `dsn`, short retry waits, no batch fill."""
    return noida.settings(
        topic_prefix=fresh_prefix(noida.bootstrap),
        clickhouse_dsn=dsn,
        dependency_retry_base_s=0.2,
        dependency_retry_max_s=1.0,
        counter_fill_ms=0,
    )


async def test_counter_waits_out_a_clickhouse_outage_and_counts_exactly(
    noida, tmp_path, infra_log_dir
):
    data, port = tmp_path / "ch", local.free_port()
    server = local.start_chdb_http(data, port, log_dir=infra_log_dir)
    dsn = f"http://default:@127.0.0.1:{port}/default"
    settings = counter_settings(noida, dsn)
    producer = await Producer(settings).start()
    progress = await TopicTable(settings, TASK_PROGRESS).start()
    stop = asyncio.Event()
    counter = asyncio.create_task(serve_counter(settings, stop))
    component = f"{settings.topic_prefix}dedup-counter"

    def collected() -> int:
        p = progress.rows.get(TASK)
        return p.collected if isinstance(p, TaskProgress) else -1

    failures = DEPENDENCY_FAILURES.labels("dedup-counter", "clickhouse")
    try:
        await producer.send_all([post(n) for n in range(40)])
        await _until(lambda: collected() == 40, 60, "the first 40 posts counted")

        server.proc.send_signal(signal.SIGKILL)  # the ClickHouse server dies, as servers do
        server.proc.wait(10)
        before = failures._value.get()
        await producer.send_all([post(n) for n in range(40, 100)] + [slice_end()])
        await _until(
            lambda: failures._value.get() >= before + 3,
            60,
            "three failed attempts while ClickHouse is down",
        )
        # Waiting, with the cause, and nothing given up on: no dead letter, not completed.
        assert component in HEALTH.not_ready()
        assert any("clickhouse" in w for w in HEALTH.waiting_on()), HEALTH.waiting_on()
        assert DEPENDENCY_DOWN.labels("dedup-counter", "clickhouse")._value.get() == 1
        assert collected() == 40 and progress.rows[TASK].status == "running"
        assert await dead_letters(settings) == []

        server = local.start_chdb_http(data, port, log_dir=infra_log_dir)  # same data, port
        await _until(
            lambda: progress.rows[TASK].status == "completed",
            60,
            "the task to complete once ClickHouse is back",
        )
        assert collected() == 100
        await _until(lambda: component not in HEALTH.not_ready(), 10, "ready again")
        assert DEPENDENCY_DOWN.labels("dedup-counter", "clickhouse")._value.get() == 0
        assert await dead_letters(settings) == []
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(counter, 30)
        await progress.stop()
        await producer.stop()
        await close_stores()

    store = ClickHouseStore(dsn)
    try:
        rows, unique = store.query_rows_sync(
            "SELECT count(), uniqExact(post_id) FROM posts FINAL WHERE task_id = {t:String}",
            {"t": TASK},
        )[0]
        billed = store.query_rows_sync(
            "SELECT uniqExact(post_id) FROM keyword_month_posts WHERE keyword = 'outage'"
        )[0][0]
        assert (rows, unique, billed) == (100, 100, 100)
    finally:
        store.close()
        server.stop()


async def test_counter_started_while_clickhouse_is_down_waits_for_it(
    noida, tmp_path, infra_log_dir
):
    """A service that starts before ClickHouse (a cluster restart, a node reboot) waits for it,
    shows what it waits for, and works once it is there: it never exits."""
    data, port = tmp_path / "ch", local.free_port()
    dsn = f"http://default:@127.0.0.1:{port}/default"
    settings = counter_settings(noida, dsn)
    producer = await Producer(settings).start()
    progress = await TopicTable(settings, TASK_PROGRESS).start()
    stop = asyncio.Event()
    counter = asyncio.create_task(serve_counter(settings, stop))
    server = None
    try:
        await _until(
            lambda: any("clickhouse" in w for w in HEALTH.waiting_on()),
            30,
            "the counter to wait for ClickHouse",
        )
        assert not counter.done()
        server = local.start_chdb_http(data, port, log_dir=infra_log_dir)
        await producer.send_all([post(n) for n in range(20)] + [slice_end()])
        await _until(
            lambda: (
                isinstance(p := progress.rows.get(TASK), TaskProgress)
                and p.status == "completed"
                and p.collected == 20
            ),
            60,
            "the task counted once ClickHouse is there",
        )
        assert not any("clickhouse" in w for w in HEALTH.waiting_on())
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(counter, 30)
        await progress.stop()
        await producer.stop()
        await close_stores()
        if server is not None:
            server.stop()
