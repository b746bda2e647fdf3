"""Producer.send_all publishes many records as per-partition batches: every record arrives,
in order within its partition, on the partition its key names, with its headers; a record
larger than a whole batch still goes through. On both brokers."""

from __future__ import annotations

import uuid

import pytest

from libs.kafka import Outgoing, Producer, partition_for_key, scan_partition
from libs.records.dead_letter import DeadLetter
from libs.topics import DEAD_LETTERS


def letter(i: int, size: int = 10) -> DeadLetter:
    return DeadLetter(
        service="batch-test",
        source_topic="t",
        partition=0,
        offset=i,
        key=None,
        value="v" * size,
        error=f"record {i}",
        failed_at="2026-11-23T00:00:00Z",
    )


@pytest.mark.parametrize("broker", ["noida", "tansu"])
async def test_send_all_keeps_partition_order_keys_headers_and_big_records(broker, request):
    env = request.getfixturevalue(broker)
    settings = env.settings()
    run = uuid.uuid4().hex[:8]
    keys = [f"{run}-k{i}" for i in range(5)]
    outs = []
    for i in range(60):
        size = 1_500_000 if i == 31 else 10  # one record bigger than a 1 MB batch
        outs.append(
            Outgoing(
                DEAD_LETTERS, keys[i % 5], letter(i, size), headers=(("test-run", run.encode()),)
            )
        )
    outs.append(
        Outgoing(
            DEAD_LETTERS,
            None,
            letter(60),
            partition=2,  # explicit partition
            headers=(("test-run", run.encode()),),
        )
    )
    producer = await Producer(settings, "batch-test").start()
    try:
        acks = await producer.send_all(outs)
    finally:
        await producer.stop()
    assert acks

    expected: dict[int, list[int]] = {}
    for i, o in enumerate(outs):
        p = (
            o.partition
            if o.partition is not None
            else partition_for_key(o.key, range(DEAD_LETTERS.partitions))
        )
        expected.setdefault(p, []).append(i)
    got: dict[int, list[int]] = {}
    for partition in range(DEAD_LETTERS.partitions):
        async for msg, rec in scan_partition(settings, DEAD_LETTERS, partition, 0):
            headers = dict(msg.headers or ())
            if headers.get("test-run") != run.encode():
                continue
            assert isinstance(rec, DeadLetter)
            assert headers["xget-schema"] == b"xget.DeadLetter/v1"
            got.setdefault(partition, []).append(rec.offset)
            if rec.offset == 31:
                assert len(rec.value) == 1_500_000
    for p in sorted(set(got) | set(expected)):
        assert got.get(p) == expected.get(p), (
            f"partition {p}: missing {sorted(set(expected.get(p, [])) - set(got.get(p, [])))}, "
            f"unexpected {sorted(set(got.get(p, [])) - set(expected.get(p, [])))}, "
            f"got {got.get(p)}"
        )
