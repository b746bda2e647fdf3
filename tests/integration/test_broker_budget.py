"""The embedded broker within its memory budget, and a stop that never cuts its save short.

noida-db keeps every retained record in memory (and snapshots all of it as JSON): without
byte retention its RSS follows everything ever written. With the topics created under a
budget (libs.topics.budget_configs: retention.bytes and small segments, which it enforces by
deleting whole segments), writing three times the budget through the two largest topics keeps
its RSS under the budget, and the newest records stay readable.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid

from aiokafka import AIOKafkaProducer, TopicPartition

from infra import local
from libs.kafka import consumer_for
from libs.topics import CATALOGUE, POSTS, RAW_PAGES, budget_configs, topic_name

from ..conftest import make_settings

BUDGET_MB = 96
WRITE_MB = 3 * BUDGET_MB
RATE_MB_S = 5.0  # ~3x the pipeline's inflow (raw pages + posts, zstd) at 1,650 posts/s
RECORD_KB = 40
RAW_MB_S = 3.0  # raw pages into the small pipeline: ~6x the bench's at ~650 posts/s


async def test_broker_rss_stays_under_its_budget_while_three_budgets_are_written(
    restartable_noida,
):
    broker = restartable_noida
    prefix = f"b{uuid.uuid4().hex[:6]}-"
    await local.create_topics(broker.address, prefix, CATALOGUE, broker_max_mb=BUDGET_MB)
    topics = [topic_name(RAW_PAGES, prefix), topic_name(POSTS, prefix)]
    producer = AIOKafkaProducer(bootstrap_servers=broker.address, linger_ms=5)
    await producer.start()
    peak, written, records, t0, sampled = 0.0, 0, 0, time.monotonic(), 0.0
    try:
        while written < WRITE_MB * 2**20:
            for topic in topics:  # incompressible: bytes in = bytes held
                await producer.send(topic, os.urandom(RECORD_KB * 512), key=uuid.uuid4().bytes)
            written, records = written + RECORD_KB * 1024, records + 1
            ahead = t0 + written / (RATE_MB_S * 2**20) - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
            if time.monotonic() - sampled > 0.2:
                peak, sampled = max(peak, local.tree_rss_mb(broker.handle.pid)), time.monotonic()
        await producer.flush()
        settle = time.monotonic() + 6  # two retention sweeps and snapshots after the last write
        while time.monotonic() < settle:
            peak = max(peak, local.tree_rss_mb(broker.handle.pid))
            await asyncio.sleep(0.2)
    finally:
        await producer.stop()
    print(f"broker RSS peak {peak:.0f} MiB (budget {BUDGET_MB} MiB) after {records} records")
    assert peak < BUDGET_MB, f"broker RSS peaked at {peak:.0f} MiB, budget {BUDGET_MB} MiB"

    consumer = consumer_for(make_settings(kafka_bootstrap=broker.address), None, "budget-test")
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(RAW_PAGES.partitions)]
        begin, end = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    assert sum(end[tp] for tp in tps if tp.topic == topics[0]) == records  # all were written
    deleted = sum(begin.values())
    kept = sum(end[tp] - begin[tp] for tp in tps)
    assert deleted > records, "retention deleted less than half of what was written"
    assert kept > 0 and all(end[tp] - begin[tp] > 0 for tp in tps), "the newest records stay"


async def test_a_stop_during_a_large_save_loses_nothing(restartable_noida):
    """noida-db saves everything it holds on SIGTERM, longer the more it holds (25 s at 1M
    posts). The stop waits for it however long it works (a SIGKILL only after `timeout`
    seconds without CPU), so every record acknowledged before the stop is there after the
    restart — including the last ones, which no periodic snapshot had yet."""
    broker = restartable_noida
    topic = f"s{uuid.uuid4().hex[:6]}-big"
    producer = AIOKafkaProducer(bootstrap_servers=broker.address, linger_ms=5)
    await producer.start()
    try:
        for _ in range(100 * 1024 // RECORD_KB):  # 100 MiB: a save of ~0.4 GB of JSON
            await producer.send(topic, os.urandom(RECORD_KB * 1024), partition=0)
        await producer.flush()
        last = await producer.send_and_wait(topic, b"the last record", partition=0)
    finally:
        await producer.stop()
    t = time.monotonic()
    broker.handle.stop(timeout=0.5)  # idle-CPU window: a plain stop would SIGKILL at 0.5 s
    stopped_after = time.monotonic() - t
    print(f"the broker saved for {stopped_after:.1f}s")
    # Longer than twice the idle window: a stop that was not patient would have killed it.
    assert stopped_after > 1.0, f"the save took {stopped_after:.2f}s: too small to prove much"
    broker.start()
    consumer = consumer_for(make_settings(kafka_bootstrap=broker.address), None, "stop-test")
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        assert (await consumer.end_offsets([tp]))[tp] == last.offset + 1
        consumer.assign([tp])
        consumer.seek(tp, last.offset)
        msg = await asyncio.wait_for(consumer.getone(), 30)
        assert msg.value == b"the last record"
    finally:
        await consumer.stop()


async def retention_bytes(bootstrap: str, topic: str) -> int:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        res = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        await admin.close()
    return int({e[0]: e[1] for e in res[0].resources[0][4]}["retention.bytes"])


async def test_a_lagging_consumer_group_loses_nothing_to_the_budget(restartable_noida):
    """Byte retention deletes whatever a consumer has read or not, as in Kafka: a parser
    lagging further than raw-pages keeps would lose pages. The retention guard raises the
    topic's retention.bytes while a declared group lags and lowers it back once it caught up;
    topics no group lags on keep the budget's retention meanwhile."""
    from aiokafka import AIOKafkaConsumer

    from infra.retention_guard import RetentionGuard

    broker = restartable_noida
    prefix = f"g{uuid.uuid4().hex[:6]}-"
    # A budget whose retention leaves the guard a few seconds before the first deletion (at
    # 96 MiB raw-pages keeps 180 KB a partition, filled in under a second here).
    budget = 512
    await local.create_topics(broker.address, prefix, CATALOGUE, broker_max_mb=budget)
    settings = make_settings(kafka_bootstrap=broker.address, topic_prefix=prefix)
    raw, posts = topic_name(RAW_PAGES, prefix), topic_name(POSTS, prefix)
    raw_tps = [TopicPartition(raw, p) for p in range(RAW_PAGES.partitions)]
    post_tps = [TopicPartition(posts, p) for p in range(POSTS.partitions)]
    parser = AIOKafkaConsumer(
        bootstrap_servers=broker.address, group_id=f"{prefix}parser", enable_auto_commit=False
    )
    await parser.start()
    parser.assign(raw_tps)
    await parser.commit({tp: 0 for tp in raw_tps})  # the parser has read nothing yet
    guard = RetentionGuard(settings, budget)
    base = int(budget_configs(RAW_PAGES, budget)["retention.bytes"])
    stop = asyncio.Event()
    guarding = asyncio.create_task(guard.run(stop, interval_s=0.5))
    producer = AIOKafkaProducer(bootstrap_servers=broker.address, linger_ms=5)
    await producer.start()
    try:
        written, t0 = 0, time.monotonic()
        while written < 80 * 2**20:  # 80 MiB: raw-pages keeps ~27 MiB under the budget
            for topic in (raw, posts):
                await producer.send(topic, os.urandom(RECORD_KB * 512), key=uuid.uuid4().bytes)
            written += RECORD_KB * 1024
            ahead = t0 + written / (RATE_MB_S * 2**20) - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
        await producer.flush()
        await asyncio.sleep(5)  # retention sweeps after the last write
        begin = await parser.beginning_offsets(raw_tps + post_tps)
        assert all(begin[tp] == 0 for tp in raw_tps), "pages the parser had not read deleted"
        assert sum(begin[tp] for tp in post_tps) > 0, "posts (no group lags) kept the budget"
        assert guard.current["raw-pages"] > base
        # A second make up (topics created again) leaves the guard's raised value alone.
        await local.create_topics(broker.address, prefix, CATALOGUE, broker_max_mb=budget)
        assert await retention_bytes(broker.address, raw) == guard.current["raw-pages"]

        ends = await parser.end_offsets(raw_tps)
        await parser.commit(ends)  # the parser caught up

        async def trimmed() -> bool:
            b = await parser.beginning_offsets(raw_tps)
            return guard.current.get("raw-pages") == base and sum(b.values()) > 0

        deadline = time.monotonic() + 60
        while not await trimmed():
            assert time.monotonic() < deadline, "raw-pages not back to the budget's retention"
            await asyncio.sleep(0.5)
    finally:
        stop.set()
        await guarding
        await producer.stop()
        await parser.stop()


