"""`xget topics create` is library code (libs/topic_admin.py) driven by the settings."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid

from aiokafka.admin import AIOKafkaAdminClient

from libs.topic_admin import topic_configs
from libs.topics import CATALOGUE, POSTS, TASK_COMMANDS, topic_name


async def xget_topics_create(env: dict[str, str]) -> subprocess.CompletedProcess:
    """`xget topics create` as an operator runs it: a process of its own, outside the repo."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.cli", "topics", "create"],
        env=env,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_min_insync_replicas_only_when_it_protects_anything():
    assert "min.insync.replicas" not in topic_configs(POSTS, min_insync_replicas=1)
    assert topic_configs(POSTS, min_insync_replicas=2)["min.insync.replicas"] == "2"
    assert topic_configs(TASK_COMMANDS, min_insync_replicas=2)["cleanup.policy"] == "compact"


async def test_xget_topics_create_makes_the_catalogue_with_the_settings(noida):
    prefix = f"ta{uuid.uuid4().hex[:6]}-"
    env = {
        **os.environ,
        "XGET_KAFKA_BOOTSTRAP": noida.bootstrap,
        "XGET_TOPIC_PREFIX": prefix,
        "XGET_TOPIC_REPLICATION_FACTOR": "1",
    }
    r = await xget_topics_create(env)
    assert r.returncode == 0, r.stderr
    assert f"{len(CATALOGUE)} topics ready" in r.stdout and "replication factor 1" in r.stdout
    admin = AIOKafkaAdminClient(bootstrap_servers=noida.bootstrap)
    await admin.start()
    try:
        names = set(await admin.list_topics())
    finally:
        await admin.close()
    assert {topic_name(s, prefix) for s in CATALOGUE} <= names


def test_partition_counts_from_the_settings_are_checked(make_settings):
    import pytest
    from pydantic import ValidationError

    s = make_settings(topic_partitions="raw-pages=24, posts=16")
    assert s.partition_counts() == {"raw-pages": 24, "posts": 16}
    with pytest.raises(ValidationError, match="no topic 'raw-page'"):
        make_settings(topic_partitions="raw-page=24")
    with pytest.raises(ValidationError, match="a count of 1 or more"):
        make_settings(topic_partitions="posts=0")


async def test_xget_topics_create_takes_partitions_from_the_settings(noida):
    """More partitions than the catalogue's for a topic whose consumers need more replicas;
    the reporter works out task ownership from the same count."""
    from libs.kafka import partition_for_key
    from libs.topics import RAW_PAGES, TASK_PROGRESS
    from services.reporter.service import Reporter

    prefix = f"tp{uuid.uuid4().hex[:6]}-"
    env = {
        **os.environ,
        "XGET_KAFKA_BOOTSTRAP": noida.bootstrap,
        "XGET_TOPIC_PREFIX": prefix,
        "XGET_TOPIC_PARTITIONS": "raw-pages=16,task-progress=9",
    }
    r = await xget_topics_create(env)
    assert r.returncode == 0, r.stderr
    admin = AIOKafkaAdminClient(bootstrap_servers=noida.bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(
            [topic_name(RAW_PAGES, prefix), topic_name(TASK_PROGRESS, prefix)]
        )
    finally:
        await admin.close()
    counts = {
        (d["topic"] if isinstance(d, dict) else d[1]): len(
            d["partitions"] if isinstance(d, dict) else d[3]
        )
        for d in described
    }
    assert counts == {topic_name(RAW_PAGES, prefix): 16, topic_name(TASK_PROGRESS, prefix): 9}
    settings = noida.settings(topic_prefix=prefix, topic_partitions="task-progress=9")
    reporter = Reporter(settings, None, None, None, None)  # type: ignore[arg-type]
    # A task the two layouts put on different partitions: the reporter follows the settings'.
    task = next(
        f"od-{i}"
        for i in range(1000)
        if partition_for_key(f"od-{i}", range(9))
        != partition_for_key(f"od-{i}", range(TASK_PROGRESS.partitions))
    )
    reporter.owned = {partition_for_key(task, range(9))}
    assert reporter.owns(task)
    reporter.owned = {partition_for_key(task, range(TASK_PROGRESS.partitions))}
    assert not reporter.owns(task)
