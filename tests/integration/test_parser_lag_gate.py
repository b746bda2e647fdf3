"""The scraper waits for the parser: its requests to X are held while the parser's consumer
group has more raw pages unread than XGET_SCRAPER_MAX_PARSER_LAG_PAGES, and go on once it has
read them (down to half the limit). Real noida-db; the group's commits made by hand."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from infra.service_process import wait_until_async
from libs.topics import RAW_PAGES, topic_name
from services.scraper.backpressure import ParserLagGate
from tests.e2e.harness import fresh_prefix


@asynccontextmanager
async def raw_pages_and_parser(noida) -> AsyncIterator[tuple]:
    """Fresh topics; raw-pages partition 0, the parser's group (assigned, at offset 0, its
    commits made by the test) and a producer onto it: (settings, tp, parser, producer)."""
    settings = noida.settings(topic_prefix=fresh_prefix(noida.bootstrap))
    tp = TopicPartition(topic_name(RAW_PAGES, settings.topic_prefix), 0)
    parser = AIOKafkaConsumer(
        bootstrap_servers=noida.bootstrap,
        group_id=f"{settings.topic_prefix}parser",
        enable_auto_commit=False,
    )
    await parser.start()
    producer = AIOKafkaProducer(bootstrap_servers=noida.bootstrap)
    await producer.start()
    try:
        parser.assign([tp])
        await parser.commit({tp: 0})
        yield settings, tp, parser, producer
    finally:
        await producer.stop()
        await parser.stop()


async def test_requests_wait_while_the_parser_lags_and_go_on_once_it_read(noida):
    async with raw_pages_and_parser(noida) as (settings, tp, parser, producer):
        gate = await ParserLagGate(settings, max_pages=5, interval_s=0.2).start()
        try:
            for i in range(4):
                await producer.send_and_wait(tp.topic, b"page %d" % i, partition=0)
            await asyncio.sleep(1)
            assert not gate.holding  # 4 unread: within the limit
            for i in range(4, 10):
                await producer.send_and_wait(tp.topic, b"page %d" % i, partition=0)
            await wait_until_async(lambda: gate.holding, 10, "the gate to hold at 10 unread pages")
            waiter = asyncio.create_task(gate.wait())
            await asyncio.sleep(1)
            assert not waiter.done(), "a request went on while the parser lagged"
            await parser.commit({tp: 6})  # 4 unread: under the limit, not yet half of it
            await asyncio.sleep(1)
            assert not waiter.done()
            await parser.commit({tp: 8})  # 2 unread: half the limit
            await asyncio.wait_for(waiter, 10)
            assert gate.lag == 2
        finally:
            await gate.stop()


async def test_requests_wait_while_the_parser_has_too_many_bytes_unread_on_a_partition(noida):
    """XGET_SCRAPER_MAX_PARSER_LAG_BYTES (make up sets it from the broker's memory budget):
    the same gate in bytes, per raw-pages partition, from the broker's log sizes."""
    page = bytes(range(256)) * 40  # 10 KiB, as stored (no compression)
    async with raw_pages_and_parser(noida) as (settings, tp, parser, producer):
        gate = ParserLagGate(settings, max_pages=0, interval_s=0.2, max_bytes=45_000)
        await gate.start()
        try:
            for _ in range(3):
                await producer.send_and_wait(tp.topic, page, partition=0)
            await asyncio.sleep(1)
            assert not gate.holding  # ~31 KB unread: within 45 KB
            for _ in range(3):
                await producer.send_and_wait(tp.topic, page, partition=0)
            await wait_until_async(lambda: gate.holding, 10, "the gate to hold at ~62 KB unread")
            waiter = asyncio.create_task(gate.wait())
            await parser.commit({tp: 3})  # ~31 KB unread: under the limit, not yet half of it
            await asyncio.sleep(1)
            assert not waiter.done(), "a request went on above half the limit"
            await parser.commit({tp: 5})  # ~10 KB unread
            await asyncio.wait_for(waiter, 10)
            assert 0 < gate.lag_bytes < 22_500
        finally:
            await gate.stop()


async def test_pages_on_a_partition_the_parser_never_committed_on_count_as_unread(noida):
    """The parser reads a partition it never committed on from its first record, so every
    page there is unread: the gate holds for them too (it used to leave such a partition out,
    and the scraper filled it unseen until the parser's first commit there)."""
    async with raw_pages_and_parser(noida) as (settings, tp, parser, producer):
        fresh = TopicPartition(tp.topic, 1)  # no commit of the group there
        gate = await ParserLagGate(settings, max_pages=5, interval_s=0.2).start()
        try:
            for i in range(10):
                await producer.send_and_wait(tp.topic, b"page %d" % i, partition=1)
            await wait_until_async(lambda: gate.holding, 10, "the gate to hold at 10 unread pages")
            assert gate.lag == 10
            waiter = asyncio.create_task(gate.wait())
            await asyncio.sleep(1)
            assert not waiter.done(), "a request went on while the parser lagged"
            parser.assign([tp, fresh])
            await parser.commit({fresh: 8})  # 2 unread: half the limit
            await asyncio.wait_for(waiter, 10)
            assert gate.lag == 2
        finally:
            await gate.stop()
