"""Which scheduled tasks this gateway replica fires: one owner per task, however many replicas.

Every replica's schedule runner is a member of one consumer group on schedule-state (as the
reporter's replicas own task-progress partitions): a replica fires the scheduled tasks whose
schedule-state partition (murmur2 of the task id, where their ScheduleState records go) the
group assigned to it. Kafka gives each partition to one member; when a replica dies its
session expires and the survivors get its partitions.

Handover without a run fired twice: a member giving a partition up first waits for the tick
under way (the runner's lock), and a member given a partition reads schedule-state up to the
partition's end before it fires anything there, so it continues from the last run the
previous owner recorded. (A replica killed between publishing a run and recording it leaves
that one run to be published again by the next owner: same run id, same slices, which the
scraper's page ledger makes free.)

Group mode "assign" (noida-db, which never expires a killed member) has no membership: the
one replica takes every partition. Run a single gateway there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from libs.kafka import consumer_for, join, partition_for_key
from libs.settings import Settings
from libs.topics import SCHEDULE_STATE, partition_count, topic_name

log = logging.getLogger(__name__)


class ScheduleOwnership:
    def __init__(
        self,
        settings: Settings,
        caught_up: Callable[[dict[TopicPartition, int]], Awaitable[None]],
        lock: asyncio.Lock,
    ):
        """`caught_up(ends)` returns once the runner's schedule-state view has read every
        record below `ends`; `lock` is held by the runner while it fires runs."""
        self.settings = settings
        self.topic = topic_name(SCHEDULE_STATE, settings.topic_prefix)
        self.partitions = partition_count(SCHEDULE_STATE, settings)
        self.group_id = f"{settings.topic_prefix}schedule-runner"
        self.owned: set[int] = set()
        self._caught_up = caught_up
        self._lock = lock
        self._consumer: AIOKafkaConsumer | None = None

    def owns(self, task_id: str) -> bool:
        return partition_for_key(task_id, range(self.partitions)) in self.owned

    async def start(self) -> None:
        c = self._consumer = consumer_for(self.settings, self.group_id, "schedule-runner")
        await c.start()
        owner = self

        class Listener(ConsumerRebalanceListener):
            async def on_partitions_revoked(self, revoked):
                await owner._revoke(revoked)

            async def on_partitions_assigned(self, assigned):
                await owner._assign(assigned)

        await join(c, self.settings, [self.topic], Listener())
        if self.settings.kafka_group_mode == "assign":
            await self._assign(c.assignment())

    async def poll(self, timeout_s: float) -> None:
        """Wait up to `timeout_s` as a live member (the group drops a member that stops
        polling). Its partitions are paused: ownership is all it takes from them."""
        assert self._consumer is not None
        deadline = time.monotonic() + timeout_s
        await self._consumer.getmany(timeout_ms=int(timeout_s * 1000))
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))  # it may answer early

    async def _assign(self, tps) -> None:
        c = self._consumer
        tps = {tp for tp in tps if tp.topic == self.topic}
        if not tps or c is None:
            return
        c.pause(*tps)
        try:
            await self._caught_up(await c.end_offsets(list(tps)))
        except Exception:
            log.exception(
                "schedule runner: cannot read schedule-state up to its end; the "
                "tasks of partitions %s wait for the next rebalance",
                sorted(tp.partition for tp in tps),
            )
            return
        self.owned |= {tp.partition for tp in tps}
        log.info(
            "schedule runner %s owns schedule-state partitions %s",
            self.group_id,
            sorted(self.owned),
        )

    async def _revoke(self, tps) -> None:
        gone = {tp.partition for tp in tps if tp.topic == self.topic}
        async with self._lock:  # the tick under way ends first
            self.owned -= gone

    async def stop(self) -> None:
        c, self._consumer = self._consumer, None
        self.owned = set()
        if c is not None:
            await c.stop()  # leaves the group: the others take the partitions at once
