"""The local parts: real brokers, topic creation, produce/consume, persistence across restart."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from infra import local
from libs.topics import CATALOGUE, POSTS, TASK_PROGRESS, TopicSpec


async def _partition_counts(bootstrap: str, topics: list[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        descs = await admin.describe_topics(topics)
    finally:
        await admin.close()
    return {d["topic"]: len(d["partitions"]) for d in descs if d["error_code"] == 0}


async def _round_trip(bootstrap: str, topic: str, key: bytes, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        md = await producer.send_and_wait(topic, value, key=key, headers=[("schema", b"test.v1")])
    finally:
        await producer.stop()
    assert await _read_one(bootstrap, topic, md.partition, md.offset) == (key, value, b"test.v1")


async def _read_one(bootstrap: str, topic: str, partition: int, offset: int):
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        msg = await asyncio.wait_for(consumer.getone(), 15)
        return msg.key, msg.value, dict(msg.headers).get("schema")
    finally:
        await consumer.stop()


@pytest.mark.parametrize("kind", ["noida", "tansu"])
async def test_catalogue_partitions(request, kind):
    env = request.getfixturevalue(kind)
    names = [env.topic(s) for s in CATALOGUE]
    counts = await _partition_counts(env.bootstrap, names)
    assert counts == {env.topic(s): s.partitions for s in CATALOGUE}
    assert env.topics == counts
    # Idempotent: creating again is fine and verifies again.
    assert await local.create_topics(env.bootstrap, env.prefix, CATALOGUE) == counts


@pytest.mark.parametrize("kind", ["noida", "tansu"])
async def test_round_trip(request, kind):
    env = request.getfixturevalue(kind)
    await _round_trip(env.bootstrap, env.topic(POSTS), b"task-1", f"hello {kind}".encode())


async def test_create_topics_rejects_wrong_partition_count(noida):
    spec = TopicSpec(f"odd-{uuid.uuid4().hex[:6]}", 2, "k", ())
    await local.create_topics(noida.bootstrap, noida.prefix, [spec])
    wrong = TopicSpec(spec.name, 5, "k", ())
    with pytest.raises(RuntimeError, match="wrong partition count"):
        await local.create_topics(noida.bootstrap, noida.prefix, [wrong])


async def test_compacted_topic_config(noida):
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(bootstrap_servers=noida.bootstrap)
    await admin.start()
    try:
        res = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, noida.topic(TASK_PROGRESS))]
        )
    finally:
        await admin.close()
    entries = {e[0]: e[1] for r in res for _, _, _, _, es in r.resources for e in es}
    if "cleanup.policy" not in entries:
        pytest.skip(f"broker does not report topic configs: {sorted(entries)[:5]}")
    assert entries["cleanup.policy"] == "compact"


async def test_noida_restart_keeps_records(tmp_path):
    """SIGTERM saves noida's data dir; a restarted broker serves the produced record."""
    data = tmp_path / "kafka"
    port = local.free_port()
    h = local.start_noida(data, port, log_dir=tmp_path / "logs")
    try:
        await local.create_topics(h.address, "r-", [POSTS])
        producer = AIOKafkaProducer(bootstrap_servers=h.address, acks="all")
        await producer.start()
        try:
            md = await producer.send_and_wait("r-posts", b"persist me", key=b"k")
        finally:
            await producer.stop()
    finally:
        h.stop()
    assert not h.alive()
    h2 = local.start_noida(data, port, log_dir=tmp_path / "logs")
    try:
        assert await _partition_counts(h2.address, ["r-posts"]) == {"r-posts": POSTS.partitions}
        key, value, _ = await _read_one(h2.address, "r-posts", md.partition, md.offset)
        assert (key, value) == (b"k", b"persist me")
    finally:
        h2.stop()


def test_start_process_reports_log_on_failure(tmp_path):
    import sys

    with pytest.raises(local.StartError, match="boom"):
        local.start_process(
            "failer",
            [sys.executable, "-c", "print('boom'); raise SystemExit(3)"],
            lambda: False,
            log_dir=tmp_path,
            timeout=5,
        )
    with pytest.raises(local.StartError, match="not ready within"):
        local.start_process(
            "sleeper",
            [sys.executable, "-c", "import time; print('zzz'); time.sleep(60)"],
            lambda: False,
            log_dir=tmp_path,
            timeout=1,
        )


