"""Consumer lag, consumption rate, time to drain and the replicas that would drain it.

Two snapshots of (end offset, committed offset) per partition, `dt` seconds apart, give:

  lag           = end − committed (per partition; a group that never committed: end − start)
  rate          = (committed₂ − committed₁) / dt        records/s the group consumes
  inflow        = (end₂ − end₁) / dt                      records/s produced into the topic
  time to drain = lag / (rate − inflow)                   +inf when it does not shrink
  replicas      = ceil((inflow + lag / target_s) / (rate / members)), between 1 and partitions

`members` is the group's current member count (at least 1: a group in "assign" mode has no
members on the broker but one consumer). When the group consumed nothing during the sample
but has lag, its per-replica speed is unknown and the recommendation is the partition count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from . import metrics
from .kafka import consumer_for, partitions_of
from .settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Snapshot:
    at: float
    end: dict[TopicPartition, int]
    start: dict[TopicPartition, int]
    committed: dict[str, dict[TopicPartition, int | None]]  # group → tp → offset
    members: dict[str, int] = field(default_factory=dict)


@dataclass
class GroupTopicLag:
    group: str
    topic: str
    partitions: dict[int, int]  # partition → lag
    rate: float
    inflow: float
    members: int
    drain_s: float
    recommended_replicas: int

    @property
    def lag(self) -> int:
        return sum(self.partitions.values())


def recommend(
    lag: int, rate: float, inflow: float, members: int, partitions: int, target_s: float
) -> int:
    """Replicas that consume the inflow plus the lag within `target_s`, within [1, partitions]."""
    if lag <= 0 and inflow <= 0:
        return 1
    per_member = rate / max(1, members)
    if per_member <= 0:
        return partitions
    need = math.ceil((inflow + lag / target_s) / per_member)
    return max(1, min(partitions, need))


def drain_seconds(lag: int, rate: float, inflow: float) -> float:
    if lag <= 0:
        return 0.0
    net = rate - inflow
    return lag / net if net > 0 else math.inf


@contextlib.contextmanager
def _muted(*loggers: str) -> Iterator[None]:
    """Silence `loggers` (below CRITICAL) for the block."""
    saved = [(lg, lg.level) for lg in map(logging.getLogger, loggers)]
    for lg, _ in saved:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in saved:
            lg.setLevel(level)


async def snapshot(
    settings: Settings, groups: dict[str, list[str]], *, with_members: bool = True
) -> Snapshot:
    """End, start and committed offsets of every (group, topic) named (full topic names);
    `with_members`: each group's member count too (DescribeGroups)."""
    topics = sorted({t for ts in groups.values() for t in ts})
    consumer = consumer_for(settings, None, "xget-lag")
    await consumer.start()
    try:
        tps = [tp for t in topics for tp in await partitions_of(consumer, t)]
        end = await consumer.end_offsets(tps) if tps else {}
        start = await consumer.beginning_offsets(tps) if tps else {}
        if settings.kafka_end_offsets_from_fetch:
            end = await _ends_from_fetch(consumer, end, start)
    finally:
        await consumer.stop()
    committed: dict[str, dict[TopicPartition, int | None]] = {}
    counts: dict[str, int] = {}
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="xget-lag")
    await admin.start()
    try:
        for group, gtopics in groups.items():
            mine = [tp for tp in tps if tp.topic in gtopics]
            # The partitions are named: OffsetFetch with "all of the group's partitions"
            # (null topics, v2+) is an answer Tansu cannot encode; named ones work everywhere.
            offsets = (
                await admin.list_consumer_group_offsets(group, partitions=mine) if mine else {}
            )
            committed[group] = {
                tp: (offsets[tp].offset if tp in offsets and offsets[tp].offset >= 0 else None)
                for tp in mine
            }
        if with_members and settings.kafka_group_mode == "members":
            # In assign mode no consumer joins on the broker: nothing to describe. A broker
            # that cannot encode DescribeGroups (noida-db) makes aiokafka's connection log a
            # traceback per attempt; the answer is only a refinement, so those are muted.
            with _muted("aiokafka.conn", "aiokafka.admin.client"):
                try:
                    described = await admin.describe_consumer_groups(list(groups))
                    for d in described:
                        for g in d.groups:
                            counts[g.group] = len(g.members)
                except Exception as e:  # noqa: BLE001 - membership is a refinement: 1 is assumed
                    log.debug("describe groups failed: %s", e)
    finally:
        await admin.close()
    return Snapshot(time.monotonic(), end, start, committed, counts)


