"""Tasks published straight onto `task-commands` by a third-party Kafka client: librdkafka
(confluent-kafka) with idempotence and lz4, values as a client writes them (the HTTP body,
without the fields the system fills: submitted_at, task_id from the key, defaults), and no
header but `xget-schema`. Each task runs to completion like one created over HTTP."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from infra import local
from infra.service_process import wait_until
from libs.records.base import SCHEMA_HEADER
from libs.records.tasks import OnDemandTask, ScheduledTask
from libs.topics import TASK_COMMANDS, topic_name

from .harness import Simulator
from .test_reports import Stack, report_settings

confluent_kafka = pytest.importorskip("confluent_kafka")

pytestmark = pytest.mark.e2e


def publish(settings, records: list[tuple[str, str, dict]]) -> None:
    """(key, schema id, value) each, the way a librdkafka client would."""
    p = confluent_kafka.Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "enable.idempotence": True,
            "compression.type": "lz4",
            "acks": "all",
        }
    )
    errors: list = []
    for key, schema, value in records:
        p.produce(
            topic_name(TASK_COMMANDS, settings.topic_prefix),
            json.dumps(value).encode(),
            key=key.encode(),
            headers=[(SCHEMA_HEADER, schema.encode())],
            on_delivery=lambda err, _msg: errors.append(err) if err else None,
        )
    assert p.flush(30) == 0, "records not delivered within 30 s"
    assert not errors, errors


def test_tasks_published_by_a_librdkafka_client_run(noida, xsim, s3, tmp_path, chdb_path):
    settings = report_settings(noida, xsim, tmp_path, chdb_path, s3, report_media_wait_s=0)
    Simulator(xsim).configure(limits={"SearchTimeline": 100_000})
    tag = uuid.uuid4().hex[:6]
    full, bare, sched = f"cf-full-{tag}", f"cf-bare-{tag}", f"cf-sched-{tag}"
    stack = Stack(settings, tmp_path)
    # Each process its own /readyz; the gateway's health asks the front process's too.
    db_ops, front_ops = local.free_port(), local.free_port()
    stack.db.settings = settings.model_copy(
        update={
            "metrics_port": db_ops,
            "health_ready_urls": f"front=http://127.0.0.1:{front_ops}/readyz",
        }
    )
    stack.front.settings = settings.model_copy(update={"metrics_port": front_ops})
    with stack:
        gw = stack.gw
        publish(
            settings,
            [
                # the HTTP body of POST /tasks/ondemand as the value: no submitted_at
                (
                    full,
                    OnDemandTask.schema_id(),
                    {
                        "task_id": full,
                        "keyword": f"kw{tag}",
                        "priority": 3,
                        "required_count": 30,
                        "start_time": "2026-10-01T00:00:00Z",
                        "end_time": "2026-10-02T00:00:00Z",
                    },
                ),
                # only what the schema file says a publisher must set; the key is the id
                (
                    bare,
                    OnDemandTask.schema_id(),
                    {
                        "keyword": f"kw{tag}b",
                        "start_time": "2026-10-01T00:00:00Z",
                        "end_time": "2026-10-01T02:00:00Z",
                    },
                ),
                # a run every 168 s: the first fires at once over the last 168 s
                (
                    sched,
                    ScheduledTask.schema_id(),
                    {"keyword": f"kw{tag}s", "frequency": "weekly", "frequency_count": 3600},
                ),
            ],
        )
        for task_id, collected in ((full, 30), (bare, 120)):
            st = wait_until(
                lambda t=task_id: (
                    (r := gw.client.get(f"/api/v1/tasks/{t}/status")).status_code == 200
                    and r.json()["status"] == "completed"
                    and r.json()
                ),
                180,
                f"{task_id} to complete",
            )
            assert st["progress"]["collected"] == collected, st
        task = gw.client.get(f"/api/v1/tasks/{bare}").json()
        assert task["parameters"]["priority"] == 5 and task["parameters"]["required_count"] == 0
        assert task["created_at"]  # submitted_at, filled from the record's timestamp
        # the design's times and counts of a finished task
        assert task["created_at"] <= task["started_at"] <= task["completed_at"], task
        assert task["progress"]["failed"] == 0 and task["error_message"] is None
        # the scheduled task's first run fires at once (submitted_at = the record's time)
        wait_until(
            lambda: gw.client.get(f"/api/v1/tasks/{sched}").json().get("runs_fired", 0) >= 1,
            60,
            "the scheduled task's first run",
        )
        st = gw.client.get(f"/api/v1/tasks/{sched}").json()
        assert st["status"] == "scheduled" and st["type"] == "keyword_search", st
        wait_until(
            lambda: gw.status(f"{sched}-r0001")["status"] == "completed", 120, "the first run"
        )

        # System statistics and health over the running stack.
        posts = set()
        for kw in (f"kw{tag}", f"kw{tag}b", f"kw{tag}s"):
            r = gw.client.get(
                "/api/v1/data/tweets/search", params={"task_keyword": kw, "limit": 1000}
            )
            assert r.status_code == 200, r.text
            posts |= {p["post_id"] for p in r.json()}
        stats = gw.client.get("/api/v1/admin/stats").json()
        assert stats["total_tweets"] == len(posts) >= 150, stats
        assert stats["today_collected"] in (len(posts), 0)  # 0: the test crossed midnight UTC
        assert stats["throughput"]["posts_last_hour"] == len(posts)
        assert stats["active_tasks"] == 0 and stats["tasks"]["by_status"]["completed"] == 3
        assert stats["healthy_accounts"] == 3 and stats["accounts"]["error"] is None, stats
        r = httpx.get(f"{gw.base}/api/v1/admin/health", timeout=30)  # no token
        health = r.json()
        assert r.status_code == 200 and health["status"] == "healthy", health
        assert set(health["dependencies"]) == {"broker", "clickhouse", "object_store"}
        services = health["services"]
        assert services["front"]["status"] == services["account-manager"]["status"] == "ok"
        assert any("dedup-counter" in name for name in services), services  # the db process
