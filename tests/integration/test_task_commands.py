"""Commands published straight onto task-commands, as a client may, through the real broker:
a command the scheduler refuses and a record whose key is not its task_id both show
`rejected` with the reason, also after a gateway restart; and the compacted topics of the
catalogue are migrated on an existing deployment."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from infra import local
from libs.kafka import ConsumerLoop, Producer
from libs.records.base import SCHEMA_HEADER
from libs.records.tasks import OnDemandTask, SearchJob
from libs.topic_table import TopicTable
from libs.topics import (
    CATALOGUE,
    DEAD_LETTERS,
    RAW_PAGES,
    SEARCH_JOBS,
    TASK_COMMANDS,
    TopicSpec,
    topic_name,
)
from services.task_gateway import rejections, scheduler
from services.task_gateway.api import create_app
from services.task_gateway.task_view import TaskView
from tests.e2e.harness import fresh_prefix

from .kafka_helpers import send_raw

AUTH = {"Authorization": "Bearer tok"}


def command(task_id: str, **extra) -> bytes:
    return json.dumps(
        {
            "task_id": task_id,
            "keyword": "tesla",
            "start_time": "2026-10-01T00:00:00Z",
            "end_time": "2026-10-02T00:00:00Z",
            "submitted_at": "2026-10-02T00:00:00Z",
            **extra,
        }
    ).encode()


async def publish(settings, key: str, value: bytes) -> None:
    await send_raw(
        settings.kafka_bootstrap,
        topic_name(TASK_COMMANDS, settings.topic_prefix),
        value,
        key=key.encode(),
        headers=[(SCHEMA_HEADER, OnDemandTask.schema_id().encode())],
    )


class Gateway:
    """The gateway's read model, scheduler and HTTP API in this process."""

    def __init__(self, settings):
        self.settings = settings

    async def __aenter__(self):
        self.producer = await Producer(self.settings).start()
        self.view = TaskView(self.settings)
        await self.view.start()
        self.loops = [
            ConsumerLoop(
                self.settings,
                scheduler.SERVICE,
                [TASK_COMMANDS],
                scheduler.make_handler(self.settings, self.view.controls),
                self.producer,
            ),
            ConsumerLoop(
                self.settings,
                rejections.SERVICE,
                [DEAD_LETTERS],
                rejections.make_handler(self.settings, self.view.controls),
                self.producer,
            ),
        ]
        self.runners = [asyncio.create_task(loop.run()) for loop in self.loops]
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(self.settings, self.producer, self.view)),
            base_url="http://gw",
        )
        return self

    async def __aexit__(self, *exc):
        for loop in self.loops:
            loop.stop()
        await asyncio.gather(*self.runners)
        await self.http.aclose()
        await self.view.stop()
        await self.producer.stop()

    async def status(self, task_id: str) -> tuple[int, dict]:
        r = await self.http.get(f"/api/v1/tasks/{task_id}/status", headers=AUTH)
        return r.status_code, r.json()

    async def wait_status(self, task_id: str, status: str, timeout: float = 30) -> dict:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            code, body = await self.status(task_id)
            if code == 200 and body["status"] == status:
                return body
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{task_id}: {code} {body}, never {status}")
            await asyncio.sleep(0.2)


async def test_refused_and_mismatched_commands_show_rejected(noida):
    settings = noida.settings(topic_prefix=fresh_prefix(noida.bootstrap), api_token="tok")
    tag = uuid.uuid4().hex[:6]
    private, phantom, named, good = (f"priv-{tag}", f"key-{tag}", f"named-{tag}", f"good-{tag}")
    await publish(settings, private, command(private, callback_url="http://10.0.0.7/hook"))
    await publish(settings, phantom, command(named))  # key differs from task_id
    await publish(settings, good, command(good))
    broken = f"broken-{tag}"  # fails validation: the consumer loop dead-letters it
    await publish(settings, broken, command(broken, end_time="2026-09-01T00:00:00Z"))
    async with Gateway(settings) as gw:
        st = await gw.wait_status(private, "rejected")
        assert "callback_url" in st["reason"] and "10.0.0.7" in st["reason"], st
        st = await gw.wait_status(phantom, "rejected")
        assert phantom in st["reason"] and named in st["reason"], st
        assert "differs from task_id" in st["reason"], st
        st = await gw.wait_status(broken, "rejected")
        assert "undecodable" in st["reason"] and "end_time" in st["reason"], st
        full = (await gw.http.get(f"/api/v1/tasks/{phantom}", headers=AUTH)).json()
        assert full["status"] == "rejected" and full["task"] is None, full
        # the task the record named was never created, and no phantom task is pending
        assert (await gw.status(named))[0] == 404
        listed = (await gw.http.get("/api/v1/tasks", headers=AUTH)).json()
        assert {i["task_id"]: i["status"] for i in listed} == {
            private: "rejected",
            phantom: "rejected",
            broken: "rejected",
            good: "pending",
        }, listed
        assert (
            await gw.http.post(f"/api/v1/tasks/{private}/cancel", headers=AUTH)
        ).status_code == 409

    # Only the good command was scheduled.
    jobs = await TopicTable(settings, SEARCH_JOBS).start()
    await jobs.wait_caught_up()
    await jobs.stop()
    assert {j.task_id for j in jobs.rows.values() if isinstance(j, SearchJob)} == {good}

    # A restarted gateway rebuilds the same answers from the compacted topics.
    async with Gateway(settings) as gw:
        for task_id, word in (
            (private, "callback_url"),
            (phantom, "differs from task_id"),
            (broken, "end_time"),
        ):
            code, st = await gw.status(task_id)
            assert code == 200 and st["status"] == "rejected" and word in st["reason"], st
        assert (await gw.status(named))[0] == 404