async def _ends_from_fetch(
    consumer: AIOKafkaConsumer,
    end: dict[TopicPartition, int],
    start: dict[TopicPartition, int],
    deadline_s: float = 10.0,
) -> dict[TopicPartition, int]:
    """The larger of ListOffsets' end and the high watermark of a fetch from one before it.

    Tansu's ListOffsets latest is the newest batch's base offset + 1: a fetch from there
    returns that batch and the true high watermark. (noida-db under-reports the other one,
    hence the larger of the two; on Kafka they agree.)"""
    probe = [tp for tp in end if end[tp] > start.get(tp, 0)]
    if not probe:
        return end
    consumer.assign(probe)
    for tp in probe:
        consumer.seek(tp, end[tp] - 1)
    deadline = time.monotonic() + deadline_s
    pending = set(probe)
    while pending and time.monotonic() < deadline:
        await consumer.getmany(*pending, timeout_ms=200, max_records=1)
        pending = {tp for tp in pending if consumer.highwater(tp) is None}
    if pending:
        raise TimeoutError(f"no high watermark for {sorted(pending)} within {deadline_s}s")
    return {tp: max(e, consumer.highwater(tp) or 0) for tp, e in end.items()}


def report(first: Snapshot, second: Snapshot, target_s: float) -> list[GroupTopicLag]:
    dt = max(1e-6, second.at - first.at)
    out = []
    for group, offsets in sorted(second.committed.items()):
        by_topic: dict[str, list[TopicPartition]] = {}
        for tp in offsets:
            by_topic.setdefault(tp.topic, []).append(tp)
        for topic, tps in sorted(by_topic.items()):
            lags, consumed, produced = {}, 0, 0
            for tp in sorted(tps, key=lambda t: t.partition):
                at = offsets[tp]
                c2: int = at if at is not None else second.start[tp]
                was = first.committed.get(group, {}).get(tp)
                c1: int = was if was is not None else first.start.get(tp, c2)
                lags[tp.partition] = max(0, second.end[tp] - c2)
                consumed += max(0, c2 - c1)
                produced += max(0, second.end[tp] - first.end.get(tp, second.end[tp]))
            rate, inflow = consumed / dt, produced / dt
            members = max(1, second.members.get(group, 0))
            lag = sum(lags.values())
            out.append(
                GroupTopicLag(
                    group,
                    topic,
                    lags,
                    rate,
                    inflow,
                    members,
                    drain_seconds(lag, rate, inflow),
                    recommend(lag, rate, inflow, members, len(tps), target_s),
                )
            )
    return out


def export(rows: list[GroupTopicLag]) -> None:
    """The same figures as metrics, for a `xget lag --watch` exporter."""
    for r in rows:
        metrics.set_lag(r.group, {(r.topic, p): lag for p, lag in r.partitions.items()})
        metrics.LAG_RATE.labels(r.group, r.topic).set(r.rate)
        metrics.LAG_DRAIN_SECONDS.labels(r.group, r.topic).set(r.drain_s)
        metrics.LAG_REPLICAS.labels(r.group, r.topic).set(r.recommended_replicas)


async def measure(
    settings: Settings, groups: dict[str, list[str]], sample_s: float, target_s: float
) -> list[GroupTopicLag]:
    first = await snapshot(settings, groups)
    await asyncio.sleep(sample_s)
    second = await snapshot(settings, groups)
    rows = report(first, second, target_s)
    export(rows)
    return rows


def render(rows: list[GroupTopicLag]) -> str:
    lines = [
        f"{'GROUP':<24} {'TOPIC':<28} {'LAG':>9} {'RATE/s':>9} {'IN/s':>9} "
        f"{'DRAIN':>9} {'MEMBERS':>7} {'REPLICAS':>8}  PARTITION LAGS"
    ]
    for r in rows:
        drain = "inf" if math.isinf(r.drain_s) else f"{r.drain_s:.0f}s"
        parts = " ".join(f"{p}:{lag}" for p, lag in sorted(r.partitions.items()))
        lines.append(
            f"{r.group:<24} {r.topic:<28} {r.lag:>9} {r.rate:>9.1f} {r.inflow:>9.1f} "
            f"{drain:>9} {r.members:>7} {r.recommended_replicas:>8}  {parts}"
        )
    return "\n".join(lines)
