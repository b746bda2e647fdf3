"""Metrics and readiness of a hand-rolled consumer (one that is not a ConsumerLoop).

The scraper and the kol-worker run their own poll loops, because a job there lasts minutes
and its offset is committed only when it ends. They still owe operators what every
ConsumerLoop service shows: records in and failed per topic (records out are counted by the
Producer), consumer lag per topic and partition, and a `/readyz` that turns ready only once
their consumer holds partitions. `ConsumerWatch` is those few calls.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer

from . import metrics
from .ops_server import HEALTH

LAG_EVERY_S = 1.0


async def observe_lag(group_id: str, consumer: AIOKafkaConsumer) -> None:
    """Lag per assigned partition from what the fetches already told: high watermark minus
    this member's position (known locally: no broker round trip)."""
    lags = {}
    for tp in consumer.assignment():
        hw = consumer.highwater(tp)
        if hw is None:
            continue
        try:
            pos = await consumer.position(tp)
        except Exception:  # noqa: BLE001 - partition moved away meanwhile
            continue
        lags[(tp.topic, tp.partition)] = hw - pos
    metrics.set_lag(group_id, lags)


class ConsumerWatch:
    def __init__(self, service: str, group_id: str):
        self.service = service
        self.group_id = group_id
        self._lag_at = 0.0
        self._ready = False
        HEALTH.register(group_id)

    async def polled(self, consumer: AIOKafkaConsumer, msgs: Sequence = ()) -> None:
        """After each poll: count what came, mark the group ready once it holds partitions
        (members mode: after the group assigned some; assign mode: at once), and refresh the
        lag gauges at most once a second (a busy loop pays nothing)."""
        if msgs:
            metrics.observe_consumed(self.service, msgs)
        if not self._ready and consumer.assignment():
            self._ready = True
            HEALTH.ready(self.group_id)
        now = time.monotonic()
        if now - self._lag_at >= LAG_EVERY_S:
            self._lag_at = now
            await observe_lag(self.group_id, consumer)

    def failed(self, topic: str) -> None:
        """A record of `topic` went to the dead letters."""
        metrics.RECORDS_FAILED.labels(self.service, topic).inc()

    def stopped(self) -> None:
        HEALTH.gone(self.group_id)
