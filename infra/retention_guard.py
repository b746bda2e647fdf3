"""Byte retention on the embedded broker never deletes what a consumer has not read yet.

The memory budget (``XGET_EMBEDDED_BROKER_MAX_MB``) sets each topic's ``retention.bytes``
(libs.topics.budget_configs), which noida-db enforces whatever its consumers have read, as
Kafka does: a consumer group that lags more than a topic keeps would find its position deleted
— the records lost and the service stuck on an offset out of range. This guard watches every
consumer group declared in infra/workloads.py on the budgeted topics every 2 s and compares,
per partition, the bytes a group has not read (its unread records times the partition's mean
record size, from DescribeLogDirs: libs/log_dirs.py) with the topic's retention.bytes. A
partition deletes its oldest segments only while it would still hold retention.bytes without
them, so a group's records are safe while they are at most that; the guard keeps them within
half of it (the other half is the inflow until its next look) by raising the topic's
retention.bytes to the budget's value times a power of two, and goes back down once every
group has been within 40% of the lower value for 30 s. A group that never committed has
no position to protect and is left out.

In normal operation nothing is raised: the producers wait for their consumers within the
budget (the scraper for the parser: libs.topics.parser_lag_bytes), so the broker stays within
its budget; a raise is the exception (a consumer down or far behind), logged, and the broker
then holds more rather than lose a record.

Run by ``make up`` (``python -m infra.retention_guard --budget-mb N``) beside the broker, as a
supervised part; ``bench/pipeline.py`` runs it too.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import sys

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from libs import lag, log_dirs
from libs.settings import Settings
from libs.topics import CATALOGUE, TopicSpec, budget_configs, topic_name

log = logging.getLogger("xget.retention_guard")

READ_WITHIN = 0.5  # a group should have at most this share of the retention unread
# Lowered to a value every group is this far within... above the share producers wait at
# (libs.topics.PRODUCER_LAG_SHARE, an eighth): a parser held there by the scraper's gate must not
# keep a raise for ever (a 1M-post bench run kept raw-pages at twice the budget's all along).
LOWER_BELOW = 0.4
SETTLE_LOOKS = 15  # ... at this many looks in a row (30 s): a counter between batches is not
MAX_RAISE = 2**16  # at most this many times the budget's value


def budgeted_topics(max_mb: int) -> dict[str, tuple[TopicSpec, int]]:
    """Catalogue topics with a byte retention under `max_mb`: name → (spec, retention.bytes)."""
    out = {}
    for spec in CATALOGUE:
        cfg = budget_configs(spec, max_mb)
        if "retention.bytes" in cfg:
            out[spec.name] = (spec, int(cfg["retention.bytes"]))
    return out


def readers(prefix: str, topics: set[str]) -> dict[str, list[str]]:
    """group id → the budgeted topics (full names) it reads, from infra/workloads.py."""
    from infra.workloads import consumer_groups

    groups: dict[str, list[str]] = {}
    for g in consumer_groups().values():
        mine = [prefix + s.name for s in g.inputs if s.name in topics]
        if mine:
            groups[g.group_id(prefix)] = mine
    return groups


def unread_bytes(snap: lag.Snapshot, held: dict[TopicPartition, int], topic: str) -> float:
    """The most bytes any group has unread on one partition of `topic`. A group that never
    committed on `topic` is left out; one that has reads a partition it never committed on
    from its first record (services in group mode assign commit no position up front), so
    all of that partition is unread."""
    worst = 0.0
    for offsets in snap.committed.values():
        mine = {tp: c for tp, c in offsets.items() if tp.topic == topic}
        if all(c is None for c in mine.values()):
            continue
        for tp, committed in mine.items():
            start, end = snap.start.get(tp, 0), snap.end.get(tp, 0)
            at = start if committed is None else committed
            worst = max(worst, log_dirs.unread_bytes(tp, start, end, at, held))
    return worst


def wanted_retention(base: int, unread: float, within: float = READ_WITHIN) -> int:
    """The retention.bytes a topic should have: `base` (the budget's) times the smallest
    power of two that holds `unread` bytes within its `within` share."""
    need = unread / within
    if need <= base:
        return base
    return base * min(MAX_RAISE, 2 ** math.ceil(math.log2(need / base)))


class RetentionGuard:
    def __init__(self, settings: Settings, max_mb: int):
        self.settings = settings
        self.max_mb = max_mb
        self.topics = budgeted_topics(max_mb)
        self.groups = readers(settings.topic_prefix, set(self.topics))
        self.current: dict[str, int] = {}  # what each topic has: read at the first look
        self.settled = dict.fromkeys(self.topics, 0)  # looks in a row it could be lowered

    async def check(self) -> dict[str, int]:
        """One look at the groups' positions; the retention.bytes changed (topic → value)."""
        if not self.groups:
            return {}
        if not self.current:
            self.current = await self.read_current()
        snap = await lag.snapshot(self.settings, self.groups, with_members=False)
        held = await log_dirs.partition_bytes(self.settings.kafka_bootstrap)
        changes = {}
        for name, (spec, base) in self.topics.items():
            full = topic_name(spec, self.settings.topic_prefix)
            cur = self.current[name]
            unread = unread_bytes(snap, held, full)
            want = wanted_retention(base, unread)
            lower = wanted_retention(base, unread, LOWER_BELOW)  # ≥ want: room to spare
            self.settled[name] = self.settled[name] + 1 if lower < cur else 0
            if want > cur:
                changes[name] = want
            elif self.settled[name] >= SETTLE_LOOKS:
                changes[name] = lower
                self.settled[name] = 0
        if changes:
            await self._apply(changes)
        return changes

    async def read_current(self) -> dict[str, int]:
        """Each budgeted topic's retention.bytes on the broker (raised by a guard before this
        one, or an older budget's): the budget's value where it has none."""
        current = {name: base for name, (_spec, base) in self.topics.items()}
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap)
        await admin.start()
        try:
            names = {
                topic_name(s, self.settings.topic_prefix): n for n, (s, _) in self.topics.items()
            }
            resources = [ConfigResource(ConfigResourceType.TOPIC, full) for full in names]
            for resp in await admin.describe_configs(resources):
                for _err, _msg, _type, full, entries in resp.resources:
                    have = {e[0]: e[1] for e in entries}
                    value = have.get("retention.bytes")
                    if full in names and value not in (None, "-1"):
                        current[names[full]] = int(value)
        finally:
            await admin.close()
        return current

    async def _apply(self, changes: dict[str, int]) -> None:
        from infra.local import topic_configs

        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap)
        await admin.start()
        try:
            for name, value in changes.items():
                spec, base = self.topics[name]
                # AlterConfigs replaces the topic's whole config: the catalogue's, this value.
                configs = topic_configs(spec, broker_max_mb=self.max_mb)
                configs["retention.bytes"] = str(value)
                full = topic_name(spec, self.settings.topic_prefix)
                responses = await admin.alter_configs(
                    [ConfigResource(ConfigResourceType.TOPIC, full, configs=configs)]
                )
                errors = [r[:2] for resp in responses for r in resp.resources if r[0] != 0]
                if errors:
                    log.warning("topic %s: retention.bytes %d refused: %s", full, value, errors)
                    continue
                log.warning(
                    "topic %s: retention.bytes %d -> %d per partition (budget's %d): %s",
                    full,
                    self.current[name],
                    value,
                    base,
                    "a consumer group lags" if value > self.current[name] else "caught up",
                )
                self.current[name] = value
        finally:
            await admin.close()

    async def run(self, stop: asyncio.Event, interval_s: float = 2.0) -> None:
        while not stop.is_set():
            try:
                await self.check()
            except Exception as e:  # noqa: BLE001 - a broker restarting: look again later
                log.warning("retention guard: %s: %s", type(e).__name__, e)
            try:
                await asyncio.wait_for(stop.wait(), interval_s)
            except TimeoutError:
                pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m infra.retention_guard", description=__doc__)
    ap.add_argument("--budget-mb", type=int, required=True, help="the broker's memory budget")
    ap.add_argument("--interval", type=float, default=2.0, help="seconds between looks")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = Settings()
    stop = asyncio.Event()

    async def serve() -> None:
        from services.runtime import stop_on_signals

        stop_on_signals(stop)
        await RetentionGuard(settings, args.budget_mb).run(stop, args.interval)

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
