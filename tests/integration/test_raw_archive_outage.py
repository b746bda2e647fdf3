"""The parser archives raw pages to the object store before it commits them, and waits out an
object-store outage like any dependency: nothing dead-lettered, nothing parsed or committed
while the bucket is off the network, every page archived once it is back.

Real parts: noida-db, moto_server behind a TCP relay (taken down and up), the parser's own
serve() loop."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

from aiokafka import TopicPartition
from prometheus_client import REGISTRY

from infra.service_process import wait_until_async
from infra.tcp_relay import TcpRelay
from libs.kafka import Outgoing, Producer, consumer_for
from libs.records.pages import RawPage
from libs.storage.objects import open_object_store
from libs.storage.raw_archive import RawArchive
from libs.topics import POSTS, RAW_PAGES, topic_name
from services.parser.main import serve as serve_parser
from tests.e2e.harness import fresh_prefix
from tests.integration.kafka_helpers import dead_letters

NOW = datetime.now(UTC)


def raw_page(n: int, final: bool = False) -> Outgoing:
    page = RawPage(
        task_id="arch-task",
        slice_id="s0",
        page_no=n,
        keyword="archive",
        operation="SearchTimeline",
        query="archive",
        requested_at=NOW,
        response='{"data": {}}',
        outcome="rate_limited",  # nothing to parse: the archive is what is tested
        final=final,
        end_reason="exhausted" if final else None,
    )
    return Outgoing(RAW_PAGES, "arch-task/s0", page, partition=0)


async def test_parser_waits_out_an_object_store_outage_and_archives_every_page(noida, s3):
    host, _, port = s3.rpartition(":")
    with TcpRelay(host, int(port)) as relay:
        settings = s3.settings(
            kafka_bootstrap=noida.bootstrap,
            topic_prefix=fresh_prefix(noida.bootstrap),
            kafka_group_mode="assign",
            s3_endpoint=relay.address,
            dependency_retry_base_s=0.2,
            dependency_retry_max_s=1.0,
        )
        archive = RawArchive(open_object_store(settings))
        posts_tp = TopicPartition(topic_name(POSTS, settings.topic_prefix), 0)
        check = consumer_for(settings, None, "archive-test")
        await check.start()
        producer = await Producer(settings).start()
        stop = asyncio.Event()
        parser = asyncio.create_task(serve_parser(settings, stop))

        async def archived() -> list:
            objs = await archive.objects(NOW)
            return [a for o in objs for a in await archive.pages(o)]

        async def slice_ends() -> int:
            tps = [TopicPartition(posts_tp.topic, p) for p in range(POSTS.partitions)]
            return sum((await check.end_offsets(tps)).values())

        try:
            await producer.send_all([raw_page(0)])
            await wait_until_async(lambda: _has(archived, 1), 60, "the first page archived")

            relay.down()  # the bucket goes off the network
            await producer.send_all([raw_page(n) for n in range(1, 5)] + [raw_page(5, True)])

            async def waiting() -> bool:
                labels = {"service": "parser", "dependency": "object-store"}
                return REGISTRY.get_sample_value("xget_dependency_down", labels) == 1

            await wait_until_async(waiting, 60, "the parser to wait for the object store")
            await asyncio.sleep(2)  # a few more attempts while it is down
            assert await slice_ends() == 0, "a page was handled before it was archived"
            assert await dead_letters(settings) == []

            relay.up()
            await wait_until_async(
                lambda: _has(archived, 6), 60, "every page archived once it is back"
            )
            await wait_until_async(lambda: _positive(slice_ends), 30, "the slice's end parsed")
            pages = await archived()
            assert sorted({a.page.page_no for a in pages}) == list(range(6))
            assert all(a.page.task_id == "arch-task" for a in pages)
            assert await dead_letters(settings) == []
            assert not await waiting()
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(parser, 30)
            await producer.stop()
            await check.stop()


async def _has(archived, n: int) -> bool:
    return len({a.page.page_no for a in await archived()}) >= n


async def _positive(count) -> bool:
    return await count() > 0
