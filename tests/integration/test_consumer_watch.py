"""Hand-rolled consumers (scraper, kol-worker) are as observable as ConsumerLoop services:
records in and failed per topic, lag per partition, and readiness only once their consumer
holds partitions — on both brokers."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from infra.local import create_topics
from libs import metrics
from libs.consumer_watch import ConsumerWatch
from libs.kafka import Producer, consumer_for, join
from libs.ops_server import HEALTH
from libs.topics import DEAD_LETTERS, KOL_COMMANDS, topic_name
from services.kol.worker import SERVICE as KOL
from services.kol.worker import KolWorker

from .kafka_helpers import send_raw


def sample(name: str, **labels) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


async def until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def test_ready_only_once_the_group_assigned_partitions(tansu):
    """Members mode: subscribing is not being ready; the group's assignment is."""
    settings = tansu.settings(kafka_group_mode="members")
    group = f"{tansu.prefix}watch-{uuid.uuid4().hex[:6]}"
    topic = topic_name(KOL_COMMANDS, settings.topic_prefix)
    watch = ConsumerWatch("watch-test", group)
    consumer = consumer_for(settings, group, "watch-test")
    await consumer.start()
    try:
        await join(consumer, settings, [topic])
        await watch.polled(consumer)  # subscribed, the group not joined yet
        assert not consumer.assignment() and group in HEALTH.not_ready()
        assert sample("xget_ready", component=group) == 0
        while group in HEALTH.not_ready():
            await watch.polled(
                consumer,
                [m for ms in (await consumer.getmany(timeout_ms=200)).values() for m in ms],
            )
            assert group in HEALTH.not_ready() or consumer.assignment()
        assert consumer.assignment() and sample("xget_ready", component=group) == 1
    finally:
        watch.stopped()
        await consumer.stop()
    assert group not in HEALTH.not_ready()


@pytest.mark.parametrize("broker", ["noida", "tansu"])
async def test_kol_worker_counts_records_lag_and_dead_letters(broker, request):
    kafka = request.getfixturevalue(broker)
    prefix = f"{kafka.prefix}w{uuid.uuid4().hex[:4]}-"  # topics of its own: no other commands
    await create_topics(kafka.bootstrap, prefix, [KOL_COMMANDS, DEAD_LETTERS])
    settings = kafka.settings(topic_prefix=prefix)
    topic = topic_name(KOL_COMMANDS, prefix)
    dead = topic_name(DEAD_LETTERS, prefix)
    producer = await Producer(settings, "watch-test").start()
    worker = KolWorker(settings, producer)
    group = worker.group_id
    assert group in HEALTH.not_ready()  # registered before it consumed anything
    runner = asyncio.create_task(worker.run())
    try:
        await until(lambda: group not in HEALTH.not_ready(), 30, "the kol-worker to be ready")
        assert sample("xget_ready", component=group) == 1
        await send_raw(kafka.bootstrap, topic, b"not a record", key=b"bad", partition=1)
        await until(
            lambda: sample("xget_records_failed_total", service=KOL, topic=topic) == 1,
            30,
            "the bad command to be dead-lettered",
        )
        assert sample("xget_records_in_total", service=KOL, topic=topic) == 1
        assert sample("xget_records_out_total", service="watch-test", topic=dead) == 1

        def lag_gauges():
            return [
                metrics.REGISTRY.get_sample_value(
                    "xget_consumer_lag", {"group": group, "topic": topic, "partition": str(p)}
                )
                for p in range(KOL_COMMANDS.partitions)
            ]

        await until(
            lambda: lag_gauges() == [0] * KOL_COMMANDS.partitions,
            30,
            "a drained lag gauge per partition",
        )
    finally:
        worker.stop()
        await asyncio.wait_for(runner, 30)
        await producer.stop()
    assert group not in HEALTH.not_ready()
