"""One owner fires each scheduled task's runs however many gateway replicas run: two gateway
processes split the tasks by schedule-state partition, every run is published exactly once,
and when one gateway is SIGKILLed the other takes its tasks over and keeps firing.

On Tansu with consumer-group membership ("members"): a killed member leaves the group when
its session times out. noida-db never expires a killed member, which is why the embedded
stack runs it in group mode "assign" with a single gateway (see schedule_owner.py).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections import Counter

import pytest

from infra import local
from infra.service_process import ServiceProcess, all_alive, gateway_client, wait_until
from libs.kafka import partition_for_key, scan_partition
from libs.records.tasks import OnDemandTask
from libs.topics import SCHEDULE_STATE, TASK_COMMANDS
from tests.e2e.harness import fresh_prefix

pytestmark = pytest.mark.e2e

FIRED = re.compile(r"scheduled task (\S+): run (\d+) fired")


def task_ids(n_per_partition: int) -> list[str]:
    """Scheduled task ids spread evenly over the schedule-state partitions."""
    tag, ids, per = uuid.uuid4().hex[:6], [], Counter()
    i = 0
    while len(ids) < n_per_partition * SCHEDULE_STATE.partitions:
        tid = f"own-{tag}-{i}"
        p = partition_for_key(tid, range(SCHEDULE_STATE.partitions))
        if per[p] < n_per_partition:
            per[p] += 1
            ids.append(tid)
        i += 1
    return ids


def runs_published(settings) -> Counter:
    """How many times each run's command is on task-commands."""

    async def scan() -> Counter:
        seen: Counter = Counter()
        for p in range(TASK_COMMANDS.partitions):
            async for _msg, rec in scan_partition(settings, TASK_COMMANDS, p, 0):
                if isinstance(rec, OnDemandTask):
                    seen[rec.task_id] += 1
        return seen

    return asyncio.run(scan())


def fired_by(proc: ServiceProcess) -> Counter:
    """(task, run) -> times this gateway's log says it fired it."""
    return Counter(FIRED.findall(proc.log_path.read_text(errors="replace")))


def test_two_gateways_fire_each_run_once_and_survive_a_kill(tansu, tmp_path):
    settings = tansu.settings(
        topic_prefix=fresh_prefix(tansu.bootstrap),
        kafka_group_mode="members",
        api_token="tok",
        schedule_tick_s=0.2,
        data_dir=str(tmp_path / "data"),
    )
    gws = [
        ServiceProcess(
            f"gateway{i}",
            ["task-gateway"],
            settings.model_copy(
                update={"gateway_port": local.free_port(), "metrics_port": local.free_port()}
            ),
            tmp_path,
        )
        for i in (1, 2)
    ]
    clients = [gateway_client(g.settings) for g in gws]
    ids = task_ids(2)
    try:
        for g in gws:
            g.start()
        wait_until(
            lambda: all_alive(gws) and all(c.get("/health").status_code == 200 for c in clients),
            60,
            "both gateways",
        )
        for tid in ids:  # hourly × 3600: a run a second each
            r = clients[0].post(
                "/api/v1/tasks/scheduled",
                json={
                    "task_id": tid,
                    "keyword": "tesla",
                    "frequency": "hourly",
                    "frequency_count": 3600,
                },
            )
            assert r.status_code == 200, r.text

        def runs(client) -> dict[str, int]:
            return {t: client.get(f"/api/v1/tasks/{t}").json()["runs_fired"] for t in ids}

        wait_until(
            lambda: all_alive(gws) and min(runs(clients[1]).values()) >= 8,
            90,
            "8 runs of every task",
        )
        # Both replicas fire (each owns its partitions' tasks), no run is fired by both,
        # and every run's command is on the topic once.
        logs = [fired_by(g) for g in gws]
        assert logs[0] and logs[1], logs
        assert not set(logs[0]) & set(logs[1]), set(logs[0]) & set(logs[1])
        assert all(n == 1 for log in logs for n in log.values()), logs
        published = runs_published(settings)
        assert max(published.values()) == 1, [r for r, n in published.items() if n > 1]
        assert all(published[f"{t}-r{n:04d}"] == 1 for t in ids for n in range(1, 9))

        # SIGKILL one: the other takes its tasks over (after the group's session timeout).
        gws[0].kill()
        at_kill = runs(clients[1])
        wait_until(
            lambda: (
                all_alive(gws[1:])
                and all(n >= at_kill[t] + 10 for t, n in runs(clients[1]).items())
            ),
            90,
            "the survivor to fire every task's runs",
        )
        published = runs_published(settings)
        last = runs(clients[1])
        # Every run up to the last fired is on the topic; only a run the killed gateway had
        # published but not yet recorded may be there twice (one per task at most).
        assert all(published[f"{t}-r{n:04d}"] >= 1 for t in ids for n in range(1, last[t] + 1))
        twice = [r for r, n in published.items() if n > 1]
        assert len(twice) <= len(ids) and max(published.values()) <= 2, twice
        survivor = fired_by(gws[1])
        assert all(n == 1 for n in survivor.values()), survivor
        assert {t for t, _ in survivor} == set(ids)  # it now fires the killed one's tasks too
    finally:
        for g in gws:
            g.stop()
        for c in clients:
            c.close()
