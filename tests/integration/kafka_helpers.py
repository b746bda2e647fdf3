"""Small broker helpers shared by integration tests."""

from __future__ import annotations

import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


async def send_raw(
    bootstrap: str,
    topic: str,
    value: bytes,
    *,
    key: bytes | None = None,
    partition: int | None = None,
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    """One record as any client could publish it: bytes, and only the headers given."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key, partition=partition, headers=headers)
    finally:
        await producer.stop()


async def next_values(consumer: AIOKafkaConsumer, timeout_s: float) -> list[bytes]:
    """The values of the next non-empty fetch, or [] once `timeout_s` passed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        batch = await consumer.getmany(timeout_ms=200)
        got = [m.value for msgs in batch.values() for m in msgs]
        if got:
            return got
    return []


async def dead_letters(settings) -> list:
    """Every record on the dead-letters topic of `settings`' prefix, decoded."""
    from libs.kafka import scan_partition
    from libs.topics import DEAD_LETTERS

    found = []
    for part in range(DEAD_LETTERS.partitions):
        async for _, rec in scan_partition(settings, DEAD_LETTERS, part, 0, deadline_s=30):
            found.append(rec)
    return found
