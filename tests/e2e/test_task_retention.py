"""Task definitions never expire: on a broker that deletes every non-compacted topic's records
after seconds (what Kafka does after 7 days), a gateway restarted past that retention still
answers for its tasks, and a scheduled task keeps firing."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from infra import local
from infra.service_process import ServiceProcess, gateway_client, wait_until
from libs.topics import CATALOGUE, USERS, topic_name

pytestmark = pytest.mark.e2e

RETENTION_MS = 8_000  # every topic with neither compaction nor a retention of its own


def users_records(bootstrap: str, topic: str) -> int:
    """How many records the broker still holds on partition 0 of `topic`."""

    async def count() -> int:
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await c.start()
        try:
            tp = TopicPartition(topic, 0)
            c.assign([tp])
            begin, end = (await c.beginning_offsets([tp]))[tp], (await c.end_offsets([tp]))[tp]
            return end - begin
        finally:
            await c.stop()

    return asyncio.run(count())


def send_canary(bootstrap: str, topic: str) -> None:
    from tests.integration.kafka_helpers import send_raw

    asyncio.run(send_raw(bootstrap, topic, b"canary", key=b"c", partition=0))


def test_tasks_readable_and_schedules_firing_after_retention_and_restart(noida, tmp_path):
    prefix = f"r{uuid.uuid4().hex[:8]}-"
    local.create_topics_sync(noida.bootstrap, prefix, CATALOGUE, default_retention_ms=RETENTION_MS)
    settings = noida.settings(
        topic_prefix=prefix,
        api_token="tok",
        schedule_tick_s=0.2,
        gateway_port=local.free_port(),
        metrics_port=local.free_port(),
        data_dir=str(tmp_path / "data"),
    )
    gw = gateway_client(settings)
    proc = ServiceProcess("gateway", ["task-gateway"], settings, tmp_path).start()
    try:
        wait_until(
            lambda: proc.alive() and gw.get("/health").status_code == 200,
            60,
            "the gateway to answer",
        )
        r = gw.post(
            "/api/v1/tasks/ondemand",
            json={
                "task_id": "od-kept",
                "keyword": "tesla",
                "start_time": "2026-10-01T00:00:00Z",
                "end_time": "2026-10-03T00:00:00Z",
                "required_count": 50,
            },
        )
        assert r.status_code == 200, r.text
        # hourly × 1800: a run every 2 s
        r = gw.post(
            "/api/v1/tasks/scheduled",
            json={
                "task_id": "sc-kept",
                "keyword": "tesla",
                "frequency": "hourly",
                "frequency_count": 1800,
            },
        )
        assert r.status_code == 200, r.text
        wait_until(
            lambda: gw.get("/api/v1/tasks/sc-kept").json()["runs_fired"] >= 2, 60, "the first runs"
        )
        canary = topic_name(USERS, prefix)
        send_canary(noida.bootstrap, canary)
        assert proc.stop(), proc.tail()

        # The broker deletes by retention: the canary, sent after the tasks, is gone.
        wait_until(
            lambda: users_records(noida.bootstrap, canary) == 0,
            120,
            "the broker to delete the canary by retention",
        )

        proc = ServiceProcess("gateway", ["task-gateway"], settings, tmp_path).start()
        wait_until(
            lambda: proc.alive() and gw.get("/health").status_code == 200,
            60,
            "the restarted gateway to answer",
        )
        od = gw.get("/api/v1/tasks/od-kept")
        assert od.status_code == 200, od.text
        assert od.json()["status"] == "pending" and od.json()["task"]["required_count"] == 50
        sc = gw.get("/api/v1/tasks/sc-kept")
        assert sc.status_code == 200, sc.text
        assert sc.json()["mode"] == "scheduled" and sc.json()["status"] == "scheduled"
        fired_before = sc.json()["runs_fired"]
        # It keeps firing after the restart (the runs missed while it was down, then new ones)
        wait_until(
            lambda: gw.get("/api/v1/tasks/sc-kept").json()["runs_fired"] >= fired_before + 3,
            60,
            "new runs after the restart",
        )
        first_run = gw.get("/api/v1/tasks/sc-kept-r0001/status")
        assert first_run.status_code == 200, first_run.text  # a run fired before retention
    finally:
        proc.stop()
        gw.close()
