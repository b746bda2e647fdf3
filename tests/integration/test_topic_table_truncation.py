"""A broker SIGKILLed and restarted on its data dir comes back without its last records, and
gives their offsets to new records. A topic table (libs/topic_table.py) must then show what
the broker holds: the lost values gone (back to the key's older value), the new records at
reused offsets applied — not skipped because the view had read those offsets before."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from infra import local
from infra.service_process import wait_until
from libs.kafka import Outgoing, Producer, partition_for_key
from libs.records.tasks import TaskControl
from libs.topic_table import TopicTable
from libs.topics import TASK_CONTROLS

from ..conftest import make_settings


def control(task_id: str, reason: str) -> TaskControl:
    return TaskControl(
        task_id=task_id, state="active", priority=1, reason=reason, updated_at=datetime.now(UTC)
    )


@pytest.mark.parametrize("refill_first", [True, False], ids=["refilled", "found-at-once"])
async def test_table_after_a_broker_restart_that_lost_records(restartable_noida, refill_first):
    broker = restartable_noida
    prefix = f"r{uuid.uuid4().hex[:6]}-"
    await local.create_topics(broker.address, prefix, [TASK_CONTROLS])
    settings = make_settings(
        kafka_bootstrap=broker.address,
        topic_prefix=prefix,
        kafka_group_mode="assign",
        kafka_empty_fetch_backoff_ms=50,
    )
    topic = prefix + TASK_CONTROLS.name
    part = partition_for_key("kept", range(TASK_CONTROLS.partitions))
    # "lost" is on the same partition, so new records take the offsets its record had.
    lost_key = next(
        k
        for k in (f"lost-{i}" for i in range(1000))
        if partition_for_key(k, range(TASK_CONTROLS.partitions)) == part
    )
    seen: list[tuple[str, str]] = []
    producer = await Producer(settings, "trunc-test", linger_ms=0).start()
    table = await TopicTable(
        settings, TASK_CONTROLS, lambda k, r: seen.append((k, r.reason))
    ).start()
    try:
        await table.wait_caught_up(30)
        for key, reason in [("kept", "v1"), (lost_key, "old")]:
            await producer.send_and_wait(Outgoing(TASK_CONTROLS, key, control(key, reason)))
        wait_until(lambda: broker.saved_ends(topic).get(part) == 2, 30, "a snapshot with both")
        for reason in ("v2", "v3"):  # acknowledged, read by the view, lost by the restart
            await producer.send_and_wait(Outgoing(TASK_CONTROLS, "kept", control("kept", reason)))
        await producer.send_and_wait(Outgoing(TASK_CONTROLS, lost_key, control(lost_key, "new")))
        assert await table.wait_for(lambda: table.rows[lost_key].reason == "new", 30)
        assert table.rows["kept"].reason == "v3"
        broker.restart_after_kill()
        assert broker.saved_ends(topic)[part] == 2  # the restart kept the first two only
        if not refill_first:
            # Found before anything new is written: the view shows what the broker kept.
            assert await table.verify() == 1
            assert table.rows["kept"].reason == "v1"
            assert table.rows[lost_key].reason == "old"
        # Three new records, at offsets 2, 3, 4: where v2, v3 and "new" were. They are there
        # before the view fetches again, so no fetch runs into a shorter log: the view must
        # find out by reading back the last record it applied.
        for i in range(3):
            while True:
                try:
                    await producer.send_and_wait(
                        Outgoing(
                            TASK_CONTROLS,
                            f"fresh-{i}",
                            control(f"fresh-{i}", "after"),
                            partition=part,
                        )
                    )
                    break
                except Exception:  # noqa: BLE001 - the producer is replaced once
                    pass
        assert await table.verify() == 1  # found already: the feed reconnected
        await table.wait_repaired(30)
        assert await table.wait_for(
            lambda: all(f"fresh-{i}" in table.rows for i in range(3)), 30
        ), sorted(table.rows)
        # What the broker holds now: kept=v1 (v2 and v3 are gone), lost_key its old value.
        assert table.rows["kept"].reason == "v1"
        assert table.rows[lost_key].reason == "old"
        assert table.truncations == 1
        # Hooks saw each new record once and no record twice.
        assert [r for r in seen if r[0].startswith("fresh-")] == [
            (f"fresh-{i}", "after") for i in range(3)
        ]
    finally:
        await table.stop()
        await producer.stop()


async def test_verify_shows_every_record_acknowledged_before_it(noida):
    """The page ledger recovers a slice right after writing its checkpoints: verify() waits
    until the view read everything the broker had acknowledged when it was called."""
    settings = noida.settings()
    producer = await Producer(settings, "verify-test", linger_ms=0).start()
    table = await TopicTable(settings, TASK_CONTROLS).start()
    key = f"v-{uuid.uuid4().hex[:6]}"
    try:
        await table.wait_caught_up(30)
        for i in range(20):
            await producer.send_and_wait(Outgoing(TASK_CONTROLS, key, control(key, f"n={i}")))
            assert await table.verify() == 0
            assert table.rows[key].reason == f"n={i}"
    finally:
        await table.stop()
        await producer.stop()
