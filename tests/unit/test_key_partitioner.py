"""The producer's remembering partitioner sends every key where Kafka's default partitioner
(and so every other Kafka client) sends it, before and after its memory is cleared."""

import random

from aiokafka.partitioner import DefaultPartitioner

from libs.kafka import KeyPartitioner, partition_for_key


def test_same_partition_as_default_for_any_key_and_partition_count():
    rng = random.Random(7)
    ours, default = KeyPartitioner(), DefaultPartitioner()
    for _ in range(3000):
        key = rng.randbytes(rng.randint(1, 40))
        parts = list(range(rng.choice((1, 2, 3, 6, 12, 32))))
        first = ours(key, parts, parts)
        assert first == default(key, parts, parts)
        assert ours(key, parts, parts) == first  # from memory now


def test_task_keys_land_where_the_ledger_and_reporter_expect():
    ours = KeyPartitioner()
    for i in range(200):
        task = f"task-{i:04d}"
        assert ours(task.encode(), list(range(6)), [0]) == partition_for_key(task, range(6))


def test_memory_is_bounded_and_answers_survive_a_clear(monkeypatch):
    monkeypatch.setattr(KeyPartitioner, "MAX_KEYS", 10)
    ours, default = KeyPartitioner(), DefaultPartitioner()
    parts = list(range(6))
    for i in range(55):
        key = f"k{i}".encode()
        assert ours(key, parts, parts) == default(key, parts, parts)
        assert len(ours._index) <= 10
    assert ours(None, parts, parts) in parts  # no key: any partition, as the default does
