"""The shared consumer loop after a broker restart that lost records it had read.

noida-db SIGKILLed comes back from its last snapshot: the records acknowledged since are gone,
and their offsets go to the next records written. A loop that trusted its in-memory position
would commit past what the broker holds and fetch on from there, skipping the new records
written at the reused offsets. It must read again from what the broker holds as committed."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from infra import local
from infra.service_process import wait_until
from libs.kafka import (
    ConsumerLoop,
    Incoming,
    Outgoing,
    Producer,
    ProducerReplaced,
    partition_for_key,
)
from libs.records.tasks import TaskControl
from libs.topics import TASK_CONTROLS

from ..conftest import make_settings


def control(key: str, reason: str) -> Outgoing:
    return Outgoing(
        TASK_CONTROLS,
        key,
        TaskControl(task_id=key, state="active", reason=reason, updated_at=datetime.now(UTC)),
    )


async def _scenario(broker: local.RestartableNoida) -> tuple[bool, list[str], dict]:
    """Returns (whether the restart lost exactly C and D, the reasons handled, the snapshot's
    committed offsets of the group)."""
    prefix = f"rs{uuid.uuid4().hex[:6]}-"
    await local.create_topics(broker.address, prefix, [TASK_CONTROLS])
    settings = make_settings(
        kafka_bootstrap=broker.address,
        topic_prefix=prefix,
        kafka_group_mode="assign",
        kafka_empty_fetch_backoff_ms=50,
        dependency_retry_base_s=0.2,
        dependency_retry_max_s=1.0,
    )
    topic, group = prefix + TASK_CONTROLS.name, f"{prefix}resync"
    part = partition_for_key("k0", range(TASK_CONTROLS.partitions))
    keys = [
        k
        for k in (f"k{i}" for i in range(500))
        if partition_for_key(k, range(TASK_CONTROLS.partitions)) == part
    ][:8]
    handled: list[str] = []
    entered, release = asyncio.Event(), asyncio.Event()

    async def handler(batch: list[Incoming]) -> list[Outgoing]:
        reasons = [i.record.reason for i in batch]
        if "C" in reasons and not release.is_set():
            entered.set()
            await release.wait()  # C's batch is in hand while the broker restarts
        handled.extend(reasons)
        return []

    producer = await Producer(settings, "resync-test", linger_ms=0).start()
    loop = ConsumerLoop(settings, "resync", [TASK_CONTROLS], handler, producer)
    runner = asyncio.create_task(loop.run())
    try:
        await producer.send_all([control(keys[0], "A"), control(keys[1], "B")])

        def committed_in_snapshot() -> int | None:
            for (g, t, p), off in broker.snapshot().get("committed_offsets", []):
                if (g, t, p) == (group, topic, part):
                    return off
            return None

        await asyncio.to_thread(
            wait_until,
            lambda: committed_in_snapshot() == 2,
            30,
            "A and B handled, committed and in a snapshot",
        )
        await producer.send_all([control(keys[2], "C"), control(keys[3], "D")])
        await asyncio.wait_for(entered.wait(), 30)
        lost_cleanly = broker.saved_ends(topic).get(part) == 2
        await asyncio.to_thread(broker.restart_after_kill)
        lost_cleanly = lost_cleanly and broker.saved_ends(topic).get(part) == 2
        # New records take offsets 2.. that C and D had; then the held batch ends.
        for _ in range(3):  # the producer is replaced once (its sequence state is gone)
            try:
                await producer.send_all(
                    [
                        control(keys[i], r)
                        for i, r in zip(range(4, 8), ["E", "F", "G", "H"], strict=False)
                    ]
                )
                break
            except ProducerReplaced:
                continue
        release.set()
        await asyncio.to_thread(wait_until, lambda: "H" in handled, 60, "H handled")
        await asyncio.to_thread(
            wait_until, lambda: committed_in_snapshot() == 6, 30, "offset 6 committed"
        )
        return lost_cleanly, handled, {"committed": committed_in_snapshot()}
    finally:
        release.set()
        loop.stop()
        await asyncio.wait_for(runner, 30)
        await producer.stop()


async def test_loop_reads_records_at_offsets_a_restarted_broker_reused(restartable_noida):
    for _ in range(3):  # a snapshot may land between C's send and the kill: then again
        lost_cleanly, handled, _ = await _scenario(restartable_noida)
        if lost_cleanly:
            break
    assert lost_cleanly, "the broker never restarted without C and D"
    # A, B once; C (and maybe D) handled from the lost log; then every new record, E and F
    # included, which a loop trusting its position (4) would have skipped.
    assert handled[:2] == ["A", "B"]
    assert {"E", "F", "G", "H"} <= set(handled), handled
    assert handled.index("E") < handled.index("F") < handled.index("G") < handled.index("H")
