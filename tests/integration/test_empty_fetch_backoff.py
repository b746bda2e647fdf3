"""The client-side wait after empty fetches (for brokers that answer them at once, like
noida-db): an idle consumer polls less and less often, and still gets the next record."""

from __future__ import annotations

import asyncio
import time

from aiokafka import TopicPartition

from libs.kafka import consumer_for, install_empty_fetch_backoff
from libs.topics import USERS

from .kafka_helpers import next_values, send_raw


async def _idle_streak(settings, topic: str, seconds: float):
    """Empty fetches an assigned consumer made in `seconds` on a partition with no new data,
    and the consumer (still running)."""
    consumer = consumer_for(settings, None, "backoff-test")
    await consumer.start()
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    await consumer.seek_to_end(tp)
    await consumer.getmany(timeout_ms=10)  # starts the fetch loop
    await asyncio.sleep(seconds)
    return consumer._fetcher._xget_empty_fetches, consumer


async def test_idle_consumer_backs_off_and_still_gets_the_next_record(noida):
    topic = noida.topic(USERS)
    settings = noida.settings(
        kafka_empty_fetch_backoff_ms=50, kafka_empty_fetch_backoff_max_ms=400
    )  # a cap well above the first wait
    streak, consumer = await _idle_streak(settings, topic, 2.0)
    try:
        # 50+100+200+400+400+... ms: about 7 fetches in 2 s, where a flat 50 ms makes ~40.
        assert 3 <= streak <= 12, streak
        await send_raw(noida.bootstrap, topic, b"wake-up", key=b"k", partition=0)
        assert await next_values(consumer, 10) == [b"wake-up"]
        # A fetch with records starts the wait over.
        assert consumer._fetcher._xget_empty_fetches <= 2
    finally:
        await consumer.stop()


async def test_a_flat_wait_when_the_cap_equals_the_first_wait(noida):
    settings = noida.settings(kafka_empty_fetch_backoff_ms=50, kafka_empty_fetch_backoff_max_ms=50)
    streak, consumer = await _idle_streak(settings, noida.topic(USERS), 1.0)
    await consumer.stop()
    assert streak >= 10, streak  # every 50 ms: the doubling above is what saves the polls


def test_zero_restores_aiokafkas_own_fetch():
    from aiokafka.consumer import fetcher

    install_empty_fetch_backoff(50, 400)
    wrapped = fetcher.Fetcher._proc_fetch_request
    assert hasattr(wrapped, "__xget_original__")
    install_empty_fetch_backoff(0)
    assert fetcher.Fetcher._proc_fetch_request is wrapped.__xget_original__


async def test_a_record_published_in_the_same_process_wakes_a_waiting_consumer(noida):
    """The embedded mode runs every service in one process: a record one service publishes
    wakes the local consumers of that topic out of their wait, so a hop does not cost the wait.
    The wait here is 60 s: without the wake-up the record could not arrive in time."""
    from libs.kafka import Outgoing, Producer
    from libs.records.posts import XUser

    settings = noida.settings(
        kafka_empty_fetch_backoff_ms=60_000, kafka_empty_fetch_backoff_max_ms=60_000
    )
    consumer = consumer_for(settings, None, "wake-test")
    await consumer.start()
    tp = TopicPartition(noida.topic(USERS), 0)
    consumer.assign([tp])
    await consumer.seek_to_end(tp)
    producer = await Producer(settings).start()
    try:
        await consumer.getmany(timeout_ms=10)
        # The first fetch came back empty: the consumer is in its 60 s wait.
        deadline = time.monotonic() + 10
        while not getattr(consumer._fetcher, "_xget_empty_fetches", 0):
            assert time.monotonic() < deadline, "no empty fetch"
            await asyncio.sleep(0.02)
        user = XUser(user_id="1", user_name="wake", seen_at="2026-11-24T00:00:00Z")
        await producer.send_and_wait(Outgoing(USERS, None, user, partition=0))
        got = await next_values(consumer, 20)
        assert len(got) == 1 and b'"wake"' in got[0]
    finally:
        await producer.stop()
        await consumer.stop()
