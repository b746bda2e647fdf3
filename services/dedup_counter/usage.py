"""The usage meter: every X request made for a task, from account-events into ClickHouse
(task_x_requests), so a task's actual cost is its requests per operation times their prices
(services/task_gateway/pricing.py). Runs in the dedup-counter, the service that writes the
exact counts: the same store, the same at-least-once loop, its own consumer group.

A request is identified by its event id (an older scraper's events, without one, by their
partition and offset): a batch handled again after a crash inserts the same rows (dropped as
a retry, and the same ReplacingMergeTree key), and the readers count distinct identities
(libs/storage/x_requests.py), so every request counts once. The place alone is not an
identity: a broker restored from an older snapshot gives offsets anew.
"""

from __future__ import annotations

from libs.kafka import Incoming, Outgoing
from libs.records.accounts import AccountEvent
from libs.storage.clickhouse import ClickHouseStore

from .declaration import USAGE

SERVICE = USAGE.name
FILL_MS = 1000
COLUMNS = (
    "event_id",
    "task_id",
    "operation",
    "outcome",
    "account_id",
    "proxy_id",
    "event_partition",
    "event_offset",
    "at",
)


def rows_of(batch: list[Incoming]) -> list[tuple]:
    return [
        (
            e.event_id,
            e.task_id,
            e.operation,
            e.outcome,
            e.account_id,
            e.proxy_id,
            i.partition,
            i.offset,
            e.at,
        )
        for i in batch
        if isinstance(e := i.record, AccountEvent) and e.task_id
    ]


class UsageMeter:
    def __init__(self, store: ClickHouseStore):
        self.store = store

    async def handle(self, batch: list[Incoming]) -> list[Outgoing]:
        rows = rows_of(batch)
        if rows:
            await self.store.insert(
                "task_x_requests",
                rows,
                COLUMNS,
                dedup=True,
            )
        return []
