"""A dependency that is down is a 503 with Retry-After and the reason, never a 500: ClickHouse
over HTTP (infra.chdb_http) stopped under the data and statistics endpoints, the broker
stopped under task creation and control; both answer again once the dependency is back."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager

import httpx

from infra import local
from libs.kafka import Producer
from libs.topics import CATALOGUE
from services.runtime import clickhouse_for, close_stores
from services.task_gateway.api import create_app
from services.task_gateway.task_view import TaskView
from tests.e2e.harness import fresh_prefix

TOKEN = "unavailable-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WINDOW = {"start_time": "2026-10-01T00:00:00Z", "end_time": "2026-10-02T00:00:00Z"}
# Every ClickHouse-backed route, with valid parameters.
CLICKHOUSE_ROUTES = [
    ("/api/v1/statistics/monthly", {"year": 2026, "month": 11}),
    ("/api/v1/statistics/tasks/some-task", {}),
    ("/api/v1/data/tweets/search", {"keyword": "x", "min_likes": 1}),
    ("/api/v1/data/tweets/1234567890", {}),
    ("/api/v1/data/users/someone", {}),
    ("/api/v1/data/users/someone/tweets", {}),
    ("/api/v1/data/analytics/trending", {"hours": 24}),
    ("/api/v1/data/tweets/export", {"format": "csv", "keyword": "x"}),
]


def assert_unavailable(r: httpx.Response, settings, dependency: str) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["Retry-After"] == str(settings.api_retry_after_s)
    body = r.json()
    assert body["status"] == "unavailable" and body["dependency"] == dependency, body
    assert "unreachable" in body["detail"]
    assert "127.0.0.1" not in body["detail"]  # no internal addresses for the client


@asynccontextmanager
async def gateway(settings, get_store=None):
    """A client of the gateway app on `settings` (the producer and views it needs running)."""
    producer = await Producer(settings).start()
    view = TaskView(settings)
    await view.start()
    app = create_app(settings, producer, view, get_store)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gw", headers=AUTH, timeout=60
        ) as c:
            yield c
    finally:
        await close_stores()
        await asyncio.wait_for(view.stop(), 60)
        await asyncio.wait_for(producer.stop(), 60)


async def test_clickhouse_down_is_503_and_recovers(noida, tmp_path):
    server = local.start_chdb_http(tmp_path / "ch", log_dir=tmp_path)
    settings = noida.settings(
        topic_prefix=fresh_prefix(noida.bootstrap),
        api_token=TOKEN,
        clickhouse_dsn=server.address,
        api_retry_after_s=7,
    )
    try:
        async with gateway(settings, lambda: clickhouse_for(settings, wait=False)) as c:
            for path, params in CLICKHOUSE_ROUTES:
                r = await c.get(path, params=params)
                assert r.status_code in (200, 404), (path, r.text)

            server.stop()
            for path, params in CLICKHOUSE_ROUTES:
                t0 = time.monotonic()
                assert_unavailable(await c.get(path, params=params), settings, "clickhouse")
                assert time.monotonic() - t0 < 30, path

            server = local.start_chdb_http(tmp_path / "ch", server.port, log_dir=tmp_path)
            for path, params in CLICKHOUSE_ROUTES:
                r = await c.get(path, params=params)
                assert r.status_code in (200, 404), (path, r.text)
    finally:
        server.stop()


async def test_clickhouse_never_reachable_is_503(noida):
    """The first data request of a gateway whose ClickHouse is not up yet (migrations fail)."""
    settings = noida.settings(
        topic_prefix=fresh_prefix(noida.bootstrap),
        api_token=TOKEN,
        clickhouse_dsn=f"http://127.0.0.1:{local.free_port()}",
    )
    async with gateway(settings, lambda: clickhouse_for(settings, wait=False)) as c:
        for path, params in CLICKHOUSE_ROUTES[:3]:
            assert_unavailable(await c.get(path, params=params), settings, "clickhouse")


async def test_broker_down_is_503_on_task_creation_and_control(make_settings, tmp_path):
    broker = local.start_noida(tmp_path / "kafka", log_dir=tmp_path)
    prefix = "u-"
    local.create_topics_sync(broker.address, prefix, CATALOGUE)
    settings = make_settings(
        kafka_bootstrap=broker.address,
        topic_prefix=prefix,
        kafka_group_mode="assign",
        kafka_empty_fetch_backoff_ms=50,
        api_token=TOKEN,
        api_dependency_timeout_s=3,
        # a broker restart with an idempotent producer is another
        # issue's (the producer rebuild); this test is about the 503
        kafka_idempotent_producer=False,
    )
    try:
        async with gateway(settings) as c:
            try:
                r = await c.post(
                    "/api/v1/tasks/ondemand", json={"task_id": "before", "keyword": "x", **WINDOW}
                )
                assert r.status_code == 200, r.text

                broker.stop()
                t0 = time.monotonic()
                r = await c.post(
                    "/api/v1/tasks/ondemand", json={"task_id": "during", "keyword": "x", **WINDOW}
                )
                assert_unavailable(r, settings, "kafka")
                assert time.monotonic() - t0 < settings.api_dependency_timeout_s + 10
                assert_unavailable(await c.post("/api/v1/tasks/before/cancel"), settings, "kafka")
                assert_unavailable(
                    await c.patch("/api/v1/tasks/before", json={"priority": 2}), settings, "kafka"
                )
                assert_unavailable(
                    await c.post(
                        "/api/v1/tasks/scheduled", json={"keyword": "x", "frequency": "daily"}
                    ),
                    settings,
                    "kafka",
                )

                # back on its data dir: the same request (same task id) is accepted
                broker = local.start_noida(tmp_path / "kafka", broker.port, log_dir=tmp_path)
                r = await c.post(
                    "/api/v1/tasks/ondemand", json={"task_id": "during", "keyword": "x", **WINDOW}
                )
                assert r.status_code == 200, r.text
            finally:
                # the views' consumer only stops cleanly with a broker to leave
                if not broker.alive():
                    broker = local.start_noida(tmp_path / "kafka", broker.port, log_dir=tmp_path)
    finally:
        broker.stop()
