"""Ships each service process's WARNING+ log records to the `service-logs` topic, bounded.

The console's system log view (GET /api/v1/admin/logs) reads that topic: the recent warnings
and errors of every process, wherever it runs, without a log collector. A logging handler
(`ShippingHandler`, attached to the root logger by `xget run`) keeps records in a bounded
queue; `LogShipper.run` publishes them about once a second from its own producer.

Bounds, so a log storm or a broker outage cannot grow memory or flood the topic:
- at most `log_ship_per_minute` records a minute per process (XGET_LOG_SHIP_PER_MINUTE);
- at most QUEUE_MAX records wait; older ones are dropped first;
- every drop is counted and the next shipped record says how many went before it;
- the topic keeps 7 days (libs/topics.py SERVICE_LOGS).
Records of the shipper's own module are not shipped; the Kafka client's warnings while the
broker is down are, within the bounds above (a batch the broker does not take counts as
dropped).
A message is the formatted record with its exception text, cut at MESSAGE_MAX characters;
services never log secrets, so none are shipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from collections import deque
from datetime import UTC, datetime

from .kafka import Outgoing, Producer
from .records.console import ServiceLog
from .settings import Settings
from .topics import SERVICE_LOGS

log = logging.getLogger(__name__)
QUEUE_MAX = 1000
MESSAGE_MAX = 4000
FLUSH_S = 1.0


class ShippingHandler(logging.Handler):
    def __init__(self, process: str, level: int, per_minute: int):
        super().__init__(level)
        self.process = process
        self.per_minute = per_minute
        self.queue: deque[ServiceLog] = deque()
        self.dropped = 0
        self._minute = 0
        self._in_minute = 0
        self._lock_q = threading.Lock()
        self.setFormatter(logging.Formatter("%(message)s"))
        self.host = socket.gethostname()
        self.pid = os.getpid()

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == __name__ or getattr(record, "xget_no_ship", False):
            return
        try:
            message = self.format(record)[:MESSAGE_MAX]
        except Exception:  # noqa: BLE001 - a bad format argument must not break logging
            message = str(record.msg)[:MESSAGE_MAX]
        with self._lock_q:
            minute = int(time.time() // 60)
            if minute != self._minute:
                self._minute, self._in_minute = minute, 0
            if self._in_minute >= self.per_minute:
                self.dropped += 1
                return
            self._in_minute += 1
            if len(self.queue) >= QUEUE_MAX:
                self.queue.popleft()
                self.dropped += 1
            self.queue.append(
                ServiceLog(
                    at=datetime.fromtimestamp(record.created, UTC),
                    process=self.process,
                    host=self.host,
                    pid=self.pid,
                    level=record.levelname,
                    logger=record.name,
                    message=message,
                    dropped_before=self.dropped,
                )
            )
            self.dropped = 0

    def take(self) -> list[ServiceLog]:
        with self._lock_q:
            out = list(self.queue)
            self.queue.clear()
            return out

    def lost(self, n: int) -> None:
        with self._lock_q:
            self.dropped += n


class LogShipper:
    """The handler plus the task that publishes what it collected."""

    def __init__(self, settings: Settings, process: str):
        self.settings = settings
        level = logging.getLevelName(settings.log_ship_level.upper())
        self.handler = ShippingHandler(
            process,
            level if isinstance(level, int) else logging.WARNING,
            settings.log_ship_per_minute,
        )
        self._stop = asyncio.Event()

    def install(self) -> LogShipper:
        if self.settings.log_ship_per_minute > 0:
            logging.getLogger().addHandler(self.handler)
        return self

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        if self.settings.log_ship_per_minute <= 0:
            return
        producer: Producer | None = None
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), FLUSH_S)
                batch = self.handler.take()
                if batch:
                    try:
                        if producer is None:
                            producer = await Producer(self.settings, "log-shipper").start()
                        await asyncio.wait_for(
                            producer.send_all(
                                [Outgoing(SERVICE_LOGS, r.process, r) for r in batch]
                            ),
                            30,
                        )
                    except Exception:  # noqa: BLE001 - logs are best effort; counted as lost
                        self.handler.lost(len(batch))
                if self._stop.is_set():
                    return
        finally:
            logging.getLogger().removeHandler(self.handler)
            if producer is not None:
                with contextlib.suppress(Exception):
                    await producer.stop()