def vm_hwm_mb(pid: int) -> float:
    """The process's peak resident memory since it started (VmHWM), in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for pid {pid}")


async def test_a_pipeline_writing_three_budgets_keeps_the_broker_within_it_and_loses_nothing(
    restartable_noida,
):
    """The embedded stack in small: a scraper that waits at the gate make up sets from the
    budget (XGET_SCRAPER_MAX_PARSER_LAG_BYTES), a parser group turning each raw page into 20
    posts, a dedup-counter group reading the posts, the retention guard — on a fresh broker
    whose budget is a fraction of what goes through it. Its peak RSS (VmHWM: every save
    included) stays under the budget, and each group reads every record once, in order, none
    deleted before it was read."""
    from aiokafka import AIOKafkaConsumer

    from infra.retention_guard import RetentionGuard
    from libs.topics import parser_lag_bytes
    from services.scraper.backpressure import ParserLagGate

    broker = restartable_noida
    budget = BUDGET_MB
    prefix = f"p{uuid.uuid4().hex[:6]}-"
    await local.create_topics(broker.address, prefix, CATALOGUE, broker_max_mb=budget)
    settings = make_settings(kafka_bootstrap=broker.address, topic_prefix=prefix)
    raw, posts = topic_name(RAW_PAGES, prefix), topic_name(POSTS, prefix)
    pages, page_kb, posts_a_page = 3 * budget * 1024 // (16 + 8), 16, 20  # 3 budgets in all
    stop = asyncio.Event()
    guard = RetentionGuard(settings, budget)
    # The gate looks every 0.1 s here: what arrives between two looks adds to the lag it
    # allows, and this budget's partitions are ~5x smaller than the bench's (512 MiB) while
    # the pages come ~6x faster than the pipeline's (3 MB/s).
    gate = await ParserLagGate(
        settings, max_pages=0, interval_s=0.1, max_bytes=parser_lag_bytes(budget)
    ).start()
    producer = AIOKafkaProducer(bootstrap_servers=broker.address, linger_ms=5)
    await producer.start()
    read: dict[str, int] = {}
    all_read = asyncio.Event()  # the dedup-counter group read every post
    ready = {"parser": asyncio.Event(), "dedup-counter": asyncio.Event()}

    async def group(service: str, topic: str, then=None) -> None:
        """A consumer group that reads `topic`, handing each batch to `then` and committing
        after it; it fails on any gap in the offsets it reads (a position the broker deleted
        is reset to the earliest record still held: a gap)."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=broker.address,
            group_id=f"{prefix}{service}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=1 << 20,
        )
        await consumer.start()
        # Every partition, its position committed before anything is written (make up's
        # services start before a task; group mode "assign"), as the gate and guard need.
        tps = [TopicPartition(topic, p) for p in range(RAW_PAGES.partitions)]
        consumer.assign(tps)
        await consumer.commit({tp: 0 for tp in tps})
        ready[service].set()
        expected: dict[TopicPartition, int] = {}
        try:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=200, max_records=8 * posts_a_page)
                for tp, msgs in batch.items():
                    for m in msgs:
                        assert m.offset == expected.get(tp, 0), f"{service}: {tp} skipped"
                        expected[tp] = m.offset + 1
                    read[service] = read.get(service, 0) + len(msgs)
                    if read.get("dedup-counter", 0) == pages * posts_a_page:
                        all_read.set()
                    if then is not None:
                        await then(msgs)
                if batch:
                    await consumer.commit()
        finally:
            await consumer.stop()

    async def parse(msgs) -> None:
        for _ in range(len(msgs) * posts_a_page):
            await producer.send(posts, os.urandom(400), key=b"task-1")

    async def watch_guard() -> None:
        while not stop.is_set():
            await guard.check()
            await asyncio.sleep(0.5)

    workers = [
        asyncio.create_task(group("parser", raw, parse)),
        asyncio.create_task(group("dedup-counter", posts)),
        asyncio.create_task(watch_guard()),
    ]

    async def unless_a_worker_fails(step) -> None:
        """Await `step`; a worker that ends meanwhile (a failed check) fails the test now."""
        task = asyncio.ensure_future(step)
        done, _ = await asyncio.wait([task, *workers], return_when=asyncio.FIRST_COMPLETED)
        for w in workers:
            if w in done:
                task.cancel()
                w.result()
                raise AssertionError(f"{w} ended")
        await task

    try:
        for event in ready.values():
            await unless_a_worker_fails(event.wait())
        t0 = time.monotonic()
        for i in range(pages):
            await unless_a_worker_fails(gate.wait())
            await producer.send(raw, os.urandom(page_kb * 1024), key=b"slice-%d" % (i % 8))
            ahead = t0 + (i + 1) * page_kb / 1024 / RAW_MB_S - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
        await producer.flush()
        await asyncio.wait_for(unless_a_worker_fails(all_read.wait()), 120)
        await asyncio.sleep(3)  # a retention sweep and a snapshot after the last record
    finally:
        stop.set()
        await asyncio.gather(*workers, return_exceptions=True)
        await gate.stop()
        await producer.stop()
    for w in workers:
        w.result()
    peak = vm_hwm_mb(broker.handle.pid)
    print(
        f"{pages} pages ({pages * page_kb // 1024} MiB) and {pages * posts_a_page} posts "
        f"through a {budget} MiB broker: VmHWM {peak:.0f} MiB; retention raised by the guard: "
        f"{ {n: v for n, v in guard.current.items() if v != guard.topics[n][1]} }"
    )
    assert read == {"parser": pages, "dedup-counter": pages * posts_a_page}
    assert peak < budget, f"broker peaked at {peak:.0f} MiB, budget {budget} MiB"
