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
    r = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.cli", "topics", "create"],
        env=env,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert f"{len(CATALOGUE)} topics ready" in r.stdout and "replication factor 1" in r.stdout
    admin = AIOKafkaAdminClient(bootstrap_servers=noida.bootstrap)
    await admin.start()
    try:
        names = set(await admin.list_topics())
    finally:
        await admin.close()
    assert {topic_name(s, prefix) for s in CATALOGUE} <= names
