"""`xget lag` against a real broker: with a consumer paused, lag is records produced minus
records committed per partition, and the recommended replicas follow the formula of libs/lag.py."""

from __future__ import annotations

import math
import uuid

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from libs import lag
from libs.kafka import consumer_for
from libs.topics import RAW_PAGES, USERS
from services import cli


async def produce(bootstrap: str, topic: str, per_partition: int, partitions: int) -> None:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await p.start()
    try:
        for part in range(partitions):
            for i in range(per_partition):
                await p.send(topic, f"r{i}".encode(), partition=part)
        await p.flush()
    finally:
        await p.stop()


@pytest.mark.parametrize("broker", ["noida", "tansu"])
async def test_lag_is_produced_minus_committed_and_replicas_follow_the_formula(broker, request):
    kafka = request.getfixturevalue(broker)
    settings = kafka.settings()
    topic = kafka.topic(USERS)
    parts = USERS.partitions
    group = f"{kafka.prefix}lagtest-{uuid.uuid4().hex[:6]}"
    idle = f"{kafka.prefix}idle-{uuid.uuid4().hex[:6]}"
    await produce(kafka.bootstrap, topic, 10, parts)
    tps = [TopicPartition(topic, p) for p in range(parts)]
    before = await lag.snapshot(settings, {group: [topic]})
    base = {tp: before.end[tp] - 10 for tp in tps}  # the topic is shared by the session

    consumer = consumer_for(settings, group, "lag-test")
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.commit({tp: base[tp] + 3 for tp in tps})
        consumer.pause(*tps)  # a paused member: it fetches nothing more
        first = await lag.snapshot(settings, {group: [topic], idle: [topic]})
        await consumer.commit({tp: base[tp] + 5 for tp in tps})  # consumed 2 more each
        await produce(kafka.bootstrap, topic, 1, parts)  # 1 more produced each
        second = await lag.snapshot(settings, {group: [topic], idle: [topic]})
    finally:
        await consumer.stop()

    dt = second.at - first.at
    target = dt * 3 / 2.3  # chosen so the formula lands strictly inside [1, partitions]
    rows = {r.group: r for r in lag.report(first, second, target)}
    row = rows[group]
    assert row.topic == topic
    assert row.partitions == {p: (10 + 1) - 5 for p in range(parts)}  # produced − committed
    assert row.lag == 6 * parts
    assert math.isclose(row.rate, 2 * parts / dt) and math.isclose(row.inflow, parts / dt)
    per_member = row.rate / row.members
    expected = math.ceil((row.inflow + row.lag / target) / per_member)
    assert 1 < expected < parts
    assert row.recommended_replicas == expected
    assert math.isclose(row.drain_s, row.lag / (row.rate - row.inflow))
    # A tighter target asks for more, but never more replicas than partitions.
    assert {r.group: r for r in lag.report(first, second, target / 1000)}[
        group
    ].recommended_replicas == parts
    # A group that never committed lags by the whole topic and its speed is unknown.
    assert rows[idle].lag == sum(second.end[tp] - second.start[tp] for tp in tps)
    assert rows[idle].recommended_replicas == parts and math.isinf(rows[idle].drain_s)


@pytest.mark.parametrize("broker", ["noida", "tansu"])
def test_xget_lag_prints_each_declared_group(broker, request, monkeypatch, capsys):
    import asyncio

    kafka = request.getfixturevalue(broker)
    topic = kafka.topic(RAW_PAGES)
    before = asyncio.run(lag.snapshot(kafka.settings(), {"x": [topic]}))
    asyncio.run(produce(kafka.bootstrap, topic, 2, RAW_PAGES.partitions))
    for k, v in {
        "XGET_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "XGET_TOPIC_PREFIX": kafka.prefix,
        "XGET_KAFKA_EMPTY_FETCH_BACKOFF_MS": "50",
        "XGET_KAFKA_END_OFFSETS_FROM_FETCH": str(broker == "tansu"),
    }.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir("/")  # no .env
    assert cli.main(["lag", "--group", "parser", "--sample", "0.1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["GROUP", "TOPIC", "LAG"]
    (line,) = [x for x in out if x.startswith(f"{kafka.prefix}parser ")]
    fields = line.split()
    expected = sum(before.end.values()) - sum(before.start.values()) + 2 * RAW_PAGES.partitions
    assert fields[1] == topic and int(fields[2]) == expected
    assert cli.main(["lag", "--group", "nope"]) == 2


def test_xget_lag_prints_the_table_and_nothing_else(noida):
    """noida-db cannot encode DescribeGroups; aiokafka's connection used to print a traceback
    per attempt (85 lines around the table). The operator sees the table, and nothing on stderr."""
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "XGET_KAFKA_BOOTSTRAP": noida.bootstrap,
        "XGET_TOPIC_PREFIX": noida.prefix,
        "XGET_KAFKA_GROUP_MODE": "members",  # the production mode: groups are described
    }
    r = subprocess.run(
        [sys.executable, "-m", "services.cli", "lag", "--group", "parser", "--sample", "0.2"],
        env=env,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    lines = r.stdout.splitlines()
    assert lines[0].split()[:3] == ["GROUP", "TOPIC", "LAG"]
    assert all(x.startswith(("GROUP", f"{noida.prefix}parser ")) for x in lines if x.strip())