def test_stop_escalates_to_sigkill(tmp_path):
    import sys
    import time

    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
    h = local.start_process(
        "stubborn",
        [sys.executable, "-c", code],
        lambda: "up" in (tmp_path / "stubborn.log").read_text(),
        log_dir=tmp_path,
    )
    t = time.monotonic()
    h.stop(timeout=0.5)
    assert not h.alive()
    assert time.monotonic() - t < 5


BUSY_3S = "import time\nt = time.time()\nwhile time.time() - t < 3:\n    pass\n"


def test_a_patient_start_waits_while_the_process_loads(tmp_path):
    """noida-db loads its whole snapshot before it answers (21 s at 1M posts): a patient
    start waits as long as the process works; `timeout` only bounds it sitting idle."""
    import sys

    code = BUSY_3S + "print('up', flush=True)\ntime.sleep(60)"

    def ready() -> bool:
        return "up" in (tmp_path / "loader.log").read_text()

    argv = [sys.executable, "-c", code]
    h = local.start_process("loader", argv, ready, log_dir=tmp_path, timeout=1, patient=True)
    try:
        assert h.alive() and ready()
    finally:
        h.stop(timeout=1)
    (tmp_path / "loader.log").unlink()
    with pytest.raises(local.StartError, match="not ready within 1s"):
        local.start_process("loader", argv, ready, log_dir=tmp_path, timeout=1)


def test_a_patient_stop_lets_a_saving_process_finish(tmp_path):
    """A process that keeps working after SIGTERM (noida-db saving) is not SIGKILLed while it
    works, however long; one that sits idle is, after `timeout` (test_stop_escalates_to_sigkill)."""
    import signal
    import sys
    import time

    code = (
        "import signal, time\n"
        "def save(*_):\n"
        "    t = time.time()\n"
        "    while time.time() - t < 3:\n"
        "        pass\n"
        "    open('saved', 'w').write('all of it')\n"
        "    raise SystemExit(0)\n"
        "signal.signal(signal.SIGTERM, save)\n"
        "print('up', flush=True)\n"
        "time.sleep(60)\n"
    )
    h = local.start_process(
        "saver",
        [sys.executable, "-c", code],
        lambda: "up" in (tmp_path / "saver.log").read_text(),
        log_dir=tmp_path,
        cwd=tmp_path,
        patient=True,
    )
    t = time.monotonic()
    h.stop(timeout=1)
    assert time.monotonic() - t > 2.5
    assert h.proc.returncode == 0, f"killed by signal {signal.Signals(-h.proc.returncode).name}"
    assert (tmp_path / "saved").read_text() == "all of it"


def test_xsim_fixture_healthy(xsim):
    import urllib.request

    with urllib.request.urlopen(f"{xsim}/_sim/health", timeout=5) as r:
        assert r.status == 200


def test_stack_up_status_down(tmp_path):
    """``python -m infra.stack`` in a scratch directory: infra parts only, on free ports."""
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "PYTHONPATH": str(local.REPO_ROOT),
        "XGET_KAFKA_PORT": str(local.free_port()),
        "XGET_DATA_DIR": str(tmp_path / "x"),
        "XGET_CLICKHOUSE_DSN": f"chdb://{tmp_path / 'x' / 'clickhouse'}",
    }

    def stack(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "infra.stack", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    try:
        r = stack("up", "--no-xsim", "--no-services")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "noida     started" in r.stdout and "topics    " in r.stdout
        assert (tmp_path / "x" / "run" / "noida.pid").exists()
        r = stack("up", "--no-xsim", "--no-services")  # idempotent
        assert r.returncode == 0 and "already running" in r.stdout, r.stdout + r.stderr
        r = stack("status")
        assert "noida     pid" in r.stdout and "alive" in r.stdout
    finally:
        r = stack("down")
    assert "noida     stopped" in r.stdout, r.stdout + r.stderr
    assert not (tmp_path / "x" / "run" / "noida.pid").exists()
    assert "not started" in stack("status").stdout