async def _configs(bootstrap: str, name: str) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        res = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
    finally:
        await admin.close()
    return {e[0]: e[1] for r in res for *_, entries in r.resources for e in entries}


async def _count(bootstrap: str, name: str) -> int:
    """Records held on the topic (of task-commands' partition count)."""
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await c.start()
    try:
        tps = [TopicPartition(name, p) for p in range(TASK_COMMANDS.partitions)]
        begin, end = await c.beginning_offsets(tps), await c.end_offsets(tps)
        return sum(end[tp] - begin[tp] for tp in tps)
    finally:
        await c.stop()


async def _policies(bootstrap: str, names: list[str]) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        res = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
        )
    finally:
        await admin.close()
    return {
        name: dict((e[0], e[1]) for e in entries).get("cleanup.policy")
        for r in res
        for _, _, _, name, entries in r.resources
    }


async def test_topics_create_migrates_an_existing_topic_to_compaction(noida):
    """A deployment from before task-commands was compacted and dead-letters kept 30 days:
    `xget topics create` (here local.create_topics) switches the existing topics to
    compaction, lengthens the retention, keeps their records, and never shortens one."""
    prefix = f"m{uuid.uuid4().hex[:8]}-"
    name = topic_name(TASK_COMMANDS, prefix)
    admin = AIOKafkaAdminClient(bootstrap_servers=noida.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, TASK_COMMANDS.partitions, 1)])  # as before
    finally:
        await admin.close()
    assert (await _policies(noida.bootstrap, [name]))[name] == "delete"
    await local.create_topics(noida.bootstrap, prefix, [DEAD_LETTERS])  # 7 days, as before
    dead = topic_name(DEAD_LETTERS, prefix)
    admin = AIOKafkaAdminClient(bootstrap_servers=noida.bootstrap)
    await admin.start()
    try:
        await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, dead, configs={"retention.ms": "604800000"})]
        )
    finally:
        await admin.close()
    await send_raw(noida.bootstrap, name, b"an old command", key=b"old")
    await local.create_topics(noida.bootstrap, prefix, CATALOGUE)
    compacted = [topic_name(s, prefix) for s in CATALOGUE if s.compacted]
    assert set((await _policies(noida.bootstrap, compacted)).values()) == {"compact"}
    assert (await _configs(noida.bootstrap, dead))["retention.ms"] == str(DEAD_LETTERS.retention_ms)
    assert await _count(noida.bootstrap, name) == 1  # the records stay
    # Never shortened: a longer retention an operator set is kept.
    raw = topic_name(RAW_PAGES, prefix)
    admin = AIOKafkaAdminClient(bootstrap_servers=noida.bootstrap)
    await admin.start()
    try:
        await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, raw, configs={"retention.ms": "-1"})]
        )
    finally:
        await admin.close()
    await local.create_topics(noida.bootstrap, prefix, CATALOGUE)
    assert (await _configs(noida.bootstrap, raw))["retention.ms"] == "-1"
    assert {topic_name(s, prefix) for s in CATALOGUE if s.compacted} >= {
        name,
        topic_name(SEARCH_JOBS, prefix),
        prefix + "kol-commands",
    }


def test_topic_configs_short_retention_only_where_none_is_set():
    plain = TopicSpec("a", 1, "k", ())
    kept = TopicSpec("b", 1, "k", (), retention_ms=-1)
    compacted = TopicSpec("c", 1, "k", (), compacted=True)
    assert local.topic_configs(plain, 60_000) == {"retention.ms": "60000"}
    assert local.topic_configs(kept, 60_000) == {"retention.ms": "-1"}
    assert local.topic_configs(compacted, 60_000) == {"cleanup.policy": "compact"}
    assert local.topic_configs(plain) == {}
