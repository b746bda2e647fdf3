"""A broker SIGKILLed and restarted on its data dir loses its last seconds, and with them
what it knew of every idempotent producer: aiokafka then fails each later send of such a
producer (OutOfOrderSequenceNumber) for ever. libs.kafka.Producer replaces itself: the send
that met the broken state raises ProducerReplaced (a KafkaError, so the caller goes back to
its last durable point), and the sends after it go through."""

from __future__ import annotations

import uuid

from infra import local
from infra.service_process import wait_until
from libs.kafka import Outgoing, Producer, ProducerReplaced, scan_partition
from libs.records.dead_letter import DeadLetter
from libs.topics import DEAD_LETTERS

from ..conftest import make_settings


def letter(run: str, i: int) -> DeadLetter:
    return DeadLetter(
        service=run,
        source_topic="t",
        partition=0,
        offset=i,
        key=None,
        value="v",
        error=f"record {i}",
        failed_at="2026-11-23T00:00:00Z",
    )


async def test_producer_is_replaced_after_a_broker_restart_that_lost_its_state(restartable_noida):
    broker = restartable_noida
    prefix = f"r{uuid.uuid4().hex[:6]}-"
    await local.create_topics(broker.address, prefix, [DEAD_LETTERS])
    settings = make_settings(
        kafka_bootstrap=broker.address, topic_prefix=prefix, kafka_group_mode="assign"
    )
    run = uuid.uuid4().hex[:8]
    topic = prefix + DEAD_LETTERS.name
    wait_until(lambda: topic in broker.saved_topics(), 30, "the topic in a broker snapshot")
    producer = await Producer(settings, "restart-test", linger_ms=0).start()
    try:
        for i in range(20):  # sequence numbers the restarted broker will not know
            await producer.send_and_wait(Outgoing(DEAD_LETTERS, "k", letter(run, i), partition=0))
        broker.restart_after_kill()
        failures = []
        for i in range(20, 30):
            try:
                await producer.send_and_wait(
                    Outgoing(DEAD_LETTERS, "k", letter(run, i), partition=0)
                )
            except ProducerReplaced as e:
                failures.append((i, e))
        # The first send after the restart met the broken producer and was refused (the
        # caller produces it again); every later one went through on a new producer.
        assert [i for i, _ in failures] == [20], failures
        assert producer.replacements == 1
        await producer.send_and_wait(Outgoing(DEAD_LETTERS, "k", letter(run, 20), partition=0))
        assert set(range(20, 30)) <= set(await sent(settings, run))

        # A caller whose durable point is the record itself (the gateway) has it sent again
        # on the replacement: the restart costs it nothing.
        redoing = await Producer(
            settings, "restart-test-redo", linger_ms=0, redo_replaced=True
        ).start()
        try:
            await redoing.send_and_wait(Outgoing(DEAD_LETTERS, "k", letter(run, 40), partition=0))
            broker.restart_after_kill()
            await redoing.send_and_wait(Outgoing(DEAD_LETTERS, "k", letter(run, 41), partition=0))
            assert redoing.replacements == 1
        finally:
            await redoing.stop()
    finally:
        await producer.stop()
    assert 41 in await sent(settings, run)


async def sent(settings, run: str) -> list[int]:
    """The numbers of this run's records on the broker."""
    return [
        rec.offset
        async for _m, rec in scan_partition(settings, DEAD_LETTERS, 0, 0)
        if isinstance(rec, DeadLetter) and rec.service == run
    ]
